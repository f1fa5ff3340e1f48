"""Child watchers: a change to a child we made re-runs its owner's pass (status, drift repair)."""

from __future__ import annotations

from typing import Any

import kopf

from llmserve.api.models import KIND
from llmserve.handlers.context import Context
from llmserve.handlers.llmservice import run_and_write

MANAGED = {"app.kubernetes.io/managed-by": "llmserve"}


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("", "v1", "persistentvolumeclaims", labels=MANAGED)
async def child_event(
    type: str | None,  # noqa: A002 - kopf's name for the event type
    body: kopf.Body,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A Deployment got ready, a Job finished, someone edited or deleted a child: look again."""
    ctx: Context = memo.ctx
    key = (body["kind"], namespace or "", body["metadata"]["name"])
    if type == "DELETED":
        ctx.children.pop(key, None)
    else:
        ctx.children[key] = dict(body)
    owners = [o for o in body["metadata"].get("ownerReferences") or [] if o.get("kind") == KIND]
    for owner in owners:
        parent = ctx.bodies.get((namespace or "", owner["name"]))
        if parent is not None:
            await run_and_write(parent, ctx)
