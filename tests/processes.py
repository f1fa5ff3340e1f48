"""Simulator and proxy processes on 127.0.0.1 for tests, stopped by PID even when a test fails."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx2 as httpx
from tests.support import ROOT
from tools.procfs import free_port

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@contextlib.contextmanager
def served(argv: list[str], probe: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`llmserve ARGV` until `probe` (a path) answers; SIGTERM and wait afterwards, by PID."""
    process = subprocess.Popen([sys.executable, "-m", "llmserve.cli", *argv], cwd=ROOT)  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def simulator(*flags: str, flavor: str = "vllm", step: str = "0.001") -> Iterator[str]:
    """A simulator process; its base URL."""
    port = free_port()
    argv = ["sim", "--flavor", flavor, "--model", MODEL, "--host", "127.0.0.1",
            "--port", str(port), "--step-seconds", step, *flags]  # fmt: skip
    with served(argv, "/metrics", port):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def proxy(upstream: str, *flags: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A proxy process in front of `upstream`; its base URL and process."""
    port = free_port()
    argv = ["proxy", "--upstream", upstream, "--host", "127.0.0.1", "--port", str(port), *flags]
    with served(argv, "/health", port) as process:
        yield f"http://127.0.0.1:{port}", process


def metric(url: str, name: str, labels: str = "") -> float:
    """One sample of the simulator's /metrics (0 when absent)."""
    text = httpx.get(f"{url}/metrics").text
    pattern = re.escape(name) + (
        r"\{[^}]*" + re.escape(labels) + r"[^}]*\}" if labels else r"(\{[^}]*\})?"
    )
    match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(match.lastindex or 1)) if match else 0.0
