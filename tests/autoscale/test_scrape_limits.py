"""The sources read at most `max_bytes` of any answer, over real HTTP on loopback (review M5).

Each "pod" here is a small aiohttp server on 127.0.0.1 standing for a tenant's proxy whose
`/metrics/engine` relays whatever the tenant's engine writes: a page far over the limit, or one
that never ends. Before the limit, the source read such a page whole and parsed all of it on the
operator's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from llmserve.autoscale.policy import PodLoad
from llmserve.autoscale.sources import (
    MAX_BYTES,
    PrometheusSource,
    ScrapeSource,
    SourceError,
    Target,
)

PROXY_PAGE = b"llmserve_requests_in_flight 3\nllmserve_queue_depth 1\n"
ENGINE_PAGE = b"vllm:num_requests_running 2\nvllm:num_requests_waiting 4\n"
SERIES = b'vllm:junk{engine="0",model_name="m",shard="%08d"} 1\n'
"""One of the many series a hostile engine exports."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(body: bytes) -> Handler:
    async def handle(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body)

    return handle


async def endless(request: web.Request) -> web.StreamResponse:
    """A chunked page that goes on until the client hangs up: no length to refuse it by."""
    answer = web.StreamResponse()
    await answer.prepare(request)
    chunk = b"".join(SERIES % i for i in range(1000))
    with contextlib.suppress(ConnectionError):
        while True:
            await answer.write(chunk)
    return answer


@contextlib.asynccontextmanager
async def pod(name: str, engine: Handler) -> AsyncIterator[Target]:
    """A pod's metrics port on 127.0.0.1: the proxy's small page and `engine` as the engine's."""
    app = web.Application()
    app.router.add_get("/metrics", page(PROXY_PAGE))
    app.router.add_get("/metrics/engine", engine)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Target("ml", name, "127.0.0.1", port, "vllm")
    finally:
        await runner.cleanup()


def scrape(*engines: tuple[str, Handler]) -> dict[str, PodLoad]:
    async def run() -> dict[str, PodLoad]:
        async with contextlib.AsyncExitStack() as stack:
            targets = [await stack.enter_async_context(pod(n, e)) for n, e in engines]
            # A timeout far beyond what reading the limit takes: a page cut short by it would say
            # "did not answer", so the problems asserted below show where reading stopped.
            source = await stack.enter_async_context(contextlib.aclosing(ScrapeSource(timeout=60)))
            return await source.loads(targets)

    return asyncio.run(run())


def test_a_page_over_the_limit_makes_its_pod_missing_and_says_why() -> None:
    big = b"".join(SERIES % i for i in range(2 * MAX_BYTES // len(SERIES % 0))) + ENGINE_PAGE
    loads = scrape(("fine-0", page(ENGINE_PAGE)), ("flood-0", page(big)), ("stream-0", endless))
    assert loads["fine-0"] == PodLoad("fine-0", running=2, waiting=4, in_flight=3, queued=1)
    for name in ("flood-0", "stream-0"):
        assert loads[name].demand is None
        assert loads[name].problem == (
            f"its /metrics/engine page is over {MAX_BYTES} bytes (autoscaler.maxPageBytes): "
            "find what fills it with series, or raise the limit"
        )


def test_a_page_of_exactly_the_limit_is_read() -> None:
    body = b"#" * (MAX_BYTES - len(ENGINE_PAGE) - 1) + b"\n" + ENGINE_PAGE
    assert len(body) == MAX_BYTES
    loads = scrape(("full-0", page(body)))
    assert loads["full-0"] == PodLoad("full-0", running=2, waiting=4, in_flight=3, queued=1)


def test_a_prometheus_answer_over_the_limit_is_an_error() -> None:
    series = [{"metric": {"pod": f"p-{i}"}, "value": [0, "1"]} for i in range(40_000)]
    body = json.dumps({"status": "success", "data": {"result": series}}).encode()
    assert len(body) > MAX_BYTES

    async def run() -> dict[str, PodLoad]:
        app = web.Application()
        app.router.add_get("/api/v1/query", page(body))
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with contextlib.aclosing(PrometheusSource(url)) as source:
                return await source.loads([Target("ml", "p-0", "127.0.0.1", 9090, "vllm")])
        finally:
            await runner.cleanup()

    with pytest.raises(SourceError, match=rf"query with more than {MAX_BYTES} bytes"):
        asyncio.run(run())
