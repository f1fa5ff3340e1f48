"""Both metrics sources against real processes: simulator + proxy pairs, and a real Prometheus.

Two "pods" (a simulator with its fake DCGM exporter, and a proxy in front) in namespace `ml`; one
is given a few long streamed requests, the other none. Prometheus scrapes the proxies' `/metrics`
and `/metrics/engine` and the exporters every second, its targets written to file_sd files the
way a PodMonitor would label them. Every wait is a poll with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import httpx2 as httpx
import pytest
from tests.processes import MODEL, Prometheus, ScrapeJob, prometheus, proxy, simulator
from tools.procfs import free_port

from llmserve.autoscale.policy import PodLoad
from llmserve.autoscale.sources import (
    DEFAULT_QUERIES,
    PrometheusSource,
    Query,
    ScrapeSource,
    SourceError,
    Target,
    promql,
)

NAMESPACE = "ml"
HELD = 3
"""Requests held open at the loaded pod."""
MAX_AGE = 5.0
JOBS = (ScrapeJob("proxy"), ScrapeJob("engine", "/metrics/engine"),
        ScrapeJob("dcgm", honor_labels=True))  # fmt: skip
T = TypeVar("T")


@dataclass(frozen=True)
class Pod:
    """One simulator + proxy pair standing for a pod."""

    target: Target
    url: str
    """The proxy's public port (`target` has its metrics port)."""
    dcgm: str
    """The fake DCGM exporter's host:port."""

    @property
    def address(self) -> str:
        return f"{self.target.ip}:{self.target.port}"


@dataclass(frozen=True)
class Fleet:
    prometheus: Prometheus
    busy: Pod
    idle: Pod


@contextlib.contextmanager
def pod(name: str) -> Iterator[Pod]:
    dcgm = free_port()
    flags = ("--dcgm-port", str(dcgm), "--dcgm-pod", name, "--dcgm-namespace", NAMESPACE)
    # 20 tokens a second: requests that last as long as the test holds them, at little CPU.
    with simulator(*flags, step="0.05") as engine, proxy(engine) as served:
        port = int(served.metrics.rsplit(":", 1)[1])
        target = Target(NAMESPACE, name, "127.0.0.1", port, "vllm")
        yield Pod(target, served.url, f"127.0.0.1:{dcgm}")


def scrape(server: Prometheus, *pods: Pod) -> None:
    """Point Prometheus at exactly these pods, labelled as a PodMonitor labels them."""
    labels = {p.address: {"namespace": NAMESPACE, "pod": p.target.pod} for p in pods}
    server.targets("proxy", labels)
    server.targets("engine", labels)
    # The exporter labels its GPUs with the pod it serves; honor_labels keeps those labels.
    server.targets("dcgm", {p.dcgm: {} for p in pods})


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with pod("busy-0") as busy, pod("idle-0") as idle, prometheus(*JOBS) as server:
        scrape(server, busy, idle)
        yield Fleet(server, busy, idle)


@contextlib.asynccontextmanager
async def holding(url: str, count: int) -> AsyncIterator[None]:
    """`count` streamed completions at `url`, generating until the block ends."""

    async def generate(session: aiohttp.ClientSession) -> None:
        body = {"model": MODEL, "prompt": "x", "max_tokens": 100_000, "stream": True}
        async with session.post(f"{url}/v1/completions", json=body) as answer:
            async for _ in answer.content.iter_any():
                pass

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(generate(session)) for _ in range(count)]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def until(read: Callable[[], Awaitable[T]], check: Callable[[T], bool], what: str) -> T:
    """Read until `check` holds, or fail after 30 s with the last reading."""
    deadline = time.monotonic() + 30
    while True:
        value = await read()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{what}; last read: {value}"
        await asyncio.sleep(0.2)


def loaded(load: PodLoad | None) -> bool:
    return load is not None and load.running == HELD and load.in_flight == HELD


def idle(load: PodLoad | None) -> bool:
    return load is not None and load.running == 0 and load.demand == 0


def test_scrape_source_reads_the_loaded_pod_and_the_idle_one(fleet: Fleet) -> None:
    targets = [fleet.busy.target, fleet.idle.target]

    async def run() -> None:
        async with contextlib.aclosing(ScrapeSource()) as source:
            # Requests an earlier test held may take a moment to leave the engine.
            await until(lambda: source.loads(targets), lambda got: idle(got.get("busy-0")),
                        "the pod to load never read as idle first")  # fmt: skip
            async with holding(fleet.busy.url, HELD):
                loads = await until(lambda: source.loads(targets),
                                    lambda got: loaded(got.get("busy-0")),
                                    "the loaded pod never read as loaded")  # fmt: skip
            assert idle(loads["idle-0"])
            assert loads["busy-0"].demand == HELD
            assert loads["busy-0"].gpu_utilization is None  # only Prometheus has DCGM

    asyncio.run(run())


