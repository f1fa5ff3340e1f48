"""ServiceMonitor, PodMonitor and dashboard: they name ports, labels and series the code has."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.chart.conftest import CHART, NAMESPACED, find, kinds, render
from tests.support import service

from llmserve.api.config import OperatorConfig
from llmserve.handlers.autoscaler import DESIRED
from llmserve.proxy.app import Metrics
from llmserve.render import render as render_children

ALL_ON = {
    "metrics": {"serviceMonitor": {"enabled": True}},
    "podMonitor": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exported() -> dict[str, set[str]]:
    """Every series name the proxy and the operator export, with its label names."""
    proxy = Metrics()
    families: list[Any] = [*proxy.registry.collect(), *DESIRED.collect()]
    labels = {
        "llmserve_requests": set(proxy.requests._labelnames),
        "llmserve_rejected": set(proxy.rejected._labelnames),
        DESIRED._name: set(DESIRED._labelnames),
    }
    names = {}
    for family in families:
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = labels.get(family.name, set())
    return names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "dashboards" / "llmserve.json").read_text())
    return loaded


def test_monitoring_is_off_by_default() -> None:
    objects = render()
    assert kinds(objects, "ServiceMonitor") == kinds(objects, "PodMonitor") == []
    assert [c["metadata"]["name"] for c in kinds(objects, "ConfigMap")] == ["llmserve-config"]


def test_every_series_on_the_dashboard_is_one_llmserve_exports() -> None:
    names = exported()
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"\bllmserve_[a-z_]+\b", target["expr"]))
            assert used, target["expr"]
            assert used <= set(names), f"{panel['title']}: {used - set(names)}"
            # `by (...)` may only name labels the series have, or the PodMonitor's.
            for group in re.findall(r"by \(([^)]*)\)", target["expr"]):
                wanted = {label.strip() for label in group.split(",")} - {
                    "namespace", "llmservice", "le",
                }  # fmt: skip
                assert all(wanted <= names[n] for n in used), f"{panel['title']}: {wanted}"


def test_the_dashboard_has_the_panels_of_the_issue() -> None:
    exprs = " ".join(t["expr"] for p in dashboard()["panels"] for t in p["targets"])
    for needle in (
        "llmserve_queue_depth",
        "histogram_quantile(0.95, sum by (namespace, llmservice, le) (rate(llmserve_time_to_first",
        "rate(llmserve_completion_tokens_total",
        "sum by (namespace, llmservice, reason) (rate(llmserve_rejected_total",
    ):
        assert needle in exprs


def test_the_dashboard_config_map_is_labelled_for_grafanas_sidecar() -> None:
    config_map = find(render(ALL_ON), "ConfigMap", "llmserve-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["llmserve.json"]) == dashboard()


def test_the_pod_monitor_selects_the_llmservice_pods_on_the_proxys_metrics_port() -> None:
    monitor = find(render(ALL_ON), "PodMonitor")
    children = render_children(service({"gpuMemoryGiB": 80}), OperatorConfig())
    pod = next(c for c in children if c["kind"] == "Deployment")["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"]: p for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert [(e["port"], e["path"]) for e in endpoints] == [
        ("metrics", "/metrics"),
        ("metrics", "/metrics/engine"),
    ]
    assert ports["metrics"]["containerPort"] == OperatorConfig().autoscaler.metrics_port
    # The `llmservice` label comes from the pod label that holds the LLMService's name.
    relabel = endpoints[0]["relabelings"][0]
    assert relabel["targetLabel"] == "llmservice"
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == "llama-8b"
    assert relabel["sourceLabels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"]
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_in_namespaced_mode_the_pod_monitor_looks_in_the_managed_namespaces() -> None:
    monitor = find(render(NAMESPACED | {"podMonitor": {"enabled": True}}), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_the_service_monitor_scrapes_the_operators_metrics_port() -> None:
    objects = render(ALL_ON)
    monitor, metrics = find(objects, "ServiceMonitor"), find(objects, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == metrics["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert monitor["spec"]["selector"]["matchLabels"] == metrics["spec"]["selector"]
