#!/usr/bin/env python3
"""`make fuzz`, second half: the security review's attacks on a real proxy, and what they cost it.

Starts `llmserve sim` and `llmserve proxy` (with an API key, the review's admission settings, and
the default size limits) on 127.0.0.1, then runs, each bounded in count and time:

- headers: one 64 MiB header, four in parallel, 200,000 headers, 3,000 connections left halfway
  through their headers, a connection that sends nothing, 20 connections each pipelining 8,000
  requests at once;
- bodies: 100 MiB declared by Content-Length, 100 MiB chunked (once, then twice at once), two
  uploads that trickle while a normal request is served;
- queue: clients that queue behind two held streams and leave, then a normal request;
- paths: requests the proxy answers itself (unknown routes, wrong methods, bad headers, malformed
  HTTP, no or two keys).

Meanwhile a probe asks `/health` every 25 ms on a connection of its own, on each port, and the
proxy's RSS is sampled. It prints, per attack, the requests tried and the answers by status, then
the 5xx of the proxy's own (the goal is 0; the healthy simulator answers no 5xx), the peak RSS
during the header and the body attacks (the container's limit is 512 MiB), and the `/health`
latencies. Exit status 1 when the proxy answered a 5xx, lost `/health`, or died. Every process it
starts is stopped by its PID, also on failure.

Usage: tools/hostile.py
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procfs import free_port, peak_rss_mib, stop  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MODEL = "hostile-model"
KEY = b"sk-hostile-0123456789"
MIB = 2**20
DEADLINES = ("--header-timeout", "5", "--body-timeout", "5")
"""Shorter than the defaults (10 s, 30 s) only so the run is short; the behaviour is the same."""
ADMISSION = ("--max-concurrency", "2", "--max-queue", "2", "--queue-timeout", "30")
"""The review's slots and queue; a queue timeout longer than the queue attack."""


@dataclass
class Outcome:
    """What one attack got back: per request tried, its status, or what became of it."""

    name: str
    answers: Counter[str]
    seconds: float

    @property
    def tried(self) -> int:
        """Requests sent."""
        return sum(self.answers.values())


@dataclass
class Watch:
    """`/health` latencies on both ports and the proxy's RSS, sampled while the attacks run."""

    pid: int
    urls: tuple[str, ...]
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0
    peaks: dict[str, float] = field(default_factory=dict)
    """The proxy's peak RSS (VmHWM) in each phase, MiB."""
    phase: str = "idle"
    _stop: threading.Event = field(default_factory=threading.Event)

    def enter(self, phase: str) -> None:
        """End the phase running (its peak RSS noted) and start the next one's count."""
        self.peaks[self.phase] = peak_rss_mib(self.pid)
        # Writing 5 to clear_refs resets the kernel's peak-RSS mark of our own child (Linux 4.0+).
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.phase = phase

    def run(self) -> None:
        """Probe until stopped."""
        clients = {url: httpx.Client(timeout=10) for url in self.urls}
        try:
            while not self._stop.wait(0.025):
                for url, client in clients.items():
                    began = time.monotonic()
                    try:
                        ok = client.get(f"{url}/health").status_code == 200
                    except httpx.TransportError:
                        ok = False
                    self.latencies.setdefault(url, []).append(time.monotonic() - began)
                    self.failures += not ok
        finally:
            for client in clients.values():
                client.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[Watch]:
        """Sample in a thread for the duration of the block."""
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)


def status(data: bytes) -> str:
    """The status of an HTTP/1.1 answer, or "closed" when the connection ended without one."""
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "closed"


def answer_to(sock: socket.socket, seconds: float = 60) -> bytes:
    """Everything the proxy sends until it closes the connection."""
    sock.settimeout(seconds)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def first_answer(sock: socket.socket, seconds: float = 60) -> bytes:
    """The start of the proxy's answer (its status line), or b"" when it closed without one."""
    sock.settimeout(seconds)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
    return data


def send(port: int, head: bytes, pieces: Iterable[bytes] = ()) -> str:
    """One request, its pieces sent from a thread until the proxy stops reading; the status."""
    with socket.create_connection((HOST, port)) as sock:

        def write() -> None:
            with contextlib.suppress(OSError):
                sock.sendall(head)
                for piece in pieces:
                    sock.sendall(piece)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        answered = status(first_answer(sock))
    writer.join(timeout=60)
    return answered


def post(framing: bytes, body: bytes = b"", extra: bytes = b"") -> bytes:
    """A keyed POST /v1/completions with this framing header, and the start of its body."""
    return (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\n%s\r\n%s\r\n%s"
            % (KEY, framing, extra, body))  # fmt: skip


