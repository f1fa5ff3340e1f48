"""The simulator's Prometheus metrics, under each engine's real names (ENGINES.md §2.3, §3.5).

Read at scrape time from the simulator's state (a custom collector), not pushed on every step:
nothing is computed unless someone scrapes. vLLM's counters are exported with `_total`; TGI's
(the Rust `metrics` exporter) keep their bare names, so they are written sample by sample.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
                          40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
TOKEN_BUCKETS: Final = (1.0, 8.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0)


@dataclass
class Histogram:
    """Bucket counts and a sum, as Prometheus histograms keep them."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, ending with +Inf."""
        running, out = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass
class Tally:
    """What the simulator has counted since it started."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    preemptions: int = 0
    requests: int = 0
    finished: Counter[str] = field(default_factory=Counter)
    """By finish reason ("stop", "length", "abort")."""
    failures: Counter[str] = field(default_factory=Counter)
    """By TGI's `err` label ("overloaded", "incomplete", ...)."""
    cancelled: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    queue: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    generated: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))
    input_length: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))


class State(Protocol):
    """What the collector reads."""

    @property
    def flavor(self) -> str:
        """The flavour: vllm or tgi."""
        ...

    @property
    def model(self) -> str:
        """The served model name."""
        ...

    @property
    def tally(self) -> Tally:
        """The counts so far."""
        ...

    def gauges(self) -> tuple[int, int, float, int, int]:
        """Running, waiting, KV usage (0..1), KV tokens used, KV capacity."""
        ...


def _histogram(name: str, doc: str, histogram: Histogram, labels: dict[str, str]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), histogram.buckets(), histogram.total)
    return family


def _gauge(name: str, doc: str, value: float, labels: dict[str, str]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _counter(name: str, doc: str, samples: Sequence[tuple[dict[str, str], float]]) -> Metric:
    """A counter under exactly `name` (vLLM's end in _total, TGI's do not)."""
    family = Metric(name.removesuffix("_total"), doc, "counter")
    for labels, value in samples:
        family.add_sample(name, labels, value)
    return family


class EngineCollector(Collector):
    """vLLM's or TGI's metric families, from the simulator's state at scrape time."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        """Every family of the flavour."""
        yield from self._vllm() if self.state.flavor == "vllm" else self._tgi()

    def _vllm(self) -> Iterator[Metric]:
        state, tally = self.state, self.state.tally
        labels = {"model_name": state.model, "engine": "0"}
        running, waiting, usage, _, _ = state.gauges()
        yield _gauge("vllm:num_requests_running", "Requests in the batch", running, labels)
        yield _gauge("vllm:num_requests_waiting", "Requests waiting", waiting, labels)
        yield _gauge("vllm:kv_cache_usage_perc", "KV-cache usage, 0 to 1", usage, labels)
        yield _gauge("vllm:gpu_cache_usage_perc", "KV-cache usage (old name)", usage, labels)
        yield _counter(
            "vllm:prompt_tokens_total", "Prefill tokens", [(labels, tally.prompt_tokens)]
        )
        yield _counter(
            "vllm:generation_tokens_total", "Generated tokens", [(labels, tally.generation_tokens)]
        )
        yield _counter("vllm:num_preemptions_total", "Preemptions", [(labels, tally.preemptions)])
        finished = [
            ({**labels, "finished_reason": r}, n) for r, n in sorted(tally.finished.items())
        ]
        yield _counter("vllm:request_success_total", "Finished requests", finished)
        yield _histogram("vllm:time_to_first_token_seconds", "TTFT", tally.ttft, labels)
        yield _histogram("vllm:e2e_request_latency_seconds", "End to end", tally.e2e, labels)
        yield _histogram("vllm:request_queue_time_seconds", "Time waiting", tally.queue, labels)

    def _tgi(self) -> Iterator[Metric]:
        tally = self.state.tally
        running, waiting, _, used, capacity = self.state.gauges()
        yield _gauge("tgi_queue_size", "Requests waiting", waiting, {})
        yield _gauge("tgi_batch_current_size", "Requests in the batch", running, {})
        yield _gauge("tgi_batch_current_max_tokens", "Tokens of the batch", used, {})
        yield _gauge("tgi_batch_max_total_tokens", "Token budget", capacity, {})
        yield _counter("tgi_request_count", "Requests", [({}, tally.requests)])
        yield _counter("tgi_request_success", "Successes", [({}, sum(tally.finished.values()))])
        failures = [({"err": e}, n) for e, n in sorted(tally.failures.items())]
        yield _counter("tgi_request_failure", "Failures", failures)
        yield _histogram("tgi_request_duration", "End to end", tally.e2e, {})
        yield _histogram("tgi_request_queue_duration", "Time waiting", tally.queue, {})
        yield _histogram("tgi_request_generated_tokens", "Output tokens", tally.generated, {})
        yield _histogram("tgi_request_input_length", "Prompt tokens", tally.input_length, {})
