"""What one replica can carry, and what a trace asks for: the numbers every policy shares.

`target_concurrency` is C* of AUTOSCALING.md §12.6: the largest batch B whose step time stays
within the TPOT SLO and whose KV fits in 80 % of the cache, times 0.7 headroom. The step time is
taken in steady state, `step_seconds(B, B·(p̄ + ō/2), B·p̄/ō)`: each step a batch of B sequences of
ō output tokens replaces B/ō of them, whose p̄-token prompts are prefilled in that step. Leaving the
prefill out would rate a replica at three times what it serves with the default sizes (prompts
outweigh outputs 3.5 to 1 and cost 0.1 ms per token on the modelled A100).

Every concurrency-based policy gets the same C* as its per-replica target, so the comparison
isolates the control logic (§12.6).

`demand` is what the oracle knows: the requests that would be in flight each second if every
request were served at the pace of a replica running C* sequences.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from llmserve.fleet.replicas import Lifecycle
from llmserve.fleet.trace import Trace
from llmserve.sim.engine import Performance

HEADROOM: Final = 0.7
"""Share of the SLO-limited batch a policy aims for (Knative's target utilization default)."""
KV_SHARE: Final = 0.8
"""Share of the KV cache the target batch may fill."""
SMOOTHING: Final = 30
"""Seconds the oracle averages demand over, each side of a second."""


def steady_step(performance: Performance, batch: float, prompt: float, output: float) -> float:
    """Seconds per engine step with `batch` sequences of mean sizes `prompt` and `output`."""
    context = batch * (prompt + output / 2)
    prefill = batch * prompt / output
    return performance.step_seconds(round(batch), round(context), round(prefill))


def target_concurrency(
    performance: Performance, prompt: float, output: float, tpot_slo: float
) -> float:
    """C*: requests one replica should hold (at least one sequence's worth)."""
    best = 1
    for batch in range(1, performance.max_num_seqs + 1):
        fits = batch * (prompt + output) <= KV_SHARE * performance.kv_capacity
        if not fits or steady_step(performance, batch, prompt, output) > tpot_slo:
            break  # both grow with the batch: the first failure ends the search
        best = batch
    return HEADROOM * best


@dataclass(frozen=True)
class Setup:
    """What every policy of one trace shares: bounds, target, replica and engine models."""

    min_replicas: int
    max_replicas: int
    target: float
    """C*, requests per replica."""
    step: float
    """Step time at C* (seconds per output token of one sequence): the oracle's service pace."""
    lifecycle: Lifecycle
    performance: Performance

    def clamp(self, replicas: int) -> int:
        """`replicas` within [min, max]."""
        return max(self.min_replicas, min(self.max_replicas, replicas))


def setup_for(  # noqa: PLR0913, PLR0917 - the benchmark's knobs, at the one call
    trace: Trace,
    performance: Performance,
    lifecycle: Lifecycle,
    tpot_slo: float,
    min_replicas: int,
    max_replicas: int,
) -> Setup:
    """The shared setup for `trace`: C* from its mean request sizes."""
    prompt = sum(trace.prompts) / max(1, len(trace))
    output = sum(trace.outputs) / max(1, len(trace))
    target = target_concurrency(performance, prompt, output, tpot_slo)
    step = steady_step(performance, target, prompt, output)
    return Setup(min_replicas, max_replicas, target, step, lifecycle, performance)


def demand(trace: Trace, step: float, seconds: int) -> list[int]:
    """Requests in flight in each of the first `seconds` seconds at `step` seconds per token."""
    delta = [0] * (seconds + 1)
    for arrival, output in zip(trace.times, trace.outputs, strict=True):
        start = int(arrival)
        if start < seconds:
            delta[start] += 1
            delta[min(seconds, int(arrival + output * step) + 1)] -= 1
    load, running = [], 0
    for change in delta[:seconds]:
        running += change
        load.append(running)
    return load


def lookahead_max(values: Sequence[int], window: int) -> list[int]:
    """For each index i, the largest of values[i : i + window + 1] (a monotonic deque)."""
    result = [0] * len(values)
    best: deque[int] = deque()  # indices whose values decrease from front to back
    for index in range(len(values) - 1, -1, -1):
        while best and values[best[-1]] <= values[index]:
            best.pop()
        best.append(index)
        while best[0] > index + window:
            best.popleft()
        result[index] = values[best[0]]
    return result


def sustained(values: Sequence[int], window: int) -> list[float]:
    """Each value as the larger of the means over the `window` values up to it and from it.

    Averaging removes second-to-second Poisson noise, which the 30 % headroom of C* absorbs;
    taking the larger side keeps a burst's edges sharp (a centered mean would ramp its replicas
    in over the window, late for the burst's first seconds).
    """
    sums = [0, *itertools.accumulate(values)]
    count = len(values)
    result = []
    for index in range(count):
        before = max(0, index - window + 1)
        after = min(count, index + window)
        result.append(
            max(
                (sums[index + 1] - sums[before]) / (index + 1 - before),
                (sums[after] - sums[index]) / (after - index),
            )
        )
    return result


def needed_replicas(trace: Trace, setup: Setup, horizon: float) -> list[int]:
    """Per second, the replicas the next `horizon` seconds of demand need at C* (clamped)."""
    seconds = math.ceil(trace.duration)
    load = sustained(demand(trace, setup.step, seconds), SMOOTHING)
    need = [math.ceil(value / setup.target) for value in load]
    return [setup.clamp(n) for n in lookahead_max(need, math.ceil(horizon))]
