"""The operator on the real control plane: children, status, drift repair, updates, deletion."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.cluster.chart import operator_as, release_in
from tests.cluster.conftest import Kube, eventually
from tests.support import document

pytestmark = pytest.mark.cluster


@contextlib.contextmanager
def running_operator(kube: Kube, namespace: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The chart's operator for `namespace`, as a local process with the chart's ServiceAccount.

    The chart is installed into the namespace itself (managing only it), so every operator test
    is also a proof that the chart's RBAC is enough. Stopped by PID afterwards.
    """
    with release_in(kube, namespace), operator_as(kube, namespace, log) as process:
        yield process


@pytest.fixture
def operator(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """One operator for the test's namespace, started and leading."""
    log = tmp_path / "operator.log"
    with running_operator(kube, namespace, log):
        eventually(lambda: "Activity 'startup' succeeded" in log.read_text(), what="startup")
        yield log


def apply(kube: Kube, namespace: str, doc: dict[str, Any]) -> None:
    kube.run("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))


def status(kube: Kube, namespace: str, name: str = "llama-8b") -> dict[str, Any]:
    return kube.json("llms", name, "-n", namespace).get("status") or {}


def condition(kube: Kube, namespace: str, kind: str, name: str = "llama-8b") -> dict[str, Any]:
    found = [c for c in status(kube, namespace, name).get("conditions", []) if c["type"] == kind]
    return found[0] if found else {}


def ready(kube: Kube, namespace: str, name: str = "llama-8b") -> bool:
    return status(kube, namespace, name).get("phase") == "Ready"


def events(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    selector = "involvedObject.kind=LLMService"
    return kube.json("events", "-n", namespace, "--field-selector", selector)["items"]


SPEC = {"gpuMemoryGiB": 80}
MANAGED = "app.kubernetes.io/managed-by=llmserve"
"""Children of LLMServices; the chart's own objects in the namespace are Helm's."""


@pytest.mark.usefixtures("operator")
def test_an_llmservice_becomes_ready_with_owned_children_and_a_true_status(
    kube: Kube, namespace: str
) -> None:
    apply(kube, namespace, document(SPEC))
    eventually(lambda: ready(kube, namespace), what="phase Ready")
    uid = kube.json("llms", "llama-8b", "-n", namespace)["metadata"]["uid"]
    for kind, name in [
        ("pvc", "llama-8b-model-cache"),
        ("job", "llama-8b-model-download"),
        ("deployment", "llama-8b"),
        ("service", "llama-8b"),
        ("networkpolicy", "llama-8b"),
    ]:
        owners = kube.json(kind, name, "-n", namespace)["metadata"]["ownerReferences"]
        assert [(o["kind"], o["uid"], o["controller"]) for o in owners] == [
            ("LLMService", uid, True)
        ]
    got = status(kube, namespace)
    assert got["endpoint"] == f"http://llama-8b.{namespace}.svc/v1"
    assert got["readyReplicas"] == got["replicas"] == 1
    assert got["observedGeneration"] == 1
    assert got["image"] == "vllm/vllm-openai:v0.33.0"
    assert "--served-model-name" in got["engineArgs"]
    assert {c["type"]: c["status"] for c in got["conditions"]} == {
        "Valid": "True",
        "ModelCached": "True",
        "Available": "True",
        "Secure": "True",
    }
    reasons = [e["reason"] for e in events(kube, namespace)]
    assert "Downloading" in reasons
    assert "Ready" in reasons


def api_keys(kube: Kube, namespace: str, name: str = "llama-8b-api-keys") -> str:
    """The keys file in a Secret, as the proxy reads it (read as admin: the operator cannot)."""
    secret = kube.json("secret", name, "-n", namespace)
    return base64.b64decode(secret["data"]["api-keys"]).decode()


@pytest.mark.usefixtures("operator")
def test_without_keys_of_its_own_an_llmservice_gets_a_random_key_the_proxy_mounts(
    kube: Kube, namespace: str
) -> None:
    apply(kube, namespace, document(SPEC))
    eventually(lambda: ready(kube, namespace), what="phase Ready")
    uid = kube.json("llms", "llama-8b", "-n", namespace)["metadata"]["uid"]
    secret = kube.json("secret", "llama-8b-api-keys", "-n", namespace)
    owners = secret["metadata"]["ownerReferences"]
    assert [(o["kind"], o["uid"], o["controller"]) for o in owners] == [("LLMService", uid, True)]
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "llmserve"
    assert re.fullmatch(r"default:sk-[A-Za-z0-9_-]{43}\n", api_keys(kube, namespace))
    pod = kube.json("deployment", "llama-8b", "-n", namespace)["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "llama-8b-api-keys"
    assert volume["secret"]["defaultMode"] == 0o440
    proxy = pod["containers"][1]["args"]
    assert proxy[proxy.index("--api-keys-file") + 1] == "/etc/llmserve/api-keys/keys"
    secure = condition(kube, namespace, "Secure")
    assert (secure["status"], secure["reason"]) == ("True", "GeneratedApiKey")
    described = kube.run("describe", "llms", "llama-8b", "-n", namespace).stdout
    assert "kubectl get secret llama-8b-api-keys" in " ".join(described.split())


@pytest.mark.usefixtures("operator")
def test_a_secret_of_that_name_that_exists_is_never_overwritten(kube: Kube, namespace: str) -> None:
    kube.run("create", "secret", "generic", "llama-8b-api-keys", "-n", namespace,
             "--from-literal=api-keys=alice:sk-alice")  # fmt: skip
    apply(kube, namespace, document(SPEC))
    eventually(lambda: ready(kube, namespace), what="phase Ready")
    assert api_keys(kube, namespace) == "alice:sk-alice"


@pytest.mark.usefixtures("operator")
def test_an_open_llmservice_says_so_in_a_condition_and_one_warning(
    kube: Kube, namespace: str
) -> None:
    apply(kube, namespace, document({**SPEC, "proxy": {"auth": "none"}}))
    eventually(lambda: ready(kube, namespace), what="phase Ready")
    proxy = kube.json("deployment", "llama-8b", "-n", namespace)["spec"]["template"]["spec"][
        "containers"
    ][1]
    assert proxy["args"][proxy["args"].index("--auth") + 1] == "none"
    assert kube.run("get", "secret", "llama-8b-api-keys", "-n", namespace, check=False).returncode
    secure = condition(kube, namespace, "Secure")
    assert (secure["status"], secure["reason"]) == ("False", "AuthDisabled")
    warnings = [e for e in events(kube, namespace) if e["reason"] == "AuthDisabled"]
    assert [e["type"] for e in warnings] == ["Warning"]
    assert "spec.proxy.auth is none" in warnings[0]["message"]
    described = " ".join(kube.run("describe", "llms", "llama-8b", "-n", namespace).stdout.split())
    assert "AuthDisabled" in described
    assert "spec.proxy.auth is none" in described


@pytest.mark.usefixtures("operator")
def test_drift_is_repaired_and_foreign_labels_are_left_alone(kube: Kube, namespace: str) -> None:
    apply(kube, namespace, document(SPEC))
    eventually(lambda: ready(kube, namespace), what="phase Ready")
    kube.run("delete", "service", "llama-8b", "-n", namespace)
    eventually(
        lambda: (
            kube.run("get", "service", "llama-8b", "-n", namespace, check=False).returncode == 0
        ),
        what="the deleted Service to come back",
    )
    kube.run(
        "set", "image", "deployment/llama-8b", "engine=registry.invalid/evil:1", "-n", namespace
    )
    kube.run("label", "deployment", "llama-8b", "team=search", "-n", namespace)

    def image_restored() -> bool:
        deployment = kube.json("deployment", "llama-8b", "-n", namespace)
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return image == "vllm/vllm-openai:v0.33.0"

    eventually(image_restored, what="the hand-edited image to be put back")
    labels = kube.json("deployment", "llama-8b", "-n", namespace)["metadata"]["labels"]
    assert labels["team"] == "search"


@pytest.mark.usefixtures("operator")
def test_the_network_policy_admits_the_namespace_and_the_scrapers_and_comes_back(
    kube: Kube, namespace: str
) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"team": "web"}}}
    apply(kube, namespace, document({**SPEC, "proxy": {"allowedFrom": [peer]}}))
    eventually(lambda: ready(kube, namespace), what="phase Ready")
    uid = kube.json("llms", "llama-8b", "-n", namespace)["metadata"]["uid"]
    policy = kube.json("networkpolicy", "llama-8b", "-n", namespace)
    owners = policy["metadata"]["ownerReferences"]
    assert [(o["kind"], o["uid"], o["controller"]) for o in owners] == [("LLMService", uid, True)]
    selector = kube.json("deployment", "llama-8b", "-n", namespace)["spec"]["selector"]
    assert policy["spec"]["podSelector"] == selector
    # The model is cached, so the engine runs offline: DNS is its only way out.
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == [
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    ]
    # The chart's release here: its operator pods and the monitoring namespace read metrics.
    operator_pods = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator",
                                        "app.kubernetes.io/instance": "llmserve",
                                        "app.kubernetes.io/name": "llmserve"}},
    }  # fmt: skip
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    opened = [
        {"from": [{"podSelector": {}}, peer], "ports": [{"protocol": "TCP", "port": 8080}]},
        {"from": [operator_pods, monitoring], "ports": [{"protocol": "TCP", "port": 9090}]},
    ]
    assert policy["spec"]["ingress"] == opened

    kube.run("delete", "networkpolicy", "llama-8b", "-n", namespace)

    def recreated() -> dict[str, Any] | None:
        done = kube.run("get", "networkpolicy", "llama-8b", "-n", namespace, "-o", "json",
                        check=False)  # fmt: skip
        if done.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(done.stdout)
        return found if found["metadata"]["uid"] != policy["metadata"]["uid"] else None

    back = eventually(recreated, what="the deleted NetworkPolicy to come back")
    assert back["metadata"]["ownerReferences"][0]["uid"] == uid
    assert back["spec"]["ingress"] == opened
    # An empty rule lets everything in on every port: the operator puts its rule back.
    kube.run("patch", "networkpolicy", "llama-8b", "-n", namespace, "--type=merge",
             "-p", json.dumps({"spec": {"ingress": [{}]}}))  # fmt: skip
    eventually(
        lambda: (
            kube.json("networkpolicy", "llama-8b", "-n", namespace)["spec"]["ingress"] == opened
        ),
        what="the hand-edited NetworkPolicy to be put back",
    )


