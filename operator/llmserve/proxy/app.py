"""The proxy as two raw ASGI applications: the public door, and the one of the metrics port.

Public (the Service's port): the engine's OpenAI routes, each with its one method, behind the API
keys; `/health` and `/ready`. A request is checked in this order, each refusal an OpenAI-style
error: route and method (404, 405), one Authorization header (400) with a key in force (401), the
body's declared size (413), then the whole body is read under a deadline (408) and a size cap
(413), and only then does it wait for an engine slot (429, 503), so a slow upload holds no slot
(review M1) and a client that leaves the queue frees its place at once (M10). The answer is
relayed chunk by chunk, never parsed or re-encoded; an upstream fault is a 502/503/504 that does
not show the engine's address, and a stream that breaks after it started ends with an SSE error
event (L19).

Monitoring (`--metrics-port`, not in the Service): `/metrics`, `/metrics/engine` (the engine's
page, fetched at most once a second and size-capped) and the two probes. The key names and
traffic in the metrics are not for every client of the model (review M4).

Raw ASGI rather than a framework, and aiohttp rather than httpx for the upstream: the relay is the
hot path of every token. Measured on this kind of machine (ENGINES.md §11 and issue 6), a relay on
httpx delivers 7% of the direct chunk rate at 256 streams (its pool degrades under concurrency)
where aiohttp delivers 97-99%, and routing frameworks add latency the proxy does not need for a
dozen fixed paths.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmserve.proxy.admission import Admission, Limits, Refused
from llmserve.proxy.answers import (
    CLIENT_LEFT,
    JSON,
    Headers,
    Receive,
    Refusal,
    Scope,
    Send,
    envelope,
    refuse,
    respond,
)
from llmserve.proxy.cache import Cached
from llmserve.proxy.deadlines import Deadlines
from llmserve.proxy.keys import Keys

OPENAI_ROUTES: Final = MappingProxyType({
    "/v1/chat/completions": "POST", "/v1/completions": "POST", "/v1/embeddings": "POST",
    "/v1/responses": "POST", "/v1/models": "GET",
})  # fmt: skip
"""Engine routes reachable through the proxy, with their one method; the engines' admin and
tokenizer routes are not reachable."""
HOP_BY_HOP: Final = frozenset({
    b"connection", b"proxy-connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authenticate", b"proxy-authorization", b"server", b"date",
})  # fmt: skip
"""Not relayed from the engine: RFC 9110 §7.6.1's hop-by-hop fields (and any the `Connection`
header names), and `server` and `date`, which uvicorn writes for the proxy (no `server` at all).
Content-Length is relayed (bodies are relayed as they are, never decompressed), so a whole answer
goes out in one write instead of chunked framing."""
FORWARDED: Final = MappingProxyType({b"content-type": "Content-Type", b"accept": "Accept"})
"""The only request headers the engine sees: nothing of the client's that could desync it."""
CONTROL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""Bytes no header value may hold (what aiohttp and uvicorn refuse to write)."""
USAGE: Final = re.compile(
    rb'"usage":\s*\{[^}]*"prompt_tokens":\s*(\d+)[^}]*"completion_tokens":\s*(\d+)'
)
PROMETHEUS_TEXT: Final = b"text/plain; version=0.0.4"
ENGINE_PAGE_BYTES: Final = 8 * 2**20
"""Largest engine metrics page relayed (vLLM's is about 100 KB; an engine image is the tenant's)."""
WHOLE_BODY_BYTES: Final = 256 * 2**10
"""Bodies up to this size go upstream in one write; larger ones in the pieces they came in, each
sent once the previous one has left, so neither a join nor the socket buffer makes a second copy
of a large body."""
ENGINE_RETRY_AFTER: Final = 1
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                          300, 600)  # fmt: skip
QUEUE_MESSAGES: Final = {
    "queue_full": "the server is at capacity and its queue is full; retry later",
    "queue_timeout": "the request waited too long for a free slot; retry later",
}

log = logging.getLogger(__name__)
Route = Callable[[Send], Awaitable[None]]
"""A fixed route's handler."""


@dataclass(frozen=True)
class Settings:
    """One proxy process (`llmserve proxy` flags)."""

    upstream: str
    limits: Limits
    request_timeout: float = 600.0
    """Whole request, streaming included: long generations take minutes."""
    first_byte_timeout: float = 300.0
    """Until the engine's answer starts (its status line: a stream's at once, a whole answer's
    when generation ends; queueing inside the engine included)."""
    connect_timeout: float = 5.0
    engine_health: str = "/health"
    max_body_bytes: int = 16 * 2**20
    """Largest request body: 16 MiB of JSON is millions of tokens, beyond any context window."""
    body_timeout: float = 30.0
    """Longest time to receive a whole request body (before the request may wait for a slot)."""


