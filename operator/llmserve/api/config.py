"""Operator settings that rendering depends on: images, defaults for GPU memory and the cache.

One typed document (the chart will mount it as a ConfigMap file), validated at start. Every field
has
a default so `llmserve render` works offline with no settings at all.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from llmserve import __version__
from llmserve.api.engines import NODE_GPUS
from llmserve.api.models import MAX_GPUS, Engine, NetworkPeer

DEFAULT_IMAGES: Final = MappingProxyType[Engine, str](
    {
        # Bump an image together with its flag list in tests/data/engines/ (see the README there).
        "vllm": "vllm/vllm-openai:v0.33.0",
        "tgi": "ghcr.io/huggingface/text-generation-inference:3.3.5",
        "sglang": "lmsysorg/sglang:v0.5.23",
        "llamacpp": "ghcr.io/ggml-org/llama.cpp:server-cuda",
        "ollama": "ollama/ollama:latest",
    }
)
CPU_IMAGES: Final = MappingProxyType[Engine, str]({"llamacpp": "ghcr.io/ggml-org/llama.cpp:server"})
"""Images for `gpus: 0`, where the engine ships a separate CPU build."""


SETTINGS: Final = ConfigDict(
    alias_generator=to_camel,
    populate_by_name=True,
    extra="forbid",
    frozen=True,
    use_attribute_docstrings=True,
)
"""camelCase keys as in the settings file, unknown keys refused, immutable once read."""


class AutoscalerConfig(BaseModel):
    """Where the autoscaler reads load, and how often it decides."""

    model_config = SETTINGS

    source: Literal["scrape", "prometheus"] = "scrape"
    """`scrape`: read each ready pod's proxy (`/metrics`, `/metrics/engine`) directly;
    `prometheus`: query the Prometheus at `prometheusUrl` (it must scrape the pods, and DCGM
    for GPU utilization)."""
    prometheus_url: str | None = None
    """Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`."""
    interval_seconds: float = Field(default=5.0, gt=0)
    """How often each autoscaled LLMService is decided on."""
    metrics_port: int = Field(default=9090, ge=1, le=65535)
    """The pods' port serving the proxy's `/metrics` and `/metrics/engine` (the proxy's `metrics`
    port, which is not in the Service)."""
    max_page_bytes: int = Field(default=1024 * 1024, ge=4096)
    """Most bytes read of one metrics page (a pod's `/metrics` or `/metrics/engine`) or of one
    Prometheus answer. A pod whose page is longer counts as missing, and the Scaling condition
    names it. The proxy's page is a few KiB and an engine's some tens; the bound keeps one
    tenant's engine from costing the operator, which serves every tenant, more than a few
    milliseconds and a few MiB per page."""

    @model_validator(mode="after")
    def _url_for_prometheus(self) -> AutoscalerConfig:
        if self.source == "prometheus" and not self.prometheus_url:
            msg = "autoscaler.prometheusUrl is required when autoscaler.source is prometheus"
            raise ValueError(msg)
        return self


class OperatorConfig(BaseModel):
    """Settings of one llmserve installation."""

    model_config = SETTINGS

    images: dict[Engine, str] = Field(default_factory=lambda: dict(DEFAULT_IMAGES))
    """Engine image by engine, used when an LLMService sets no `spec.image`."""
    cpu_images: dict[Engine, str] = Field(default_factory=lambda: dict(CPU_IMAGES))
    """Engine image by engine for CPU-only replicas (`gpus: 0`), where the engine has one."""
    operator_image: str = f"ghcr.io/llmserve/llmserve:{__version__}"
    """Image with the `llmserve` command: runs the proxy sidecar and the model download Job."""
    default_gpu_memory_gib: int | None = Field(default=None, alias="defaultGpuMemoryGiB")
    """GPU memory assumed when neither the spec nor node labels tell; None skips the fit check."""
    default_cache_size_gib: int = Field(default=50, alias="defaultCacheSizeGiB")
    """Model-cache size when the model's size is unknown."""
    max_gpus_per_replica: int = Field(default=NODE_GPUS, ge=1, le=MAX_GPUS)
    """Most GPUs one replica may ask for: the GPUs of this cluster's largest node, since a
    replica runs on one node (8 by default: one HGX/DGX node). A spec asking more is refused
    rather than left Pending forever."""
    autoscaler: AutoscalerConfig = Field(default_factory=AutoscalerConfig)
    """The autoscaler's metrics source and cadence."""
    metrics_from: list[NetworkPeer] = Field(default_factory=list)
    """Who may reach the LLMService pods' metrics port (9090: /metrics, /metrics/engine), as
    NetworkPolicy `from` entries: the operator's pods (its autoscaler scrapes them) and
    Prometheus. Empty: nobody; the chart fills it with its own namespace and the monitoring
    namespace."""

    def image_for(self, engine: Engine, gpus: int) -> str:
        """The engine image for a replica with `gpus` GPUs."""
        if gpus == 0 and engine in self.cpu_images:
            return self.cpu_images[engine]
        return self.images.get(engine, DEFAULT_IMAGES[engine])
