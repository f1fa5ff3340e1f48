#!/usr/bin/env python3
"""`make bench-proxy`: llmserve's proxy beside a raw relay and LiteLLM, over the same simulator.

Targets, each in front of one `llmserve sim` (or none, for `direct`):
- direct: the simulator itself;
- llmserve: `llmserve proxy` with an API key (admission limits raised out of the way);
- relay: the "Python limit" reference: a raw ASGI app on uvicorn forwarding bytes with aiohttp,
  no routing, no auth, no metrics;
- litellm: LiteLLM's proxy with a master key, configured as a pass-through to the simulator (its
  own virtualenv under ~/.cache/llmserve; skipped, and said so, if it cannot be installed).

Scenarios: non-streaming requests at concurrency 1, 64 and 256 (the simulator answers one token
at once), and 256 concurrent streams at 50 tokens/s each. The load generator (tools/loadgen, Go)
runs pinned to CPU 1, the servers to CPU 0, each run 10 s, three runs each; the table shows the
median and the ratio to the relay. Wall-clock figures are reported, never asserted.

`--overload`: the proxy with 8 slots and a queue of 16 under 10x that many clients for 60 s:
the status codes seen (only 200, 429, 503, 504 are allowed from the proxy), the longest wait,
and the proxy's RSS every 10 s.

Usage: tools/bench_proxy.py [--runs N] [--seconds S] [--overload]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import testbin  # a sibling script: tools/ is on sys.path when run as a script
from procfs import cpu_seconds, free_port, peak_rss_mib, rss_mib, stop

ROOT = Path(__file__).resolve().parent.parent
MODEL = "sim-model"
KEY = "sk-bench-0123456789abcdef"
"""Both proxies check an API key, as they would in production; the raw relay checks nothing."""
KEYED = frozenset({"llmserve", "litellm"})
LITELLM = "litellm[proxy]==1.105.0"
RELAY = """
import aiohttp

UPSTREAM = "{upstream}"
session = None

async def app(scope, receive, send):
    global session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(UPSTREAM, connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            else:
                await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    async with session.post(scope["path"], data=body,
                            headers={"Content-Type": "application/json"}) as answer:
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [(b"content-type", answer.headers["Content-Type"].encode())]})
        async for chunk in answer.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
"""


def wait_for(port: int, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    """Until something accepts connections on the port."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"error: the server for port {port} did not start")
        time.sleep(0.2)


@contextlib.contextmanager
def server(argv: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server pinned to CPU 0; stopped by PID afterwards."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "operator"),  # the checkout's llmserve
        # LiteLLM: its key at boot, and no fetches from the internet (nothing but loopback here).
        "LITELLM_MASTER_KEY": KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
    }
    with log.open("a") as out:
        process = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=out, stderr=out, env=env)
    try:
        wait_for(port, process)
        yield process
    finally:
        stop(process, timeout=20)


@functools.cache
def litellm_python(log: Path) -> Path | None:
    """Python of a virtualenv holding LiteLLM's proxy, or None when it cannot be installed."""
    venv = testbin.CACHE / "litellm" / LITELLM.split("==")[1]
    python = venv / "bin" / "python"
    if not (venv / "complete").exists():
        print(f"installing {LITELLM} into {venv} (once) ...", flush=True)
        steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
                 [str(python), "-m", "pip", "install", "-q", LITELLM]]  # fmt: skip
        with log.open("a") as out:
            made = all(
                subprocess.run(step, stdout=out, stderr=out, check=False).returncode == 0
                for step in steps
            )
        if not made:
            print(f"LiteLLM could not be installed; see {log}", flush=True)
            return None
        (venv / "complete").touch()
    return python


def sim_argv(python: Path, port: int, *, streaming: bool) -> list[str]:
    """The simulator: instant one-token answers, or 50 tokens/s per stream whatever the batch."""
    step = "0.02" if streaming else "0"
    return [str(python), "-m", "llmserve.cli", "sim", "--model", MODEL, "--host", "127.0.0.1",
            "--port", str(port), "--step-seconds", step, "--per-sequence-seconds", "0",
            "--per-kilo-context-seconds", "0", "--per-prefill-token-seconds", "0",
            "--max-num-seqs", "1024"]  # fmt: skip


