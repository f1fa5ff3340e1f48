"""The autoscaler's writer side: settings from the spec, state through status, phase, condition."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tests.support import service

from llmserve.autoscale import policy
from llmserve.autoscale.sources import SourceError, Target
from llmserve.reconcile import autoscale, state

AUTOSCALED = {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}}
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()


class Fixed:
    """A source that answers with given loads, or fails."""

    def __init__(self, loads: dict[str, policy.PodLoad] | None) -> None:
        self.loads_ = loads
        self.asked: list[Target] = []

    async def loads(self, targets: Sequence[Target]) -> dict[str, policy.PodLoad]:
        self.asked = list(targets)
        if self.loads_ is None:
            raise SourceError("Prometheus at http://prom:9090 did not answer")
        return self.loads_

    async def aclose(self) -> None:
        return None


def test_settings_default_the_target_from_the_engine_batch() -> None:
    got = autoscale.settings_of(service(AUTOSCALED))
    assert (got.min_replicas, got.max_replicas, got.target, got.scale_down_delay) == (
        1,
        4,
        128,
        300,
    )
    tgi = autoscale.settings_of(service({**AUTOSCALED, "engine": "tgi"}))
    assert tgi.target == 64
    own = {"autoscaling": {**AUTOSCALED["autoscaling"], "targetQueuePerReplica": 8,
                           "gpuUtilizationGuard": 90}}  # fmt: skip
    assert (
        autoscale.settings_of(service(own)).target,
        autoscale.settings_of(service(own)).gpu_guard,
    ) == (8, 90)


def test_state_round_trips_through_status() -> None:
    kept = policy.State(
        window=((NOW - 60, 2), (NOW - 30, 1)), since=NOW - 120, last_scale_down=NOW - 600
    )
    decision = policy.Decision(3, "ScaleDownPending", "load fits 2", kept, 10.0)
    block = autoscale.status_of(decision, {}, NOW)
    assert block["observedSince"] == "2026-11-23T11:58:00Z"
    assert block["window"][0] == {"start": "2026-11-23T11:59:00Z", "replicas": 2}
    assert autoscale.state_of({"autoscaler": block}) == kept
    assert block["lastScaleTime"] is None
    scaled = autoscale.status_of(policy.Decision(4, "ScaledUp", "up", policy.State()), block, NOW)
    assert scaled["lastScaleTime"] == "2026-11-23T12:00:00Z"
    assert (scaled["window"], scaled["observedSince"]) == ([], None)


def test_a_hand_edited_time_starts_the_streak_over() -> None:
    assert autoscale.state_of({"autoscaler": {"observedSince": "yesterday"}}).since is None


def test_only_ready_pods_with_an_address_are_read() -> None:
    pods = [autoscale.Pod("a", "127.1.0.5", ready=True), autoscale.Pod("b", None, ready=True),
            autoscale.Pod("c", "127.1.0.6", ready=False)]  # fmt: skip
    got = autoscale.targets(service(AUTOSCALED), pods, 8080)
    assert [(t.pod, t.ip, t.port, t.engine) for t in got] == [("a", "127.1.0.5", 8080, "vllm")]


def test_a_failing_source_holds_and_says_why() -> None:
    pods = [autoscale.Pod("a", "127.1.0.5", ready=True)]
    svc = service({**AUTOSCALED, "replicas": 2})
    got = asyncio.run(autoscale.decide(svc, policy.State(), pods, Fixed(None), 8080, NOW))
    assert (got.replicas, got.reason) == (2, "NoMetrics")
    assert "http://prom:9090" in got.message


def test_loads_from_the_source_drive_the_policy() -> None:
    pods = [autoscale.Pod("a", "127.1.0.5", ready=True)]
    loads = {"a": policy.PodLoad("a", running=200, waiting=100)}
    got = asyncio.run(
        autoscale.decide(service(AUTOSCALED), policy.State(), pods, Fixed(loads), 8080, NOW)
    )
    assert (got.replicas, got.reason) == (3, "ScaledUp")


def scaling(reason: str = "ScaledUp") -> state.Scaling:
    return state.Scaling(3, reason, "load 300 needs 3", {"reason": reason})


def test_a_kept_decision_is_read_back_from_status() -> None:
    assert state.Scaling.kept({}) is None
    kept = state.Scaling.kept(
        {"desiredReplicas": 3, "autoscaler": {"reason": "Steady", "message": "m"}}
    )
    assert kept is not None
    assert (kept.replicas, kept.reason, kept.message) == (3, "Steady", "m")
    assert scaling("NoMetrics").blind
    assert not scaling().blind


def status_with(scaling_: state.Scaling | None, ready: int, replicas: int = 3) -> dict[str, Any]:
    svc = service({**AUTOSCALED, "replicas": replicas})
    cached = state.Cache("succeeded", "Downloaded", "in the cache")
    deployment = {"status": {"replicas": replicas, "readyReplicas": ready}}
    observation = state.Observation(
        svc, [], cached, deployment, [], "img", "a=b", "http://e/v1", scaling=scaling_
    )
    return state.status(observation, datetime.fromtimestamp(NOW, UTC))


def test_status_shows_the_decision_and_a_scaling_condition() -> None:
    got = status_with(scaling(), ready=3)
    assert (got["desiredReplicas"], got["autoscaler"]) == (3, {"reason": "ScaledUp"})
    last = got["conditions"][-1]
    assert (last["type"], last["status"], last["reason"]) == ("Scaling", "True", "ScaledUp")
    blind = status_with(scaling("NoMetrics"), ready=3)["conditions"][-1]
    assert (blind["status"], blind["reason"]) == ("False", "NoMetrics")


def test_replicas_the_autoscaler_added_are_scaling_not_degraded() -> None:
    assert status_with(scaling(), ready=1)["phase"] == "Scaling"
    assert status_with(None, ready=1)["phase"] == "Degraded"
    assert status_with(scaling(), ready=0)["phase"] == "Starting"


def test_without_autoscaling_the_fields_are_cleared() -> None:
    got = status_with(None, ready=3)
    assert (got["desiredReplicas"], got["autoscaler"]) == (None, None)
    assert [c["type"] for c in got["conditions"]] == ["Valid", "ModelCached", "Available", "Secure"]
