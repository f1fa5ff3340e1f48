"""The settings ConfigMap is an OperatorConfig the operator accepts: chart and code cannot drift."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel
from tests.chart.conftest import CHART, find, refusal, render, schema, values_yaml

from llmserve import __version__
from llmserve.api.config import AutoscalerConfig, OperatorConfig


def settings(values: dict[str, Any] | None = None) -> OperatorConfig:
    """The ConfigMap's file, validated as the operator validates it at start."""
    data = find(render(values), "ConfigMap")["data"]["config.yaml"]
    return OperatorConfig.model_validate(yaml.safe_load(data))


def aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_the_default_settings_are_the_operators_defaults_but_who_may_read_metrics() -> None:
    assert settings().model_copy(update={"metrics_from": []}) == OperatorConfig()


OPERATOR_PODS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "llmserve-system"}},
    "podSelector": {
        "matchLabels": {
            "app.kubernetes.io/name": "llmserve",
            "app.kubernetes.io/instance": "llmserve",
            "app.kubernetes.io/component": "operator",
        }
    },
}


def peers(config: OperatorConfig) -> list[dict[str, Any]]:
    return [p.model_dump(by_alias=True, exclude_defaults=True) for p in config.metrics_from]


def test_the_operators_pods_and_the_monitoring_namespace_may_read_the_pods_metrics() -> None:
    operator = find(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert OPERATOR_PODS["podSelector"]["matchLabels"].items() <= operator.items()
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert peers(settings()) == [OPERATOR_PODS, monitoring]
    extra = {"ipBlock": {"cidr": "10.9.0.0/16"}}
    values = {"networkPolicy": {"metricsNamespaces": []}, "config": {"metricsFrom": [extra]}}
    assert peers(settings(values)) == [OPERATOR_PODS, extra]


def test_the_charts_app_version_is_the_operators_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


def test_every_operator_setting_is_a_value_and_nothing_else() -> None:
    config = values_yaml()["config"]
    assert set(config) == aliases(OperatorConfig)
    assert set(config["autoscaler"]) == aliases(AutoscalerConfig)
    properties = schema()["properties"]["config"]["properties"]
    assert set(properties) == aliases(OperatorConfig)
    assert set(properties["autoscaler"]["properties"]) == aliases(AutoscalerConfig)


def test_values_reach_the_settings_file() -> None:
    got = settings(
        {
            "image": {"repository": "registry.example.com/llmserve", "tag": "9.9.9"},
            "config": {
                "images": {"vllm": "registry.example.com/vllm:1"},
                "defaultGpuMemoryGiB": 80,
                "defaultCacheSizeGiB": 120,
                "autoscaler": {
                    "source": "prometheus",
                    "prometheusUrl": "http://prometheus.monitoring:9090",
                    "intervalSeconds": 2.5,
                },
            },
        }
    )
    assert got.images["vllm"] == "registry.example.com/vllm:1"
    assert got.images["tgi"] == OperatorConfig().images["tgi"]  # the others keep their defaults
    assert got.operator_image == "registry.example.com/llmserve:9.9.9"  # the sidecar follows
    assert got.default_gpu_memory_gib == 80
    assert got.default_cache_size_gib == 120
    assert got.autoscaler == AutoscalerConfig(
        source="prometheus",
        prometheus_url="http://prometheus.monitoring:9090",
        interval_seconds=2.5,
    )


def test_an_explicit_operator_image_wins() -> None:
    got = settings({"config": {"operatorImage": "mirror.example.com/llmserve:0.1.0"}})
    assert got.operator_image == "mirror.example.com/llmserve:0.1.0"


def test_a_prometheus_source_without_a_url_is_refused_before_the_operator_starts() -> None:
    message = refusal({"config": {"autoscaler": {"source": "prometheus"}}})
    assert "/config/autoscaler/prometheusUrl" in message
