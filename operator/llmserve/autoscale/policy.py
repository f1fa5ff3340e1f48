"""The scaling policy: from the pods' load, the current replicas and the spec, the replicas to run.

Pure and clock-free (the caller passes `now`), so the operator, the trace-driven benchmark and the
table-driven tests run the very same code. The rules, and why (AUTOSCALING.md §10-§11):

- **Demand, not GPU utilization.** A pod's load is what it holds: the engine's running and waiting
  requests (or, for engines without metrics, the proxy's in-flight count) plus the proxy's queue.
  The fleet wants `ceil(total load / target)` replicas. GPU utilization is pinned near 100 % by a
  single request, so it only guards against removing replicas, never adds one.
- **Fast up, counting pods that are starting.** The recommendation is compared with the spec's
  replicas, which include pods still loading their model, so a burst during a two-minute cold
  start does not order the same capacity again and again.
- **Slow down, one step at a time.** The highest recommendation of the last
  `scaleDownDelaySeconds` (HPA's stabilization window) must be below the current count; then one
  replica goes, never below that highest recommendation, and the next no sooner than `step`
  seconds later. The window slides, so an old peak expires on its own (a streak that restarts at
  each step would hold replicas for a whole delay after load left). Nothing is removed while
  pods are starting or GPUs are busy.
- **Missing is not zero.** A ready pod without a fresh sample counts as idle when deciding to scale
  up (capacity being added is not doubled) and as fully loaded when deciding to scale down (a
  scrape failure never removes a replica), which is how HPA treats missing pods. No samples at
  all: hold.
- **A sample is not trusted blindly.** The pages come from the tenant's engine. A figure that is
  negative, NaN or infinite makes the pod missing; a load above `PLAUSIBLE_LOAD` times what the
  pod's proxy admits is counted as that much. The decision's message names each such pod and why,
  as it names pods a source could not read (a page over its size limit, say).
- **Bounds always hold.** The result is within [minReplicas, maxReplicas], whatever came before.

The `State` is small (the window is kept in `WINDOW_BUCKETS` buckets, each with its highest
recommendation) and is kept in the LLMService's status, so a restarted operator resumes the same
window instead of starting over or, worse, reading its empty memory as "no load".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final, Literal

Reason = Literal[
    "ScaledUp",
    "ScaledDown",
    "Steady",
    "BelowMinimum",
    "AboveMaximum",
    "AtMaximum",
    "NoMetrics",
    "Starting",
    "GpuBusy",
    "ScaleDownPending",
    "ScaleUpPending",
]
"""Why the decision is what it is; the `Scaling` condition's reason."""

PLAUSIBLE_LOAD: Final = 4.0
"""A pod's load counts up to this many times the requests its proxy admits (maxConcurrency +
maxQueue). The proxy never holds more; the engine's figures are sampled apart from the proxy's and
may lag, hence the slack. A page that claims more is broken or lies, and must not buy replicas."""
NOTED_PODS: Final = 3
"""Pods named in a decision's message with what was wrong with their samples; the rest are
counted ("and 5 more"): the message goes into status and events, which must stay short."""
SCALE_DOWN_STEP_SECONDS: Final = 60.0
"""Least time between two removals once load has been low long enough (AUTOSCALING.md §11.4)."""
WINDOW_BUCKETS: Final = 10
"""Buckets of the scale-down window: its memory stays this small, whatever the delay and the
decision interval, at the cost of a peak expiring up to a tenth of the delay late."""


@dataclass(frozen=True)
class PodLoad:
    """What one ready pod reported; None where it did not report that figure."""

    pod: str
    running: float | None = None
    """Requests the engine is running (`vllm:num_requests_running`, `tgi_batch_current_size`)."""
    waiting: float | None = None
    """Requests queued inside the engine (`vllm:num_requests_waiting`, `tgi_queue_size`)."""
    in_flight: float | None = None
    """Requests the proxy has passed to the engine (`llmserve_requests_in_flight`)."""
    queued: float | None = None
    """Requests waiting in the proxy for a slot (`llmserve_queue_depth`)."""
    gpu_utilization: float | None = None
    """Percent of time a kernel ran (`DCGM_FI_DEV_GPU_UTIL`), the busiest of the pod's GPUs."""
    problem: str | None = None
    """Why the pod has no sample (its page is too large, it did not answer): it is missing, and
    the decision's message says why; None when the figures above are what it reported."""

    @property
    def demand(self) -> float | None:
        """Requests this pod holds; None when it reported nothing to count them by."""
        engine = (
            None
            if self.running is None and self.waiting is None
            else ((self.running or 0.0) + (self.waiting or 0.0))
        )
        held = [v for v in (engine, self.in_flight) if v is not None]
        if not held:
            return None
        # The proxy's in-flight count and the engine's running + waiting count the same requests
        # from two sides; the larger is the truer (one may lag a scrape behind the other).
        return max(held) + (self.queued or 0.0)


