"""Serve kwok pods' addresses with real processes: a `llmserve sim` + `llmserve proxy` per pod.

kwok pods run no containers, but the test cluster gives them loopback IPs (127.1.x.y; see
tools/cluster.py), so a test can make a pod's IP and ports answer exactly as the pod would: the
proxy listens on the pod's own IP, port 8080 (the OpenAI routes, behind an API key, as the operator
renders it) and port 9090 (its metrics, which the operator's scrape reads), in front of a simulator
on 127.0.0.1. The operator's production scrape path then runs unchanged. A pod IP outside
127.0.0.0/8 fails the test before anything is sent: fake pod IPs elsewhere are never contacted.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procfs import free_port, stop  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent
PROXY_PORT = 8080
METRICS_PORT = 9090
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
KEY = "sk-podserve-0123456789"
"""The API key of every proxy served here (loopback processes of a test, not a secret)."""


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "llmserve.cli", *argv], cwd=ROOT, stdout=out, stderr=out
        )


def running_pods(listing: str) -> dict[str, str]:
    """Name -> IP of the pods in `kubectl get pods -o json` output that have an IP and stay."""
    return {
        p["metadata"]["name"]: p["status"]["podIP"]
        for p in json.loads(listing)["items"]
        if p.get("status", {}).get("podIP") and not p["metadata"].get("deletionTimestamp")
    }


@dataclass
class Pair:
    """The processes standing in for one pod."""

    pod: str
    ip: str
    sim: subprocess.Popen[bytes]
    proxy: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """The proxy's base URL, at the pod's IP."""
        return f"http://{self.ip}:{PROXY_PORT}"

    @property
    def metrics(self) -> str:
        """The proxy's metrics port's base URL, at the pod's IP."""
        return f"http://{self.ip}:{METRICS_PORT}"


def loopback(ip: str) -> str:
    """The pod IP, once checked to be loopback; anything else is never contacted."""
    if ipaddress.ip_address(ip) not in ipaddress.ip_network("127.0.0.0/8"):
        msg = f"pod IP {ip} is outside 127.0.0.0/8: the test cluster must hand out loopback IPs"
        raise AssertionError(msg)
    return ip


@dataclass
class PodServers:
    """Keeps a sim + proxy pair per running pod of one LLMService, in a background thread."""

    pods: Callable[[], dict[str, str]]
    """The pods to serve now: name -> pod IP (for example from `kubectl get pods`)."""
    logs: Path
    sim_flags: tuple[str, ...] = ()
    changed: Callable[[list[Pair]], None] | None = None
    """Called with the pairs served whenever they change (to register them with Prometheus)."""
    pairs: dict[str, Pair] = field(default_factory=dict)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for pair in self.pairs.values():
                stop(pair.proxy)
                stop(pair.sim)
            self.pairs.clear()

    def urls(self) -> list[str]:
        """The proxies of the pods served now."""
        if self.error is not None:
            raise self.error
        with self._lock:
            return [pair.url for pair in self.pairs.values()]

    def _loop(self) -> None:
        try:
            while not self._stop.wait(0.5):
                self._sync(self.pods())
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread by urls()
            self.error = error

    def _sync(self, pods: dict[str, str]) -> None:
        with self._lock:
            gone = [name for name in self.pairs if name not in pods]
            for name in gone:
                pair = self.pairs.pop(name)
                stop(pair.proxy)
                stop(pair.sim)
        new = {name: ip for name, ip in pods.items() if name not in self.pairs}
        for name, ip in new.items():
            pair = self._serve(name, loopback(ip))
            with self._lock:
                self.pairs[name] = pair
        if (gone or new) and self.changed is not None:
            self.changed(list(self.pairs.values()))

    def _serve(self, pod: str, ip: str) -> Pair:
        port = free_port()
        log = self.logs / f"{pod}.log"
        keys = self.logs / "api-keys"
        if not keys.exists():
            keys.write_text(f"podserve:{KEY}\n")
            keys.chmod(0o600)
        sim = _start(["sim", "--flavor", "vllm", "--model", MODEL, "--host", "127.0.0.1",
                      "--port", str(port), *self.sim_flags], log)  # fmt: skip
        proxy = _start(["proxy", "--upstream", f"http://127.0.0.1:{port}", "--host", ip,
                        "--port", str(PROXY_PORT), "--metrics-port", str(METRICS_PORT),
                        "--api-keys-file", str(keys)], log)  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{ip}:{PROXY_PORT}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                stop(proxy)
                stop(sim)
                msg = f"the sim + proxy for pod {pod} at {ip} did not get ready; see {log}"
                raise AssertionError(msg)
            time.sleep(0.2)
        return Pair(pod, ip, sim, proxy)


@dataclass
class Load:
    """Clients that keep `clients` requests in flight against the served pods, until stopped."""

    servers: PodServers
    clients: int
    max_tokens: int = 100
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Self:
        turn = itertools.count()
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, args=(turn,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Send nothing more; wait for the requests in flight."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _client(self, turn: itertools.count[int]) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": self.max_tokens}  # fmt: skip
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as client:
            while not self._stop.is_set():
                urls = self.servers.urls()
                if not urls:
                    time.sleep(0.2)
                    continue
                url = urls[next(turn) % len(urls)]
                try:
                    client.post(f"{url}/v1/chat/completions", json=body)
                    self.sent += 1
                except httpx.TransportError:
                    time.sleep(0.2)  # its pod is going away; the next turn picks another
