"""What a Kubernetes 1.36 API server would say about the rendered children, without a cluster.

Every manifest of every golden spec validates against the strict (no unknown fields) JSON schemas of
Kubernetes 1.36 from `kubernetes-validate`. Pod Security `restricted` and the pod layout of
ARCHITECTURE.md §4 are asserted by code, since no schema expresses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import kubernetes_validate
import pytest
from tests.render.cases import (
    GOLDEN,
    by_kind,
    engine_container,
    env_of,
    golden_children,
    golden_service,
    pod_templates,
    proxy_container,
    stem,
)

from llmserve.render.engines import PROFILES
from llmserve.render.workload import METRICS_PORT, PROXY_PORT

KUBERNETES: Final = "1.36.0"
GPU: Final = "nvidia.com/gpu"
RESTRICTED_VOLUME_TYPES: Final = frozenset(
    # Pod Security Standards, restricted profile: "Volume Types".
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
    | {"projected", "secret"}
)
LOOPBACK: Final = "127.0.0.1"


def containers_of(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def last_value(argv: list[str], flag: str) -> str | None:
    """The value an engine ends up with for `flag` (the last one given wins)."""
    found = None
    for index, token in enumerate(argv):
        if token == flag and index + 1 < len(argv):
            found = argv[index + 1]
        elif token.startswith(f"{flag}="):
            found = token.split("=", 1)[1]
    return found


def bind_address(engine: str, container: dict[str, Any]) -> str | None:
    """Where the engine listens, read the way each engine reads it (ENGINES.md §1)."""
    if engine == "ollama":
        host = env_of(container)["OLLAMA_HOST"]["value"]
        return str(host).rsplit(":", 1)[0]
    flag = "--hostname" if engine == "tgi" else "--host"
    return last_value(container["args"], flag)


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_every_child_validates_against_the_kubernetes_strict_schema(source: Path) -> None:
    for child in golden_children(source):
        try:
            used = kubernetes_validate.validate(child, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path)
            pytest.fail(f"{child['kind']} {child['metadata']['name']}: at {where}: {error.message}")
        assert used == "1.36", f"validated with the schemas of Kubernetes {used}, not 1.36"


def test_the_schema_check_catches_an_unknown_field() -> None:
    deployment = by_kind(golden_children(GOLDEN[0]), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError, match="gpus"):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_every_pod_meets_pod_security_restricted(source: Path) -> None:
    for kind, template in pod_templates(golden_children(source)):
        pod = template["spec"]
        pod_security = pod.get("securityContext", {})
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(flag), f"{kind}: {flag} is set"
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, f"{kind}: hostPath volume {volume['name']}"
            types = set(volume) - {"name"}
            assert types <= RESTRICTED_VOLUME_TYPES, f"{kind}: volume {volume['name']} is {types}"
        assert pod_security.get("runAsUser", 1) != 0, f"{kind}: runs as root"
        for container in containers_of(pod):
            where = f"{kind} container {container['name']}"
            security = container.get("securityContext", {})
            run_as_non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
            assert run_as_non_root is True, f"{where}: runAsNonRoot is not true"
            assert security.get("runAsUser", 1) != 0, f"{where}: runs as root"
            assert security.get("allowPrivilegeEscalation") is False, f"{where}: may escalate"
            assert security.get("privileged", False) is False, f"{where}: privileged"
            capabilities = security.get("capabilities", {})
            assert "ALL" in capabilities.get("drop", []), f"{where}: capabilities not dropped"
            assert set(capabilities.get("add", [])) <= {"NET_BIND_SERVICE"}, where
            seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
            assert seccomp.get("type") in {"RuntimeDefault", "Localhost"}, f"{where}: seccomp"
            assert not any("hostPort" in port for port in container.get("ports", [])), where


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_no_pod_gets_service_links_or_an_api_token(source: Path) -> None:
    for kind, template in pod_templates(golden_children(source)):
        assert template["spec"]["enableServiceLinks"] is False, kind
        assert template["spec"]["automountServiceAccountToken"] is False, kind


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_the_engine_listens_on_loopback_behind_the_proxy(source: Path) -> None:
    engine = golden_service(source).spec.engine
    children = golden_children(source)
    container = engine_container(children)
    assert bind_address(engine, container) == LOOPBACK
    assert "ports" not in container, "the engine must not declare a pod port"
    port = PROFILES[engine].port
    assert port != PROXY_PORT
    proxy = proxy_container(children)
    assert last_value(proxy["args"], "--upstream") == f"http://{LOOPBACK}:{port}"
    assert [p["containerPort"] for p in proxy["ports"]] == [PROXY_PORT, METRICS_PORT]


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_gpus_are_requested_and_limited_on_the_engine_container_only(source: Path) -> None:
    gpus = golden_service(source).spec.gpus
    children = golden_children(source)
    resources = engine_container(children).get("resources", {})
    if gpus:
        assert resources["requests"][GPU] == resources["limits"][GPU] == str(gpus)
    else:
        assert GPU not in resources.get("requests", {})
        assert GPU not in resources.get("limits", {})
    for kind, template in pod_templates(children):
        for container in containers_of(template["spec"]):
            if kind == "Deployment" and container["name"] == "engine":
                continue
            for part in ("requests", "limits"):
                held = container.get("resources", {}).get(part, {})
                assert GPU not in held, f"{kind} container {container['name']} holds a GPU"


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_shared_memory_volume_exactly_when_more_than_one_gpu(source: Path) -> None:
    gpus = golden_service(source).spec.gpus
    children = golden_children(source)
    pod = by_kind(children, "Deployment")["spec"]["template"]["spec"]
    memory_volumes = {
        v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"
    }
    shm_mounts = [
        m
        for m in engine_container(children)["volumeMounts"]
        if m["mountPath"] == "/dev/shm"  # noqa: S108 - not a temp file
    ]
    if gpus > 1:
        assert len(shm_mounts) == 1
        assert shm_mounts[0]["name"] in memory_volumes
    else:
        assert not shm_mounts
        assert not memory_volumes


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_references_inside_the_children_resolve(source: Path) -> None:
    children = golden_children(source)
    deployment = by_kind(children, "Deployment")
    template = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    assert by_kind(children, "Service")["spec"]["selector"] == selector
    for kind, pod_template in pod_templates(children):
        pod = pod_template["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert len(volumes) == len(pod["volumes"]), f"{kind}: duplicate volume names"
        for container in containers_of(pod):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{kind}: {mount['name']} is not a volume"
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in volumes.values()
            if "persistentVolumeClaim" in v
        ]
        for claim in claims:
            assert by_kind(children, "PersistentVolumeClaim")["metadata"]["name"] == claim
    if golden_service(source).spec.cache.enabled:
        job = by_kind(children, "Job")
        assert job["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}
    proxy_ports = proxy_container(children)["ports"]
    named_ports = {p["name"] for p in proxy_ports}
    for port in by_kind(children, "Service")["spec"]["ports"]:
        assert port["targetPort"] in named_ports
    policy = by_kind(children, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == selector
    for rule in policy["ingress"]:
        assert rule["from"], "a rule without `from` admits every source"
        assert [(p["protocol"], p["port"]) for p in rule["ports"]] in [
            [(p["protocol"], p["containerPort"])] for p in proxy_ports
        ]
