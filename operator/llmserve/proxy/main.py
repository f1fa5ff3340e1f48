"""`llmserve proxy`: flags (each also `LLMSERVE_PROXY_<FLAG>`), start-up, and the drain on SIGTERM.

On SIGTERM the proxy turns unready and refuses new requests (503 with Retry-After, so clients go
to another replica), stops listening, and lets requests in flight, streams included, finish for up
to `--drain-seconds` before it exits. The pod's preStop pause runs before that, so the Service has
dropped the pod by the time requests are refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from llmserve.proxy.admission import Limits
from llmserve.proxy.app import Proxy, Settings
from llmserve.proxy.flags import HEALTH_PATHS
from llmserve.proxy.keys import Keys, KeysFileError

log = logging.getLogger("llmserve.proxy")


class _Server(uvicorn.Server):
    """uvicorn, with readiness dropped the moment SIGTERM arrives."""

    def __init__(self, config: uvicorn.Config, proxy: Proxy) -> None:
        super().__init__(config)
        self.proxy = proxy

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Drain: refuse new requests and stop listening; in-flight ones finish (uvicorn waits)."""
        if not self.proxy.draining:
            log.warning("draining: %s in flight, %s queued", self.proxy.admission.in_flight,
                        self.proxy.admission.queued)  # fmt: skip
        self.proxy.draining = True
        super().handle_exit(sig, frame)


def run(args: argparse.Namespace) -> int:
    """Start the proxy and serve until SIGTERM or Ctrl-C; 1 with a message on a bad setting."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    keys = None
    if args.api_keys_file:
        try:
            keys = Keys(Path(args.api_keys_file))
        except (OSError, KeysFileError) as error:
            sys.stderr.write(f"error: --api-keys-file: {error}\n")
            return 1
    else:
        log.warning("no --api-keys-file: the proxy is OPEN, any client may use the engine")
    limits = Limits(args.max_concurrency, args.max_queue, args.queue_timeout)
    settings = Settings(
        upstream=args.upstream,
        limits=limits,
        request_timeout=args.request_timeout,
        first_byte_timeout=args.first_byte_timeout,
        engine_health=HEALTH_PATHS[args.engine],
    )
    proxy = Proxy(settings, keys)
    config = uvicorn.Config(
        proxy, host=args.host, port=args.port, lifespan="on", access_log=False,
        log_level="warning", timeout_graceful_shutdown=int(args.drain_seconds),
        http="httptools", loop="asyncio",
    )  # fmt: skip
    log.info("proxying http://%s:%s -> %s (%s keys, %s at once, queue %s)", args.host, args.port,
             args.upstream, len(keys.keys) if keys else "no", limits.max_concurrency,
             limits.max_queue)  # fmt: skip
    _Server(config, proxy).run()
    return 0