@pytest.mark.usefixtures("operator")
def test_a_spec_that_does_not_fit_fails_with_a_warning_and_no_children(
    kube: Kube, namespace: str
) -> None:
    apply(kube, namespace, document({"model": {"name": "meta-llama/Llama-3.1-70B"}, **SPEC}))
    eventually(lambda: status(kube, namespace).get("phase") == "Failed", what="phase Failed")
    valid = condition(kube, namespace, "Valid")
    assert valid["status"] == "False"
    assert valid["reason"] == "InvalidSpec"
    assert "spec.gpus: model does not fit: needs ~150 GiB per GPU, have 72 GiB" in valid["message"]
    warnings = [e for e in events(kube, namespace) if e["type"] == "Warning"]
    assert any(e["reason"] == "InvalidSpec" and "spec.gpus" in e["message"] for e in warnings)
    for kind in ("pvc", "job", "deployment", "service", "networkpolicy"):
        assert kube.json(kind, "-n", namespace, "-l", MANAGED)["items"] == []


@pytest.mark.usefixtures("operator")
def test_scale_subresource_and_spec_changes_reach_the_deployment(
    kube: Kube, namespace: str
) -> None:
    apply(kube, namespace, document(SPEC))
    eventually(lambda: ready(kube, namespace), what="phase Ready")
    before = kube.json("deployment", "llama-8b", "-n", namespace)
    kube.run("scale", "llms/llama-8b", "-n", namespace, "--replicas=3")
    eventually(lambda: status(kube, namespace).get("readyReplicas") == 3, what="3 ready replicas")
    after = kube.json("deployment", "llama-8b", "-n", namespace)
    hash_key = "llmserve.io/spec-hash"
    assert after["metadata"]["annotations"][hash_key] == before["metadata"]["annotations"][hash_key]
    # A spec change rolls the Deployment; a new model re-runs the cache step first.
    kube.run("patch", "llms", "llama-8b", "-n", namespace, "--type=merge", "-p",
             json.dumps({"spec": {"model": {"name": "Qwen/Qwen2.5-7B-Instruct"}}}))  # fmt: skip

    def new_model_served() -> bool:
        job = kube.json("job", "llama-8b-model-download", "-n", namespace)
        deployment = kube.json("deployment", "llama-8b", "-n", namespace)
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        return (
            "Qwen/Qwen2.5-7B-Instruct" in job["spec"]["template"]["spec"]["containers"][0]["args"]
            and "Qwen/Qwen2.5-7B-Instruct" in args
        )

    eventually(new_model_served, what="a new download and an updated Deployment")
    eventually(lambda: ready(kube, namespace), what="phase Ready again")
    assert status(kube, namespace)["observedGeneration"] == 3


