"""The peers' maths, pinned to the formulas of AUTOSCALING.md §1-§4."""

from __future__ import annotations

import pytest

from llmserve.fleet.baselines import (
    Hpa,
    HpaPod,
    KpaScaler,
    KubeAIScaler,
    external_replicas,
    pods_replicas,
    within,
)


def ready(*values: float) -> list[HpaPod]:
    return [HpaPod(pending=False, value=v) for v in values]


MISSING = HpaPod(pending=False, value=None)
PENDING = HpaPod(pending=True, value=None)


@pytest.mark.parametrize(
    ("ratio", "inside"), [(1.1, True), (0.9, True), (1.1000001, False), (0.8999999, False)]
)
def test_the_tolerance_includes_its_edges(ratio, inside) -> None:
    assert within(ratio) is inside


def test_hpa_keeps_the_replicas_at_the_tolerance_edge_and_scales_past_it() -> None:
    assert pods_replicas(10, ready(*[88.0] * 10), target=80) == 10  # ratio 1.1: within
    assert pods_replicas(10, ready(*[88.8] * 10), target=80) == 12  # ceil(1.11 x 10)
    assert pods_replicas(10, ready(*[40.0] * 10), target=80) == 5


def test_hpa_without_any_metric_does_not_scale() -> None:
    assert pods_replicas(3, [MISSING, PENDING, MISSING], target=80) is None


def test_missing_pods_count_as_idle_on_the_way_up() -> None:
    # Plain formula: ceil(2 x 2) = 4; with the two loading pods at 0 the ratio is 1: hold 4.
    assert pods_replicas(4, [*ready(10, 10), MISSING, MISSING], target=5) == 4
    # Saturated GPUs (ratio 1.25) with one pod still loading: the ratio flips below 1, hold.
    assert pods_replicas(3, [*ready(100, 100), MISSING], target=80) == 3


def test_missing_pods_count_at_the_target_on_the_way_down() -> None:
    # Alone, the reporting pod asks for ceil(0.5 x 1) = 1; with the missing one at the target
    # the ratio is 0.75 over 2 pods: ceil(1.5) = 2, the current count.
    assert pods_replicas(2, [*ready(40), MISSING], target=80) == 2


def test_pending_pods_count_as_idle_only_when_scaling_up() -> None:
    assert pods_replicas(4, [*ready(100, 100), PENDING, PENDING], target=80) == 4
    assert pods_replicas(3, [*ready(20, 20), PENDING], target=80) == 1


def test_keda_average_value_is_ceil_of_total_over_threshold_with_tolerance() -> None:
    assert external_replicas(2, total=23, target=5) == 5  # ceil(4.6)
    assert external_replicas(10, total=11, target=1) == 10  # 11 / (1 x 10) = 1.1: swallowed
    assert external_replicas(10, total=12, target=1) == 12
    assert external_replicas(4, total=0, target=5) == 0  # the HPA then applies minReplicas


def test_hpa_scale_up_is_limited_to_4_pods_or_100_percent_per_15_s() -> None:
    hpa = Hpa(1, 50)
    assert hpa.decide(0.0, 2, 40) == 6  # max(2 + 4, 2 x 2)
    assert hpa.decide(10.0, 6, 40) == 6  # the period started at 2: nothing more before 15 s
    assert hpa.decide(15.0, 6, 40) == 12  # the event at 0 is out of (0, 15]: max(10, 12)


def test_hpa_scale_down_waits_for_the_stabilization_window_then_drops_at_once() -> None:
    hpa = Hpa(1, 20, recommendations=[(0.0, 10)])
    assert hpa.decide(150.0, 10, 2) == 10  # 10 was recommended within 300 s
    assert hpa.decide(299.0, 10, 2) == 10
    assert hpa.decide(300.0, 10, 2) == 2  # the window is (0, 300]; 100 % per 15 s: all the way


def test_hpa_bounds_come_first() -> None:
    hpa = Hpa(2, 5)
    assert hpa.decide(0.0, 7, None) == 5
    assert hpa.decide(0.0, 1, None) == 2
    assert hpa.decide(0.0, 3, None) is None


def test_kpa_panics_at_twice_the_ready_pods_and_never_scales_down_in_panic() -> None:
    kpa = KpaScaler(target=10)
    assert kpa.scale(0.0, stable=12, panic=40, ready=2) == 4  # 4 / 2 = 2.0: panic, max(2, 4)
    assert kpa.panic_time == 0.0
    assert kpa.scale(2.0, stable=12, panic=5, ready=4) == 4  # stable wants 2: held in panic
    assert kpa.scale(60.0, stable=12, panic=5, ready=4) == 4  # not yet a stable window later
    assert kpa.scale(62.0, stable=12, panic=5, ready=4) == 2  # 0 + 60 < 62: panic is over
    assert kpa.panic_time is None
    assert kpa.max_panic_pods == 0


def test_kpa_panic_is_extended_while_over_the_threshold() -> None:
    kpa = KpaScaler(target=10)
    kpa.scale(0.0, stable=10, panic=40, ready=2)
    assert kpa.scale(50.0, stable=10, panic=80, ready=4) == 8
    assert kpa.panic_time == 50.0
    assert kpa.scale(100.0, stable=10, panic=10, ready=8) == 8
    assert kpa.scale(111.0, stable=10, panic=10, ready=8) == 4  # stable 1, floored at 8 / 2


def test_kpa_panic_threshold_is_inclusive_and_below_it_the_stable_window_rules() -> None:
    kpa = KpaScaler(target=10)
    assert kpa.scale(0.0, stable=35, panic=39, ready=2) == 4  # ceil(3.9) / 2 = 2.0: panic
    assert kpa.panic_time == 0.0
    kpa = KpaScaler(target=10)
    assert kpa.scale(0.0, stable=35, panic=30, ready=2) == 4  # 3 / 2 < 2: stable ceil(3.5)
    assert kpa.panic_time is None


def test_kubeai_scales_down_only_after_three_consecutive_lower_proposals() -> None:
    kubeai = KubeAIScaler(min_replicas=1, max_replicas=10)
    assert [kubeai.scale(5, 2) for _ in range(3)] == [5, 5, 5]
    assert kubeai.scale(5, 2) == 2
    assert kubeai.scale(2, 1) == 1  # the count is not reset by scaling down


def test_kubeai_any_proposal_that_is_not_lower_resets_the_count() -> None:
    kubeai = KubeAIScaler(min_replicas=1, max_replicas=10)
    kubeai.scale(5, 2)
    kubeai.scale(5, 2)
    assert kubeai.scale(5, 5) == 5
    assert [kubeai.scale(5, 2) for _ in range(4)] == [5, 5, 5, 2]
    assert kubeai.scale(2, 30) == 10  # bounds first; no rate limit up
