"""The one writer of replicas: read load, decide with the policy, write the scale subresource.

`spec.replicas` of an LLMService with `spec.autoscaling.enabled` changes only here, and only
through its scale subresource (what `kubectl scale`, HPA and KEDA use), so the usual pass renders
the Deployment from it like any other spec change. What was decided, and what the policy must
remember, goes into `status.autoscaler` through the pass's status write (one status writer): an
operator that restarts reads it back and resumes the same low-load streak, so a restart never
removes a replica that the delay would have kept.

When autoscaling is off, nothing is written: the scale subresource is the user's, or an HPA's or
KEDA's. The decision is still computed for services that set `maxReplicas` and exported as the
`llmserve_autoscaler_desired_replicas` metric, for those who drive KEDA with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from llmserve.api.engines import FACTS
from llmserve.api.models import LLMService
from llmserve.autoscale import policy
from llmserve.autoscale.sources import Source, SourceError, Target
from llmserve.kube import objects
from llmserve.kube.client import Client
from llmserve.render import workload

TARGET_SHARE: Final = 0.5
"""Default target load per replica, as a share of the engine's default batch size.

Half the batch keeps a replica below the knee of its step time (AUTOSCALING.md §8.2: an 8B model
on an A100 decodes 128 sequences at ~25 ms a token, 256 at ~45 ms) with room for a burst while a
new replica loads."""

ACTING: Final = frozenset({"ScaledUp", "ScaledDown", "BelowMinimum", "AboveMaximum"})
"""Reasons whose decision changes spec.replicas."""


@dataclass(frozen=True)
class Pod:
    """What the autoscaler needs of one engine pod (from the pod watch)."""

    name: str
    ip: str | None
    ready: bool


def default_target(service: LLMService) -> int:
    """Load one replica should carry when `targetQueuePerReplica` is unset."""
    return max(1, math.floor(FACTS[service.spec.engine].batch_size * TARGET_SHARE))


def settings_of(service: LLMService) -> policy.Settings:
    """The policy's settings from `spec.autoscaling`."""
    spec = service.spec.autoscaling
    return policy.Settings(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas or spec.min_replicas,
        target=spec.target_queue_per_replica or default_target(service),
        scale_down_delay=spec.scale_down_delay_seconds,
        scale_up_stabilization=spec.scale_up_stabilization_seconds or 0,
        gpu_guard=spec.gpu_utilization_guard,
        pod_capacity=workload.max_concurrency(service) + service.spec.proxy.max_queue,
    )


def _seconds(value: Any) -> float | None:  # noqa: ANN401 - a JSON value from status
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None  # hand-edited status: start the streak over rather than fail


def _stamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_of(status: dict[str, Any]) -> policy.State:
    """The policy's memory as the last status kept it."""
    kept = status.get("autoscaler") or {}
    window = [(_seconds(b.get("start")), b.get("replicas")) for b in kept.get("window") or []]
    return policy.State(
        window=tuple((t, int(r)) for t, r in window if t is not None and isinstance(r, int)),
        since=_seconds(kept.get("observedSince")),
        high_since=_seconds(kept.get("highSince")),
        high_floor=int(kept.get("highFloor") or 0),
        last_scale_down=_seconds(kept.get("lastScaleDown")),
    )


def status_of(decision: policy.Decision, previous: dict[str, Any], now: float) -> dict[str, Any]:
    """`status.autoscaler` for a decision (`previous`: the block as last written)."""
    state = decision.state
    changed = decision.reason in ACTING
    return {
        "reason": decision.reason,
        "message": decision.message,
        "load": decision.load,
        "decidedAt": _stamp(now),
        "lastScaleTime": _stamp(now) if changed else previous.get("lastScaleTime"),
        "window": [{"start": _stamp(t), "replicas": r} for t, r in state.window],
        "observedSince": _stamp(state.since),
        "highSince": _stamp(state.high_since),
        "highFloor": state.high_floor if state.high_since is not None else None,
        "lastScaleDown": _stamp(state.last_scale_down),
    }


def targets(service: LLMService, pods: Sequence[Pod], port: int) -> list[Target]:
    """The ready pods with an address, as the metrics source reads them."""
    namespace = service.metadata.namespace or ""
    return [
        Target(namespace=namespace, pod=p.name, ip=p.ip, port=port, engine=service.spec.engine)
        for p in pods
        if p.ready and p.ip
    ]


async def decide(  # noqa: PLR0913, PLR0917 - what one decision reads
    service: LLMService,
    state: policy.State,
    pods: Sequence[Pod],
    source: Source,
    port: int,
    now: float,
) -> policy.Decision:
    """The policy's decision on this LLMService's current load."""
    settings = settings_of(service)
    ready = sum(1 for p in pods if p.ready)
    current = service.spec.replicas
    try:
        loads = await source.loads(targets(service, pods, port))
    except SourceError as error:
        # Unknown load is not zero load: hold, and say where the numbers should have come from.
        bounded = max(settings.min_replicas, min(settings.max_replicas, current))
        return policy.Decision(bounded, "NoMetrics", f"{error}; holding {bounded}", state)
    observation = policy.Observation(
        now=now, replicas=current, ready=ready, loads=tuple(loads.values())
    )
    return policy.decide(settings, state, observation)


async def write_replicas(client: Client, service: LLMService, replicas: int) -> None:
    """Change spec.replicas through the scale subresource, as any autoscaler does."""
    await objects.scale(client, service.metadata.namespace or "", service.name, replicas)