def completion(fields: bytes) -> bytes:
    """A whole keyed completion request for the simulator's model."""
    body = b'{"model": "%s", "prompt": "x", %s}' % (MODEL.encode(), fields)
    return post(b"Content-Length: %d" % len(body), body)


def header_attacks(port: int) -> Iterator[Outcome]:
    """The review's H3, and a pipelining flood."""
    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: "

    def one_huge(_: int = 0) -> str:
        return send(port, huge, (b"a" * MIB for _ in range(64)))

    def four_huge() -> list[str]:
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one_huge, range(4)))

    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-N: v\r\n" * 200_000 + b"\r\n"
    yield measure("64 MiB header", lambda: [one_huge()])
    yield measure("4 x 64 MiB headers at once", four_huge)
    yield measure("200,000 headers", lambda: [send(port, many)])
    yield measure("3,000 half-open heads", lambda: stalled(port, 3000))
    yield measure("a connection that sends nothing", lambda: stalled(port, 1, b""))
    yield measure("20 x 8,000 pipelined requests", lambda: pipelining(port, 20, 8000))


def stalled(port: int, count: int, sent: bytes = b"GET /health HTTP/1.1\r\nX-A: ") -> list[str]:
    """Connections that send `sent` and then nothing; what each got when it was closed."""
    with contextlib.ExitStack() as opened:
        socks = [opened.enter_context(socket.create_connection((HOST, port)))
                 for _ in range(count)]  # fmt: skip
        for sock in socks:
            sock.sendall(sent)
        return [status(answer_to(sock)) for sock in socks]


def pipelining(port: int, connections: int, requests: int) -> list[str]:
    """Connections each sending `requests` requests in one go; the unanswered count as closed."""
    answers = []
    with contextlib.ExitStack() as opened:
        socks = [opened.enter_context(socket.create_connection((HOST, port)))
                 for _ in range(connections)]  # fmt: skip
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * requests)
        for sock in socks:
            got = [status(b"HTTP/1.1 " + part) for part in answer_to(sock).split(b"HTTP/1.1 ")[1:]]
            answers += got + ["closed"] * (requests - len(got))
    return answers


def body_attacks(port: int) -> Iterator[Outcome]:
    """The review's H2 and M1."""
    chunk = b"%x\r\n%s\r\n" % (MIB, b"x" * MIB)

    def slow_uploads() -> list[str]:
        with contextlib.ExitStack() as opened:
            slow = [opened.enter_context(socket.create_connection((HOST, port)))
                    for _ in range(2)]  # fmt: skip
            for sock in slow:
                sock.sendall(post(b"Content-Length: 100", b"{"))
            normal = send(port, completion(b'"max_tokens": 1'))
            return [normal, *(status(answer_to(sock)) for sock in slow)]

    declared = post(b"Content-Length: %d" % (100 * MIB))
    chunked = post(b"Transfer-Encoding: chunked")
    yield measure("100 MiB by Content-Length", lambda: [send(port, declared)])

    def chunked_upload(_: int = 0) -> str:
        return send(port, chunked, (chunk for _ in range(100)))

    def two_chunked() -> list[str]:
        with ThreadPoolExecutor(2) as pool:
            return list(pool.map(chunked_upload, range(2)))

    yield measure("100 MiB chunked", lambda: [chunked_upload()])
    yield measure("2 x 100 MiB chunked at once", two_chunked)
    yield measure("2 slow uploads, 1 request", slow_uploads)


def queue_attacks(port: int) -> Iterator[Outcome]:
    """The review's M10: clients that queue and leave must not keep their places."""
    endless = completion(b'"max_tokens": 100000, "stream": true')

    def leave_the_queue() -> list[str]:
        with contextlib.ExitStack() as opened:
            holders = [opened.enter_context(socket.create_connection((HOST, port)))
                       for _ in range(2)]  # fmt: skip
            answers = []
            for sock in holders:  # both slots, held
                sock.sendall(endless)
                answers.append(status(first_answer(sock)))
            for _ in range(4):  # twice the queue's places: each must be free again at once
                with socket.create_connection((HOST, port)) as leaving:
                    leaving.sendall(endless)
                    time.sleep(0.2)
                answers.append("left")
            with socket.create_connection((HOST, port)) as last:
                last.sendall(completion(b'"max_tokens": 1'))
                # A 429 comes at once; a request that got a place in the queue waits for a slot.
                answers.append(status(first_answer(last, seconds=1)) if ready(last) else "queued")
            return answers

    yield measure("2 held, 4 queue and leave, 1 more", leave_the_queue)


def ready(sock: socket.socket) -> bool:
    """Whether the proxy answers within a second."""
    sock.settimeout(1)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except TimeoutError:
        return False


