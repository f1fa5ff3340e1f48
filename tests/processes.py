"""Simulator, proxy and Prometheus processes on 127.0.0.1 for tests, always stopped by PID."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
from tests.support import ROOT
from tools import testbin
from tools.podserve import MODEL
from tools.procfs import free_port, stop


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
        stop(process, timeout=30)


@contextlib.contextmanager
def simulator(*flags: str, flavor: str = "vllm", step: str = "0.001") -> Iterator[str]:
    """A simulator process; its base URL."""
    port = free_port()
    argv = ["sim", "--flavor", flavor, "--model", MODEL, "--host", "127.0.0.1",
            "--port", str(port), "--step-seconds", step, *flags]  # fmt: skip
    with served(argv, "/metrics", port):
        yield f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class ServedProxy:
    """A running `llmserve proxy`."""

    url: str
    """Its public port: the OpenAI routes and the probes."""
    metrics: str
    """Its metrics port: `/metrics`, `/metrics/engine` and the probes."""
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def proxy(upstream: str, *flags: str) -> Iterator[ServedProxy]:
    """A proxy process in front of `upstream`; open (`--auth none`) unless `flags` give keys."""
    port, metrics_port = free_port(), free_port()
    auth = [] if {"--api-keys-file", "--auth"} & set(flags) else ["--auth", "none"]
    argv = ["proxy", "--upstream", upstream, "--host", "127.0.0.1", "--port", str(port),
            "--metrics-port", str(metrics_port), *auth, *flags]  # fmt: skip
    with served(argv, "/health", port) as process:
        yield ServedProxy(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", process)


def metric(url: str, name: str, labels: str = "") -> float:
    """One sample of the /metrics page at `url`: a simulator, or a proxy's metrics port (0 when
    absent)."""
    text = httpx.get(f"{url}/metrics").text
    pattern = re.escape(name) + (
        r"\{[^}]*" + re.escape(labels) + r"[^}]*\}" if labels else r"(\{[^}]*\})?"
    )
    match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(match.lastindex or 1)) if match else 0.0


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job of the test Prometheus; its targets come from a file (`file_sd_configs`)."""

    name: str
    path: str = "/metrics"
    honor_labels: bool = False
    """Keep the target's own `pod` and `namespace` labels (an exporter's, like DCGM's)."""


@dataclass(frozen=True)
class Prometheus:
    """A running Prometheus: its base URL, and the files its jobs read their targets from."""

    url: str
    targets_dir: Path

    def targets(self, job: str, targets: Mapping[str, Mapping[str, str]]) -> None:
        """Scrape these `host:port`s in `job` from now on, each with its labels."""
        groups = [
            {"targets": [address], "labels": dict(labels)} for address, labels in targets.items()
        ]
        path = self.targets_dir / f"{job}.json"
        path.with_suffix(".tmp").write_text(json.dumps(groups))
        path.with_suffix(".tmp").replace(path)  # Prometheus never reads half a file


def _prometheus_config(jobs: tuple[ScrapeJob, ...], targets_dir: Path) -> dict[str, object]:
    """Scrape every second; pick up changed target files within a second (JSON is YAML)."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": job.name, "metrics_path": job.path, "honor_labels": job.honor_labels,
             "file_sd_configs": [{"files": [str(targets_dir / f"{job.name}.json")],
                                  "refresh_interval": "1s"}]}
            for job in jobs
        ],
    }  # fmt: skip


@contextlib.contextmanager
def prometheus(*jobs: ScrapeJob) -> Iterator[Prometheus]:
    """A Prometheus (tools/testbin.py's) with these jobs and no targets yet, until /-/ready."""
    binary = testbin.prometheus()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="llmserve-prometheus-") as tmp:
        root = Path(tmp)
        (root / "prometheus.yml").write_text(json.dumps(_prometheus_config(jobs, root)))
        for job in jobs:
            (root / f"{job.name}.json").write_text("[]")
        argv = [str(binary), f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn"]  # fmt: skip
        process = subprocess.Popen(argv)  # noqa: S603 - the cached test binary, fixed flags
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not _answers(f"{url}/-/ready"):
                assert process.poll() is None, f"prometheus exited with {process.returncode}"
                assert time.monotonic() < deadline, f"prometheus at {url} not ready in 30 s"
                time.sleep(0.1)
            yield Prometheus(url, root)
        finally:
            stop(process, timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
