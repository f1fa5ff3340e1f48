"""The proxy as a raw ASGI application: routes, auth, admission, the relay and the metrics.

Raw ASGI rather than a framework, and aiohttp rather than httpx for the upstream: the relay is the
hot path of every token. Measured on this kind of machine (ENGINES.md §11 and issue 6), a relay on
httpx delivers 7% of the direct chunk rate at 256 streams (its pool degrades under concurrency)
where aiohttp delivers 97-99%, and routing frameworks add latency the proxy does not need for a
dozen fixed paths. SSE is relayed chunk by chunk as it arrives, never parsed or re-encoded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llmserve.proxy.admission import Admission, Limits, Refused
from llmserve.proxy.keys import Keys, match

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPENAI_PATHS: Final = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings", "/v1/responses"}
)
"""Engine routes reachable through the proxy; the engines' admin and tokenizer routes are not."""
HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"server", b"date"}
)
"""Not relayed; Content-Length is (bodies are relayed as they are, never decompressed), so a whole
answer goes out in one write instead of chunked framing."""
USAGE: Final = re.compile(
    rb'"usage":\s*\{[^}]*"prompt_tokens":\s*(\d+)[^}]*"completion_tokens":\s*(\d+)'
)
LATENCY_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)

log = logging.getLogger(__name__)


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
    allowed_paths: frozenset[str] = OPENAI_PATHS


