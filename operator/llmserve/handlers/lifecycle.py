"""Operator start-up and clean-up: kopf settings, the API client, the operator config, leadership.

What only the Lease holder runs (the passes and the autoscaler) starts on taking the Lease and is
cancelled on losing it (`_keep_leading`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterable
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

log = logging.getLogger(__name__)

CONFIG_ENV = "LLMSERVE_CONFIG"
"""Path of the operator settings file (YAML, see OperatorConfig); defaults when unset."""


def load_config() -> OperatorConfig:
    """The operator settings from $LLMSERVE_CONFIG, or the defaults."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return OperatorConfig()
    return OperatorConfig.model_validate(yaml.safe_load(Path(path).read_text()) or {})


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


async def _lead(elector: lease.Elector, logger: kopf.Logger) -> float | None:
    """Wait until this process holds the Lease.

    Returns when the winning attempt began (monotonic seconds), or None when this process never
    may lead (it stops).
    """
    election = elector.election
    where = f"{election.namespace}/{election.name}"
    holder: str | None = None
    while True:
        began = time.monotonic()
        try:
            async with asyncio.timeout(election.renew_deadline_seconds):
                won = await elector.try_acquire()
            if won:
                logger.info("leading as %s (Lease %s)", election.identity, where)
                return began
            if elector.holder != holder:  # once per holder, not every retry
                holder = elector.holder
                logger.info("waiting for Lease %s: %s leads", where, holder)
        except (KubeApiError, TimeoutError) as error:  # the API server is away: try again
            detail = str(error) or f"no answer in {election.renew_deadline_seconds:g} s"
            logger.warning("waiting for Lease %s: %s", where, detail)
        except RejectedChildError as error:  # no RBAC for Leases: waiting cannot help
            logger.error(  # noqa: TRY400 - the message is the whole story
                "stopping: cannot take Lease %s: %s; grant get/create/update on leases in "
                "namespace %s (the chart does), or run with --no-leader-election",
                where, error, election.namespace,
            )  # fmt: skip
            os.kill(os.getpid(), signal.SIGTERM)  # kopf's graceful stop
            return None
        await asyncio.sleep(election.retry_seconds)


async def _renew(elector: lease.Elector, began: float, logger: kopf.Logger) -> str:
    """Renew the Lease until this process must stop acting; why it must.

    `began`: when the last successful renewal (or the acquisition) began, on the monotonic clock.
    The deadline runs from there, and every attempt gets only what is left of it, so a call that
    hangs ends at the deadline; the time is read again after each failed call.
    """
    election = elector.election
    where = f"{election.namespace}/{election.name}"
    deadline = began + election.renew_deadline_seconds
    failure = "no renewal was attempted"
    while True:
        await asyncio.sleep(max(0.0, min(election.retry_seconds, deadline - time.monotonic())))
        began = time.monotonic()
        if began >= deadline:
            return f"Lease {where} not renewed in {election.renew_deadline_seconds:g} s ({failure})"
        try:
            async with asyncio.timeout(deadline - began):  # what is left, not the client's 30 s
                held = await elector.try_acquire()
        except TimeoutError:
            return (
                f"Lease {where} not renewed in {election.renew_deadline_seconds:g} s (the API "
                "server did not answer in time)"
            )
        except Exception as error:  # noqa: BLE001 - whatever failed, the deadline decides
            failure = str(error) or type(error).__name__
            logger.warning("cannot renew Lease %s, trying again: %s", where, failure)
            continue
        if not held:
            return f"{elector.holder} holds Lease {where} now"
        deadline = began + election.renew_deadline_seconds


def _start_acting(ctx: Context) -> list[asyncio.Task[None]]:
    """Set `leading` and start what only the leader does: the passes and the autoscaler."""
    ctx.leading.set()
    tasks = [
        asyncio.create_task(ctx.queue.run(), name="the passes"),
        asyncio.create_task(autoscaler.run(ctx), name="the autoscaler"),
    ]
    for task in tasks:
        task.add_done_callback(_crashed)
    return tasks


def _crashed(task: asyncio.Task[None]) -> None:
    """Stop the process when one of its loops failed.

    They run until cancelled, so a failure is a bug; an operator that holds the Lease while half
    of it is dead serves nobody, and one whose election died stays a standby for good: better
    stopped, and restarted by Kubernetes.
    """
    if task.cancelled() or task.exception() is None:
        return
    log.critical("stopping: %s failed", task.get_name(), exc_info=task.exception())
    os.kill(os.getpid(), signal.SIGTERM)  # kopf's graceful stop


async def _stop_acting(ctx: Context, tasks: list[asyncio.Task[None]]) -> None:
    """Clear `leading` and cancel the passes and autoscaler rounds in flight, at once."""
    ctx.leading.clear()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _keep_leading(ctx: Context, election: lease.Election, logger: kopf.Logger) -> None:
    """Wait for the Lease, act while it is renewed in time, stop acting at once when it is not.

    Waiting happens here, not in the startup handler: kopf serves its liveness probe only once
    startup is over, and a standby that waits for hours must still look alive. Until this
    process leads, its watches fill the caches and queue keys, but no pass or round runs.

    Stepping down cancels the passes and rounds in flight and waits for the Lease again in the
    same process, rather than exiting as client-go's `OnStoppedLeading` usually does. Both stop
    acting at the same moment (the cancellation is immediate; a request already sent may land
    either way, which the margin below the Lease's duration is for), but exiting adds no safety
    and costs: kopf's graceful stop is not immediate (the cancellation would be needed anyway),
    and an API server away for longer than the deadline would put every operator replica into
    CrashLoopBackOff, whose back-off (up to 5 minutes) would keep it from leading once the API
    server is back. A pass cancelled halfway is safe to run again (every pass is idempotent),
    and the queue runs it again on the next lead.
    """
    elector = lease.Elector(ctx.client, election)
    while True:
        began = await _lead(elector, logger)
        if began is None:
            return
        acting = _start_acting(ctx)
        try:
            why = await _renew(elector, began, logger)
        finally:
            await _stop_acting(ctx, acting)
        logger.warning(
            "stopped acting: %s; the passes and autoscaler rounds in flight were cancelled, "
            "and they resume once this process holds the Lease again",
            why,
        )


def metrics_source(config: AutoscalerConfig) -> Source:
    """The autoscaler's source of load, as the operator config names it."""
    if config.source == "prometheus" and config.prometheus_url:
        return PrometheusSource(config.prometheus_url, max_bytes=config.max_page_bytes)
    return ScrapeSource(max_bytes=config.max_page_bytes)


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
        leadership = asyncio.create_task(_keep_leading(ctx, election, logger), name="leadership")
        leadership.add_done_callback(_crashed)
        memo.tasks = [leadership]
    else:
        memo.tasks = _start_acting(ctx)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop acting and renewing the Lease (it expires for the next leader); close connections."""
    tasks: list[asyncio.Task[None]] = memo.get("tasks") or []
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # before their client is closed
    ctx: Context = memo.ctx
    await ctx.client.close()
    if ctx.source is not None:
        await ctx.source.aclose()
