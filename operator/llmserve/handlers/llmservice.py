"""Handlers of LLMService itself: every change, every resumption, and a timer while it settles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from llmserve import reconcile
from llmserve.api.models import GROUP, PLURAL, VERSION
from llmserve.handlers.context import Context
from llmserve.kube.errors import RejectedChild

RESETTLE_SECONDS = 20
"""How often an LLMService that is not Ready is looked at again (download back-off, slow starts)."""


@kopf.index(GROUP, VERSION, PLURAL)
def llmservices(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], kopf.Body]:
    """Bodies by (namespace, name), so child events reach their owner without a GET."""
    return {(namespace, name): body}


async def run(body: kopf.Body, ctx: Context) -> reconcile.Outcome:
    """One reconcile pass under the object's lock; post its events."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    await ctx.leading.wait()  # while the Lease cannot be renewed, hold every pass back
    async with ctx.locks[key]:
        try:
            outcome = await reconcile.reconcile(
                dict(body), ctx.client, ctx.config, datetime.now(UTC), ctx.phases.get(key)
            )
        except RejectedChild as error:
            kopf.event(body, type="Warning", reason="ChildRejected", message=str(error))
            raise
        ctx.phases[key] = outcome.status["phase"]
    for kind, reason, message in outcome.events:
        kopf.event(body, type=kind, reason=reason, message=message)
    return outcome


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
async def changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile on create, on spec change (incl. the scale subresource) and on operator start."""
    outcome = await run(body, memo.ctx)
    patch.status.update(outcome.status)


def _settling(status: kopf.Status, **_: Any) -> bool:
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    valid = next((c for c in conditions if c.get("type") == "Valid"), {})
    return status.get("phase") != "Ready" and valid.get("status") != "False"


@kopf.timer(
    GROUP, VERSION, PLURAL, interval=RESETTLE_SECONDS, idle=RESETTLE_SECONDS, when=_settling
)
async def settle(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Look again at an LLMService that is not Ready yet: a due download retry, a missed event."""
    outcome = await run(body, memo.ctx)
    patch.status.update(outcome.status)
