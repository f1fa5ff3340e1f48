"""Operator start-up and clean-up: kopf settings, the API client and the operator config."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import yaml

from llmserve.api.config import AutoscalerConfig, OperatorConfig
from llmserve.autoscale.sources import PrometheusSource, ScrapeSource, Source
from llmserve.handlers import autoscaler
from llmserve.handlers.context import Context, Key
from llmserve.handlers.llmservice import settle
from llmserve.handlers.queue import WorkQueue
from llmserve.kube import lease
from llmserve.kube.client import Client, login
from llmserve.kube.errors import KubeApiError, RejectedChildError

CONFIG_ENV = "LLMSERVE_CONFIG"
"""Path of the operator settings file (YAML, see OperatorConfig); defaults when unset."""


def load_config() -> OperatorConfig:
    """The operator settings from $LLMSERVE_CONFIG, or the defaults."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return OperatorConfig()
    return OperatorConfig.model_validate(yaml.safe_load(Path(path).read_text()) or {})


RENEW_SECONDS = 5


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: kopf copies every event's body to diff it for create/update handlers.

    This operator has none (watch events feed a queue: see `handlers.llmservice`), so that copy
    of each of thousands of events a minute would be pure cost; nothing is stored either.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        """An empty essence: nothing to compare."""
        del body, extra_fields
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """Nothing was stored."""
        del body
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Store nothing."""
        del body, patch, essence


async def _lead(client: Client, election: lease.Election, logger: kopf.Logger) -> bool:
    """Wait until this process holds the Lease (True), or it may never (False: it stops)."""
    where = f"{election.namespace}/{election.name}"
    while True:
        try:
            if await lease.try_acquire(client, election, datetime.now(UTC)):
                break
            logger.info("waiting for Lease %s: another operator leads", where)
        except KubeApiError as error:  # the API server is away: try again
            logger.warning("waiting for Lease %s: %s", where, error)
        except RejectedChildError as error:  # no RBAC for Leases: waiting cannot help
            logger.error(  # noqa: TRY400 - the message is the whole story
                "stopping: cannot take Lease %s: %s; grant get/create/update on leases in "
                "namespace %s (the chart does), or run with --no-leader-election",
                where, error, election.namespace,
            )  # fmt: skip
            os.kill(os.getpid(), signal.SIGTERM)  # kopf's graceful stop
            return False
        await asyncio.sleep(RENEW_SECONDS)
    logger.info("leading as %s (Lease %s)", election.identity, where)
    return True


async def _keep_leading(ctx: Context, election: lease.Election, logger: kopf.Logger) -> None:
    """Wait for the Lease, then renew it for as long as the process runs.

    Waiting happens here, not in the startup handler: kopf serves its liveness probe only once
    startup is over, and a standby that waits for hours must still look alive. Until this
    process leads, its watches fill the caches but every pass and every autoscaler round waits.

    When renewals fail for longer than the Lease lasts (the API server is away), acting stops
    until a renewal succeeds again; when another operator holds the Lease, this process stops, so
    two operators never act at once (Kubernetes restarts it, and it waits its turn).
    """
    if not await _lead(ctx.client, election, logger):
        return
    ctx.leading.set()
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


def metrics_source(config: AutoscalerConfig) -> Source:
    """The autoscaler's source of load, as the operator config names it."""
    if config.source == "prometheus" and config.prometheus_url:
        return PrometheusSource(config.prometheus_url)
    return ScrapeSource()


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Post only our own events, connect, lead, and start working the queue."""
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING  # our own events say what happens; logs stay logs
    settings.watching.server_timeout = 300
    client = Client(login(settings))  # kopf's own login: the identity of its watches
    config = load_config()
    queue: WorkQueue[Key] = WorkQueue(lambda key: settle(ctx, key), expected=(KubeApiError,))
    ctx = memo.ctx = Context(
        client=client, config=config, queue=queue, source=metrics_source(config.autoscaler)
    )
    election: lease.Election | None = memo.get("election")
    if election is not None:
        memo.leading = asyncio.create_task(_keep_leading(ctx, election, logger))
    else:
        ctx.leading.set()
    memo.working = asyncio.create_task(queue.run())
    memo.scaling = asyncio.create_task(autoscaler.run(ctx))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop renewing the Lease (it expires for the next leader) and close the connections."""
    for task in (memo.get("leading"), memo.get("working"), memo.get("scaling")):
        if task is not None:
            task.cancel()
    ctx: Context = memo.ctx
    await ctx.client.close()
    if ctx.source is not None:
        await ctx.source.aclose()
