"""Handlers of LLMService itself: every change, every resumption, and a resettle loop.

The resettle loop is one task for the whole operator rather than a kopf timer per object, because
kopf puts a finalizer on every object that has a timer, and a finalizer would let a stopped
operator block the deletion of LLMServices. Nothing here needs one: children go by garbage
collection.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from llmserve import reconcile
from llmserve.api.models import GROUP, PLURAL, VERSION
from llmserve.handlers.context import Context
from llmserve.kube import objects
from llmserve.kube.errors import RejectedChild

RESETTLE_SECONDS = 20
"""How often an LLMService that is not Ready is looked at again (download back-off, slow starts)."""

log = logging.getLogger(__name__)


async def run(body: kopf.Body, ctx: Context) -> reconcile.Outcome:
    """One reconcile pass under the object's lock; post its events."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    await ctx.leading.wait()  # while the Lease cannot be renewed, hold every pass back
    async with ctx.locks[key]:
        try:
            known = reconcile.Known(ctx.phases.get(key), ctx.children)
            outcome = await reconcile.reconcile(
                dict(body), ctx.client, ctx.config, datetime.now(UTC), known
            )
        except RejectedChild as error:
            kopf.event(body, type="Warning", reason="ChildRejected", message=str(error))
            raise
        ctx.phases[key] = outcome.status["phase"]
    for kind, reason, message in outcome.events:
        kopf.event(body, type=kind, reason=reason, message=message)
    return outcome


async def run_and_write(body: kopf.Body, ctx: Context) -> None:
    """A pass outside kopf's own handlers (child events, resettling): write the status if new."""
    outcome = await run(body, ctx)
    current = body.get("status") or {}
    if any(current.get(key) != value for key, value in outcome.status.items()):
        meta = body["metadata"]
        await objects.patch_status(ctx.client, meta["namespace"], meta["name"], outcome.status)


@kopf.on.event(GROUP, VERSION, PLURAL)
def track(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """Keep the latest body of every LLMService, for child events and the resettle loop."""
    ctx: Context = memo.ctx
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if type == "DELETED":
        ctx.forget(key)
    else:
        ctx.bodies[key] = body


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
async def changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile on create, on spec change (incl. the scale subresource) and on operator start."""
    outcome = await run(body, memo.ctx)
    patch.status.update(outcome.status)


def settling(status: dict[str, Any]) -> bool:
    """Not Ready yet, and not refused: worth another look."""
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    valid = next((c for c in conditions if c.get("type") == "Valid"), {})
    return status.get("phase") != "Ready" and valid.get("status") != "False"


async def resettle_forever(ctx: Context) -> None:
    """Look again, every RESETTLE_SECONDS, at each LLMService that is not Ready yet.

    For a download retry that is due, a start that took long, an event that was missed.
    """
    while True:
        await asyncio.sleep(RESETTLE_SECONDS)
        for body in list(ctx.bodies.values()):
            if not settling(body.get("status") or {}):
                continue
            try:
                await run_and_write(body, ctx)
            except Exception:  # a background loop: log, and look again next round
                log.exception("resettling %s failed", body["metadata"]["name"])
