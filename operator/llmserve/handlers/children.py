"""Child watchers: a change to a child we made re-runs its owner's pass (status, drift repair)."""

from __future__ import annotations

from typing import Any

import kopf

from llmserve.api.models import KIND
from llmserve.handlers.context import Context
from llmserve.handlers.llmservice import run
from llmserve.kube import objects

MANAGED = {"app.kubernetes.io/managed-by": "llmserve"}


async def _owner_changed(
    body: kopf.Body,
    namespace: str,
    llmservices: kopf.Index[tuple[str | None, str], kopf.Body],
    ctx: Context,
) -> None:
    owners = [o for o in body["metadata"].get("ownerReferences") or [] if o.get("kind") == KIND]
    for owner in owners:
        for parent in llmservices.get((namespace, owner["name"]), []):
            outcome = await run(parent, ctx)
            current = parent.get("status") or {}
            if any(current.get(key) != value for key, value in outcome.status.items()):
                await objects.patch_status(ctx.client, namespace, owner["name"], outcome.status)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
# kopf hands indices to handlers as extra keyword arguments, which its handler protocol cannot name.
@kopf.on.event("", "v1", "persistentvolumeclaims", labels=MANAGED)  # type: ignore[arg-type]
async def child_event(
    body: kopf.Body,
    namespace: str | None,
    llmservices: kopf.Index[tuple[str | None, str], kopf.Body],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A Deployment got ready, a Job finished, someone edited or deleted a child: look again."""
    if namespace:  # every child we make is namespaced
        await _owner_changed(body, namespace, llmservices, memo.ctx)
