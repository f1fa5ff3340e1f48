"""Operator start-up and clean-up: kopf settings, the API client and the operator config."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import yaml
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient

from llmserve.api.config import OperatorConfig
from llmserve.api.models import GROUP
from llmserve.handlers.context import Context
from llmserve.handlers.llmservice import resettle_forever
from llmserve.kube import lease

CONFIG_ENV = "LLMSERVE_CONFIG"
"""Path of the operator settings file (YAML, see OperatorConfig); defaults when unset."""


def load_config() -> OperatorConfig:
    """The operator settings from $LLMSERVE_CONFIG, or the defaults."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return OperatorConfig()
    return OperatorConfig.model_validate(yaml.safe_load(Path(path).read_text()) or {})


async def _client() -> ApiClient:
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        await kube_config.load_kube_config()
    return ApiClient()


RENEW_SECONDS = 5


async def _lead(client: ApiClient, election: lease.Election, logger: kopf.Logger) -> None:
    """Wait until this process holds the Lease; other operator processes keep waiting."""
    where = f"{election.namespace}/{election.name}"
    while not await lease.try_acquire(client, election, datetime.now(UTC)):
        logger.info("waiting for Lease %s: another operator leads", where)
        await asyncio.sleep(RENEW_SECONDS)
    logger.info("leading as %s (Lease %s)", election.identity, where)


async def _keep_leading(ctx: Context, election: lease.Election, logger: kopf.Logger) -> None:
    """Renew the Lease for as long as the process runs.

    When renewals fail for longer than the Lease lasts (the API server is away), acting stops
    until a renewal succeeds again; when another operator holds the Lease, this process stops, so
    two operators never act at once (Kubernetes restarts it, and it waits its turn).
    """
    last = datetime.now(UTC)
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        now = datetime.now(UTC)
        try:
            held = await lease.try_acquire(ctx.client, election, now)
        except Exception as error:  # noqa: BLE001 - a renewal loop: judge by how long it failed
            if (now - last).total_seconds() > election.duration_seconds and ctx.leading.is_set():
                logger.warning("pausing: cannot renew the Lease: %s", error)
                ctx.leading.clear()
            continue
        if not held:
            logger.error("stopping: another operator holds the Lease")
            os.kill(os.getpid(), signal.SIGTERM)  # kopf's graceful stop
            return
        last = now
        if not ctx.leading.is_set():
            logger.info("resuming: the Lease is renewed")
            ctx.leading.set()


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Keep kopf's bookkeeping under our own prefix, post warnings as events, connect, lead."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING  # our own events say what happens; logs stay logs
    settings.watching.server_timeout = 300
    client = await _client()
    ctx = memo.ctx = Context(client=client, config=load_config())
    election: lease.Election | None = memo.get("election")
    if election is not None:
        await _lead(client, election, logger)
        memo.leading = asyncio.create_task(_keep_leading(ctx, election, logger))
    ctx.leading.set()
    memo.resettling = asyncio.create_task(resettle_forever(ctx))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop renewing the Lease (it expires for the next leader) and close the connections."""
    for task in (memo.get("leading"), memo.get("resettling")):
        if task is not None:
            task.cancel()
    ctx: Context = memo.ctx
    await ctx.client.close()
