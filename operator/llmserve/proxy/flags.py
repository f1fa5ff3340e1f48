"""The proxy's flags, each also settable as `LLMSERVE_PROXY_<FLAG>` (argparse only: cheap)."""

from __future__ import annotations

import argparse
import os
from typing import Final

ENV_PREFIX: Final = "LLMSERVE_PROXY_"
HEALTH_PATHS: Final = {"vllm": "/health", "tgi": "/health", "sglang": "/health",
                       "llamacpp": "/health", "ollama": "/"}  # fmt: skip
"""Each engine's liveness route, behind `/ready`."""


def _env(flag: str, default: str | None) -> str | None:
    return os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"), default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The proxy's flags; each default comes from LLMSERVE_PROXY_<FLAG> when that is set."""

    def flag(name: str, default: str | None, **kwargs: object) -> None:
        value = _env(name, default)
        parser.add_argument(f"--{name}", default=value, required=value is None, **kwargs)  # type: ignore[arg-type]

    flag("upstream", None, metavar="URL", help="the engine, e.g. http://127.0.0.1:8000")
    flag("host", "127.0.0.1", help="address to listen on")
    flag("port", "8080", type=int, help="port to listen on")
    flag("engine", "vllm", choices=sorted(HEALTH_PATHS), help="the engine (its health route)")
    flag("api-keys-file", "", metavar="PATH",
         help="keys file: one key per line, or name:key; without it the proxy is open")  # fmt: skip
    flag("max-concurrency", "64", type=int, metavar="N", help="requests at the engine at once")
    flag("max-queue", "256", type=int, metavar="N", help="requests waiting for a slot")
    flag("queue-timeout", "30", type=float, metavar="S", help="longest wait for a slot")
    flag("request-timeout", "600", type=float, metavar="S", help="longest request, streams too")
    flag("first-byte-timeout", "300", type=float, metavar="S",
         help="longest wait until the engine's answer starts")  # fmt: skip
    flag("drain-seconds", "120", type=float, metavar="S",
         help="after SIGTERM, how long requests in flight may finish")  # fmt: skip
