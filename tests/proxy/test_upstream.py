"""What the proxy relays, and how it answers an engine that misbehaves (review L2, L3, L5, M4).

The engine here is a small HTTP/1.1 server in a thread of the test (on 127.0.0.1) that answers
each request by its body's `model`: an echo of the headers it got, hop-by-hop headers, a bad
status line, a control character in a header, a connection closed before the answer or in the
middle of one. It also counts its `/metrics` fetches and can serve an oversized page.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import ClassVar, Final

import httpx2 as httpx
import openai
import pytest
from tests.processes import ServedProxy, metric, proxy

CLOSE: Final = b""
"""An answer of nothing: the engine closes the connection."""
EVENT: Final = b'data: {"id": "1", "object": "text_completion", "choices": []}\n\n'
ANSWERS: dict[str, bytes] = {
    "hop": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: keep-alive, X-Internal\r\nX-Internal: secret\r\n"
            b"Proxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X-T\r\n"
            b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nServer: engine/1.0\r\n"
            b"X-Kept: yes\r\n\r\n{}"),
    "bad-status": b"HTTP/1.1 abc\r\n\r\n",
    "control-header": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Bad: a\x01b\r\n"
                       b"Content-Length: 2\r\n\r\n{}"),
    "closed": CLOSE,
    "cut": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"partial'),
    "stream-cut": (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(EVENT), EVENT)),
}  # fmt: skip
"""What the engine answers, by the request's `model`; each but "hop" ends the connection."""


class Engine(socketserver.ThreadingTCPServer):
    """The misbehaving engine."""

    daemon_threads = True
    page: bytes = b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n"
    metrics_fetches = 0

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, target: bytes, headers: dict[str, str], body: bytes) -> tuple[bytes, bool]:
        """The answer, and whether the connection stays open after it."""
        if target == b"/health":
            return whole(b""), True
        if target == b"/metrics":
            with self.lock:
                self.metrics_fetches += 1
            return whole(self.page), True
        model = json.loads(body)["model"]
        if model == "echo":
            return whole(json.dumps(headers).encode()), True
        return ANSWERS[model], model == "hop"


def whole(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class _Handler(socketserver.StreamRequestHandler):
    server: ClassVar[Engine]  # type: ignore[misc]

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the proxy drops the connection of a fault
            self._serve()

    def _serve(self) -> None:
        while line := self.rfile.readline():
            target = line.split(b" ")[1]
            headers = {}
            while (header := self.rfile.readline()) not in {b"\r\n", b""}:
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", "0")))
            answer, keep = self.server.answer(target, headers, body)
            self.wfile.write(answer)
            self.wfile.flush()
            if not keep:
                return  # the connection ends with the fault


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    server = Engine()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def relay(engine: Engine) -> Iterator[ServedProxy]:
    with proxy(engine.url) as served:
        yield served


def ask(url: str, model: str, headers: list[tuple[str, str]] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v1/completions", json={"model": model, "prompt": "x"},
                      headers=headers or [], timeout=30)  # fmt: skip


def test_only_content_type_and_accept_reach_the_engine(relay: ServedProxy) -> None:
    sent = [("Authorization", "Bearer sk-secret"), ("Cookie", "a=b"),
            ("X-Forwarded-For", "1.2.3.4"), ("Proxy-Authorization", "Basic eDp5"),
            ("TE", "trailers"), ("Accept", "text/plain"),
            ("Connection", "keep-alive, Accept")]  # fmt: skip
    seen = ask(relay.url, "echo", sent).json()
    assert seen["content-type"] == "application/json"
    assert seen["accept"] == "*/*"  # aiohttp's: the client's was named in its Connection header
    assert seen["accept-encoding"] == "identity"  # answers are relayed undecoded
    for name in ("authorization", "cookie", "x-forwarded-for", "proxy-authorization", "te"):
        assert name not in seen, name
    assert ask(relay.url, "echo", [("Accept", "text/event-stream")]).json()["accept"] == (
        "text/event-stream"
    )


def test_hop_by_hop_headers_of_the_engine_are_not_relayed(relay: ServedProxy) -> None:
    answer = ask(relay.url, "hop")
    assert answer.status_code == 200
    assert answer.headers["x-kept"] == "yes"
    for name in ("x-internal", "proxy-authenticate", "upgrade", "trailer", "keep-alive",
                 "proxy-connection", "server"):  # fmt: skip
        assert name not in answer.headers, name


def test_an_engine_protocol_error_is_a_counted_502_that_does_not_show_the_engine(
    relay: ServedProxy, engine: Engine
) -> None:
    before = metric(relay.metrics, "llmserve_requests_total", 'code="502"')
    for fault in ("bad-status", "control-header", "closed"):
        answer = ask(relay.url, fault)
        assert answer.status_code == 502, fault
        error = answer.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "bad_gateway")
        assert str(engine.server_address[1]) not in answer.text
        assert "127.0.0.1" not in answer.text
    assert metric(relay.metrics, "llmserve_requests_total", 'code="502"') == before + 3


def test_an_answer_that_breaks_off_is_cut_and_a_stream_ends_with_an_error_event(
    relay: ServedProxy,
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):  # a cut answer, never one that looks whole
        ask(relay.url, "cut")
    stream = openai.OpenAI(base_url=f"{relay.url}/v1", api_key="unused", max_retries=0)
    chunks = stream.completions.create(model="stream-cut", prompt="x", stream=True)
    with pytest.raises(openai.APIError) as ended:
        for _ in chunks:
            pass
    assert ended.value.message == "the engine's answer broke off"
    assert metric(relay.metrics, "llmserve_interrupted_responses_total", 'code="502"') == 2


def test_the_engine_metrics_page_is_fetched_at_most_once_a_second(
    relay: ServedProxy, engine: Engine
) -> None:
    before, started = engine.metrics_fetches, time.monotonic()

    def scrape(_: int) -> str:
        return httpx.get(f"{relay.metrics}/metrics/engine", timeout=30).text

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        pages = list(pool.map(scrape, range(200)))
    elapsed = time.monotonic() - started
    assert set(pages) == {engine.page.decode()}
    assert engine.metrics_fetches - before <= elapsed + 1


def test_an_engine_metrics_page_over_the_cap_is_not_relayed(
    relay: ServedProxy, engine: Engine
) -> None:
    normal = engine.page
    engine.page = b"x" * (9 * 2**20)
    try:
        deadline = time.monotonic() + 30
        while (
            answer := httpx.get(f"{relay.metrics}/metrics/engine", timeout=30)
        ).status_code == 200:
            assert time.monotonic() < deadline, "the oversized page was relayed"
            time.sleep(0.2)
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "engine_metrics_too_large"
    finally:
        engine.page = normal
