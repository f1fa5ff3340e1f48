"""The autoscaler's loop and its pod watch.

Every `autoscaler.intervalSeconds` each LLMService with `spec.autoscaling.enabled` gets a decision
(`reconcile.autoscale`): a change of replicas is written at once through the scale subresource
with an event; a new reason or policy state queues a pass, which writes it into the status (the
pass is the one status writer). LLMServices with autoscaling off but `maxReplicas` set get the
same decision computed and exported as `llmserve_autoscaler_desired_replicas`, and nothing written.

Engine pods are watched (not listed each round): their readiness and IP are what the metrics
source needs, and a watch costs the API server nothing per round. Labels alone do not make a pod
one of an LLMService's: anyone who may create pods in the namespace can copy them, and would then
feed the autoscaler load it reads as real (review M5). Only pods that the Deployment's ReplicaSets
control are kept (`owned`).

The loop runs only while this process leads: `lifecycle` starts it on taking the Lease and cancels
it, with any round in flight, on stepping down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

import kopf
from prometheus_client import Gauge

from llmserve.api import InvalidSpec, parse_llmservice
from llmserve.api.models import LLMService
from llmserve.autoscale.policy import Decision
from llmserve.handlers.context import Context, Key
from llmserve.handlers.llmservice import post
from llmserve.kube.errors import KubeApiError
from llmserve.reconcile import autoscale
from llmserve.reconcile.state import Scaling
from llmserve.render import meta

log = logging.getLogger(__name__)

ENGINE_PODS: Final = {
    "app.kubernetes.io/managed-by": "llmserve",
    "app.kubernetes.io/component": meta.COMPONENT_SERVER,
}
INSTANCE: Final = "app.kubernetes.io/instance"
TEMPLATE_HASH: Final = "pod-template-hash"
"""The label the Deployment controller gives its pods; its ReplicaSets' names end with it."""

DESIRED: Final = Gauge(
    "llmserve_autoscaler_desired_replicas",
    "Replicas the autoscaler's policy wants for an LLMService (also when autoscaling is off)",
    ["namespace", "llmservice"],
)

_REMEMBERED: Final = (
    "reason",
    "window",
    "observedSince",
    "highSince",
    "highFloor",
    "lastScaleDown",
)
"""Parts of status.autoscaler whose change is worth a status write: what a restarted operator
needs (at most one write per window bucket, a tenth of the delay); the load and the message
change every round and ride along with the next write."""


def _pod(body: dict[str, Any]) -> autoscale.Pod:
    status = body.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    deleting = body["metadata"].get("deletionTimestamp") is not None
    return autoscale.Pod(body["metadata"]["name"], status.get("podIP"), ready and not deleting)


def owned(body: Mapping[str, Any], deployment: str) -> bool:
    """Whether a ReplicaSet of the Deployment `deployment` controls the pod.

    The Deployment controller names each ReplicaSet `<deployment>-<pod-template-hash>` and gives
    its pods that hash as a label: the pod's controller reference must be that ReplicaSet. Read
    from the pod alone, so it costs no request and no RBAC. Checking the reference's uid against
    the ReplicaSet itself would need `get` on ReplicaSets and would add little: whoever creates a
    pod writes its ownerReferences, and a made-up uid is caught by the garbage collector (it
    deletes a pod whose owner does not exist) while the real one makes the pod the ReplicaSet's
    own, which the ReplicaSet controller then counts and trims like any other.
    """
    meta = body["metadata"]
    template_hash = (meta.get("labels") or {}).get(TEMPLATE_HASH)
    controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    return bool(template_hash) and [
        (r.get("apiVersion"), r.get("kind"), r.get("name")) for r in controllers
    ] == [("apps/v1", "ReplicaSet", f"{deployment}-{template_hash}")]


