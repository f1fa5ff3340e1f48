"""The Helm chart on the real control plane: install, upgrade, uninstall, RBAC, the test hook.

kwok runs no containers: the chart's pods are scheduled and marked ready, but the operator inside
does not run. So the proof that the chart's RBAC is enough runs the operator locally with the
chart's identity (a token of its ServiceAccount) and the chart's command line and settings file,
and the `helm test` hook's script runs locally with the hook's own ServiceAccount.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.chart.conftest import container_env
from tests.cluster.chart import CHART, OPERATOR_ACCOUNT, helm, namespaced, operator_as
from tests.cluster.conftest import Kube, eventually
from tests.support import document
from tools import cluster as cluster_tool

pytestmark = pytest.mark.cluster

# How a refusal reads in the log: llmserve's "(403)", kopf's APIForbiddenError and fallbacks. Not a
# bare "403": timestamps end in milliseconds.
FORBIDDEN_WORDS = ("(403)", "Forbidden", "forbidden", "Not enough permissions")


@contextlib.contextmanager
def namespaces(kube: Kube, count: int, *, restricted: bool = True) -> Iterator[list[str]]:
    """Fresh namespaces enforcing Pod Security `restricted`; deleted afterwards (not awaited)."""
    names = [f"c-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for name in names:
        kube.run("create", "namespace", name)
        if restricted:
            kube.run("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
                     "pod-security.kubernetes.io/warn=restricted")  # fmt: skip
    try:
        yield names
    finally:
        for name in names:
            kube.run("delete", "namespace", name, "--wait=false", check=False)


def can_i(kube: Kube, account: str, *request: str) -> bool:
    """`kubectl auth can-i VERB RESOURCE [FLAGS]` as a ServiceAccount."""
    done = kube.run("auth", "can-i", *request, f"--as={account}", check=False)
    return done.stdout.strip() == "yes"


def test_install_upgrade_and_uninstall_in_a_restricted_namespace(kube: Kube) -> None:
    with namespaces(kube, 2) as (release, watched):
        installed = helm(kube, "install", "llmserve", CHART, "-n", release, "--wait",
                         "--timeout", "60s")  # fmt: skip
        output = installed.stdout + installed.stderr
        assert "PodSecurity" not in output
        assert "would violate" not in output
        kube.run("wait", "--for=condition=Available", "deployment/llmserve", "-n", release,
                 "--timeout=60s")  # fmt: skip
        pods = kube.json("pods", "-n", release, "-l", "app.kubernetes.io/component=operator")
        assert [p["status"]["phase"] for p in pods["items"]] == ["Running"]

        def settings() -> dict[str, Any]:
            config_map = kube.json("configmap", "llmserve-config", "-n", release)
            loaded: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
            return loaded

        def checksum() -> str:
            template = kube.json("deployment", "llmserve", "-n", release)["spec"]["template"]
            return str(template["metadata"]["annotations"]["checksum/config"])

        assert settings()["autoscaler"]["intervalSeconds"] == 5
        before = checksum()
        upgraded = helm(kube, "upgrade", "llmserve", CHART, "-n", release, "--wait",
                        "--set", "config.autoscaler.intervalSeconds=7")  # fmt: skip
        assert "would violate" not in upgraded.stdout + upgraded.stderr
        assert settings()["autoscaler"]["intervalSeconds"] == 7
        assert checksum() != before  # the operator restarts to read it
        kube.run("rollout", "status", "deployment/llmserve", "-n", release, "--timeout=60s")

        # To namespaced mode: a Role in the watched namespace, `-n` for it, nothing cluster-wide
        # but kopf's read-only discovery.
        helm(kube, "upgrade", "llmserve", CHART, "-n", release, "--wait", "--reuse-values",
             *namespaced(watched))  # fmt: skip
        assert settings()["autoscaler"]["intervalSeconds"] == 7  # reused
        container = kube.json("deployment", "llmserve", "-n", release)["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert container["args"][:3] == ["operator", "-n", watched]
        assert kube.json("role", "llmserve", "-n", watched)["rules"]
        cluster_role = kube.json("clusterrole", f"llmserve-{release}")
        resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
        assert resources == {"customresourcedefinitions", "namespaces"}

        # Uninstalling keeps the CRD and the LLMServices.
        kube.run("apply", "-n", watched, "-f", "-", stdin=yaml.safe_dump(document({})))
        helm(kube, "uninstall", "llmserve", "-n", release, "--wait")
        assert kube.run("get", "deployment", "llmserve", "-n", release, check=False).returncode
        assert kube.run("get", "role", "llmserve", "-n", watched, check=False).returncode
        assert kube.json("crd", "llmservices.llmserve.io")["metadata"]["name"]
        assert kube.json("llms", "llama-8b", "-n", watched)["metadata"]["name"] == "llama-8b"


def test_the_operators_account_can_do_what_it_needs_and_nothing_else(kube: Kube) -> None:
    with namespaces(kube, 2) as (release, other):
        helm(kube, "install", "llmserve", CHART, "-n", release)
        account = f"system:serviceaccount:{release}:{OPERATOR_ACCOUNT}"
        allowed = [  # what the operator does, in any namespace (scope cluster)
            ("patch", "llmservices.llmserve.io", "--subresource=status", "-n", other),
            ("patch", "llmservices.llmserve.io", "--subresource=scale", "-n", other),
            ("watch", "llmservices.llmserve.io", "-A"),
            ("create", "deployments.apps", "-n", other),
            ("patch", "deployments.apps", "-n", other),
            ("delete", "jobs.batch", "-n", other),
            ("create", "events", "-n", other),
            ("create", "secrets", "-n", other),  # an LLMService's generated API key
            ("get", "leases.coordination.k8s.io/llmserve-operator", "-n", release),
        ]
        refused = [  # what it never does
            ("get", "secrets", "-A"),
            ("get", "secrets", "-n", other),
            ("list", "secrets", "-n", release),
            ("watch", "secrets", "-n", other),
            ("update", "secrets", "-n", other),
            ("patch", "secrets", "-n", other),
            ("delete", "secrets", "-n", other),
            ("delete", "nodes"),
            ("list", "namespaces"),  # kopf needs them only in namespaced mode
            ("get", "configmaps", "-n", release),
            ("list", "configmaps", "-A"),
            ("create", "configmaps", "-n", other),
            ("update", "llmservices.llmserve.io", "-n", other),  # never the spec
            ("delete", "llmservices.llmserve.io", "-n", other),
            ("delete", "deployments.apps", "-n", other),
            ("create", "pods", "-n", other),
            ("create", "pods", "--subresource=exec", "-n", other),
            ("get", "leases.coordination.k8s.io/llmserve-operator", "-n", other),
            ("get", "leases.coordination.k8s.io/kube-scheduler", "-n", "kube-system"),
            ("bind", "clusterroles"),
            ("impersonate", "serviceaccounts"),
            ("create", "serviceaccounts", "--subresource=token", "-n", release),
        ]
        assert [a for a in allowed if not can_i(kube, account, *a)] == []
        assert [r for r in refused if can_i(kube, account, *r)] == []
        helm(kube, "uninstall", "llmserve", "-n", release)


@dataclass(frozen=True)
class ChartOperator:
    """A namespaced release, and the operator running locally as the release's ServiceAccount."""

    release: str
    """The release namespace: the operator's Lease and ServiceAccount."""
    watched: str
    """The one namespace it manages."""
    log: Path


