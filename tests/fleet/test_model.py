"""The fleet model: C*, the fluid replica against the discrete engine, Little's law, the oracle."""

from __future__ import annotations

import math

import pytest

from llmserve.fleet.capacity import (
    Setup,
    lookahead_max,
    setup_for,
    steady_step,
    sustained,
    target_concurrency,
)
from llmserve.fleet.replicas import Fleet, Ledger, Lifecycle, Phase
from llmserve.fleet.run import simulate
from llmserve.fleet.trace import Trace, generate
from llmserve.sim.engine import Engine, Performance, Sequence

MODEL = Performance()


def test_the_target_is_70_percent_of_the_largest_batch_within_the_tpot_slo() -> None:
    target = target_concurrency(MODEL, prompt=970, output=274, tpot_slo=0.05)
    batch = round(target / 0.7)
    assert steady_step(MODEL, batch, 970, 274) <= 0.05 < steady_step(MODEL, batch + 1, 970, 274)
    assert 50 < target < 70  # prefill-bound: without it the A100 model would allow all 256


def test_a_kv_bound_batch_limits_the_target() -> None:
    small = Performance(kv_capacity=50_000)
    assert target_concurrency(small, prompt=970, output=274, tpot_slo=1.0) == pytest.approx(
        0.7 * math.floor(0.8 * 50_000 / (970 + 274))
    )


def drain(fleet: Fleet, ledger: Ledger, dt: float) -> float:
    now = 0.0
    fleet.tick(now, dt, range(len(ledger.arrival)), billed_until=math.inf)
    while any(math.isinf(done) for done in ledger.done):
        now += dt
        fleet.tick(now, dt, (), billed_until=math.inf)
    return max(ledger.done)


@pytest.mark.parametrize(("count", "prompt", "output"), [(1, 600, 200), (40, 1000, 100)])
def test_the_fluid_replica_takes_as_long_as_the_engine_it_models(count, prompt, output) -> None:
    engine = Engine(MODEL)
    for key in range(count):
        engine.submit(Sequence(key, prompt_tokens=prompt, max_tokens=output))
    stepped = 0.0
    while engine.busy:
        stepped += engine.step().seconds
    ledger = Ledger((0.0,) * count, (prompt,) * count, (output,) * count)
    fleet = Fleet(ledger, MODEL, Lifecycle(), ready=1)
    assert drain(fleet, ledger, dt=0.05) == pytest.approx(stepped, rel=0.05)
    assert ledger.first[0] < 0.2  # the prompt's prefill, and one step: not a tick's quantum


def test_the_router_fills_the_least_loaded_replica_and_a_drain_reroutes_the_queue() -> None:
    count = 600
    ledger = Ledger((0.0,) * count, (1000,) * count, (100,) * count)
    fleet = Fleet(ledger, Performance(max_num_seqs=100), Lifecycle(), ready=3)
    fleet.tick(0.0, 0.25, range(count), billed_until=math.inf)
    assert [r.load for r in fleet.replicas] == [200, 200, 200]
    fleet.scale_to(0.25, 2)
    draining = [r for r in fleet.replicas if r.phase is Phase.DRAINING]
    assert len(draining) == 1
    assert not draining[0].waiting
    assert draining[0].running == 100  # its batch finishes; its queue went to the other two
    assert fleet.in_flight() == count - sum(1 for d in ledger.done if d < math.inf)


def test_a_request_waiting_past_the_client_timeout_fails() -> None:
    ledger = Ledger((0.0, 0.0), (100, 100), (10, 10))
    fleet = Fleet(ledger, Performance(max_num_seqs=1), Lifecycle(timeout=0.5), ready=0)
    fleet.scale_to(0.0, 1)  # cold: the gateway holds both until the replica is ready
    now = 0.0
    while now < 1.0:
        fleet.tick(now, 0.25, range(2) if now == 0 else (), billed_until=math.inf)
        now += 0.25
    assert ledger.failed == [True, True]
    assert fleet.counters.gpu_seconds == pytest.approx(1.0)


def test_littles_law_holds_on_a_steady_trace() -> None:
    trace = generate("steady", 300, 3)
    setup = setup_for(trace, MODEL, Lifecycle(), tpot_slo=0.05, min_replicas=1, max_replicas=20)
    result = simulate(trace, "oracle", setup, dt=0.25, slo_ttft=2.0)
    assert result.failed == 0
    arrival_rate = result.requests / result.series.span
    assert result.mean_in_flight == pytest.approx(arrival_rate * result.mean_e2e, rel=0.1)


def test_the_oracle_orders_one_cold_start_ahead_and_keeps_what_it_needs_again_soon() -> None:
    assert lookahead_max([1, 1, 1, 5, 1, 1, 1, 1], window=2) == [1, 5, 5, 5, 1, 1, 1, 1]
    assert sustained([0, 0, 6, 6, 0, 0], window=2) == [0, 3, 6, 6, 3, 0]


def throughput(setup: Setup) -> float:
    """Requests per second a replica serves at C* with 600-token prompts and 200-token outputs."""
    return setup.target / (200 * setup.step)


def test_the_oracle_serves_a_step_it_saw_coming() -> None:
    times = tuple(float(t) / 50 for t in range(50 * 300, 50 * 400))  # nothing, then 50/s
    trace = Trace("wall", 400.0, times, (600,) * len(times), (200,) * len(times))
    setup = setup_for(trace, MODEL, Lifecycle(), tpot_slo=0.05, min_replicas=1, max_replicas=20)
    oracle = simulate(trace, "oracle", setup, dt=0.25, slo_ttft=2.0)
    reactive = simulate(trace, "llmserve", setup, dt=0.25, slo_ttft=2.0)
    assert oracle.slo_attainment > 0.99
    assert reactive.slo_attainment < 0.9  # one replica, and two minutes to start the others
    assert oracle.series.replicas[0] == 1
    assert max(oracle.series.replicas) == setup.clamp(math.ceil(50 / throughput(setup)))
