"""Child watchers: keep what the operator has seen of its children, and queue their owner's pass."""

from __future__ import annotations

from typing import Any

import kopf

from llmserve.api.models import KIND
from llmserve.handlers.context import Context

MANAGED = {"app.kubernetes.io/managed-by": "llmserve"}


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("", "v1", "persistentvolumeclaims", labels=MANAGED)
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=MANAGED)
async def child_event(
    type: str | None,  # noqa: A002 - kopf's name for the event type
    body: kopf.Body,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A Deployment got ready, a Job finished, someone edited or deleted a child: look again.

    Async, though it never waits: kopf runs plain functions on a thread pool, and the queue and the
    caches belong to the event loop's thread.
    """
    ctx: Context = memo.ctx
    child = dict(body)
    if type == "DELETED":
        ctx.children.vanished(child)
    else:
        ctx.children.observe(child)
    for owner in body["metadata"].get("ownerReferences") or []:
        if owner.get("kind") == KIND:
            ctx.queue.add((namespace or "", owner["name"]))
