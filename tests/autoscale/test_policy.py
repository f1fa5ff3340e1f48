"""Every rule of the scaling policy, one table row each."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from llmserve.autoscale.policy import (
    Decision,
    Observation,
    PodLoad,
    Settings,
    State,
    decide,
)

SETTINGS = Settings(min_replicas=1, max_replicas=10, target=10, scale_down_delay=300)


def loads(*demands: float | None, gpu: float | None = None) -> tuple[PodLoad, ...]:
    return tuple(
        PodLoad(pod=f"p{i}", running=d, waiting=0.0 if d is not None else None, gpu_utilization=gpu)
        for i, d in enumerate(demands)
        if d is not None
    )


@dataclass
class Case:
    name: str
    replicas: int
    ready: int
    loads: tuple[PodLoad, ...]
    expect: int
    reason: str
    state: State = field(default_factory=State)
    settings: Settings = SETTINGS
    now: float = 1000.0


CASES = [
    Case("below min is raised at once", 0, 0, (), 1, "BelowMinimum"),
    Case("above max is lowered at once", 12, 12, loads(200), 10, "AboveMaximum"),
    Case("no samples at all holds", 3, 3, (), 3, "NoMetrics"),
    Case("no pod ready holds", 2, 0, (), 2, "NoMetrics"),
    Case("load fits", 2, 2, loads(10, 10), 2, "Steady"),
    Case("scale up to ceil(total/target)", 2, 2, loads(20, 15), 4, "ScaledUp"),
    Case("starting pods count as capacity", 4, 2, loads(20, 15), 4, "Steady"),
    Case("more load than starting pods cover", 3, 2, loads(25, 15), 4, "ScaledUp"),
    Case("up is capped at max", 8, 8, loads(*[30] * 8), 10, "ScaledUp"),
    Case("at max stays", 10, 10, loads(*[30] * 10), 10, "AtMaximum"),
    Case(
        "proxy queue counts",
        1,
        1,
        (PodLoad("p0", running=10, waiting=0, queued=15),),
        3,
        "ScaledUp",
    ),
    Case(
        "engine without metrics: proxy in-flight counts",
        1,
        1,
        (PodLoad("p0", in_flight=18, queued=5),),
        3,
        "ScaledUp",
    ),
    Case(
        "the larger of engine and proxy counts",
        1,
        1,
        (PodLoad("p0", running=5, waiting=0, in_flight=25),),
        3,
        "ScaledUp",
    ),
    Case(
        "missing pods do not add load on the way up",
        3,
        3,
        loads(25),
        3,
        "Steady",
    ),
    Case(
        "missing pods count as fully loaded on the way down",
        3,
        3,
        loads(10, 10),
        3,
        "Steady",
    ),
    Case("low load starts the delay", 3, 3, loads(1, 1, 1), 3, "ScaleDownPending"),
    Case(
        "low load for the whole delay removes one",
        3,
        3,
        loads(1, 1, 1),
        2,
        "ScaledDown",
        state=State(window=((690.0, 1),), since=600.0),
    ),
    Case(
        "delay not over yet",
        3,
        3,
        loads(1, 1, 1),
        3,
        "ScaleDownPending",
        state=State(window=((810.0, 1),), since=800.0),
    ),
    Case(
        "one step per minute",
        3,
        3,
        loads(1, 1, 1),
        3,
        "ScaleDownPending",
        state=State(window=((960.0, 1),), since=100.0, last_scale_down=970.0),
    ),
    Case(
        "never below the peak of the window",
        5,
        5,
        loads(*[5] * 5),
        4,
        "ScaledDown",
        state=State(window=((900.0, 4),), since=100.0, last_scale_down=900.0),
    ),
    Case(
        "one replica at a time",
        5,
        5,
        loads(0, 0, 0, 0, 0),
        4,
        "ScaledDown",
        state=State(window=((960.0, 1),), since=100.0),
    ),
    Case(
        "no scale-down while pods start",
        3,
        2,
        loads(0, 0),
        3,
        "Starting",
        state=State(window=((960.0, 1),), since=100.0),
    ),
    Case(
        "GPU guard blocks scale-down",
        3,
        3,
        loads(1, 1, 1, gpu=95),
        3,
        "GpuBusy",
        state=State(window=((960.0, 1),), since=100.0),
        settings=Settings(1, 10, 10, gpu_guard=90),
    ),
    Case(
        "GPU below the guard does not block",
        3,
        3,
        loads(1, 1, 1, gpu=50),
        2,
        "ScaledDown",
        state=State(window=((960.0, 1),), since=100.0),
        settings=Settings(1, 10, 10, gpu_guard=90),
    ),
    Case(
        "busy GPUs never scale up alone",
        2,
        2,
        loads(5, 5, gpu=100),
        2,
        "GpuBusy",
        settings=Settings(1, 10, 10, gpu_guard=90),
    ),
    Case("at minReplicas stays", 1, 1, loads(0), 1, "Steady"),
    Case(
        "a peak inside the window blocks",
        3,
        3,
        loads(0, 0, 0),
        3,
        "ScaleDownPending",
        state=State(window=((720.0, 3),), since=100.0),
    ),
    Case(
        "a peak older than the delay has expired",
        3,
        3,
        loads(0, 0, 0),
        2,
        "ScaledDown",
        state=State(window=((660.0, 3),), since=100.0),
    ),
    Case(
        "a pod a source could not read is missing, not idle",
        2,
        2,
        (PodLoad("p0", running=5, waiting=0), PodLoad("p1", problem="its page is too large")),
        2,
        "Steady",
        state=State(window=((0.0, 2),), since=0.0),
    ),
    Case(
        "a load past what the proxy admits counts as PLAUSIBLE_LOAD times that",
        1,
        1,
        loads(1_000_000),
        2,
        "ScaledUp",
        settings=Settings(1, 10, 10, pod_capacity=5),
    ),
    *(
        Case(
            f"a pod reporting {name} {value} is missing",
            2,
            2,
            (PodLoad("p0", running=5, waiting=0), PodLoad("p1", **{name: value})),
            2,
            "Steady",
            state=State(window=((0.0, 2),), since=0.0),
        )
        for name, value in (
            ("running", float("nan")),
            ("waiting", -3.0),
            ("queued", float("inf")),
            ("in_flight", float("-inf")),
            ("gpu_utilization", float("nan")),
        )
    ),
    Case(
        "up stabilization waits",
        2,
        2,
        loads(20, 20),
        2,
        "ScaleUpPending",
        settings=Settings(1, 10, 10, scale_up_stabilization=30),
    ),
    Case(
        "up stabilization takes the lowest recommendation of the window",
        2,
        2,
        loads(20, 20),
        3,
        "ScaledUp",
        state=State(high_since=960.0, high_floor=3),
        settings=Settings(1, 10, 10, scale_up_stabilization=30),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rule(case: Case) -> None:
    seen = Observation(now=case.now, replicas=case.replicas, ready=case.ready, loads=case.loads)
    decision = decide(case.settings, case.state, seen)
    assert (decision.replicas, decision.reason) == (case.expect, case.reason), decision.message
    assert case.settings.min_replicas <= decision.replicas <= case.settings.max_replicas


def run(
    settings: Settings, steps: list[tuple[float, int, int, tuple[PodLoad, ...]]]
) -> list[Decision]:
    state = State()
    out = []
    for now, replicas, ready, pods in steps:
        decision = decide(settings, state, Observation(now, replicas, ready, pods))
        state = decision.state
        out.append(decision)
    return out


def test_a_spike_holds_replicas_for_the_delay_after_it() -> None:
    low, high = loads(1, 1, 1), loads(10, 10, 10)
    got = run(SETTINGS, [(0, 3, 3, low), (200, 3, 3, high), (480, 3, 3, low), (520, 3, 3, low)])
    assert [d.reason for d in got] == ["ScaleDownPending", "Steady", "ScaleDownPending",
                                       "ScaledDown"]  # fmt: skip
    assert "needed 3 within the last 300 s" in got[2].message


def test_scale_down_walks_one_step_per_minute_to_min() -> None:
    steps = [(float(t), 0, 0, ()) for t in range(0, 900, 5)]
    state, replicas, seen = State(), 4, []
    for now, *_ in steps:
        decision = decide(
            SETTINGS, state, Observation(now, replicas, replicas, loads(*[0] * replicas))
        )
        state, replicas = decision.state, decision.replicas
        if decision.reason == "ScaledDown":
            seen.append(now)
    assert seen == [300.0, 360.0, 420.0]
    assert replicas == 1


def test_the_window_stays_small_whatever_the_interval() -> None:
    steps = [(float(t), 3, 3, loads(1, 1, 1)) for t in range(2000)]
    assert len(run(SETTINGS, steps)[-1].state.window) <= 11


def test_state_survives_a_restart_as_plain_values() -> None:
    """The operator keeps State in status: a round trip through plain numbers changes nothing."""
    first = decide(SETTINGS, State(), Observation(0, 3, 3, loads(1, 1, 1)))
    kept = State(**vars(first.state))
    assert decide(SETTINGS, kept, Observation(300, 3, 3, loads(1, 1, 1))).reason == "ScaledDown"


def test_the_message_names_each_pod_not_counted_and_why() -> None:
    problem = "its /metrics/engine page is over 1048576 bytes (autoscaler.maxPageBytes)"
    pods = (
        PodLoad("llama-a", running=4, waiting=0),
        PodLoad("llama-b", problem=problem),
        PodLoad("llama-c", running=-1),
        PodLoad("llama-d", in_flight=99),
    )
    settings = Settings(1, 10, 10, pod_capacity=4)
    decision = decide(settings, State(), Observation(0, 4, 4, pods))
    assert decision.load == 4 + 16
    assert decision.message.startswith(
        "load 20 over 2 reporting pods (target 10 per replica) ["
        f"llama-b: {problem}; "
        "llama-c: reported running -1, which no pod can hold (check what serves its metrics); "
        "counted as missing; "
        "llama-d: reported a load of 99, more than 4 times the 4 requests its proxy admits "
        "(maxConcurrency + maxQueue); counted as 16]"
    )
    blind = decide(SETTINGS, State(), Observation(0, 5, 5, tuple(
        PodLoad(f"p{i}", problem="did not answer") for i in range(5)
    )))  # fmt: skip
    assert (blind.reason, blind.message) == ("NoMetrics", (
        "no load samples from 5 ready pods [p0: did not answer; p1: did not answer; "
        "p2: did not answer; and 2 more]; holding 5"
    ))  # fmt: skip


def test_an_absurd_gpu_figure_does_not_hold_replicas() -> None:
    state = State(window=((0.0, 1),), since=0.0)
    pods = (PodLoad("p0", running=0, gpu_utilization=float("inf")),
            PodLoad("p1", running=0, gpu_utilization=10.0))  # fmt: skip
    guarded = Settings(1, 10, 10, gpu_guard=90)
    decision = decide(guarded, state, Observation(1000, 2, 2, pods))
    assert decision.reason == "ScaledDown", decision.message