@dataclass(frozen=True)
class Observation:
    """The fleet as seen now."""

    now: float
    """Seconds on the caller's clock (the same clock as the times in `State`)."""
    replicas: int
    """`spec.replicas`: ready pods plus pods still starting."""
    ready: int
    """Pods that are Ready."""
    loads: tuple[PodLoad, ...]
    """One per ready pod with a fresh sample or a known `problem`; ready pods absent from it, with
    a problem, or with an absurd figure are missing."""


@dataclass(frozen=True)
class Settings:
    """The LLMService's `spec.autoscaling`, resolved."""

    min_replicas: int
    max_replicas: int
    target: float
    """Load (running + waiting + queued) one replica should carry."""
    scale_down_delay: float = 300.0
    scale_up_stabilization: float = 0.0
    gpu_guard: float | None = None
    """GPU utilization percent at or above which no replica is removed."""
    pod_capacity: float | None = None
    """Requests one pod's proxy admits (maxConcurrency + maxQueue): a pod's load is counted up to
    `PLAUSIBLE_LOAD` times this; None counts any load."""

    @property
    def step(self) -> float:
        """Least time between removals (never longer than the delay itself)."""
        return min(SCALE_DOWN_STEP_SECONDS, self.scale_down_delay)


@dataclass(frozen=True)
class State:
    """What the policy remembers between decisions (kept in status across restarts)."""

    window: tuple[tuple[float, int], ...] = ()
    """The scale-down window: (bucket start, highest recommendation in the bucket), oldest first,
    covering the last `scale_down_delay` seconds."""
    since: float | None = None
    """When the window began: no replica is removed before it covers a whole delay."""
    high_since: float | None = None
    """Since when every recommendation has been above the replicas (scale-up stabilization)."""
    high_floor: int = 0
    """The lowest recommendation since `high_since`: scaling up goes to it."""
    last_scale_down: float | None = None
    """When a replica was last removed."""


@dataclass(frozen=True)
class Decision:
    """Replicas to run, why, and what to remember."""

    replicas: int
    reason: Reason
    message: str
    state: State
    load: float | None = None
    """Total load counted, for status and the desired-replicas metric; None without samples."""


def _clamp(value: int, settings: Settings) -> int:
    return max(settings.min_replicas, min(settings.max_replicas, value))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


_FIGURES: Final = ("running", "waiting", "in_flight", "queued", "gpu_utilization")


