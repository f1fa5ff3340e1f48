"""Pods pass Pod Security `restricted`; RBAC grants only what the code does (Secrets: create
only), no wildcards; users get LLMServices through aggregated roles; the admission policies hold
what values allow."""

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


AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def user_roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ClusterRoles that Kubernetes aggregates into its built-in user roles."""
    return [
        role
        for role in kinds(objects, "ClusterRole")
        if any(key.startswith(AGGREGATE) for key in role["metadata"]["labels"])
    ]


def rules(objects: list[dict[str, Any]], *, hooks: bool = False) -> list[dict[str, Any]]:
    """The rules of the operator's roles (hooks: of the test hook's), not the users'."""
    users = user_roles(objects)
    return [
        rule
        for role in kinds(objects, "Role") + kinds(objects, "ClusterRole")
        if is_hook(role) == hooks and role not in users
        for rule in role["rules"]
    ]


ALL_MODES = [
    {},
    NAMESPACED,
    {"rbac": {**NAMESPACED["rbac"], "clusterDiscovery": False}},
    {"leaderElection": {"enabled": False}},
]


@pytest.mark.parametrize("values", ALL_MODES, ids=["cluster", "ns", "ns-no-discovery", "no-le"])
def test_no_rule_reads_secrets_or_grants_configmaps_wildcards_or_escalation(
    values: dict[str, Any],
) -> None:
    for rule in rules(render(values)) + rules(render(values), hooks=True):
        fields = rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert "*" not in fields, rule
        assert not {"configmaps", "nodes", "serviceaccounts"} & set(rule["resources"])
        if "secrets" in rule["resources"]:  # the generated API-keys Secret: made, never read
            assert (rule["resources"], rule["verbs"]) == (["secrets"], ["create"])
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
    ("", "secrets"): ["create"],
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
    role = find(render(), "ClusterRole", "llmserve-llmserve-system")
    assert flatten(role) == OPERATOR_RULES | DISCOVERY_RULES


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


def test_users_who_may_create_pods_may_write_llmservices_and_view_may_only_read() -> None:
    roles = {r["metadata"]["name"]: r for r in user_roles(render())}
    assert sorted(roles) == ["llmserve-llmserve-system-edit", "llmserve-llmserve-system-view"]
    edit, view = roles["llmserve-llmserve-system-edit"], roles["llmserve-llmserve-system-view"]
    assert {k for k, v in edit["metadata"]["labels"].items() if k.startswith(AGGREGATE)} == {
        f"{AGGREGATE}edit",
        f"{AGGREGATE}admin",
    }
    assert {k for k in view["metadata"]["labels"] if k.startswith(AGGREGATE)} == {
        f"{AGGREGATE}view"
    }
    written = flatten(edit)
    assert {"create", "update", "patch", "delete"} <= set(written["llmserve.io", "llmservices"])
    assert set(written["llmserve.io", "llmservices/scale"]) == {"get", "update", "patch"}
    for verbs in flatten(view).values():
        assert verbs == ["get", "list", "watch"]
    assert user_roles(render({"rbac": {"userRoles": False}})) == []


def policy(values: dict[str, Any] | None, suffix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    objects = render(values)
    name = f"llmserve-llmserve-system-{suffix}"
    binding = find(objects, "ValidatingAdmissionPolicyBinding", name)
    assert binding["spec"]["policyName"] == name
    assert binding["spec"]["validationActions"] == ["Deny"]
    found = find(objects, "ValidatingAdmissionPolicy", name)
    assert found["spec"]["failurePolicy"] == "Fail"
    return found, binding


def test_the_llmservice_policy_is_on_and_holds_the_values() -> None:
    found, binding = policy(None, "llmservices")
    assert "matchResources" not in binding["spec"]  # scope cluster: every namespace
    [rule] = found["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (["llmservices"], ["CREATE", "UPDATE"])
    text = str(found["spec"])
    assert '["vllm/","docker.io/vllm/",' in text
    assert '["nvidia.com/gpu"]' in text
    assert "llmserve.io/trust-remote-code" in text
    assert "valueFrom" in text
    values = {"admissionPolicy": {"allowEnvValueFrom": True, "imagePrefixes": ["registry.corp/"]}}
    loose, _ = policy(values, "llmservices")
    assert "has(e.valueFrom)" not in str(loose["spec"])
    assert '["registry.corp/"]' in str(loose["spec"])
    assert kinds(render({"admissionPolicy": {"enabled": False}}), "ValidatingAdmissionPolicy") == [
        policy(None, "operator")[0]
    ]


def test_in_namespaced_mode_the_llmservice_policy_binds_the_managed_namespaces() -> None:
    _, binding = policy(NAMESPACED, "llmservices")
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
    ]


def test_the_operator_policy_holds_the_operators_account_to_llmservice_children() -> None:
    found, _ = policy(None, "operator")
    [condition] = found["spec"]["matchConditions"]
    account = "system:serviceaccount:llmserve-system:llmserve"
    assert condition["expression"] == f'request.userInfo.username == "{account}"'
    resources = {
        r for rule in found["spec"]["matchConstraints"]["resourceRules"] for r in rule["resources"]
    }
    created = {r for (_, r), verbs in OPERATOR_RULES.items() if {"create", "patch"} & set(verbs)}
    # Every kind it creates or changes, but its Events and its LLMServices' status and scale.
    assert resources == created - {"events", "llmservices/status", "llmservices/scale"}
    assert kinds(render({"rbac": {"operatorPolicy": False}}), "ValidatingAdmissionPolicy") == [
        policy(None, "llmservices")[0]
    ]
