"""The chart's copies and generated files match their sources; the values schema is strict."""

from __future__ import annotations

from typing import Any

import pytest
from tests.chart.conftest import CHART, refusal, render, schema
from tests.support import ROOT
from tools import chart


def test_the_charts_crd_is_the_crd() -> None:
    ours = (CHART / "crds" / "llmservices.llmserve.io.yaml").read_bytes()
    source = (ROOT / "crds" / "llmservices.llmserve.io.yaml").read_bytes()
    assert ours == source, "charts/llmserve/crds/ differs from crds/: run `make crd`"


def test_install_yaml_is_what_the_chart_renders() -> None:
    expected = chart.install_yaml()
    committed = chart.INSTALL.read_text() if chart.INSTALL.exists() else ""
    assert committed == expected, "manifests/install.yaml is out of date: run `make manifests`"


def test_install_yaml_holds_the_crd_and_no_test_hook() -> None:
    text = chart.INSTALL.read_text()
    assert "kind: CustomResourceDefinition" in text
    assert "helm.sh/hook" not in text


def _objects(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)] if node.get("type") == "object" else []
    for key, child in (node.get("properties") or {}).items():
        found += _objects(child, f"{path}/{key}")
    items = node.get("items")
    if isinstance(items, dict):
        found += _objects(items, f"{path}[]")
    return found


FREE_FORM = {
    "/global",
    "/affinity/nodeAffinity",
    "/affinity/podAffinity",
    "/affinity/podAntiAffinity",
}
"""Objects whose insides are the API server's to check (a pod spec's affinity) or a parent's."""


def test_every_object_in_the_schema_says_which_keys_it_takes() -> None:
    for path, node in _objects(schema()):
        if path not in FREE_FORM:
            assert "additionalProperties" in node or "patternProperties" in node, path
            assert node.get("additionalProperties") is not True, path


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"rbac": {"scop": "cluster"}}, "at '/rbac': additional properties 'scop' not allowed"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"config": {"images": {"vlm": "x"}}}, "at '/config/images': additional properties 'vlm'"),
        ({"config": {"autoscaler": {"interval": 5}}}, "additional properties 'interval'"),
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"rbac": {"scope": "everywhere"}}, "at '/rbac/scope'"),
        ({"config": {"defaultCacheSizeGiB": "50Gi"}}, "at '/config/defaultCacheSizeGiB'"),
        ({"metrics": {"port": 8080}}, "at '/metrics/port'"),
        ({"rbac": {"namespaces": ["Team_A"]}}, "at '/rbac/namespaces/0'"),
    ],
)
def test_helm_template_refuses_a_wrong_value_naming_its_key(
    values: dict[str, Any], words: str
) -> None:
    assert words in refusal(values)


def test_helm_lint_strict_refuses_a_typo_naming_the_key() -> None:
    message = refusal({"podMonitor": {"enabeld": True}}, lint=True)
    assert "at '/podMonitor': additional properties 'enabeld' not allowed" in message


def test_the_schema_accepts_the_ci_values() -> None:
    render({"rbac": {"scope": "namespaced", "namespaces": ["a"], "clusterDiscovery": False}})