@pytest.mark.usefixtures("operator")
def test_without_a_cache_the_engine_starts_at_once(kube: Kube, namespace: str) -> None:
    apply(kube, namespace, document({**SPEC, "cache": {"enabled": False}}))
    eventually(lambda: ready(kube, namespace), what="phase Ready")
    assert kube.json("job", "-n", namespace)["items"] == []
    assert kube.json("pvc", "-n", namespace)["items"] == []
    assert condition(kube, namespace, "ModelCached")["reason"] == "CacheDisabled"


@pytest.mark.usefixtures("operator")
def test_deleting_the_llmservice_garbage_collects_its_children(kube: Kube, namespace: str) -> None:
    apply(kube, namespace, document(SPEC))
    eventually(lambda: ready(kube, namespace), what="phase Ready")
    kube.run("delete", "llms", "llama-8b", "-n", namespace, "--timeout=30s")

    def all_gone() -> bool:
        return all(
            kube.json(kind, "-n", namespace, "-l", MANAGED)["items"] == []
            for kind in ("pvc", "job", "deployment", "service", "networkpolicy")
        )

    eventually(all_gone, what="every child to be garbage-collected")


def test_only_the_operator_holding_the_lease_acts_and_a_standby_takes_over(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    with running_operator(kube, namespace, first) as leader:
        eventually(lambda: "leading as" in first.read_text(), what="the first to lead")
        with running_operator(kube, namespace, second):
            eventually(lambda: "waiting for Lease" in second.read_text(), what="a standby")
            apply(kube, namespace, document(SPEC))
            eventually(lambda: ready(kube, namespace), what="phase Ready")
            assert "status written" in first.read_text()
            assert "status written" not in second.read_text()  # the standby did nothing
            leader.send_signal(signal.SIGKILL)  # no goodbye: the Lease must expire
            leader.wait()
            eventually(
                lambda: "leading as" in second.read_text(), timeout=60, what="the standby to lead"
            )
            apply(kube, namespace, document(SPEC, name="second"))
            eventually(lambda: ready(kube, namespace, "second"), what="the new leader to act")


@pytest.mark.usefixtures("operator")
def test_a_missing_storage_class_and_a_stuck_job_do_not_block_deletion(
    kube: Kube, namespace: str
) -> None:
    apply(kube, namespace, document({**SPEC, "cache": {"storageClassName": "no-such-class"}}))
    eventually(
        lambda: status(kube, namespace).get("phase") == "Downloading", what="a stuck download"
    )
    claim = kube.json("pvc", "llama-8b-model-cache", "-n", namespace)
    assert claim["status"]["phase"] == "Pending"
    assert kube.json("llms", "llama-8b", "-n", namespace)["metadata"].get("finalizers") is None
    kube.run("delete", "llms", "llama-8b", "-n", namespace, "--timeout=20s")
    eventually(
        lambda: all(
            kube.json(kind, "-n", namespace, "-l", MANAGED)["items"] == []
            for kind in ("pvc", "job", "service")
        ),
        what="the children of the deleted LLMService to go",
    )


@pytest.mark.usefixtures("operator")
def test_replicas_no_node_can_take_are_named_in_the_status_and_an_event(
    kube: Kube, namespace: str
) -> None:
    # Three replicas of 8 GPUs on two nodes of 8: at least one pod can never be scheduled.
    spec = {**SPEC, "gpus": 8, "replicas": 3, "cache": {"enabled": False}}
    apply(kube, namespace, document(spec))
    available = eventually(
        lambda: (
            (c := condition(kube, namespace, "Available")).get("reason") == "Unschedulable" and c
        ),
        timeout=90,
        what="Available to say Unschedulable",
    )
    assert "Insufficient nvidia.com/gpu" in available["message"]
    assert status(kube, namespace)["phase"] in ("Pending", "Degraded")
    warnings = [e for e in events(kube, namespace) if e["reason"] == "Unschedulable"]
    assert len(warnings) == 1
    assert warnings[0]["type"] == "Warning"
    assert warnings[0]["source"]["component"] == "llmserve"


@pytest.mark.usefixtures("operator")
def test_a_child_the_api_server_refuses_fails_the_llmservice_with_the_servers_words(
    kube: Kube, namespace: str
) -> None:
    # The CRD cannot tell that `except` lies outside `cidr`; the API server refuses the policy.
    peer = {"ipBlock": {"cidr": "10.20.0.0/16", "except": ["192.168.0.0/24"]}}
    apply(kube, namespace, document({**SPEC, "proxy": {"allowedFrom": [peer]}}))
    eventually(lambda: status(kube, namespace).get("phase") == "Failed", what="phase Failed")
    valid = condition(kube, namespace, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "ChildRejected")
    assert valid["message"].startswith(f"the API server refused NetworkPolicy {namespace}/llama-8b")
    assert "except" in valid["message"]
    assert kube.json("deployment", "-n", namespace, "-l", MANAGED)["items"] == []

    def rejections() -> list[dict[str, Any]]:
        return [e for e in events(kube, namespace) if e["reason"] == "ChildRejected"]

    eventually(rejections, what="a ChildRejected event")
    # The download Job finishing runs the pass again (and refuses again), without a new event.
    eventually(
        lambda: kube.json("job", "llama-8b-model-download", "-n", namespace)["status"].get(
            "succeeded"
        ),
        what="the download to finish",
    )
    assert [e["type"] for e in rejections()] == ["Warning"]
    # Fixing the spec is enough: the operator applies again.
    peer["ipBlock"]["except"] = ["10.20.1.0/24"]
    apply(kube, namespace, document({**SPEC, "proxy": {"allowedFrom": [peer]}}))
    eventually(lambda: ready(kube, namespace), what="phase Ready once fixed")
    assert condition(kube, namespace, "Valid")["status"] == "True"