class Metrics:
    """The proxy's own series, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "llmserve_requests", "Answered requests", ["code", "key"], registry=r
        )
        self.in_flight = Gauge("llmserve_requests_in_flight", "Requests at the engine", registry=r)
        self.queue = Gauge("llmserve_queue_depth", "Requests waiting for a slot", registry=r)
        self.rejected = Counter("llmserve_rejected", "Requests refused", ["reason"], registry=r)
        self.duration = Histogram("llmserve_request_duration_seconds", "Request duration",
                                  buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.ttft = Histogram("llmserve_time_to_first_token_seconds", "Time to the first byte",
                              buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.prompt = Counter("llmserve_prompt_tokens", "Prompt tokens (usage)", registry=r)
        self.completion = Counter("llmserve_completion_tokens", "Output tokens (usage)", registry=r)
        self._answered: dict[tuple[int, str], Any] = {}

    def answered(self, code: int, key: str) -> None:
        """Count an answer (the labelled child is looked up once per code and key)."""
        child = self._answered.get((code, key))
        if child is None:
            child = self._answered[code, key] = self.requests.labels(code=str(code), key=key)
        child.inc()


def error_body(status: int, message: str, kind: str, code: str | None = None) -> bytes:
    """An OpenAI-style error envelope."""
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code or status}}
    ).encode()


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A whole response."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class Proxy:
    """The ASGI application."""

    settings: Settings
    keys: Keys | None
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    _session: aiohttp.ClientSession | None = None
    _ready: tuple[float, bool] = (0.0, False)

    def __post_init__(self) -> None:
        self.admission = Admission(self.settings.limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: lifespan opens and closes the upstream session; HTTP is routed."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # No per-read timeout: re-arming a timer on every chunk costs more than the relay.
                timeout = aiohttp.ClientTimeout(
                    total=self.settings.request_timeout, connect=self.settings.connect_timeout
                )
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
                self._session = aiohttp.ClientSession(
                    self.settings.upstream, connector=connector, timeout=timeout,
                    auto_decompress=False,
                )  # fmt: skip
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/health":
            await respond(send, 200, b'{"status":"ok"}')
        elif path == "/ready":
            ready = not self.draining and await self._engine_ready()
            await respond(
                send, 200 if ready else 503, b'{"ready":%s}' % (b"true" if ready else b"false")
            )
        elif path == "/metrics":
            self.metrics.queue.set(self.admission.queued)
            self.metrics.in_flight.set(self.admission.in_flight)
            await respond(
                send, 200, generate_latest(self.metrics.registry), b"text/plain; version=0.0.4"
            )
        elif path == "/metrics/engine":
            await self._engine_metrics(send)
        elif path in self.settings.allowed_paths:
            await self._guarded(scope, receive, send, method)
        else:
            body = error_body(404, f"{method} {path} is not served here", "NotFoundError")
            await respond(send, 404, body)

    async def _engine_ready(self) -> bool:
        """The engine's health route, looked at most once a second."""
        checked, ready = self._ready
        now = time.monotonic()
        if now - checked < 1.0:
            return ready
        try:
            assert self._session is not None  # noqa: S101 - set at startup
            brief = aiohttp.ClientTimeout(total=2)
            async with self._session.get(self.settings.engine_health, timeout=brief) as answer:
                ready = answer.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ready = False
        self._ready = (now, ready)
        return ready

    async def _engine_metrics(self, send: Send) -> None:
        assert self._session is not None  # noqa: S101 - set at startup
        try:
            async with self._session.get(
                "/metrics", timeout=aiohttp.ClientTimeout(total=5)
            ) as answer:
                body = await answer.read()
                await respond(send, answer.status, body, b"text/plain; version=0.0.4")
        except (aiohttp.ClientError, TimeoutError) as error:
            await respond(send, 503, error_body(503, f"engine metrics unavailable: {error!r}",
                                                "ServiceUnavailableError"))  # fmt: skip

    def _key_name(self, scope: Scope) -> str | None:
        """The name of the presented key; "open" without a keys file; None when refused."""
        if self.keys is None:
            return "open"
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return match(self.keys.current(), value[7:].strip())
        return None

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, method: str) -> None:
        started = time.monotonic()
        key = self._key_name(scope)
        if key is None:
            self.metrics.answered(401, "")
            body = error_body(401, "Incorrect API key provided: send `Authorization: Bearer <key>`",
                              "invalid_request_error", "invalid_api_key")  # fmt: skip
            await respond(send, 401, body)
            return
        if self.draining:
            await self._refuse(send, Refused(503, "draining", 1), key)
            return
        try:
            await self.admission.acquire()
        except Refused as refused:
            await self._refuse(send, refused, key)
            return
        try:
            code = await self._relay(scope, receive, send, method, started)
        finally:
            self.admission.release()
        self.metrics.answered(code, key)
        self.metrics.duration.observe(time.monotonic() - started)

    async def _refuse(self, send: Send, refused: Refused, key: str) -> None:
        self.metrics.rejected.labels(reason=refused.reason).inc()
        self.metrics.answered(refused.status, key)
        messages = {
            "queue_full": "the server is at capacity and its queue is full; retry later",
            "queue_timeout": "the request waited too long for a free slot; retry later",
            "draining": "this replica is shutting down; retry on another",
        }
        body = error_body(refused.status, messages[refused.reason],
                          "rate_limit_error" if refused.status == 429 else "server_error",
                          refused.reason)  # fmt: skip
        await respond(send, refused.status, body,
                      extra=[(b"retry-after", str(refused.retry_after).encode())])  # fmt: skip

    async def _relay(
        self, scope: Scope, receive: Receive, send: Send, method: str, started: float
    ) -> int:
        """Forward the request; relay the answer chunk by chunk. Returns the status sent."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 499
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {"Content-Type": "application/json"}
        for name, value in scope["headers"]:
            if name in (b"content-type", b"accept"):
                headers[name.decode().title()] = value.decode()
        query = scope.get("query_string", b"").decode()
        target = scope["path"] + (f"?{query}" if query else "")
        # One task watches for the client leaving and cancels this one, so the upstream request
        # is dropped at once; the relay itself runs here, not in a task of its own (cheaper).
        handler = asyncio.current_task()
        left: list[bool] = []

        async def watch() -> None:
            await _disconnected(receive)
            left.append(True)
            if handler is not None:
                handler.cancel()

        watcher = asyncio.create_task(watch())
        try:
            return await self._forward(method, target, bytes(body), headers, send, started)
        except asyncio.CancelledError:
            if not left or handler is None:
                raise
            handler.uncancel()
            return 499
        finally:
            watcher.cancel()

    async def _forward(  # noqa: PLR0913, PLR0917 - one request's parts
        self, method: str, target: str, body: bytes, headers: dict[str, str], send: Send,
        started: float,
    ) -> int:  # fmt: skip
        assert self._session is not None  # noqa: S101 - set at startup
        try:
            async with asyncio.timeout(self.settings.first_byte_timeout):
                answer = await self._session.request(method, target, data=body, headers=headers)
            async with answer:
                out = [(k.lower(), v) for k, v in answer.raw_headers if k.lower() not in HOP_BY_HOP]
                await send({"type": "http.response.start", "status": answer.status, "headers": out})
                first = True
                tail = b""
                async for chunk in answer.content.iter_any():
                    if first:
                        self.metrics.ttft.observe(time.monotonic() - started)
                        first = False
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    tail = (tail + chunk)[-2048:]
                await send({"type": "http.response.body", "body": b""})
                self._count_usage(tail)
                return answer.status
        except TimeoutError:
            body = error_body(504, "the engine did not answer in time", "timeout_error")
            await _late_error(send, 504, body)
            return 504
        except aiohttp.ClientConnectionError as error:
            body = error_body(503, f"the engine is unavailable: {error}", "server_error")
            await _late_error(send, 503, body)
            return 503

    def _count_usage(self, tail: bytes) -> None:
        found = USAGE.search(tail)
        if found:
            self.metrics.prompt.inc(int(found.group(1)))
            self.metrics.completion.inc(int(found.group(2)))


async def _disconnected(receive: Receive) -> None:
    """Return when the client goes away."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _late_error(send: Send, status: int, body: bytes) -> None:
    """An error answer, unless the response had already started (then the stream just ends)."""
    try:
        await respond(send, status, body)
    except RuntimeError:  # the server refuses a second start: the client sees a cut stream
        log.warning("upstream failed after the response started (%s)", status)
