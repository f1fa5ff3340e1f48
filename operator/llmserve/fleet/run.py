"""`llmserve bench autoscale`: replay traces against every policy and compare them.

For each trace, every policy starts from the same warm fleet (the replicas the first cold start
of demand needs, READY at t = 0), sees the same requests and the same replica and engine models,
and is scored on:

- SLO attainment: the share of requests whose first token came within `--slo-ttft` seconds of
  their arrival; failed requests (client timeout, cut off by a drain) are misses;
- GPU-minutes: replica time billed inside the trace's span, from creation to termination;
- the ratio of those GPU-minutes to the oracle's, p99 TTFT and the scale events applied.

The goal, per trace: `llmserve` meets the SLO for at least 99 % of requests with at most 1.15x
the oracle's GPU-minutes, and no baseline is better on both axes (higher attainment and fewer
GPU-minutes). The simulation goes on after the trace until every request is answered or failed;
that tail is not billed.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TextIO

from llmserve.fleet import plot
from llmserve.fleet.capacity import Setup, needed_replicas, setup_for
from llmserve.fleet.flags import Options
from llmserve.fleet.plot import Series
from llmserve.fleet.policies import POLICIES, Policy
from llmserve.fleet.replicas import Fleet, Ledger, Lifecycle
from llmserve.fleet.trace import Trace, generate, load_csv
from llmserve.sim.engine import Performance

GOAL_ATTAINMENT: Final = 0.99
GOAL_RATIO: Final = 1.15
SERIES_PERIOD: Final = 5.0
"""Seconds between two points of the plotted time series."""


@dataclass(frozen=True)
class Result:
    """One policy on one trace."""

    trace: str
    policy: str
    requests: int
    slo_attainment: float
    failed: int
    p99_ttft: float
    """Seconds; inf when more than 1 % of requests failed."""
    gpu_minutes: float
    scale_ups: int
    scale_downs: int
    mean_in_flight: float
    """Time-average of the requests held, over the whole simulation (Little's L)."""
    mean_e2e: float
    """Mean arrival-to-last-token of the answered requests (Little's W)."""
    target: float
    """C* of the trace."""
    series: Series


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else 0.0


def _replay(trace: Trace, fleet: Fleet, controller: Policy, setup: Setup, dt: float) -> Series:
    """Advance tick by tick until the trace is over and every request answered or failed."""
    series = Series()
    sample_every = round(SERIES_PERIOD / dt)
    lifecycle = setup.lifecycle
    last = trace.duration + lifecycle.timeout + lifecycle.grace + lifecycle.cold_start
    tick, arrived, now = 0, 0, 0.0
    while now < trace.duration or (fleet.in_flight() and now < last):
        upto = bisect.bisect_left(trace.times, now + dt, lo=arrived)
        fleet.tick(now, dt, range(arrived, upto), trace.duration)
        arrived, tick = upto, tick + 1
        now = tick * dt
        desired = controller.step(now, fleet)
        if desired is not None:
            fleet.scale_to(now, setup.clamp(desired))
        if tick % sample_every == 0 and now <= trace.duration:
            series.times.append(now)
            series.replicas.append(fleet.spec)
            series.waiting.append(fleet.waiting())
    series.span = now
    return series


def simulate(trace: Trace, policy: str, setup: Setup, dt: float, slo_ttft: float) -> Result:
    """Replay `trace` against `policy` and score it."""
    ledger = Ledger(trace.times, trace.prompts, trace.outputs)
    plan = needed_replicas(trace, setup, setup.lifecycle.cold_start)
    ready = plan[0] if plan else setup.min_replicas
    fleet = Fleet(ledger, setup.performance, setup.lifecycle, ready)
    series = _replay(trace, fleet, POLICIES[policy](setup, trace, ready), setup, dt)
    for request, first in enumerate(ledger.first):
        if first == math.inf:
            ledger.fail(request)  # never answered before the simulation ended
    ttft = [
        math.inf if failed else first - arrival
        for first, arrival, failed in zip(ledger.first, trace.times, ledger.failed, strict=True)
    ]
    e2e = [
        done - arrival
        for done, arrival, failed in zip(ledger.done, trace.times, ledger.failed, strict=True)
        if not failed and done < math.inf
    ]
    counters = fleet.counters
    return Result(
        trace=trace.name,
        policy=policy,
        requests=len(trace),
        slo_attainment=sum(1 for t in ttft if t <= slo_ttft) / max(1, len(trace)),
        failed=sum(ledger.failed),
        p99_ttft=_percentile(ttft, 0.99),
        gpu_minutes=counters.gpu_seconds / 60,
        scale_ups=counters.scale_ups,
        scale_downs=counters.scale_downs,
        mean_in_flight=counters.in_flight_seconds / series.span,
        mean_e2e=sum(e2e) / max(1, len(e2e)),
        target=setup.target,
        series=series,
    )


def traces(options: Options, performance: Performance) -> list[Trace]:
    """The generated traces asked for, then the file's."""
    chosen = [generate(name, options.duration, options.seed) for name in options.traces]
    if options.trace_file is not None:
        chosen.append(load_csv(options.trace_file, performance.kv_capacity))
    return chosen


def run(options: Options, err: TextIO) -> list[Result]:
    """Every policy on every trace, with a progress line per run on `err`."""
    performance = Performance()
    lifecycle = Lifecycle(cold_start=options.cold_start)
    results = []
    for trace in traces(options, performance):
        setup = setup_for(
            trace,
            performance,
            lifecycle,
            options.tpot_slo,
            options.min_replicas,
            options.max_replicas,
        )
        for policy in options.policies:
            started = time.monotonic()
            result = simulate(trace, policy, setup, options.dt, options.slo_ttft)
            print(
                f"bench autoscale: {trace.name}/{policy}: {len(trace)} requests in "
                f"{time.monotonic() - started:.1f} s: SLO {100 * result.slo_attainment:.2f} %, "
                f"{result.gpu_minutes:.0f} GPU-min",
                file=err,
                flush=True,
            )
            results.append(result)
    return results


def _oracle_minutes(results: Sequence[Result]) -> dict[str, float]:
    return {r.trace: r.gpu_minutes for r in results if r.policy == "oracle"}


def ratio(result: Result, oracle: dict[str, float]) -> float | None:
    """GPU-minutes over the oracle's on the same trace; None without an oracle run."""
    base = oracle.get(result.trace)
    return result.gpu_minutes / base if base else None


def goal(trace: str, results: Sequence[Result]) -> tuple[bool, str] | None:
    """Whether llmserve met the goal on `trace`, and why; None without llmserve and oracle."""
    rows = {r.policy: r for r in results if r.trace == trace}
    if "llmserve" not in rows or "oracle" not in rows:
        return None
    ours, oracle = rows["llmserve"], rows["oracle"]
    factor = ours.gpu_minutes / oracle.gpu_minutes
    better = [
        name
        for name, r in rows.items()
        if name not in {"llmserve", "oracle"}
        and r.slo_attainment > ours.slo_attainment
        and r.gpu_minutes < ours.gpu_minutes
    ]
    misses = []
    if ours.slo_attainment < GOAL_ATTAINMENT:
        misses.append(f"SLO {100 * ours.slo_attainment:.2f} % < {100 * GOAL_ATTAINMENT:g} %")
    if factor > GOAL_RATIO:
        misses.append(f"{factor:.2f}x the oracle's GPU-minutes > {GOAL_RATIO:g}x")
    if better:
        misses.append(f"better on both axes: {', '.join(better)}")
    if misses:
        return False, "; ".join(misses)
    return True, (
        f"SLO {100 * ours.slo_attainment:.2f} % at {factor:.2f}x the oracle; "
        "no baseline better on both axes"
    )


def _p99_text(seconds: float) -> str:
    return "timeout" if seconds == math.inf else f"{seconds:.2f}"


def table(results: Sequence[Result]) -> str:
    """The report as aligned text, with the goal line of each trace."""
    oracle = _oracle_minutes(results)
    header = (
        f"{'trace':<9} {'policy':<11} {'SLO %':>7} {'p99 TTFT s':>10} {'failed':>7} "
        f"{'GPU-min':>8} {'x oracle':>8} {'ups':>4} {'downs':>5}"
    )
    lines = [header]
    trace_names = list(dict.fromkeys(r.trace for r in results))
    for name in trace_names:
        rows = [r for r in results if r.trace == name]
        lines.append(
            f"-- {name}: {rows[0].requests} requests, C* = {rows[0].target:.1f} per replica"
        )
        for r in rows:
            factor = ratio(r, oracle)
            lines.append(
                f"{r.trace:<9} {r.policy:<11} {100 * r.slo_attainment:>7.2f} "
                f"{_p99_text(r.p99_ttft):>10} {r.failed:>7} {r.gpu_minutes:>8.1f} "
                f"{'-' if factor is None else f'{factor:.2f}':>8} {r.scale_ups:>4} "
                f"{r.scale_downs:>5}"
            )
    lines.append("")
    for name in trace_names:
        verdict = goal(name, results)
        if verdict is not None:
            lines.append(f"goal {name}: {'held' if verdict[0] else 'missed'}: {verdict[1]}")
    return "\n".join(lines) + "\n"


def json_lines(results: Sequence[Result]) -> str:
    """One JSON object per trace and policy."""
    oracle = _oracle_minutes(results)
    lines = []
    for r in results:
        row: dict[str, object] = {
            "trace": r.trace,
            "policy": r.policy,
            "slo_attainment": round(r.slo_attainment, 6),
            "gpu_minutes": round(r.gpu_minutes, 3),
            "oracle_ratio": None if (f := ratio(r, oracle)) is None else round(f, 4),
            "requests": r.requests,
            "failed": r.failed,
            "p99_ttft_s": None if r.p99_ttft == math.inf else round(r.p99_ttft, 3),
            "scale_ups": r.scale_ups,
            "scale_downs": r.scale_downs,
            "target_concurrency": round(r.target, 2),
        }
        if r.policy == "llmserve" and (verdict := goal(r.trace, results)) is not None:
            row["goal_met"] = verdict[0]
        lines.append(json.dumps(row))
    return "\n".join(lines) + "\n"


def main(options: Options, out: TextIO, err: TextIO) -> int:
    """Run, print the report, draw the plots; 0."""
    started = time.monotonic()
    results = run(options, err)
    out.write(table(results) if options.output == "table" else json_lines(results))
    if options.plots is not None:
        runs: dict[str, dict[str, Series]] = {}
        for r in results:
            runs.setdefault(r.trace, {})[r.policy] = r.series
        plot.draw(runs, options.plots, err)
    print(f"bench autoscale: done in {time.monotonic() - started:.0f} s", file=err)
    return 0