def llmserve_argv(python: Path, upstream: int, port: int, work: Path, *limits: str) -> list[str]:
    """`llmserve proxy` in front of the simulator on `upstream`, checking the key KEY."""
    keys = work / "api-keys"
    keys.write_text(f"bench:{KEY}\n")
    keys.chmod(0o600)
    return [str(python), "-m", "llmserve.cli", "proxy", "--upstream",
            f"http://127.0.0.1:{upstream}", "--host", "127.0.0.1", "--port", str(port),
            "--metrics-port", str(free_port()), "--api-keys-file", str(keys), *limits]  # fmt: skip


def target_argv(name: str, python: Path, upstream: int, port: int, work: Path) -> list[str] | None:
    """The command of a target in front of the simulator on `upstream`."""
    base = f"http://127.0.0.1:{upstream}"
    if name == "llmserve":
        return llmserve_argv(python, upstream, port, work, "--max-concurrency", "1024",
                             "--max-queue", "1024")  # fmt: skip
    if name == "relay":
        script = work / "relay.py"
        script.write_text(RELAY.replace("{upstream}", base))
        return [str(python), "-m", "uvicorn", "--app-dir", str(work), "relay:app", "--host",
                "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
                "--http", "httptools"]  # fmt: skip
    if name == "litellm":
        litellm = litellm_python(work / "litellm-install.log")
        if litellm is None:
            return None
        config = work / "litellm.yaml"
        params = {"model": f"openai/{MODEL}", "api_base": f"{base}/v1", "api_key": "none"}
        config.write_text(
            json.dumps({"model_list": [{"model_name": MODEL, "litellm_params": params}]})
        )
        return [str(litellm.parent / "litellm"), "--config", str(config), "--host", "127.0.0.1",
                "--port", str(port), "--num_workers", "1"]  # fmt: skip
    return None


def load(  # noqa: PLR0913 - one run's shape
    loadgen: Path, port: int, concurrency: int, seconds: float, *, streaming: bool, key: str = ""
) -> dict[str, Any]:
    """One loadgen run, pinned to CPU 1."""
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 100 if streaming else 1,
            "stream": streaming}  # fmt: skip
    argv = ["taskset", "-c", "1", str(loadgen), "-url",
            f"http://127.0.0.1:{port}/v1/completions", "-body", json.dumps(body),
            "-c", str(concurrency), "-d", f"{seconds}s"]  # fmt: skip
    if streaming:
        argv.append("-stream")
    if key:
        argv += ["-key", key]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 120)
    return dict(json.loads(out.stdout))


SCENARIOS = [
    ("c=1", 1, False),
    ("c=64", 64, False),
    ("c=256", 256, False),
    ("256 streams", 256, True),
]
TARGETS = ["direct", "llmserve", "relay", "litellm"]


def measure(
    runs: int, seconds: float, work: Path, targets: list[str]
) -> dict[tuple[str, str], dict[str, float]]:
    """Every scenario against every target; medians of `runs` runs."""
    python = testbin.runtime_python()
    loadgen = testbin.loadgen()
    table: dict[tuple[str, str], dict[str, float]] = {}
    log = work / "servers.log"
    for scenario, concurrency, streaming in SCENARIOS:
        for target in targets:
            sim_port, port = free_port(), free_port()
            with server(sim_argv(python, sim_port, streaming=streaming), sim_port, log):
                argv = target_argv(target, python, sim_port, port, work)
                if target == "direct":
                    port, pid = sim_port, None
                    samples = [load(loadgen, port, concurrency, seconds, streaming=streaming)
                               for _ in range(runs)]  # fmt: skip
                elif argv is None:
                    print(f"  {scenario:12s} {target:9s} not measured", flush=True)
                    continue
                else:
                    key = KEY if target in KEYED else ""
                    with server(argv, port, log) as process:
                        pid = process.pid
                        before = cpu_seconds(pid)
                        samples = [load(loadgen, port, concurrency, seconds, streaming=streaming,
                                        key=key) for _ in range(runs)]  # fmt: skip
                        after, rss = cpu_seconds(pid), peak_rss_mib(pid)
            row = {key: statistics.median(s[key] for s in samples)
                   for key in ("rps", "p50_ms", "p99_ms", "chunks_per_s", "ttft_p50_ms",
                               "ttft_p99_ms", "gap_p99_ms") if key in samples[0]}  # fmt: skip
            row["errors"] = sum(s["errors"] + sum(n for c, n in s["codes"].items() if c != "200")
                                for s in samples)  # fmt: skip
            if pid is not None:
                row["cpu_pct"] = 100 * (after - before) / (runs * seconds)
                row["rss_mib"] = rss
            table[(scenario, target)] = row
            print(f"  {scenario:12s} {target:9s} {json.dumps(row)}", flush=True)
    return table