def counted(load: PodLoad, capacity: float | None) -> tuple[float | None, str | None]:
    """The load counted for one pod (None: it is missing), and what was wrong with its sample.

    The same rules for every source: a page scraped from the pod and Prometheus's copy of it are
    written by the same engine.
    """
    if load.problem is not None:
        return None, load.problem
    for name in _FIGURES:
        value = getattr(load, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            return None, (
                f"reported {name} {value:g}, which no pod can hold (check what serves its "
                "metrics); counted as missing"
            )
    demand = load.demand
    if demand is None or capacity is None or demand <= PLAUSIBLE_LOAD * capacity:
        return demand, None
    limit = PLAUSIBLE_LOAD * capacity
    return limit, (
        f"reported a load of {demand:g}, more than {PLAUSIBLE_LOAD:g} times the {capacity:g} "
        f"requests its proxy admits (maxConcurrency + maxQueue); counted as {limit:g}"
    )


def _noted(text: str, notes: list[str]) -> str:
    """`text` with the pods whose samples were missing or cut, and why."""
    if not notes:
        return text
    shown = "; ".join(notes[:NOTED_PODS])
    more = f"; and {len(notes) - NOTED_PODS} more" if len(notes) > NOTED_PODS else ""
    return f"{text} [{shown}{more}]"


def decide(settings: Settings, state: State, seen: Observation) -> Decision:
    """The replicas to run now, and why."""
    current = seen.replicas
    bounded = _clamp(current, settings)
    if bounded != current:
        reason: Reason = "BelowMinimum" if bounded > current else "AboveMaximum"
        return Decision(
            bounded,
            reason,
            f"{current} replicas is outside [{settings.min_replicas}, "
            f"{settings.max_replicas}]; set to {bounded}",
            State(),
        )
    counts = [(load, *counted(load, settings.pod_capacity)) for load in seen.loads]
    usable = [(load, demand) for load, demand, _ in counts if demand is not None]
    notes = [f"{load.pod}: {note}" for load, _, note in counts if note is not None]
    if not usable:
        message = (
            _noted(f"no load samples from {_plural(seen.ready, 'ready pod')}", notes)
            if seen.ready
            else "no pod is ready yet"
        )
        return Decision(current, "NoMetrics", f"{message}; holding {current}", state)
    total = sum(demand for _, demand in usable)
    missing = max(0, seen.ready - len(usable))
    up = math.ceil(total / settings.target)
    # Missing pods count as fully loaded here: a failed scrape must never remove a replica.
    down = math.ceil((total + missing * settings.target) / settings.target)
    load_text = _noted(
        f"load {total:g} over {_plural(len(usable), 'reporting pod')} "
        f"(target {settings.target:g} per replica)",
        notes,
    )
    state = _remember(state, seen.now, down, settings.scale_down_delay)
    if up > current:
        return _up(settings, state, seen, up, total, load_text)
    state = replace(state, high_since=None, high_floor=0)
    if down < current:
        busiest = max(
            (g for g in (load.gpu_utilization for load, _ in usable) if g is not None), default=None
        )
        return _down(settings, state, seen, down, total, busiest, load_text)
    return Decision(
        current, "Steady", f"{load_text} fits {_plural(current, 'replica')}", state, total
    )


def _remember(state: State, now: float, recommendation: int, delay: float) -> State:
    """The window with this recommendation added and buckets older than the delay dropped."""
    since = state.since if state.since is not None else now
    if delay <= 0:
        return replace(state, window=((now, recommendation),), since=since)
    width = delay / WINDOW_BUCKETS
    start = math.floor(now / width) * width
    kept = [(t, r) for t, r in state.window if t + width > now - delay]
    if kept and kept[-1][0] == start:
        kept[-1] = (start, max(kept[-1][1], recommendation))
    else:
        kept.append((start, recommendation))
    return replace(state, window=tuple(kept), since=since)


def _up(  # noqa: PLR0913, PLR0917 - the decision's inputs, already computed by decide()
    settings: Settings,
    state: State,
    seen: Observation,
    up: int,
    total: float,
    load_text: str,
) -> Decision:
    current = seen.replicas
    if current >= settings.max_replicas:
        return Decision(
            current,
            "AtMaximum",
            f"{load_text} wants {up} replicas; maxReplicas is {current}",
            state,
            total,
        )
    since = state.high_since if state.high_since is not None else seen.now
    floor = min(state.high_floor, up) if state.high_since is not None else up
    held = replace(state, high_since=since, high_floor=floor)
    waited = seen.now - since
    if waited < settings.scale_up_stabilization:
        return Decision(
            current,
            "ScaleUpPending",
            f"{load_text} wants {floor} replicas; scaling up after "
            f"{settings.scale_up_stabilization:g} s ({waited:.0f} s so far)",
            held,
            total,
        )
    target = _clamp(floor, settings)
    starting = current - seen.ready
    note = f" ({_plural(starting, 'pod')} already starting)" if starting > 0 else ""
    return Decision(
        target,
        "ScaledUp",
        f"{load_text} needs {up}; {current} -> {target}{note}",
        replace(held, high_since=None, high_floor=0),
        total,
    )


def _down(  # noqa: PLR0913, PLR0917 - the decision's inputs, already computed by decide()
    settings: Settings,
    state: State,
    seen: Observation,
    down: int,
    total: float,
    busiest: float | None,
    load_text: str,
) -> Decision:
    """`busiest`: the highest GPU utilization among the pods counted."""
    current = seen.replicas
    fits = f"{load_text} fits {down}"
    if current <= settings.min_replicas:
        return Decision(current, "Steady", f"{fits}; at minReplicas", state, total)
    if seen.ready < current:
        # Pods are still loading their model: removing one now throws away a cold start, and the
        # load it was ordered for may arrive with it.
        starting = f"{current - seen.ready} of {current} pods are still starting"
        return Decision(
            current, "Starting", f"{fits}, but {starting}; not scaling down", state, total
        )
    if settings.gpu_guard is not None and busiest is not None and busiest >= settings.gpu_guard:
        busy = f"GPU utilization is {busiest:g}% (guard {settings.gpu_guard:g}%)"
        return Decision(current, "GpuBusy", f"{fits}, but {busy}; not scaling down", state, total)
    delay = settings.scale_down_delay
    peak = max(r for _, r in state.window)
    watched = seen.now - (state.since if state.since is not None else seen.now)
    last = state.last_scale_down
    pending = None
    if peak >= current:
        pending = f"{fits}, but needed {peak} within the last {delay:g} s"
    elif watched < delay:
        pending = f"{fits}; removing a replica once it has for {delay:g} s ({watched:.0f} s so far)"
    elif last is not None and seen.now - last < settings.step:
        pending = f"{fits}; removing one replica every {settings.step:g} s"
    if pending is not None:
        return Decision(current, "ScaleDownPending", pending, state, total)
    target = max(current - 1, peak, settings.min_replicas)
    return Decision(
        target,
        "ScaledDown",
        f"{load_text} has needed at most {peak} for {delay:g} s; {current} -> {target}",
        replace(state, last_scale_down=seen.now),
        total,
    )
