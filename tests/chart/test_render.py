"""The chart renders what the operator needs, in both RBAC scopes, and refuses what cannot work."""

from __future__ import annotations

from typing import Any

import pytest
from tests.chart.conftest import (
    CI_VALUES,
    NAMESPACED,
    find,
    helm,
    is_hook,
    kinds,
    operator_container,
    refusal,
    render,
)

from llmserve import cli


def test_helm_lint_strict_passes_with_the_defaults() -> None:
    helm("lint", "--strict", "charts/llmserve")


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: path.stem)
def test_helm_lint_strict_passes_with_each_ci_values_file(values: Any) -> None:
    helm("lint", "--strict", "charts/llmserve", "-f", str(values))


def test_the_default_install_watches_every_namespace_with_a_cluster_role() -> None:
    objects = [o for o in render() if not is_hook(o)]
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole",
        "ClusterRole",  # users' edit and admin (aggregated)
        "ClusterRole",  # users' view (aggregated)
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Role",  # the Lease's
        "RoleBinding",
        "Service",  # the operator's metrics
        "ServiceAccount",
        "ValidatingAdmissionPolicy",  # what an LLMService may ask for
        "ValidatingAdmissionPolicy",  # what the operator's account may change
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert operator_container(objects)["args"] == [
        "operator", "-A", "--liveness", "http://0.0.0.0:8080/healthz",
        "--metrics-port", "8000", "--lease-name", "llmserve-operator",
    ]  # fmt: skip
    cluster_wide = {"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                    "ValidatingAdmissionPolicyBinding"}  # fmt: skip
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] not in cluster_wide} == {
        "llmserve-system"
    }


def test_namespaced_mode_gets_a_role_and_a_flag_per_namespace() -> None:
    objects = render(NAMESPACED)
    roles = [r for r in kinds(objects, "Role") if r["metadata"]["name"] == "llmserve"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [b for b in kinds(objects, "RoleBinding") if b["metadata"]["name"] == "llmserve"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "llmserve", "namespace": "llmserve-system"}
        ]
    args = operator_container(objects)["args"]
    assert args[:5] == ["operator", "-n", "team-a", "-n", "team-b"]
    assert "-A" not in args
    # Cluster-wide only kopf's read-only discovery.
    cluster_role = find(objects, "ClusterRole", "llmserve-llmserve-system")
    resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert resources == {"customresourcedefinitions", "namespaces"}


def test_namespaced_mode_without_cluster_discovery_grants_the_operator_nothing_cluster_wide() -> (
    None
):
    values = {"rbac": {**NAMESPACED["rbac"], "clusterDiscovery": False}}
    objects = render(values)
    assert kinds(objects, "ClusterRoleBinding") == []
    assert "llmserve-llmserve-system" not in [
        r["metadata"]["name"] for r in kinds(objects, "ClusterRole")
    ]
    # For a team that may own nothing cluster-wide at all: no user roles and no policies either.
    values["rbac"] |= {"userRoles": False, "operatorPolicy": False}
    objects = render(values | {"admissionPolicy": {"enabled": False}})
    assert [o["kind"] for o in objects if "namespace" not in o["metadata"]] == []


def test_every_operator_flag_is_one_llmserve_operator_accepts() -> None:
    for values in ({}, NAMESPACED, {"leaderElection": {"enabled": False}, "verbose": True}):
        args = operator_container(render(values))["args"]
        parsed = cli._parser().parse_args(args)
        assert parsed.handler is cli.cmd_operator


def test_without_leader_election_the_operator_runs_alone_and_is_recreated() -> None:
    objects = render({"leaderElection": {"enabled": False}})
    assert "--no-leader-election" in operator_container(objects)["args"]
    assert "--lease-name" not in operator_container(objects)["args"]
    assert find(objects, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert [r["metadata"]["name"] for r in kinds(objects, "Role") if not is_hook(r)] == []


def test_two_replicas_without_leader_election_are_refused() -> None:
    message = refusal({"replicaCount": 2, "leaderElection": {"enabled": False}})
    assert "replicaCount is 2 but leaderElection.enabled is false" in message


def test_with_leader_election_more_replicas_wait_for_the_lease() -> None:
    objects = render({"replicaCount": 2})
    assert find(objects, "Deployment")["spec"]["replicas"] == 2
    assert find(objects, "Deployment")["spec"]["strategy"] == {"type": "RollingUpdate"}


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (
            {"rbac": {"scope": "namespaced"}},
            "rbac.scope is namespaced but rbac.namespaces is empty",
        ),
        ({"rbac": {"namespaces": ["ml"]}}, "rbac.namespaces is [ml] but rbac.scope is cluster"),
        ({"serviceAccount": {"create": False}}, "set serviceAccount.name"),
        (
            {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled needs metrics.enabled",
        ),
    ],
)
def test_settings_that_cannot_work_fail_with_the_key_and_the_fix(
    values: dict[str, Any], words: str
) -> None:
    assert words in refusal(values)


def test_the_operator_finds_its_settings_its_namespace_and_its_probes() -> None:
    objects = render()
    container = operator_container(objects)
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_map = find(objects, "ConfigMap")
    assert env["LLMSERVE_CONFIG"]["value"] == f"{mounts['config']}/config.yaml"
    assert list(config_map["data"]) == ["config.yaml"]
    volumes = {
        v["name"]: v for v in find(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    args = container["args"]
    liveness = args[args.index("--liveness") + 1]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert liveness == f"http://0.0.0.0:{ports['health']}/healthz"
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert ports["metrics"] == int(args[args.index("--metrics-port") + 1])


def test_a_config_change_restarts_the_operator() -> None:
    def checksum(values: dict[str, Any]) -> str:
        template = find(render(values), "Deployment")["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) != checksum({"config": {"autoscaler": {"intervalSeconds": 7}}})
    assert checksum({}) == checksum({"verbose": True})


def test_names_follow_the_release() -> None:
    objects = render(release="prod", namespace="ml-system")
    assert find(objects, "Deployment")["metadata"]["name"] == "prod-llmserve"
    assert find(objects, "ClusterRole", "prod-llmserve-ml-system")["rules"]
    assert find(objects, "ClusterRole", "prod-llmserve-ml-system-edit")["rules"]
    policy = find(objects, "ValidatingAdmissionPolicy", "prod-llmserve-ml-system-llmservices")
    binding = find(
        objects, "ValidatingAdmissionPolicyBinding", "prod-llmserve-ml-system-llmservices"
    )
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert find(objects, "ConfigMap")["metadata"]["namespace"] == "ml-system"