@kopf.on.event("", "v1", "pods", labels=ENGINE_PODS)
async def pod_event(
    type: str | None,  # noqa: A002 - kopf's name for the event type
    body: kopf.Body,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Keep each engine pod's readiness and address. Async: the caches belong to the loop."""
    ctx: Context = memo.ctx
    name = body["metadata"]["name"]
    owner = (body["metadata"].get("labels") or {}).get(INSTANCE)
    if not owner:
        return
    key = (namespace or "", owner)
    # The Deployment is named like the LLMService (`render.meta.deployment_name`).
    mine = type != "DELETED" and owned(body, owner)
    if type != "DELETED" and not mine:
        log.info(
            "pod %s/%s has the labels of LLMService %s but no ReplicaSet of Deployment %s "
            "controls it: the autoscaler does not count it (change its labels, or delete it if "
            "nobody should run it)",
            namespace, name, owner, owner,
        )  # fmt: skip
    pods = ctx.pods.setdefault(key, {})
    if mine:
        pods[name] = _pod(dict(body))
    else:  # deleted, or no longer (or never) the Deployment's
        pods.pop(name, None)
        if not pods:
            del ctx.pods[key]


def _watched(body: dict[str, Any]) -> LLMService | None:
    """The LLMService if the autoscaler has something to do for it."""
    autoscaling = (body.get("spec") or {}).get("autoscaling") or {}
    if not autoscaling.get("enabled") and autoscaling.get("maxReplicas") is None:
        return None
    if body["metadata"].get("deletionTimestamp"):
        return None
    try:
        return parse_llmservice(body, admitted=True)
    except InvalidSpec:
        return None  # the pass reports it; nothing to scale


def _newly_blind(decision: Decision, previous: Decision | None, pods: list[autoscale.Pod]) -> bool:
    """No load to read while pods are ready to be read: a Warning, once per spell."""
    was_blind = previous is not None and previous.reason == "NoMetrics"
    return decision.reason == "NoMetrics" and not was_blind and any(p.ready for p in pods)


async def round_one(ctx: Context, key: Key, service: LLMService, now: float) -> None:
    """Decide for one LLMService; write replicas and queue a status write when that is news."""
    assert ctx.source is not None  # noqa: S101 - set at startup before the loop starts
    status = ctx.statuses.get(key) or {}
    previous = ctx.decisions.get(key)
    state = previous.state if previous else autoscale.state_of(status)
    pods = list(ctx.pods.get(key, {}).values())
    port = ctx.config.autoscaler.metrics_port
    decision = await autoscale.decide(service, state, pods, ctx.source, port, now)
    DESIRED.labels(*key).set(decision.replicas)
    if not service.spec.autoscaling.enabled:
        ctx.decisions[key] = decision
        return  # advice only: the scale subresource belongs to the user, an HPA or KEDA
    body = ctx.bodies[key]
    if decision.replicas != service.spec.replicas:
        # Raises when the write fails: the decision is then not remembered, and the next round
        # decides again from the state before it (a failed removal must not start the step wait).
        await autoscale.write_replicas(ctx.client, service, decision.replicas)
        # The watch brings the new spec soon; until then the next round must not write again.
        ctx.bodies[key] = {**body, "spec": {**body["spec"], "replicas": decision.replicas}}
        log.info("%s/%s: %s", *key, decision.message)
        await post(ctx, body, "Normal", decision.reason, decision.message)
    elif _newly_blind(decision, previous, pods):
        await post(ctx, body, "Warning", "NoMetrics", decision.message)
    ctx.decisions[key] = decision
    kept = ctx.scaling.get(key) or Scaling.kept(status)
    block = autoscale.status_of(decision, kept.autoscaler if kept else {}, now)
    scaling = Scaling(decision.replicas, decision.reason, decision.message, block)
    ctx.scaling[key] = scaling
    news = (
        kept is None
        or kept.replicas != scaling.replicas
        or any(kept.autoscaler.get(k) != block.get(k) for k in _REMEMBERED)
    )
    if news:
        ctx.queue.add(key)


async def run(ctx: Context) -> None:
    """Decide for every autoscaled LLMService, every interval, until cancelled (stepping down)."""
    interval = ctx.config.autoscaler.interval_seconds
    while True:
        await asyncio.sleep(interval)
        now = time.time()
        due = [(key, s) for key, body in list(ctx.bodies.items())
               if (s := _watched(body)) is not None]  # fmt: skip
        results = await asyncio.gather(
            *(round_one(ctx, key, service, now) for key, service in due), return_exceptions=True
        )
        for (key, _), result in zip(due, results, strict=True):
            if isinstance(result, KubeApiError):
                log.warning("%s/%s: cannot scale: %s", *key, result)
            elif isinstance(result, BaseException):
                log.error("%s/%s: autoscaler round failed", *key, exc_info=result)
