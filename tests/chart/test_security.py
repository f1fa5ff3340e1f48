"""Pods pass Pod Security `restricted`; RBAC is least privilege: no Secrets, no wildcards."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.chart.conftest import NAMESPACED, find, is_hook, kinds, operator_container, render
from tests.support import ROOT

# Pod Security Standards, `restricted` (which includes `baseline`), as of Kubernetes 1.36.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip


def _container_problems(c: dict[str, Any], pod: dict[str, Any]) -> list[str]:  # noqa: C901 - a check per rule
    sc, psc, name = c.get("securityContext") or {}, pod.get("securityContext") or {}, c["name"]
    problems = []
    if sc.get("privileged"):
        problems.append(f"{name}: privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation must be false")
    capabilities = sc.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append(f"{name}: capabilities must drop ALL")
    if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append(f"{name}: adds capabilities {capabilities['add']}")
    if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
        problems.append(f"{name}: runAsNonRoot must be true")
    if sc.get("runAsUser", psc.get("runAsUser")) == 0:
        problems.append(f"{name}: runs as UID 0")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
    if sc.get("procMount", "Default") != "Default":
        problems.append(f"{name}: procMount")
    if any(p.get("hostPort") for p in c.get("ports") or []):
        problems.append(f"{name}: hostPort")
    se_linux = sc.get("seLinuxOptions") or {}
    if se_linux.get("user") or se_linux.get("role"):
        problems.append(f"{name}: seLinuxOptions user/role")
    return problems


def restricted_problems(pod: dict[str, Any]) -> list[str]:
    """What Pod Security `restricted` would refuse in a pod spec; empty when it passes."""
    problems = [
        f"spec.{field}" for field in ("hostNetwork", "hostPID", "hostIPC") if pod.get(field)
    ]
    for volume in pod.get("volumes") or []:
        kind = (set(volume) - {"name"}).pop()
        if kind not in RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kind} is not allowed")
    sysctls = {s["name"] for s in (pod.get("securityContext") or {}).get("sysctls") or []}
    problems += [f"sysctl {s}" for s in sysctls - SAFE_SYSCTLS]
    containers = [
        *pod.get("initContainers", []),
        *pod["containers"],
        *pod.get("ephemeralContainers", []),
    ]
    for container in containers:
        problems += _container_problems(container, pod)
    return problems


def pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs = {f"Pod {o['metadata']['name']}": o["spec"] for o in kinds(objects, "Pod")}
    for workload in kinds(objects, "Deployment"):
        specs[f"Deployment {workload['metadata']['name']}"] = workload["spec"]["template"]["spec"]
    return specs


@pytest.mark.parametrize(
    "values", [{}, NAMESPACED, {"leaderElection": {"enabled": False}}], ids=["cluster", "ns", "le"]
)
def test_every_pod_passes_pod_security_restricted(values: dict[str, Any]) -> None:
    found = pods(render(values))
    assert sorted(found) == ["Deployment llmserve", "Pod llmserve-test"]
    for name, spec in found.items():
        assert restricted_problems(spec) == [], name


def test_the_checker_sees_a_violation() -> None:
    bad = {"hostNetwork": True, "containers": [{"name": "c", "securityContext": {}}],
           "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}  # fmt: skip
    problems = restricted_problems(bad)
    assert "spec.hostNetwork" in problems
    assert "volume h: hostPath is not allowed" in problems
    assert "c: allowPrivilegeEscalation must be false" in problems


def test_the_operator_is_hardened_beyond_restricted() -> None:
    objects = render()
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    container = operator_container(objects)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    uid = pod["securityContext"]["runAsUser"]
    assert uid == container["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is True  # it works through the API server
    assert pod["enableServiceLinks"] is False
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108
    assert find(objects, "ServiceAccount", "llmserve")["automountServiceAccountToken"] is False


def test_the_operator_runs_as_the_images_user() -> None:
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user, "the Dockerfile names no numeric USER"
    context = find(render(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user.groups()


def rules(objects: list[dict[str, Any]], *, hooks: bool = False) -> list[dict[str, Any]]:
    return [
        rule
        for role in kinds(objects, "Role") + kinds(objects, "ClusterRole")
        if is_hook(role) == hooks
        for rule in role["rules"]
    ]


ALL_MODES = [
    {},
    NAMESPACED,
    {"rbac": {**NAMESPACED["rbac"], "clusterDiscovery": False}},
    {"leaderElection": {"enabled": False}},
]


@pytest.mark.parametrize("values", ALL_MODES, ids=["cluster", "ns", "ns-no-discovery", "no-le"])
def test_no_rule_grants_secrets_configmaps_wildcards_or_escalation(values: dict[str, Any]) -> None:
    for rule in rules(render(values)) + rules(render(values), hooks=True):
        fields = rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert "*" not in fields, rule
        assert not {"secrets", "configmaps", "nodes", "serviceaccounts"} & set(rule["resources"])
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
        assert "nonResourceURLs" not in rule


# What the operator does per namespace (see the chart's README for why); a change here must be
# deliberate, and the cluster test proves the operator needs no more.
OPERATOR_RULES = {
    ("llmserve.io", "llmservices"): ["list", "watch"],
    ("llmserve.io", "llmservices/status"): ["patch"],
    ("llmserve.io", "llmservices/scale"): ["patch"],
    ("llmserve.io", "llmservices/finalizers"): ["update"],
    ("", "persistentvolumeclaims"): ["list", "watch", "create"],
    ("batch", "jobs"): ["get", "list", "watch", "create", "delete"],
    ("apps", "deployments"): ["list", "watch", "create", "patch"],
    ("", "services"): ["list", "watch", "create", "patch"],
    ("networking.k8s.io", "networkpolicies"): ["list", "watch", "create", "patch"],
    ("", "pods"): ["list", "watch"],
    ("", "events"): ["create"],
}
DISCOVERY_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): ["list", "watch"]}


def flatten(role: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    flat: dict[tuple[str, str], list[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in flat, f"{resource} granted twice"
                flat[group, resource] = rule["verbs"]
    return flat


def test_the_cluster_role_is_the_operators_rules_and_kopfs_crd_watch() -> None:
    assert flatten(find(render(), "ClusterRole")) == OPERATOR_RULES | DISCOVERY_RULES


def test_each_namespaced_role_is_the_same_operator_rules() -> None:
    for role in kinds(render(NAMESPACED), "Role"):
        if role["metadata"]["name"] == "llmserve":
            assert flatten(role) == OPERATOR_RULES


def test_the_lease_role_names_one_lease_in_the_release_namespace() -> None:
    role = find(
        render({"leaderElection": {"leaseName": "mine"}}), "Role", "llmserve-leader-election"
    )
    assert role["metadata"]["namespace"] == "llmserve-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["mine"],
            "verbs": ["get", "update"],
        },
    ]
    args = operator_container(render({"leaderElection": {"leaseName": "mine"}}))["args"]
    assert args[args.index("--lease-name") + 1] == "mine"


def test_the_test_hook_may_touch_llmservices_in_one_namespace_only() -> None:
    objects = render(NAMESPACED)
    hook_roles = [r for r in kinds(objects, "Role") if is_hook(r)]
    assert [r["metadata"]["namespace"] for r in hook_roles] == ["team-a"]
    assert flatten(hook_roles[0]) == {
        ("llmserve.io", "llmservices"): ["get", "list", "watch", "create", "patch", "delete"]
    }
    assert [o for o in kinds(objects, "ClusterRole") if is_hook(o)] == []
