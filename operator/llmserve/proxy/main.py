"""`llmserve proxy`: flags (each also `LLMSERVE_PROXY_<FLAG>`), start-up, and the drain on SIGTERM.

Keys are required unless `--auth none` says otherwise (review H1). Two uvicorn servers share one
event loop and one `Proxy`: the public port (the Service's) and the metrics port (not in the
Service). Each has its own connection limit, so a flood of connections on the public port does not
starve the metrics scrape or the probes there; both use the bounded HTTP protocol
(`proxy/protocol.py`). The public application never looks at the metrics paths; measured against
one server with both sockets routing by `scope["server"]`, the split made no difference beyond
noise (c=1 p50 0.56 against 0.60 ms, c=64 3,140 against 3,150 requests/s; medians of 3 runs).

On SIGTERM the proxy turns unready and refuses new requests (503 with Retry-After, so clients go
to another replica), stops listening on the public port, and lets requests in flight, streams
included, finish for up to `--drain-seconds`; the metrics port serves until that drain ends. The
pod's preStop pause runs before that, so the Service has dropped the pod by the time requests are
refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Final, Literal

import uvicorn

from llmserve.proxy.admission import Limits
from llmserve.proxy.app import Proxy, Settings
from llmserve.proxy.flags import HEALTH_PATHS
from llmserve.proxy.keys import Keys, KeysFileError
from llmserve.proxy.protocol import HeadLimits, bounded

BACKLOG: Final = 2048
"""Connections the kernel queues before the proxy accepts them (capped by net.core.somaxconn)."""
MONITOR_CONNECTIONS: Final = 128
"""The metrics port's connection limit: Prometheus, the operator's autoscaler and the kubelet."""

log = logging.getLogger("llmserve.proxy")


class Unusable(Exception):  # noqa: N818 - a setting that cannot be used, said in words
    """A flag the proxy cannot start with; the message names it and the fix."""


class _Monitor(uvicorn.Server):
    """The metrics port's server: the public one handles the signals and stops this one."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave SIGTERM to the public server (it must drain first)."""
        yield


class _Server(uvicorn.Server):
    """The public port's uvicorn, with the metrics port's beside it.

    Readiness drops the moment SIGTERM arrives; the metrics port serves from start-up until the
    drain has ended.
    """

    def __init__(self, config: uvicorn.Config, proxy: Proxy, monitor: _Monitor,
                 monitor_socket: socket.socket) -> None:  # fmt: skip
        super().__init__(config)
        self.proxy, self.monitor, self.monitor_socket = proxy, monitor, monitor_socket
        self._monitoring: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """The lifespan (the engine session) and the public port, then the metrics port."""
        await super().startup(sockets)
        self._monitoring = asyncio.create_task(self.monitor.serve([self.monitor_socket]))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain the public port, then stop the metrics port."""
        await super().shutdown(sockets)
        self.monitor.should_exit = True
        if self._monitoring is not None:
            await self._monitoring

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Drain: refuse new requests and stop listening; in-flight ones finish (uvicorn waits)."""
        if not self.proxy.draining:
            log.warning("draining: %s in flight, %s queued", self.proxy.admission.in_flight,
                        self.proxy.admission.queued)  # fmt: skip
        self.proxy.draining = True
        super().handle_exit(sig, frame)


def keys_of(args: argparse.Namespace) -> Keys | None:
    """The keys to require, None under `--auth none`; `Unusable` for a missing or bad file."""
    if args.auth == "none":
        if args.api_keys_file:
            raise Unusable("--auth none and --api-keys-file contradict each other; drop one")
        log.warning("--auth none: the proxy is OPEN, any client that reaches it may use the engine")
        return None
    if not args.api_keys_file:
        raise Unusable("--auth keys (the default) needs --api-keys-file PATH, a file of "
                       "`name:key` lines; to serve without keys, say --auth none")  # fmt: skip
    try:
        return Keys(Path(args.api_keys_file))
    except OSError as error:
        raise Unusable(f"--api-keys-file {args.api_keys_file}: cannot be read "
                       f"({error.strerror})") from None  # fmt: skip
    except KeysFileError as error:
        raise Unusable(f"--api-keys-file: {error}") from None


def listen(host: str, port: int, flag: str) -> socket.socket:
    """A listening socket; `Unusable` naming the flag when the address cannot be had.

    Made here rather than by uvicorn so that a port in use is a one-line error naming the flag,
    and both ports queue connections from the start (the metrics server starts a moment later).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, as uvicorn and asyncio create theirs: asyncio sets TCP_NODELAY only on
    # sockets that say so, and without it an answer written in two parts waits ~40 ms for an ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise Unusable(f"{flag}: cannot listen on {host}:{port} ({error.strerror}); choose "
                       "another port, or stop what listens there") from None  # fmt: skip
    return sock


def _positive(args: argparse.Namespace) -> None:
    for flag in ("max_body_bytes", "body_timeout", "max_header_bytes", "header_timeout",
                 "max_connections", "max_concurrency"):  # fmt: skip
        if getattr(args, flag) <= 0:
            raise Unusable(f"--{flag.replace('_', '-')} must be more than 0")


def _config(
    app: Callable[..., Awaitable[None]], protocol: type[asyncio.Protocol], *,
    lifespan: Literal["on", "off"], connections: int, grace: int,
) -> uvicorn.Config:  # fmt: skip
    """The uvicorn settings of one of the two ports."""
    return uvicorn.Config(app, lifespan=lifespan, limit_concurrency=connections,
                          timeout_graceful_shutdown=grace, http=protocol, ws="none",
                          loop="asyncio", interface="asgi3", proxy_headers=False,
                          server_header=False, backlog=BACKLOG,
                          access_log=False, log_level="warning")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Start the proxy and serve until SIGTERM or Ctrl-C; 1 with a message on a bad setting."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        _positive(args)
        keys = keys_of(args)
        public_socket = listen(args.host, args.port, "--port")
        monitor_socket = listen(args.host, args.metrics_port, "--metrics-port")
    except Unusable as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    limits = Limits(args.max_concurrency, args.max_queue, args.queue_timeout)
    settings = Settings(
        upstream=args.upstream,
        limits=limits,
        request_timeout=args.request_timeout,
        first_byte_timeout=args.first_byte_timeout,
        engine_health=HEALTH_PATHS[args.engine],
        max_body_bytes=args.max_body_bytes,
        body_timeout=args.body_timeout,
    )
    proxy = Proxy(settings, keys)
    protocol = bounded(HeadLimits(args.max_header_bytes, args.header_timeout))
    public = _config(proxy, protocol, lifespan="on", connections=args.max_connections,
                     grace=int(args.drain_seconds))  # fmt: skip
    monitor = _config(proxy.monitor, protocol, lifespan="off", connections=MONITOR_CONNECTIONS,
                      grace=1)  # fmt: skip
    log.info("proxying http://%s:%s -> %s (%s, %s at once, queue %s); metrics on port %s",
             args.host, args.port, args.upstream,
             f"{len(keys.current())} keys" if keys else "no keys", limits.max_concurrency,
             limits.max_queue, args.metrics_port)  # fmt: skip
    _Server(public, proxy, _Monitor(monitor), monitor_socket).run(sockets=[public_socket])
    return 0