def test_prometheus_source_reads_the_same_and_the_gpu(fleet: Fleet) -> None:
    targets = [fleet.busy.target, fleet.idle.target]

    def both(got: dict[str, PodLoad]) -> bool:
        busy, still = got.get("busy-0"), got.get("idle-0")
        return (loaded(busy) and busy is not None and (busy.gpu_utilization or 0) >= 90
                and idle(still) and still is not None and still.gpu_utilization == 0)  # fmt: skip

    async def run() -> None:
        source = PrometheusSource(fleet.prometheus.url, max_age=MAX_AGE)
        async with contextlib.aclosing(source), holding(fleet.busy.url, HELD):
            await until(lambda: source.loads(targets), both,
                        "Prometheus never showed one pod busy and the other idle")  # fmt: skip

    asyncio.run(run())


def test_a_stopped_pod_is_missing_from_both_sources(fleet: Fleet) -> None:
    server = fleet.prometheus

    async def present(scraped: ScrapeSource, queried: PrometheusSource, target: Target) -> None:
        assert (await scraped.loads([target]))[target.pod].demand is not None
        await until(lambda: queried.loads([target]), lambda got: target.pod in got,
                    "Prometheus never showed the new pod")  # fmt: skip

    async def absent(scraped: ScrapeSource, queried: PrometheusSource, target: Target) -> None:
        loads = await scraped.loads([target, fleet.idle.target])  # at once, and says why
        assert loads["idle-0"].demand is not None
        assert loads[target.pod].demand is None
        assert (loads[target.pod].problem or "").startswith("cannot read /metrics: Cannot connect")
        assert "autoscaler.metricsPort is its metrics port" in (loads[target.pod].problem or "")
        await until(lambda: queried.loads([target]), lambda got: not got,
                    "Prometheus still shows the stopped pod")  # fmt: skip

    async def run(step: Callable[[ScrapeSource, PrometheusSource], Awaitable[None]]) -> None:
        scraped, queried = ScrapeSource(), PrometheusSource(server.url, max_age=MAX_AGE)
        async with contextlib.aclosing(scraped), contextlib.aclosing(queried):
            await step(scraped, queried)

    try:
        with pod("gone-0") as gone:
            scrape(server, fleet.busy, fleet.idle, gone)
            asyncio.run(run(lambda s, q: present(s, q, gone.target)))
        asyncio.run(run(lambda s, q: absent(s, q, gone.target)))
    finally:
        scrape(server, fleet.busy, fleet.idle)


def test_the_freshness_filter_drops_samples_older_than_max_age(fleet: Fleet) -> None:
    """Evaluated 60 s in the future, the last samples are 60 s old: past `max_age`, but well
    inside Prometheus's 5-minute lookback, which alone would still return them."""
    fresh = promql(DEFAULT_QUERIES["in_flight"], NAMESPACE, MAX_AGE)
    unfiltered = f'sum by (pod) (llmserve_requests_in_flight{{namespace="{NAMESPACE}"}})'

    def pods(query: str, at: float) -> set[str]:
        answer = httpx.get(f"{fleet.prometheus.url}/api/v1/query",
                           params={"query": query, "time": str(at)}).json()  # fmt: skip
        return {series["metric"]["pod"] for series in answer["data"]["result"]}

    deadline = time.monotonic() + 30
    while pods(fresh, time.time()) != {"busy-0", "idle-0"}:
        assert time.monotonic() < deadline, "Prometheus never scraped both proxies"
        time.sleep(0.2)
    later = time.time() + 60
    assert pods(unfiltered, later) == {"busy-0", "idle-0"}
    assert pods(fresh, later) == set()


def test_a_pod_that_does_not_answer_in_time_is_missing_and_says_so(fleet: Fleet) -> None:
    with socket.socket() as hung:  # accepts connections (the backlog) and never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen()
        silent = Target(NAMESPACE, "hung-0", "127.0.0.1", hung.getsockname()[1], "vllm")

        async def run() -> dict[str, PodLoad]:
            async with contextlib.aclosing(ScrapeSource(timeout=0.5)) as source:
                return await source.loads([silent, fleet.idle.target])

        loads = asyncio.run(run())
        assert loads["idle-0"].demand is not None
        assert loads["hung-0"] == PodLoad("hung-0", problem="/metrics did not answer within 0.5 s")


def test_prometheus_down_or_refusing_the_query_is_a_clear_error(fleet: Fleet) -> None:
    async def read(source: PrometheusSource) -> dict[str, PodLoad]:
        async with contextlib.aclosing(source):
            return await source.loads([fleet.idle.target])

    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError, match=f"cannot query Prometheus at {down}: .*check the URL"):
        asyncio.run(read(PrometheusSource(down)))
    broken = {"queued": Query("llmserve_queue_depth{namespace=")}
    with pytest.raises(SourceError, match=r"answered HTTP 400 \(bad_data: .*the queued query"):
        asyncio.run(read(PrometheusSource(fleet.prometheus.url, broken)))
    assert asyncio.run(read(PrometheusSource(fleet.prometheus.url, {}))) == {}
