"""The proxy's HTTP/1.1 protocol: uvicorn's httptools protocol with the request head bounded.

uvicorn bounds neither the size of a request head nor the time a client takes to send it (its
keep-alive timeout runs only between requests): a 64 MiB header or 200,000 headers are parsed and
held, and a connection that sends half a head, or nothing, stays open for good (review H3). This
subclass, passed to `uvicorn.Config(http=...)`:

- counts the bytes of each head (request line and headers) as they arrive and answers 431 past
  `max_head_bytes`, before the parser has buffered more than that;
- closes a connection whose head is not complete `head_timeout` seconds after it began: 408 when
  part of a head came, a silent close when nothing did (a 408 on a connection the client has not
  used yet could be read as the answer to the request it is about to send);
- answers uvicorn's connection limit (`limit_concurrency`) with the proxy's 503 envelope and a
  Retry-After instead of uvicorn's plain-text one;
- cancels the task of a request whose client goes away, with `CLIENT_LEFT` set in its scope, so
  the proxy drops a queued request or the engine's request at once;
- stops parsing a connection that pipelines more than `MAX_PIPELINED` requests behind the one being
  answered: uvicorn builds a request cycle for every request of a read, so 20 connections each
  sending 8,000 tiny pipelined requests at once took the proxy to 430 MB;
- when an answer went out before the request's body had fully arrived (413, 408, 401, ...), or
  after one of its own refusals, reads and drops whatever else the client sends for up to
  `LINGER_SECONDS` with the write side shut, so the client reads the answer instead of a reset,
  then closes: the connection cannot be reused mid-body.

It keeps uvicorn's parsing and request cycle, and relies on these attributes of uvicorn 0.54's
`HttpToolsProtocol` (requirements.lock): `app`, `cycle`, `pipeline`, `transport`, `flow`, `loop`,
`connections`, `tasks`, `limit_concurrency`, the parser callbacks it overrides, and
`_start_asgi_task` (replaced: uvicorn's, keeping the task; `reset_contextvars` is never set here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, cast

from uvicorn._types import ASGI3Application
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from llmserve.proxy.answers import CLIENT_LEFT, Receive, Refusal, Scope, Send, raw, refuse

LINGER_SECONDS: Final = 5.0
"""How long the rest of a refused request is read and dropped before the connection closes."""
MAX_PIPELINED: Final = 8
"""Requests a client may queue behind the one being answered (HTTP/1.1 pipelining)."""


class _PipelineFlood(Exception):  # noqa: N818 - ends a parse from inside a parser callback
    pass


@dataclass(frozen=True)
class HeadLimits:
    """Bounds on a request head (`--max-header-bytes`, `--header-timeout`)."""

    max_head_bytes: int = 65536
    """Request line and headers together; 64 KiB holds any real client's head many times."""
    head_timeout: float = 10.0
    """From the connection's start, or a head's first byte, to the head's end."""


