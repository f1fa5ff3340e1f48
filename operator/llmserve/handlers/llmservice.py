"""LLMService watch events queue passes; a pass renders, applies, writes the status, posts events.

Every LLMService change (create, spec edit, `kubectl scale`, labels) and the initial listing at
start-up queue its key; status-only changes, mostly our own writes, do not. There are no kopf
create/update handlers: they would store kopf's bookkeeping in annotations (one more write per
change) and run once per event, where the queue runs once per burst of events. Nothing here needs a
finalizer either: children go by garbage collection, so a stopped operator never blocks deletion.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

import kopf

from llmserve import reconcile
from llmserve.api.models import GROUP, PLURAL, VERSION
from llmserve.handlers.context import Context, Key
from llmserve.kube import objects
from llmserve.kube.errors import KubeApiError
from llmserve.reconcile.seen import trim

RESETTLE_SECONDS: Final = 20
"""How often an LLMService that is not Ready is looked at again (a slow start, a missed event)."""

log = logging.getLogger(__name__)


def _settling(status: dict[str, Any]) -> bool:
    """Not Ready yet, and not refused: worth another look."""
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    valid = next((c for c in conditions if c.get("type") == "Valid"), {})
    return status.get("phase") != "Ready" and valid.get("status") != "False"


_MEANINGFUL: Final = ("generation", "labels", "annotations", "deletionTimestamp", "uid")


def needs_pass(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a watch event changes what a pass would do: anything but the status."""
    if old is None or old.get("spec") != new.get("spec"):
        return True
    before, after = old["metadata"], new["metadata"]
    return any(before.get(k) != after.get(k) for k in _MEANINGFUL)


async def post(ctx: Context, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
    """A Kubernetes Event about the LLMService; a lost event must not fail or repeat the pass."""
    try:
        await objects.post_event(
            ctx.client, body, kind=kind, reason=reason, message=message, now=datetime.now(UTC)
        )
    except KubeApiError as error:
        log.warning("%s/%s: event %s not posted: %s", *key_of_body(body), reason, error)


def key_of_body(body: dict[str, Any]) -> Key:
    """An LLMService's key in the queue and the caches."""
    return body["metadata"]["namespace"], body["metadata"]["name"]


async def settle(ctx: Context, key: Key) -> float | None:
    """One pass over one LLMService; the seconds until it should be looked at again, if ever."""
    body = ctx.bodies.get(key)
    if body is None:
        return None  # deleted while queued
    await ctx.leading.wait()  # while the Lease cannot be renewed, hold every pass back
    # The status as last written, not as the last event showed it: conditions keep their
    # transition times, and a status is written once, not again for each stale event.
    body = {**body, "status": ctx.statuses.get(key) or body.get("status") or {}}
    known = reconcile.Known(ctx.phases.get(key), ctx.children, ctx.scaling.get(key))
    outcome = await reconcile.reconcile(body, ctx.client, ctx.config, datetime.now(UTC), known)
    current = ctx.statuses.get(key) or {}
    if any(current.get(k) != v for k, v in outcome.status.items()):
        await objects.patch_status(ctx.client, *key, outcome.status)
        ctx.statuses[key] = {**current, **outcome.status}
        log.info("%s/%s: status written, phase %s", *key, outcome.status["phase"])
    ctx.phases[key] = outcome.status["phase"]
    for kind, reason, message in outcome.events:
        await post(ctx, body, kind, reason, message)
    again = [outcome.retry_after] if outcome.retry_after is not None else []
    if _settling(outcome.status):
        again.append(RESETTLE_SECONDS)
    return min(again, default=None)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def llmservice_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """Keep the latest body; queue a pass when more than the status changed.

    Async for the same reason as `children.child_event`.
    """
    ctx: Context = memo.ctx
    new = trim(dict(body))
    key = key_of_body(new)
    if type == "DELETED":
        ctx.forget(key)
        return
    old = ctx.bodies.get(key)
    ctx.bodies[key] = new
    # Our own writes are newer than what an event brings (it can predate them): the watch only
    # tells a process that has written nothing yet, such as one that just started.
    ctx.statuses.setdefault(key, new.get("status") or {})
    if needs_pass(old, new):
        ctx.queue.add(key)