def report(table: dict[tuple[str, str], dict[str, float]]) -> None:
    """The table, with ratios to the raw relay."""
    print("\nnon-streaming: requests/s (ratio to relay), p50 / p99 ms")
    for scenario, _, streaming in SCENARIOS:
        if streaming:
            continue
        relay = table.get((scenario, "relay"), {}).get("rps")
        cells = []
        for target in TARGETS:
            row = table.get((scenario, target))
            if row is None:
                cells.append(f"{target}: -")
                continue
            ratio = f" ({row['rps'] / relay:.2f}x)" if relay else ""
            cells.append(
                f"{target}: {row['rps']:.0f}{ratio} {row['p50_ms']:.2f}/{row['p99_ms']:.1f}"
            )
        print(f"  {scenario:6s} " + " | ".join(cells))
    print("\n256 streams at 50 tokens/s: chunks/s (ratio to direct), TTFT p50/p99 ms, gap p99 ms, "
          "CPU %, RSS MiB")  # fmt: skip
    direct = table.get(("256 streams", "direct"), {}).get("chunks_per_s")
    for target in TARGETS:
        row = table.get(("256 streams", target))
        if row is None:
            print(f"  {target:9s} -")
            continue
        ratio = f" ({row['chunks_per_s'] / direct:.3f}x)" if direct else ""
        extra = f" cpu {row['cpu_pct']:.0f}% rss {row['rss_mib']:.0f}" if "cpu_pct" in row else ""
        ttft = f"ttft {row['ttft_p50_ms']:.1f}/{row['ttft_p99_ms']:.1f}"
        gap = f"gap {row['gap_p99_ms']:.1f}"
        print(f"  {target:9s} {row['chunks_per_s']:.0f}{ratio} {ttft} {gap}{extra} "
              f"errors {row['errors']:.0f}")  # fmt: skip


def overload(seconds: float, work: Path) -> int:
    """10x the proxy's capacity for `seconds`: codes, longest wait, RSS over time."""
    python, loadgen = testbin.runtime_python(), testbin.loadgen()
    sim_port, port = free_port(), free_port()
    log = work / "servers.log"
    argv = sim_argv(python, sim_port, streaming=True)
    with server(argv, sim_port, log):
        proxy = llmserve_argv(python, sim_port, port, work, "--max-concurrency", "8",
                              "--max-queue", "16", "--queue-timeout", "2",
                              "--request-timeout", "10")  # fmt: skip
        with server(proxy, port, log) as process:
            body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 20})
            generator = subprocess.Popen(
                ["taskset", "-c", "1", str(loadgen), "-url", f"http://127.0.0.1:{port}/v1/completions",
                 "-body", body, "-c", "240", "-d", f"{seconds}s", "-key", KEY],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            rss = []
            while generator.poll() is None:
                time.sleep(10)
                rss.append(int(rss_mib(process.pid)))
            result = json.loads(generator.communicate()[0])
    codes = result["codes"]
    print(
        f"\noverload (8 slots + 16 queued, 240 clients, {seconds:.0f} s): codes {codes}, "
        f"p99 {result['p99_ms']:.0f} ms, RSS every 10 s {rss} MiB"
    )
    allowed = {"200", "429", "503", "504"}
    return 0 if set(codes) <= allowed and result["errors"] == 0 else 1


def main() -> int:
    """Run the comparison (or the overload run) and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--overload", action="store_true")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    work = Path(tempfile.mkdtemp(prefix="llmserve-bench-proxy-"))
    if args.overload:
        return overload(60, work)
    report(measure(args.runs, args.seconds, work, args.targets.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