@pytest.fixture(scope="module")
def chart_operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartOperator]:
    """The chart in namespaced mode, and its operator running locally with the chart's RBAC."""
    tmp = tmp_path_factory.mktemp("chart-operator")
    with namespaces(kube, 2) as (release, watched):
        helm(kube, "install", "llmserve", CHART, "-n", release, "--wait", *namespaced(watched))
        log = tmp / "operator.log"
        try:
            with operator_as(kube, release, log):
                eventually(lambda: "leading as" in log.read_text(), what="the operator to lead")
                yield ChartOperator(release, watched, log)
        finally:
            helm(kube, "uninstall", "llmserve", "-n", release)


def refusals(log: Path) -> list[str]:
    """Lines of the operator's log that say the API server refused it something."""
    return [
        line for line in log.read_text().splitlines() if any(w in line for w in FORBIDDEN_WORDS)
    ]


def until(log: Path, check: Callable[[], Any], what: str) -> None:
    """Wait for `check`, failing at once when the operator's log shows a refusal."""
    eventually(lambda: refusals(log) or check(), what=what)
    assert refusals(log) == [], "\n".join(refusals(log))


def test_the_operator_needs_no_more_than_the_charts_rbac(
    kube: Kube, chart_operator: ChartOperator
) -> None:
    ns, log = chart_operator.watched, chart_operator.log

    def status() -> dict[str, Any]:
        return kube.json("llms", "llama-8b", "-n", ns).get("status") or {}

    kube.run("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(document({"gpuMemoryGiB": 80})))
    until(log, lambda: status().get("phase") == "Ready", "phase Ready")
    uid = kube.json("llms", "llama-8b", "-n", ns)["metadata"]["uid"]
    for kind in ("pvc/llama-8b-model-cache", "job/llama-8b-model-download",
                 "deployment/llama-8b", "service/llama-8b", "networkpolicy/llama-8b",
                 "secret/llama-8b-api-keys"):  # fmt: skip
        owners = kube.json(kind, "-n", ns)["metadata"]["ownerReferences"]
        assert [(o["kind"], o["uid"]) for o in owners] == [("LLMService", uid)]
    events = kube.json("events", "-n", ns, "--field-selector", "involvedObject.kind=LLMService")
    assert "Ready" in [e["reason"] for e in events["items"]]
    # The scale subresource, then drift repair.
    kube.run("scale", "llms/llama-8b", "-n", ns, "--replicas=2")
    until(log, lambda: status().get("readyReplicas") == 2, "2 ready replicas")
    kube.run("delete", "service", "llama-8b", "-n", ns)
    until(
        log,
        lambda: kube.run("get", "service", "llama-8b", "-n", ns, check=False).returncode == 0,
        "the deleted Service to come back",
    )
    assert refusals(log) == []
    kube.run("delete", "llms", "llama-8b", "-n", ns, "--wait=false")


def hook_objects(kube: Kube, release: str, watched: str) -> list[dict[str, Any]]:
    """The `helm test` hook's objects, as the release would create them."""
    rendered = helm(kube, "template", "llmserve", CHART, "-n", release, *namespaced(watched),
                    "--show-only", "templates/tests/llmservice-available.yaml").stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def test_the_helm_test_hooks_script_passes_with_the_hooks_own_rbac(
    kube: Kube, chart_operator: ChartOperator, tmp_path: Path
) -> None:
    objects = hook_objects(kube, chart_operator.release, chart_operator.watched)
    [pod] = [o for o in objects if o["kind"] == "Pod"]
    rbac = [o for o in objects if o["kind"] != "Pod"]
    kube.run("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                   "items": rbac}))  # fmt: skip
    account = pod["spec"]["serviceAccountName"]
    kubeconfig = cluster_tool.service_account_kubeconfig(
        kube.handle, chart_operator.release, account, tmp_path / "hook.kubeconfig"
    )
    [container] = pod["spec"]["containers"]
    env = container_env(container)
    # The pod's environment, but for where kubectl finds its credentials, and a wait that ends
    # (with kubectl's diagnosis) before the subprocess timeout.
    env |= {"HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig), "TIMEOUT": "90s"}
    done = subprocess.run(  # noqa: S603 - the chart's own script, run by /bin/sh as in the pod
        container["command"],
        env=kube.env | env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "condition met" in done.stdout
    assert env["NAMESPACE"] == chart_operator.watched
    eventually(
        lambda: (
            kube.run("get", "llms", env["NAME"], "-n", env["NAMESPACE"], check=False).returncode
            != 0
        ),
        what="the hook's LLMService to be deleted",
    )
    assert refusals(chart_operator.log) == []


def test_users_with_edit_may_write_llmservices_and_view_may_only_read_them(kube: Kube) -> None:
    with namespaces(kube, 2) as (release, team):
        helm(kube, "install", "llmserve", CHART, "-n", release)
        try:
            kube.run("create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice",
                     "-n", team)  # fmt: skip
            kube.run("create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob",
                     "-n", team)  # fmt: skip
            alice = [("create", "llmservices.llmserve.io"), ("patch", "llmservices.llmserve.io"),
                     ("delete", "llmservices.llmserve.io"),
                     ("update", "llmservices.llmserve.io", "--subresource=scale")]  # fmt: skip
            bob = [("get", "llmservices.llmserve.io"), ("watch", "llmservices.llmserve.io")]
            # The controller-manager aggregates the chart's roles into edit and view.
            eventually(
                lambda: (
                    all(can_i(kube, "alice", *a, "-n", team) for a in alice + bob)
                    and all(can_i(kube, "bob", *b, "-n", team) for b in bob)
                ),
                what="edit and view to include the chart's rules",
            )
            for verb in ("create", "patch", "delete"):
                assert not can_i(kube, "bob", verb, "llmservices.llmserve.io", "-n", team)
            assert not can_i(kube, "alice", "create", "llmservices.llmserve.io", "-n", release)
        finally:
            helm(kube, "uninstall", "llmserve", "-n", release)


def dry_run(kube: Kube, namespace: str, spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --dry-run=server` of an LLMService: admission runs, nothing is stored."""
    return kube.run("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                    stdin=yaml.safe_dump(document(spec)), check=False)  # fmt: skip


def refused_with(kube: Kube, namespace: str, spec: dict[str, Any], words: str) -> bool:
    """Whether the API server refuses the LLMService with these words."""
    done = dry_run(kube, namespace, spec)
    return done.returncode != 0 and words in done.stderr


def test_the_admission_policy_limits_what_an_llmservice_may_ask_for(kube: Kube) -> None:
    with namespaces(kube, 3) as (release, watched, other):
        helm(kube, "install", "llmserve", CHART, "-n", release, *namespaced(watched))
        try:
            image = {"image": "registry.invalid/evil:1"}
            words = "spec.image registry.invalid/evil:1 is not from an allowed registry"
            eventually(  # a new policy takes a moment to be in force
                lambda: refused_with(kube, watched, image, words),
                what="the policy to refuse a foreign image",
            )
            secret = {"secretKeyRef": {"name": "db", "key": "password"}}
            refusals = [
                ({"env": [{"name": "DB", "valueFrom": secret}]}, "spec.env DB: valueFrom is not"),
                ({"tolerations": [{"operator": "Exists"}]}, "spec.tolerations may only name"),
                ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                   "operator": "Exists"}]}, "spec.tolerations may only name"),
                ({"engineArgs": ["--trust-remote-code"]}, "label the namespace"),
                ({"engineArgs": ["--trust_remote_code=true"]}, "label the namespace"),
                ({"engineArgs": ["--trust-rem"]}, "label the namespace"),
                ({"env": [{"name": "TRUST_REMOTE_CODE", "value": "true"}]}, "label the namespace"),
            ]  # fmt: skip
            assert [s for s, words in refusals if not refused_with(kube, watched, s, words)] == []
            allowed = [
                {},
                {"image": "vllm/vllm-openai:v0.33.0"},
                {"image": "docker.io/vllm/vllm-openai@sha256:" + "0" * 64},
                {"env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}]},
                {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
                {"engineArgs": ["--max-num-seqs", "8"]},
            ]
            assert [
                (s, d.stderr) for s in allowed if (d := dry_run(kube, watched, s)).returncode
            ] == []
            # Only the namespaces this release manages; there a namespace may opt in.
            assert dry_run(kube, other, image).returncode == 0
            kube.run("label", "namespace", watched, "llmserve.io/trust-remote-code=true")
            trusting = {"engineArgs": ["--trust-remote-code"]}
            eventually(
                lambda: dry_run(kube, watched, trusting).returncode == 0,
                what="the opted-in namespace to allow --trust-remote-code",
            )
        finally:
            helm(kube, "uninstall", "llmserve", "-n", release)


def child(name: str, *, ours: bool) -> dict[str, Any]:
    """A Service, labelled and controlled like an LLMService's child or not."""
    metadata: dict[str, Any] = {"name": name}
    if ours:
        metadata["labels"] = {"app.kubernetes.io/managed-by": "llmserve"}
        metadata["ownerReferences"] = [{"apiVersion": "llmserve.io/v1alpha1", "kind": "LLMService",
                                        "name": name, "uid": str(uuid.uuid4()),
                                        "controller": True}]  # fmt: skip
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"ports": [{"port": 80}], "selector": {"app": name}}}  # fmt: skip


def test_the_operators_account_may_change_only_llmservice_children(kube: Kube) -> None:
    with namespaces(kube, 2) as (release, other):
        helm(kube, "install", "llmserve", CHART, "-n", release)  # scope cluster: RBAC everywhere
        account = f"system:serviceaccount:{release}:{OPERATOR_ACCOUNT}"
        try:
            kube.run("apply", "-n", other, "-f", "-", stdin=json.dumps(child("web", ours=False)))

            def as_operator(
                *args: str, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
                return kube.run(*args, "--dry-run=server", f"--as={account}", stdin=stdin,
                                check=False)  # fmt: skip

            def create(namespace: str, *, ours: bool) -> subprocess.CompletedProcess[str]:
                manifest = json.dumps(child("svc", ours=ours))
                return as_operator("create", "-n", namespace, "-f", "-", stdin=manifest)

            eventually(
                lambda: "children of LLMServices" in create(other, ours=False).stderr,
                what="the policy to hold the operator's account",
            )
            assert create(other, ours=True).returncode == 0, create(other, ours=True).stderr
            refused = create("kube-system", ours=True)
            assert "may not change anything in kube-system" in refused.stderr
            # Not someone else's object either, not even by labelling it as ours (a server-side
            # apply, as the operator writes: a PATCH with no read first).
            taken = as_operator("apply", "--server-side", "--force-conflicts", "-n", other,
                                "-f", "-", stdin=json.dumps(child("web", ours=True)))  # fmt: skip
            assert f"Service {other}/web is not one" in taken.stderr
            # Jobs are what it may delete (the download Job): only its own.
            kube.run("create", "job", "nightly", "-n", other, "--image=busybox")
            deleted = as_operator("delete", "job", "nightly", "-n", other)
            assert f"Job {other}/nightly is not one" in deleted.stderr
        finally:
            helm(kube, "uninstall", "llmserve", "-n", release)
