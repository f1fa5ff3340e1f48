"""The peers `llmserve` is compared with, each as its project computes (AUTOSCALING.md §1-§4).

- `hpa-gpu`: an HPA on the Pods metric `DCGM_FI_DEV_GPU_UTIL`, AverageValue 80, synced every
  15 s, with the replica calculator's tolerance and missing-pod rules (§1.1-1.2) and the default
  behavior: up by max(4 pods, 100 %) per 15 s, down after a 300 s stabilization window by up to
  100 % per 15 s (§1.4).
- `keda-queue`: KEDA's Prometheus scaler on `sum(vllm:num_requests_waiting)` with threshold 5,
  which becomes an HPA External metric of type AverageValue: `ceil(total / 5)` unless
  `total / (5 · status replicas)` is within the tolerance (§3), then the same behavior.
- `kpa`: Knative's `Scale()` every 2 s on the total concurrency sampled each second, stable window
  60 s, panic window 6 s, panic threshold 200 %, scale rates 1000 up and 2 down, `maxPanicPods`
  (§2); the autoscaler starts in panic mode when more than one pod is ready, as a new Knative
  autoscaler does. Every pod is read (Knative samples some pods and extrapolates to the same mean).
- `kubeai`: every 10 s the in-flight total of KubeAI's proxy into a 60-sample moving average,
  `ceil(average / target)`, scale-down only after 3 consecutive lower proposals, none while no
  pod is ready (§4). A fresh KubeAI seeds its average with zeros; this fleet has been serving
  before the trace starts, so it is seeded as after a restart (its ConfigMap keeps the average):
  with the first sample. Likewise each HPA starts with one recommendation, the warm fleet's size,
  as an HPA that has been running would have (else its first sync could halve a warm fleet).

The maths are pure functions (`pods_replicas`, `external_replicas`, `Hpa.normalize`,
`KpaScaler.scale`, `KubeAIScaler.scale`) that the tests pin to the formulas; the policy classes
only wire them to a metric pipeline and a schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from llmserve.fleet.capacity import Setup
from llmserve.fleet.replicas import Fleet, Phase
from llmserve.fleet.signals import Dcgm, Every, Scrape, Window, concurrency

TOLERANCE: Final = 0.1
"""--horizontal-pod-autoscaler-tolerance, both ways."""
HPA_SYNC: Final = 15.0
GPU_TARGET: Final = 80.0
"""Percent of DCGM_FI_DEV_GPU_UTIL per pod."""
QUEUE_THRESHOLD: Final = 5.0
"""Waiting requests one replica should carry (the production-stack ScaledObject)."""
KPA_STABLE_SAMPLES: Final = 60
"""The stable window, 60 s of 1-s samples."""
KPA_PANIC_SAMPLES: Final = 6
"""The panic window: 10 % of the stable window."""
KUBEAI_SAMPLES: Final = 60
"""timeWindow 10 min / interval 10 s."""


def within(ratio: float, tolerance: float = TOLERANCE) -> bool:
    """Whether a usage ratio is close enough to 1 to leave the replicas alone."""
    return 1 - tolerance <= ratio <= 1 + tolerance


@dataclass(frozen=True)
class HpaPod:
    """A pod as the replica calculator groups it (pods being deleted are left out before)."""

    pending: bool
    """Phase Pending: "unready"."""
    value: float | None
    """Its metric; None is "missing"."""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def pods_replicas(
    current: int, pods: Sequence[HpaPod], target: float, tolerance: float = TOLERANCE
) -> int | None:
    """`calcPlainMetricReplicas` for a Pods metric; None when no pod has a metric (no scaling)."""
    values = [p.value for p in pods if not p.pending and p.value is not None]
    if not values:
        return None
    unready = sum(1 for p in pods if p.pending)
    missing = sum(1 for p in pods if not p.pending and p.value is None)
    ratio = _mean(values) / target
    up_with_unready = unready > 0 and ratio > 1
    if not up_with_unready and not missing:
        return current if within(ratio, tolerance) else math.ceil(ratio * len(values))
    # Missing pods count as at the target when scaling down, as idle when scaling up; pending
    # pods as idle when scaling up: capacity being added is not asked for twice.
    filled = values + [target if ratio < 1 else 0.0] * missing
    if up_with_unready:
        filled += [0.0] * unready
    new_ratio = _mean(filled) / target
    flipped = (ratio > 1 > new_ratio) or (ratio < 1 < new_ratio)
    if within(new_ratio, tolerance) or flipped:
        return current
    replicas = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1 and replicas > current) or (new_ratio > 1 and replicas < current):
        return current
    return replicas


def external_replicas(
    status_replicas: int, total: float, target: float, tolerance: float = TOLERANCE
) -> int:
    """`GetExternalPerPodMetricReplicas` (KEDA's AverageValue): ceil(total / target)."""
    if status_replicas and within(total / (target * status_replicas), tolerance):
        return status_replicas
    return math.ceil(total / target)


@dataclass(frozen=True)
class Rule:
    """One scaling policy of an HPA behavior."""

    kind: Literal["Pods", "Percent"]
    value: int
    period: float


@dataclass(frozen=True)
class Behavior:
    """`spec.behavior`, defaults of autoscaling/v2 (selectPolicy Max both ways)."""

    up_window: float = 0.0
    up_rules: tuple[Rule, ...] = (Rule("Pods", 4, 15.0), Rule("Percent", 100, 15.0))
    down_window: float = 300.0
    down_rules: tuple[Rule, ...] = (Rule("Percent", 100, 15.0),)


@dataclass
class Hpa:
    """The HPA controller's memory and its normalization of a proposal (§1.4)."""

    min_replicas: int
    max_replicas: int
    behavior: Behavior = field(default_factory=Behavior)
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    """Unstabilized proposals, with their times."""
    events: list[tuple[float, int]] = field(default_factory=list)
    """Applied changes (+ up, - down), with their times."""

    def decide(self, now: float, current: int, proposal: int | None) -> int | None:
        """The replicas to set after one sync; None when the metrics gave nothing."""
        if current > self.max_replicas:
            return self.max_replicas
        if current < self.min_replicas:
            return self.min_replicas
        if proposal is None:
            return None
        desired = self.normalize(now, current, proposal)
        if desired != current:
            self.events.append((now, desired - current))
        return desired

    def normalize(self, now: float, current: int, desired: int) -> int:
        """Stabilize, then rate-limit and bound (`normalizeDesiredReplicasWithBehaviors`)."""
        stabilized = self._stabilize(now, current, desired)
        if stabilized > current:
            limit = max(current, self._up_limit(now, current))
            return min(stabilized, self.max_replicas, limit)
        if stabilized < current:
            limit = min(current, self._down_limit(now, current))
            return max(stabilized, self.min_replicas, limit)
        return stabilized

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        up_cutoff = now - self.behavior.up_window
        down_cutoff = now - self.behavior.down_window
        up = min([desired, *(r for t, r in self.recommendations if t > up_cutoff)])
        down = max([desired, *(r for t, r in self.recommendations if t > down_cutoff)])
        oldest = min(up_cutoff, down_cutoff)
        self.recommendations = [(t, r) for t, r in self.recommendations if t >= oldest]
        self.recommendations.append((now, desired))
        return min(max(current, up), down)

    def _period_start(self, now: float, current: int, period: float) -> int:
        """Replicas at the start of the period: undo the changes made since."""
        return current - sum(change for t, change in self.events if t > now - period)

    def _up_limit(self, now: float, current: int) -> int:
        proposals = []
        for rule in self.behavior.up_rules:
            start = self._period_start(now, current, rule.period)
            if rule.kind == "Pods":
                proposals.append(start + rule.value)
            else:
                proposals.append(math.ceil(start * (1 + rule.value / 100)))
        return max(proposals)

    def _down_limit(self, now: float, current: int) -> int:
        proposals = []
        for rule in self.behavior.down_rules:
            start = self._period_start(now, current, rule.period)
            if rule.kind == "Pods":
                proposals.append(start - rule.value)
            else:
                proposals.append(int(start * (1 - rule.value / 100)))
        return min(proposals)


def hpa_pods(fleet: Fleet, values: dict[str, float]) -> list[HpaPod]:
    """The deployment's pods as the replica calculator sees them (draining pods are deleted)."""
    return [
        HpaPod(
            pending=r.phase is Phase.PENDING,
            value=values.get(r.name) if r.phase is Phase.READY else None,
        )
        for r in fleet.replicas
        if r.phase is not Phase.DRAINING
    ]


def warm_hpa(setup: Setup, ready: int) -> Hpa:
    """An HPA that has been recommending the warm fleet's size."""
    return Hpa(setup.min_replicas, setup.max_replicas, recommendations=[(0.0, ready)])


class HpaGpu:
    """HPA on DCGM GPU utilization, target 80 % per pod."""

    def __init__(self, setup: Setup, ready: int) -> None:
        self.dcgm = Dcgm()
        self.sync = Every(HPA_SYNC)
        self.hpa = warm_hpa(setup, ready)

    def step(self, now: float, fleet: Fleet) -> int | None:
        """Called every tick; the replicas to set when the HPA syncs."""
        self.dcgm.update(now, fleet)
        if not self.sync.due(now):
            return None
        pods = hpa_pods(fleet, self.dcgm.utilization)
        proposal = pods_replicas(fleet.spec, pods, GPU_TARGET)
        return self.hpa.decide(now, fleet.spec, proposal)


class KedaQueue:
    """KEDA's Prometheus scaler on the summed engine queue, threshold 5 per replica."""

    def __init__(self, setup: Setup, ready: int) -> None:
        self.prometheus = Scrape(HPA_SYNC, HPA_SYNC / 2)
        self.sync = Every(HPA_SYNC)
        self.hpa = warm_hpa(setup, ready)

    def step(self, now: float, fleet: Fleet) -> int | None:
        """Called every tick; the replicas to set when the HPA syncs."""
        self.prometheus.update(now, fleet)
        if not self.sync.due(now):
            return None
        # sum(...) of no series is empty, which ignoreNullValues (default true) reads as 0.
        total = sum(s.waiting for s in self.prometheus.samples.values())
        proposal = external_replicas(fleet.spec, total, QUEUE_THRESHOLD)
        return self.hpa.decide(now, fleet.spec, proposal)


@dataclass
class KpaScaler:
    """Knative's `autoscaler.Scale()`: stable and panic modes on a concurrency target."""

    target: float
    stable_window: float = 60.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    panic_time: float | None = None
    max_panic_pods: int = 0

    def scale(self, now: float, stable: float, panic: float, ready: int) -> int:
        """Desired pods from the stable and panic window averages of the total concurrency."""
        pods = max(1.0, float(ready))
        max_up = math.ceil(self.max_scale_up_rate * pods)
        max_down = math.floor(pods / self.max_scale_down_rate)
        dspc = math.ceil(stable / self.target)
        dppc = math.ceil(panic / self.target)
        desired_stable = min(max(dspc, max_down), max_up)
        desired_panic = min(max(dppc, max_down), max_up)
        over = dppc / pods >= self.panic_threshold
        if over:
            self.panic_time = now  # enter, or extend
        elif self.panic_time is not None and self.panic_time + self.stable_window < now:
            self.panic_time, self.max_panic_pods = None, 0
        if self.panic_time is None:
            return desired_stable
        # No scale-down in panic mode: the most asked for since panicking holds.
        self.max_panic_pods = max(self.max_panic_pods, desired_stable, desired_panic)
        return self.max_panic_pods


class Kpa:
    """Knative's KPA on the concurrency the activator and queue-proxies see."""

    def __init__(self, setup: Setup, ready: int) -> None:
        self.scaler = KpaScaler(setup.target)
        if ready > 1:  # a new autoscaler starts in panic mode so a restart does not scale down
            self.scaler.panic_time, self.scaler.max_panic_pods = 0.0, ready
        self.sampling = Every(1.0)
        self.ticking = Every(2.0)
        self.window = Window(KPA_STABLE_SAMPLES)

    def step(self, now: float, fleet: Fleet) -> int | None:
        """Called every tick; the replicas to set every 2 s."""
        if self.sampling.due(now):
            self.window.add(concurrency(fleet))
        if not self.ticking.due(now):
            return None
        stable = self.window.average()
        panic = self.window.average(KPA_PANIC_SAMPLES)
        return self.scaler.scale(now, stable, panic, len(fleet.ready()))


@dataclass
class KubeAIScaler:
    """KubeAI's `ModelClient.Scale`: bounds, then consecutive agreement before scaling down."""

    min_replicas: int
    max_replicas: int
    required_downs: int = 3
    """ceil(scaleDownDelaySeconds 30 / interval 10)."""
    downs: int = 0

    def scale(self, existing: int, proposed: int) -> int:
        """The replicas after one proposal (`existing` when a scale-down must wait)."""
        replicas = max(self.min_replicas, min(self.max_replicas, proposed))
        if replicas < existing:
            if self.downs < self.required_downs:
                self.downs += 1
                return existing
        else:
            self.downs = 0
        return replicas


class KubeAI:
    """KubeAI's autoscaler on its proxy's in-flight requests."""

    def __init__(self, setup: Setup) -> None:
        self.target = setup.target
        self.scaler = KubeAIScaler(setup.min_replicas, setup.max_replicas)
        self.every = Every(10.0)
        self.average = Window(KUBEAI_SAMPLES)

    def step(self, now: float, fleet: Fleet) -> int | None:
        """Called every tick; the replicas to set every 10 s."""
        if not self.every.due(now) or not fleet.ready():
            return None  # "No endpoints found for model, skipping"
        total = concurrency(fleet)
        if not self.average.values:
            self.average.seed(total)
        self.average.add(total)
        proposed = math.ceil(self.average.average() / self.target)
        return self.scaler.scale(fleet.spec, proposed)