PATH_ATTACKS = [
    b"GET /tokenize HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/../tokenize HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET //v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /V1/MODELS HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/models;x HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics/engine/../../tokenize HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics/engine HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
    b"TRACE /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
    (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5\r\n"
        b"Authorization: Bearer " + KEY + b"\r\n\r\n"
    ),
    post(b"Content-Length: 2", b"{}", b"Content-Type: application/json\xff\r\n"),
    post(b"Content-Length: 2", b"{}", b"Accept: \xc3\x28\r\n"),
    post(b"Content-Length: 2", b"{}", b"Connection: Upgrade\r\nUpgrade: h2c\r\n"),
    b"GET /health HTTP/1.1\nHost: x\n\n",
    (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n{}"
    ),
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n",
]
"""Requests the proxy answers without the engine (the review's L1-L6 and its route checks)."""


def path_attacks(port: int) -> Iterator[Outcome]:
    """Requests that must not reach the engine."""
    yield measure("requests answered by the proxy", lambda: [send(port, r) for r in PATH_ATTACKS])


def measure(name: str, attack: Callable[[], list[str]]) -> Outcome:
    """Run one attack and print its line."""
    began = time.monotonic()
    outcome = Outcome(name, Counter(attack()), time.monotonic() - began)
    answers = ", ".join(f"{what}: {n}" for what, n in sorted(outcome.answers.items()))
    print(f"  {name:36s} {outcome.tried:7d} tried {outcome.seconds:6.1f} s   {answers}", flush=True)
    return outcome


@contextlib.contextmanager
def started(argv: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`llmserve ARGV` until it answers `/health` on `port`; stopped by its PID afterwards."""
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "llmserve.cli", *argv], cwd=ROOT,
                                   stdout=out, stderr=out)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://{HOST}:{port}/health", timeout=1).status_code in {200, 503}:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: `llmserve {argv[0]}` did not start; see {log}")
            time.sleep(0.1)
        yield process
    finally:
        stop(process, timeout=30)


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of the values lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def report(outcomes: list[Outcome], watch: Watch) -> int:
    """Print the summary; the exit status."""
    tried = sum(o.tried for o in outcomes)
    own = Counter({what: n for o in outcomes for what, n in o.answers.items() if what[0] == "5"})
    print(f"\nrequests tried: {tried}")
    print(f"5xx of the proxy's own: {sum(own.values())} {dict(own) if own else ''}(goal 0)")
    for phase in ("idle", "headers", "bodies", "queue", "paths"):
        print(
            f"peak RSS during the {phase} phase: {watch.peaks[phase]:.0f} MiB "
            "(the container's limit: 512 MiB)"
        )
    for url, seconds in watch.latencies.items():
        ms = [s * 1000 for s in seconds]
        p50, p99 = statistics.median(ms), percentile(ms, 0.99)
        print(f"/health at {url}, its own connection: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
              f"max {max(ms):.1f} ms, {len(ms)} probes")  # fmt: skip
    print(f"/health probes failed: {watch.failures}")
    return 1 if own or watch.failures else 0


def main() -> int:
    """Run every attack against a fresh simulator and proxy and print the report."""
    work = Path(tempfile.mkdtemp(prefix="llmserve-hostile-"))
    keys = work / "api-keys"
    keys.write_bytes(b"hostile:" + KEY + b"\n")
    keys.chmod(0o600)
    sim_port, port, metrics_port = free_port(), free_port(), free_port()
    sim = ["sim", "--model", MODEL, "--host", HOST, "--port", str(sim_port), "--step-seconds",
           "0.01"]  # fmt: skip
    proxy = ["proxy", "--upstream", f"http://{HOST}:{sim_port}", "--host", HOST, "--port",
             str(port), "--metrics-port", str(metrics_port), "--api-keys-file", str(keys),
             *DEADLINES, *ADMISSION]  # fmt: skip
    log = work / "servers.log"
    print(f"proxy: {' '.join(proxy[6:])}\nlogs: {log}\n")
    with started(sim, sim_port, log), started(proxy, port, log) as process:
        urls = (f"http://{HOST}:{port}", f"http://{HOST}:{metrics_port}")
        outcomes = []
        with Watch(process.pid, urls).running() as watch:
            time.sleep(0.5)  # an idle RSS sample first
            for phase, attacks in (("headers", header_attacks), ("bodies", body_attacks),
                                   ("queue", queue_attacks), ("paths", path_attacks)):  # fmt: skip
                watch.enter(phase)
                print(f"{phase}:", flush=True)
                outcomes += list(attacks(port))
            watch.enter("done")
        if process.poll() is not None:
            print(f"the proxy died (exit {process.returncode}); see {log}")
            return 1
        return report(outcomes, watch)


if __name__ == "__main__":
    sys.exit(main())
