"""The proxy's flags, each also settable as `LLMSERVE_PROXY_<FLAG>` (argparse only: cheap)."""

from __future__ import annotations

import argparse
import os
from typing import Final

ENV_PREFIX: Final = "LLMSERVE_PROXY_"
HEALTH_PATHS: Final = {"vllm": "/health", "tgi": "/health", "sglang": "/health",
                       "llamacpp": "/health", "ollama": "/"}  # fmt: skip
"""Each engine's liveness route, behind `/ready`."""
METRICS_PORT: Final = 9090
"""Where `/metrics` and `/metrics/engine` are served: a port the Service does not expose."""


def _env(flag: str, default: str | None) -> str | None:
    return os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"), default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The proxy's flags; each default comes from LLMSERVE_PROXY_<FLAG> when that is set."""

    def flag(name: str, default: str | None, **kwargs: object) -> None:
        value = _env(name, default)
        parser.add_argument(f"--{name}", default=value, required=value is None, **kwargs)  # type: ignore[arg-type]

    flag("upstream", None, metavar="URL", help="the engine, e.g. http://127.0.0.1:8000")
    flag("host", "127.0.0.1", help="address to listen on (both ports)")
    flag("port", "8080", type=int, help="port of the OpenAI routes, /health and /ready")
    flag("metrics-port", str(METRICS_PORT), type=int, metavar="PORT",
         help="port of /metrics, /metrics/engine, /health and /ready; keep it out of the "
         "Service")  # fmt: skip
    flag("engine", "vllm", choices=sorted(HEALTH_PATHS), help="the engine (its health route)")
    flag("auth", "keys", choices=("keys", "none"),
         help="keys: every request needs a key of --api-keys-file (the default); none: any "
         "client may use the engine (say so explicitly)")  # fmt: skip
    flag("api-keys-file", "", metavar="PATH",
         help="one `name:key` line per key (e.g. a mounted Secret), reloaded when it changes; "
         "an empty file accepts no key; required with --auth keys")  # fmt: skip
    flag("max-concurrency", "64", type=int, metavar="N", help="requests at the engine at once")
    flag("max-queue", "256", type=int, metavar="N", help="requests waiting for a slot")
    flag("queue-timeout", "30", type=float, metavar="S", help="longest wait for a slot")
    flag("request-timeout", "600", type=float, metavar="S", help="longest request, streams too")
    flag("first-byte-timeout", "300", type=float, metavar="S",
         help="longest wait until the engine's answer starts")  # fmt: skip
    flag("max-body-bytes", str(16 * 2**20), type=int, metavar="N",
         help="largest request body; larger ones get 413 (16 MiB)")  # fmt: skip
    flag("body-timeout", "30", type=float, metavar="S",
         help="longest time to receive a request body, before it may queue (408)")  # fmt: skip
    flag("max-header-bytes", "65536", type=int, metavar="N",
         help="largest request line and headers; larger ones get 431")  # fmt: skip
    flag("header-timeout", "10", type=float, metavar="S",
         help="longest time to receive a request line and headers (408), also for connections "
         "that send nothing (closed)")  # fmt: skip
    flag("max-connections", "4096", type=int, metavar="N",
         help="open client connections beyond which requests get 503 with Retry-After")  # fmt: skip
    flag("drain-seconds", "120", type=float, metavar="S",
         help="after SIGTERM, how long requests in flight may finish")  # fmt: skip
