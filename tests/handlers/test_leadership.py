"""Leader election as client-go does it, against a Lease API whose calls can hang (review M6).

The API server here is a small one on 127.0.0.1 that keeps one Lease with resourceVersions and
409s as the real one does, and can hold the old leader's Lease updates forever: the API call
that hangs. Two operators' `_keep_leading` loops run against it, each with a work queue whose pass
never ends and an autoscaler round that never ends, so "acting" is visible. Everything is
asserted as an order of events and against the Lease's own times, never against how fast the
machine is; the one assumption is that the event loop is never stalled for longer than the margin
between the renew deadline and the Lease duration (3 s here), the same margin that protects a
real cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from aiohttp import web
from tests.support import document

from llmserve.api.config import AutoscalerConfig, OperatorConfig
from llmserve.autoscale.policy import PodLoad
from llmserve.autoscale.sources import Target
from llmserve.handlers import lifecycle
from llmserve.handlers.context import Context
from llmserve.handlers.queue import WorkQueue
from llmserve.kube.client import Client
from llmserve.kube.lease import Election, Elector
from llmserve.reconcile.autoscale import Pod

LEASES = "/apis/coordination.k8s.io/v1/namespaces/ops/leases"
TIMING = {"duration_seconds": 5, "renew_deadline_seconds": 2.0, "retry_seconds": 0.5}
KEY = ("ml", "llama-8b")
LOG = logging.getLogger("test.leadership")


@dataclass
class LeaseServer:
    """The Lease API of one API server, in memory; `hang` holds every update by that holder."""

    lease: dict[str, Any] | None = None
    version: int = 0
    hang: str | None = None
    renewed: list[tuple[str, str]] = field(default_factory=list)
    """(holder, renewTime) of every update and create that was applied."""
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def _store(self, body: dict[str, Any]) -> web.Response:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        self.lease = body
        self.renewed.append((body["spec"]["holderIdentity"], body["spec"]["renewTime"]))
        return web.json_response(body)

    async def get(self, _: web.Request) -> web.Response:
        if self.lease is None:
            return web.json_response({"kind": "Status", "message": "not found"}, status=404)
        return web.json_response(self.lease)

    async def create(self, request: web.Request) -> web.Response:
        if self.lease is not None:
            return web.json_response({"kind": "Status", "message": "exists"}, status=409)
        return self._store(await request.json())

    async def update(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["spec"]["holderIdentity"] == self.hang:
            await self.released.wait()  # the call hangs until the test ends
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            return web.json_response({"kind": "Status", "message": "conflict"}, status=409)
        return self._store(body)


@contextlib.asynccontextmanager
async def api_server() -> AsyncIterator[tuple[LeaseServer, str]]:
    server = LeaseServer()
    app = web.Application()
    app.router.add_get(f"{LEASES}/llmserve-operator", server.get)
    app.router.add_post(LEASES, server.create)
    app.router.add_put(f"{LEASES}/llmserve-operator", server.update)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield server, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        server.released.set()
        await runner.cleanup()


class Endless:
    """Work that never finishes on its own (a pass, or a metrics read in an autoscaler round);
    it records when it started and when it was cancelled."""

    def __init__(self, name: str, log: list[tuple[str, float, bool]], ctx: list[Context]) -> None:
        self.name, self.log, self.ctx = name, log, ctx

    async def __call__(self, *_: object) -> float | None:
        self._note("started")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self._note("cancelled")
            raise
        return None

    def _note(self, what: str) -> None:
        self.log.append((f"{self.name} {what}", time.monotonic(), self.ctx[0].leading.is_set()))


class EndlessSource:
    """A metrics source whose read never ends: the autoscaler round stays in flight."""

    def __init__(self, work: Endless) -> None:
        self.work = work

    async def loads(self, targets: Sequence[Target]) -> dict[str, PodLoad]:
        await self.work(targets)
        return {}

    async def aclose(self) -> None:
        return None


def operator(name: str, client: Client, log: list[tuple[str, float, bool]]) -> Context:
    """One operator's context: its queue's pass and its autoscaler's round never end."""
    holder: list[Context] = []
    config = OperatorConfig(autoscaler=AutoscalerConfig(intervalSeconds=0.1))
    ctx = Context(
        client,
        config,
        WorkQueue(Endless(f"{name} pass", log, holder)),
        source=EndlessSource(Endless(f"{name} round", log, holder)),
    )
    holder.append(ctx)
    body = document({"autoscaling": {"maxReplicas": 3}}, namespace="ml", uid="u-1")
    ctx.bodies[KEY] = body
    ctx.pods[KEY] = {"p-0": Pod("p-0", "127.1.0.9", ready=True)}
    ctx.queue.add(KEY)
    return ctx