async def _too_many_connections(_: Scope, __: Receive, send: Send) -> None:
    refusal = Refusal(503, "too_many_connections", "the proxy holds as many connections as it "
                      "accepts (--max-connections); retry shortly", retry_after=1)  # fmt: skip
    await refuse(send, refusal, extra=[(b"connection", b"close")])


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above; subclass it through `bounded()`."""

    limits: ClassVar[HeadLimits] = HeadLimits()

    def __init__(self, config: Config, server_state: ServerState,
                 app_state: dict[str, object], _loop: asyncio.AbstractEventLoop | None = None,
                 ) -> None:  # fmt: skip
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn's own check would answer a plain-text 503; on_headers_complete does it instead.
        self._max_connections, self.limit_concurrency = self.limit_concurrency, None
        self._app = self.app
        self._head_room: int | None = self.limits.max_head_bytes
        """Bytes a head may still take; None while a body is being read."""
        self._timer: asyncio.TimerHandle | None = None
        """The head deadline, or the end of the linger."""
        self._heads = 0
        """Heads parsed on this connection."""
        self._dropping = False
        """Everything the client sends from now on is dropped unread."""
        self._running: tuple[RequestResponseCycle, asyncio.Task[None]] | None = None
        """The request being served, and its task."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the deadline of the first head: a connection that sends nothing is closed."""
        super().connection_made(transport)
        self._arm(self.limits.head_timeout, self._head_too_late)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timer; cancel the request in progress, whose client has gone."""
        self._disarm()
        running = self._running
        if running is not None and not running[0].response_complete:
            # Cancelling here, rather than in a task per request that waits for the disconnect
            # message, saves a task and a coroutine on every request (measured: about 5 % of the
            # proxy's time at 64 requests at once).
            scope: Scope = cast("Scope", running[0].scope)  # a dict; uvicorn types it closed
            scope[CLIENT_LEFT] = True
            running[1].cancel()
        self._running = None
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """uvicorn's, keeping the request's task so that `connection_lost` can cancel it."""
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        self._running = (cycle, task)

    def data_received(self, data: bytes) -> None:
        """Count head bytes and refuse past the limit; parse no more than the limit allows."""
        if self._dropping or self.transport.is_closing():
            return
        room = self._head_room
        if room is None or len(data) <= room:
            if room is not None:
                self._head_room = room - len(data)
            super().data_received(data)
            started = self._head_room is not None and self._head_room < self.limits.max_head_bytes
            if started and self._timer is None:
                self._arm(self.limits.head_timeout, self._head_too_late)
            return
        # Parse only what fits: the head may end within it, and what follows it is a body, or a
        # next request (whose first bytes then go uncounted: a head is held to twice the limit).
        heads = self._heads
        super().data_received(data[:room])
        if self._heads == heads:
            limit = self.limits.max_head_bytes
            self._refuse(Refusal(431, "request_header_fields_too_large",
                                 f"the request line and headers exceed {limit} bytes; send "
                                 "fewer or smaller headers"))  # fmt: skip
        else:
            self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        """End the head's deadline; check the connection limit where uvicorn does."""
        self._head_room = None
        self._heads += 1
        self._disarm()
        if len(self.pipeline) >= MAX_PIPELINED:
            # Each queued request costs a request cycle, and one read of tiny pipelined requests
            # would queue thousands: stop parsing here (uvicorn answers a parser error through
            # send_400_response), serve the ones queued, then close.
            raise _PipelineFlood
        most = self._max_connections
        crowded = most is not None and (len(self.connections) >= most or len(self.tasks) >= most)
        self.app = _too_many_connections if crowded else self._app
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request is in: the next bytes begin another head."""
        super().on_message_complete()
        self._head_room = self.limits.max_head_bytes

    def on_response_complete(self) -> None:
        """Keep the connection for the next request, unless this one's body never ended."""
        # With a request queued behind this one (pipelining), this one's body was complete.
        if self.cycle.more_body and not self.pipeline and not self.transport.is_closing():
            self._linger()
            return
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """Answer an unparsable request as uvicorn does, in the proxy's envelope."""
        self._refuse(Refusal(400, "invalid_http", f"the request is not valid HTTP/1.1 ({msg})"))

    def _refuse(self, refusal: Refusal) -> None:
        """Answer and end the connection; after the answer in flight, if there is one."""
        self._dropping = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # uvicorn closes once that answer is out
            self._disarm()
            return
        self.transport.write(raw(refusal))
        self._linger()

    def _linger(self) -> None:
        """Shut the write side, drop what the client still sends, close soon.

        At the latest in LINGER_SECONDS; at once when the client closes its side.
        """
        self._dropping = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(LINGER_SECONDS, self.transport.close)

    def _head_too_late(self) -> None:
        self._timer = None
        if self._head_room == self.limits.max_head_bytes:
            self.transport.close()
            return
        self._refuse(Refusal(408, "request_timeout", "the request line and headers did not "
                             f"arrive within {self.limits.head_timeout:g} s"))  # fmt: skip

    def _arm(self, seconds: float, callback: Callable[[], object]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def bounded(limits: HeadLimits) -> type[BoundedHttpTools]:
    """The protocol class to give uvicorn, with these limits."""

    class Bounded(BoundedHttpTools):
        __doc__ = BoundedHttpTools.__doc__

    Bounded.limits = limits
    return Bounded