class _KeysCollector(Collector):
    """The keys file's state, read at each scrape (which also picks up a changed file)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def collect(self) -> Iterator[Metric]:
        loaded = len(self.keys.current())
        yield GaugeMetricFamily("llmserve_api_keys_loaded", "API keys accepted now", value=loaded)
        yield CounterMetricFamily("llmserve_api_keys_reload_errors",
                                  "Reloads of the keys file that failed (the keys in force stayed)",
                                  value=self.keys.reload_errors)  # fmt: skip
        yield GaugeMetricFamily("llmserve_api_keys_last_reload_timestamp_seconds",
                                "When the keys in force were read from the file (Unix time)",
                                value=self.keys.loaded_at)  # fmt: skip


class Metrics:
    """The proxy's own series, on a registry of its own."""

    def __init__(self, keys: Keys | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "llmserve_requests", "Answered requests", ["code", "key"], registry=r
        )
        self.in_flight = Gauge("llmserve_requests_in_flight", "Requests at the engine", registry=r)
        self.queue = Gauge("llmserve_queue_depth", "Requests waiting for a slot", registry=r)
        self.rejected = Counter("llmserve_rejected", "Requests refused", ["reason"], registry=r)
        self.interrupted = Counter(
            "llmserve_interrupted_responses",
            "Answers that failed after they had started (a stream ends with an error event)",
            ["code"], registry=r,
        )  # fmt: skip
        self.duration = Histogram("llmserve_request_duration_seconds", "Request duration",
                                  buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.ttft = Histogram("llmserve_time_to_first_token_seconds", "Time to the first byte",
                              buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.prompt = Counter("llmserve_prompt_tokens", "Prompt tokens (usage)", registry=r)
        self.completion = Counter("llmserve_completion_tokens", "Output tokens (usage)", registry=r)
        if keys is not None:
            r.register(_KeysCollector(keys))
        self._answered: dict[tuple[int, str], Any] = {}

    def answered(self, code: int, key: str) -> None:
        """Count an answer (the labelled child is looked up once per code and key)."""
        child = self._answered.get((code, key))
        if child is None:
            child = self._answered[code, key] = self.requests.labels(code=str(code), key=key)
        child.inc()


class Proxy:
    """The public application (`__call__`) and the monitoring one (`monitor`), sharing one state."""

    def __init__(self, settings: Settings, keys: Keys | None) -> None:
        self.settings = settings
        self.keys = keys
        """None: `--auth none`, every client is served (as key "open")."""
        self.metrics = Metrics(keys)
        self.admission = Admission(settings.limits)
        self.deadlines = Deadlines()
        self.draining = False
        self._session: aiohttp.ClientSession | None = None
        self._sweeping: asyncio.Task[None] | None = None
        self._healthy = Cached(self._engine_healthy, 1.0)
        self._engine_page = Cached(self._fetch_engine_page, 1.0)
        self._probes: Mapping[str, Route] = {"/health": self._health, "/ready": self._ready}
        self._monitoring: Mapping[str, Route] = {
            **self._probes, "/metrics": self._metrics, "/metrics/engine": self._engine_metrics
        }  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The public port: lifespan opens and closes the engine session; HTTP is routed."""
        if scope["type"] == "http":
            method = OPENAI_ROUTES.get(scope["path"])
            if method is None:
                await _fixed(self._probes, scope, send)
            elif scope["method"] != method:
                await _not_allowed(scope, send, method)
            else:
                await self._guarded(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def monitor(self, scope: Scope, _: Receive, send: Send) -> None:
        """The metrics port: metrics and probes."""
        if scope["type"] == "http":
            await _fixed(self._monitoring, scope, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # No per-read timeout: re-arming a timer on every chunk costs more than the relay.
                timeout = aiohttp.ClientTimeout(
                    total=self.settings.request_timeout, connect=self.settings.connect_timeout
                )
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
                # Answers are relayed undecoded, so the engine must not compress for a client
                # that did not ask for it: `Accept-Encoding: identity` (_upstream_headers)
                # replaces aiohttp's own gzip (cheaper than skip_auto_headers, which costs a
                # header dict per request).
                self._session = aiohttp.ClientSession(
                    self.settings.upstream, connector=connector, timeout=timeout,
                    auto_decompress=False,
                )  # fmt: skip
                self._sweeping = asyncio.create_task(self.deadlines.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._sweeping is not None:
                    self._sweeping.cancel()
                session, self._session = self._session, None
                if session is not None:
                    await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _health(self, send: Send) -> None:
        await respond(send, 200, b'{"status":"ok"}')

    async def _ready(self, send: Send) -> None:
        if not self.draining and await self._healthy.get():
            await respond(send, 200, b'{"ready":true}')
        else:
            await respond(send, 503, b'{"ready":false}',
                          extra=[(b"retry-after", b"%d" % ENGINE_RETRY_AFTER)])  # fmt: skip

    async def _metrics(self, send: Send) -> None:
        self.metrics.queue.set(self.admission.queued)
        self.metrics.in_flight.set(self.admission.in_flight)
        await respond(send, 200, generate_latest(self.metrics.registry), PROMETHEUS_TEXT)

    async def _engine_metrics(self, send: Send) -> None:
        status, body, content_type = await self._engine_page.get()
        extra = [(b"retry-after", b"%d" % ENGINE_RETRY_AFTER)] if status == 503 else []
        await respond(send, status, body, content_type, extra)

    async def _engine_healthy(self) -> bool:
        if self._session is None:
            return False
        try:
            brief = aiohttp.ClientTimeout(total=2)
            async with self._session.get(self.settings.engine_health, timeout=brief) as answer:
                return answer.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _fetch_engine_page(self) -> tuple[int, bytes, bytes]:
        """The engine's metrics page: status, body, content type; an error envelope on failure."""
        if self._session is None:
            return 503, envelope(503, "shutting_down", "the proxy is shutting down"), JSON
        try:
            brief = aiohttp.ClientTimeout(total=5)
            async with self._session.get("/metrics", timeout=brief) as answer:
                page = await _at_most(answer.content, ENGINE_PAGE_BYTES)
                if page is not None:
                    return answer.status, page, PROMETHEUS_TEXT
                message = f"the engine's metrics page is larger than {ENGINE_PAGE_BYTES} bytes"
                log.warning("%s: not relayed", message)
                return 502, envelope(502, "engine_metrics_too_large", message), JSON
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("the engine's metrics page is unavailable: %r", error)
            body = envelope(503, "engine_unavailable", "the engine's metrics page is unavailable; "
                            "the proxy's log says why")  # fmt: skip
            return 503, body, JSON

    def _key_name(self, authorization: bytes | None) -> str:
        """The name of the presented key ("open" under `--auth none`); `Refusal` 401."""
        if self.keys is None:
            return "open"
        if authorization is not None and authorization[:7].lower() == b"bearer ":
            name = self.keys.name_of(authorization[7:].strip())
            if name is not None:
                return name
        raise Refusal(401, "invalid_api_key", "Incorrect API key provided: send "
                      "`Authorization: Bearer <key>` with a key in force")  # fmt: skip

    def _taking_work(self) -> None:
        """`Refusal` 503 once SIGTERM has come."""
        if self.draining:
            self.metrics.rejected.labels(reason="draining").inc()
            raise Refusal(503, "draining", "this replica is shutting down; retry on another",
                          retry_after=1)  # fmt: skip

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        key = ""  # who asked, once known
        try:
            head = _Head.of(scope["headers"])
            key = self._key_name(head.authorization)
            self._taking_work()
            headers = _upstream_headers(head.forwarded, head.connection)
            body = await self._body(receive, head.length)
            code = 499 if body is None else await self._admitted(scope, send, body, headers,
                                                                  started)  # fmt: skip
        except Refusal as refusal:
            self.metrics.answered(refusal.status, key)
            await refuse(send, refusal)
            return
        except asyncio.CancelledError:
            # The protocol cancels a request whose client left (`CLIENT_LEFT`): a queued one
            # leaves the queue at once, and an upstream request is dropped with the task.
            if not scope.get(CLIENT_LEFT):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            code = 499
        self.metrics.answered(code, key)
        self.metrics.duration.observe(time.monotonic() - started)

    async def _body(self, receive: Receive, length: bytes | None) -> list[bytes] | None:
        """The whole request body as it came, in pieces; None when the client left.

        `Refusal` 413, 408 or 400. The pieces are kept as they are, never joined into a second
        copy: a large body goes upstream piece by piece.
        """
        limit = self.settings.max_body_bytes
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise Refusal(400, "invalid_content_length",
                              "Content-Length is not a number") from None  # fmt: skip
            if declared > limit:
                raise _too_large(limit, declared)
        pieces: list[bytes] = []
        size = 0
        try:
            with self.deadlines.within(self.settings.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    piece: bytes = message.get("body", b"")
                    size += len(piece)  # counted as it arrives: a chunked body declares no size
                    if size > limit:
                        raise _too_large(limit)
                    pieces.append(piece)
                    if not message.get("more_body", False):
                        return pieces
        except TimeoutError:
            late = f"the request body did not arrive within {self.settings.body_timeout:g} s"
            raise Refusal(408, "request_timeout", f"{late} (--body-timeout)") from None

    async def _admitted(
        self, scope: Scope, send: Send, body: list[bytes], headers: dict[str, str], started: float
    ) -> int:
        """Wait for a slot, then relay; the status sent."""
        try:
            await self.admission.acquire()
        except Refused as refused:
            self.metrics.rejected.labels(reason=refused.reason).inc()
            message = QUEUE_MESSAGES[refused.reason]
            await refuse(send, Refusal(refused.status, refused.reason, message,
                                       refused.retry_after))  # fmt: skip
            return refused.status
        try:
            return await self._forward(scope, body, headers, send, started)
        finally:
            self.admission.release()

    async def _forward(
        self, scope: Scope, body: list[bytes], headers: dict[str, str], send: Send,
        started: float,
    ) -> int:  # fmt: skip
        """Send the request upstream and relay the answer; the status sent."""
        try:
            answer = await self._request(scope, body, headers)
            return await self._relay(answer, send, started)
        except Refusal as refusal:  # the engine failed before its answer started
            await refuse(send, refusal)
            return refusal.status

    async def _request(
        self, scope: Scope, body: list[bytes], headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        """The engine's answer, its body still to come; `Refusal` 502, 503 or 504."""
        session = self._session
        assert session is not None  # noqa: S101 - set at startup, before any request
        query = scope["query_string"]
        target = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        size = sum(len(piece) for piece in body)
        data: bytes | AsyncIterator[bytes]
        if len(body) == 1:
            data = body[0]
        elif size <= WHOLE_BODY_BYTES:
            data = b"".join(body)
        else:
            data, headers["Content-Length"] = _pieces(body), str(size)
        try:
            with self.deadlines.within(self.settings.first_byte_timeout):
                return await session.request(scope["method"], target, data=data, headers=headers)
        except TimeoutError:
            raise Refusal(504, "timeout", "the engine did not answer in time") from None
        except aiohttp.ClientConnectorError as error:
            log.warning("the engine is unavailable: %r", error)
            raise Refusal(503, "engine_unavailable", "the engine is unavailable; retry shortly",
                          ENGINE_RETRY_AFTER) from None  # fmt: skip
        except aiohttp.ClientError as error:
            log.warning("the engine's answer could not be read: %r", error)
            raise Refusal(502, "bad_gateway", "the engine's answer was malformed") from None

    async def _relay(self, answer: aiohttp.ClientResponse, send: Send, started: float) -> int:
        """Relay the answer chunk by chunk; the status sent (`Refusal` 502 before the start)."""
        streaming = False
        tail = b""
        try:
            async with answer:
                relayed, streaming = _relayed_headers(answer.raw_headers)
                await send({"type": "http.response.start", "status": answer.status,
                            "headers": relayed})  # fmt: skip
                async for chunk in answer.content.iter_any():
                    if not tail:
                        self.metrics.ttft.observe(time.monotonic() - started)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    tail = (tail + chunk)[-2048:]
        except TimeoutError:
            return await self._broken(send, streaming, 504, "timeout",
                                      "the engine did not finish its answer in time")  # fmt: skip
        except aiohttp.ClientError as error:
            log.warning("the engine's answer broke off: %r", error)
            return await self._broken(send, streaming, 502, "bad_gateway",
                                      "the engine's answer broke off")  # fmt: skip
        await send({"type": "http.response.body", "body": b""})
        self._count_usage(tail)
        return answer.status

    async def _broken(self, send: Send, streaming: bool, status: int, code: str,  # noqa: FBT001
                      message: str) -> int:  # fmt: skip
        """Count an answer that failed after it started; the status it counts as.

        A stream gets a last SSE event saying so; anything else is left cut (uvicorn closes the
        connection), never made to look whole.
        """
        self.metrics.interrupted.labels(code=str(status)).inc()
        log.warning("the answer failed after it started (%d %s)", status, code)
        if streaming:
            event = b"data: " + envelope(status, code, message) + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        return status

    def _count_usage(self, tail: bytes) -> None:
        found = USAGE.search(tail)
        if found:
            self.metrics.prompt.inc(int(found.group(1)))
            self.metrics.completion.inc(int(found.group(2)))


class _Head(NamedTuple):
    """What the proxy reads of a request's headers."""

    authorization: bytes | None
    length: bytes | None
    connection: bytes | None
    forwarded: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, headers: Iterable[tuple[bytes, bytes]]) -> _Head:
        """One pass over the headers; `Refusal` 400 for a second Authorization header."""
        authorization = length = connection = None
        forwarded = []
        for name, value in headers:
            if name == b"authorization":
                if authorization is not None:
                    raise Refusal(400, "duplicate_authorization",
                                  "send one Authorization header, not several")  # fmt: skip
                authorization = value
            elif name in FORWARDED:
                forwarded.append((name, value))
            elif name == b"content-length":
                length = value
            elif name == b"connection":
                connection = value
        return cls(authorization, length, connection, forwarded)


def _too_large(limit: int, declared: int | None = None) -> Refusal:
    size = f"over {limit}" if declared is None else str(declared)
    return Refusal(413, "request_too_large", f"the request body is {size} bytes; at most {limit} "
                   "are accepted (--max-body-bytes)")  # fmt: skip


def _tokens(value: bytes) -> frozenset[bytes]:
    """The field names a Connection header lists."""
    return frozenset(token.strip().lower() for token in value.split(b","))


def _upstream_headers(forwarded: Iterable[tuple[bytes, bytes]],
                      connection: bytes | None) -> dict[str, str]:  # fmt: skip
    """The headers sent to the engine; `Refusal` 400 for a value that is not UTF-8 text."""
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    hop = _tokens(connection) if connection else frozenset()
    for name, value in forwarded:
        if name in hop:
            continue
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text = None
        if text is None or CONTROL.search(value):
            raise Refusal(400, "invalid_header", f"the {FORWARDED[name]} header is not UTF-8 "
                          "text without control characters")  # fmt: skip
        headers[FORWARDED[name]] = text
    return headers


def _relayed_headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[Headers, bool]:
    """The engine's headers to relay, and whether the answer is an SSE stream of open length."""
    relayed = []
    hop: frozenset[bytes] = frozenset()
    event_stream = sized = False
    for raw_name, value in raw:
        name = raw_name.lower()
        if name in HOP_BY_HOP:
            if name == b"connection":
                hop |= _tokens(value)
            continue
        if CONTROL.search(value):
            log.warning("the engine sent a %r header with control characters", name)
            raise Refusal(502, "bad_gateway", "the engine's answer was malformed")
        if name == b"content-type":
            event_stream = value.startswith(b"text/event-stream")
        elif name == b"content-length":
            sized = True
        relayed.append((name, value))
    if hop:
        relayed = [(name, value) for name, value in relayed if name not in hop]
    return relayed, event_stream and not sized


async def _pieces(body: list[bytes]) -> AsyncIterator[bytes]:
    """A large body piece by piece, each written once the previous one has left."""
    for piece in body:
        yield piece


async def _at_most(content: aiohttp.StreamReader, limit: int) -> bytes | None:
    """A body read whole, or None as soon as it is longer than `limit` bytes."""
    chunks, size = [], 0
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _failed(send: Send, status: int, code: str, message: str,
                  retry_after: int | None = None) -> int:  # fmt: skip
    """An upstream failure before the answer started; the status sent."""
    await refuse(send, Refusal(status, code, message, retry_after))
    return status


async def _fixed(routes: Mapping[str, Route], scope: Scope, send: Send) -> None:
    """A route of a fixed table, GET only; 404 or 405 otherwise."""
    route = routes.get(scope["path"])
    if route is None:
        message = f"{scope['method']} {scope['path']} is not served here"
        await refuse(send, Refusal(404, "unknown_url", message))
    elif scope["method"] != "GET":
        await _not_allowed(scope, send, "GET")
    else:
        await route(send)


async def _not_allowed(scope: Scope, send: Send, allowed: str) -> None:
    message = f"{scope['method']} is not allowed on {scope['path']}; use {allowed}"
    refusal = Refusal(405, "method_not_allowed", message)
    await refuse(send, refusal, extra=[(b"allow", allowed.encode())])
