"""Metric pipelines: what each autoscaler sees of the fleet, and how late (AUTOSCALING.md §12.5).

Only READY replicas expose metrics (vLLM serves `/metrics` once it has started); a pod that is
starting or draining is absent from every scrape, which the HPA logic then counts as missing.

| pipeline | used by | what it holds |
|---|---|---|
| `Scrape(5)` | llmserve | the sidecar's gauges, read directly by the operator |
| `Scrape(15)` | keda-queue | a Prometheus scrape of the engine gauges |
| `Dcgm` | hpa-gpu | the exporter's 30 s average of GPU busy time, scraped every 15 s |
| `Window` | kpa, kubeai | per-interval samples of the total concurrency, averaged |

A pipeline is advanced by `update(now, fleet)` at every tick and acts on its own schedule
(`Every`), so the autoscaler reading it later sees the value of the last scrape, not the present.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from llmserve.fleet.replicas import Fleet

EPSILON = 1e-9
"""Tolerance on tick times: ticks are multiples of dt, periods are multiples of seconds."""


class Every:
    """A periodic schedule: due at `offset`, `offset + period`, ..."""

    def __init__(self, period: float, offset: float = 0.0) -> None:
        self.period = period
        self.next = offset

    def due(self, now: float) -> bool:
        """Whether the schedule fires at `now` (then it waits for its next time)."""
        if now + EPSILON < self.next:
            return False
        while self.next <= now + EPSILON:
            self.next += self.period
        return True


@dataclass(frozen=True)
class PodSample:
    """One ready replica's gauges at a scrape."""

    pod: str
    running: int
    """vllm:num_requests_running."""
    waiting: int
    """vllm:num_requests_waiting."""
    busy_seconds: float
    """Cumulative time with work in the batch (what GPU utilization integrates)."""


def sample(fleet: Fleet) -> dict[str, PodSample]:
    """The gauges of every ready replica, now."""
    return {
        r.name: PodSample(r.name, r.running, len(r.waiting), r.busy_seconds) for r in fleet.ready()
    }


class Scrape:
    """A scrape of the engine gauges every `period` seconds; the last one is what is known."""

    def __init__(self, period: float, offset: float = 0.0) -> None:
        self.every = Every(period, offset)
        self.samples: dict[str, PodSample] = {}

    def update(self, now: float, fleet: Fleet) -> bool:
        """Scrape when due; whether it did."""
        if not self.every.due(now):
            return False
        self.samples = sample(fleet)
        return True


class Dcgm:
    """GPU utilization as HPA sees it: DCGM averages each `collect` s, Prometheus scrapes it.

    `DCGM_FI_DEV_GPU_UTIL` is the share of time a kernel ran (NVML); the exporter's value covers
    the last collection interval, so the HPA reads a figure 15 to 45 s old.
    """

    def __init__(self, collect: float = 30.0, scrape: float = 15.0) -> None:
        self.collecting = Every(collect, collect)  # busy time counts from 0: a whole interval
        self.scraping = Every(scrape, scrape / 2)
        self.busy_then: dict[str, float] = {}
        self.exported: dict[str, float] = {}
        self.utilization: dict[str, float] = {}
        """Percent per pod, as of the last Prometheus scrape."""

    def update(self, now: float, fleet: Fleet) -> None:
        """Collect and scrape when due."""
        if self.collecting.due(now):
            samples = sample(fleet)
            self.exported = {
                pod: 100 * (s.busy_seconds - self.busy_then.get(pod, 0.0)) / self.collecting.period
                for pod, s in samples.items()
            }
            self.busy_then = {pod: s.busy_seconds for pod, s in samples.items()}
        if self.scraping.due(now):
            ready = {r.name for r in fleet.ready()}
            self.utilization = {p: u for p, u in self.exported.items() if p in ready}


class Window:
    """Samples of a total every `period` seconds, averaged over the last `size` of them.

    At the start the average covers the samples there are (Knative's bucketed windows average
    over the buckets written so far).
    """

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)

    def seed(self, value: float) -> None:
        """Fill the window with `value`, as a moving average restored after a restart."""
        self.values.extend([value] * (self.values.maxlen or 0))

    def add(self, value: float) -> None:
        """Record one sample (the oldest falls out of a full window)."""
        self.values.append(value)

    def average(self, last: int | None = None) -> float:
        """Mean of the last `last` samples (all by default); 0 without samples."""
        values = list(self.values)[-last:] if last else list(self.values)
        return sum(values) / len(values) if values else 0.0


def concurrency(fleet: Fleet) -> int:
    """Requests in flight at the front door: every ready replica's, and the gateway's.

    Knative's activator and KubeAI's proxy hold requests while no pod is ready and report them,
    so their total includes the gateway queue.
    """
    return len(fleet.gateway) + sum(r.load for r in fleet.ready())