def election(identity: str) -> Election:
    return Election("ops", "llmserve-operator", identity, **TIMING)


def names(log: list[tuple[str, float, bool]]) -> list[str]:
    return [name for name, _, _ in log]


def at(log: list[tuple[str, float, bool]], event: str) -> float:
    return next(t for name, t, _ in log if name == event)


async def until(check: Callable[[], bool]) -> None:
    """Poll `check` every 50 ms; fail after 60 s, far beyond any of the Lease's times."""
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.05)


def test_a_leader_whose_renewal_hangs_stops_acting_before_its_lease_expires(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[tuple[str, float, bool]] = []

    async def run() -> LeaseServer:
        async with api_server() as (server, url):
            client = Client(kopf.ConnectionInfo(server=url))
            try:
                old, new = operator("old", client, log), operator("new", client, log)
                leading = asyncio.create_task(lifecycle._keep_leading(old, election("old"), LOG))
                await until(lambda: "old round started" in names(log))
                standby = asyncio.create_task(lifecycle._keep_leading(new, election("new"), LOG))
                await until(lambda: len(server.renewed) >= 3)  # taken, then renewed twice
                server.hang = "old"  # from now on its updates never come back
                log.append(("hang", time.monotonic(), old.leading.is_set()))
                await until(lambda: "new round started" in names(log))
                await until(lambda: "waiting for Lease ops/llmserve-operator: new" in caplog.text)
                for task in (leading, standby):
                    task.cancel()
                await asyncio.gather(leading, standby, return_exceptions=True)
            finally:
                await client.close()
        return server

    with caplog.at_level(logging.INFO, logger=LOG.name):
        server = asyncio.run(run())

    order = names(log)
    # The old leader's pass and round were in flight, and both were cancelled after it had
    # cleared `leading`, before the new leader did anything.
    assert order.index("old pass cancelled") < order.index("new pass started")
    assert order.index("old round cancelled") < order.index("new round started")
    for name, _, leading in log:
        if name.endswith("cancelled"):
            assert not leading, f"{name} while still leading"
        if name.endswith("started"):
            assert leading, f"{name} while not leading"
    # By its own clock, the old leader stopped before the Lease it last renewed expired.
    last_old = max(t for holder, t in server.renewed if holder == "old")
    expiry = datetime.fromisoformat(last_old) + timedelta(seconds=TIMING["duration_seconds"])
    stopped = at(log, "old round cancelled") - time.monotonic() + time.time()
    assert datetime.fromtimestamp(stopped, UTC) < expiry
    assert "stopped acting: Lease ops/llmserve-operator not renewed in 2 s" in caplog.text
    assert "waiting for Lease ops/llmserve-operator: new leads" in caplog.text
    assert [holder for holder, _ in server.renewed][-1] == "new"


def test_a_standby_judges_expiry_by_its_own_clock_not_the_holders_renew_time() -> None:
    """The holder's clock is an hour behind: its renewTime looks long expired, but the Lease is
    alive as long as the standby sees it change."""
    now = [0.0]

    async def run() -> list[bool]:
        async with api_server() as (server, url):
            client = Client(kopf.ConnectionInfo(server=url))
            try:
                skewed = datetime.now(UTC) - timedelta(hours=1)
                server.lease = {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": "llmserve-operator", "namespace": "ops",
                                 "resourceVersion": "7"},
                    "spec": {"holderIdentity": "old", "leaseDurationSeconds": 5,
                             "renewTime": skewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
                }  # fmt: skip
                server.version = 7
                standby = Elector(client, election("new"), clock=lambda: now[0])
                taken = []
                for at_time, renewed in ((0.0, False), (4.0, True), (8.0, False), (9.5, False)):
                    now[0] = at_time
                    if renewed:  # the holder renews: a new resourceVersion, same old renewTime
                        server.version += 1
                        server.lease["metadata"]["resourceVersion"] = str(server.version)
                    taken.append(await standby.try_acquire())
                return taken
            finally:
                await client.close()

    # Seen changing at 4 s, so free only after 4 + 5 s: not at 8 s, but at 9.5 s.
    assert asyncio.run(run()) == [False, False, False, True]


def test_timings_under_which_a_holder_could_outlive_its_lease_are_refused() -> None:
    with pytest.raises(ValueError, match=r"renew deadline \(15 s\), and that below the Lease"):
        Election("ops", "llmserve-operator", "a", duration_seconds=15, renew_deadline_seconds=15)
    with pytest.raises(ValueError, match=r"retry period \(12 s\) must be below"):
        Election("ops", "llmserve-operator", "a", retry_seconds=12)
