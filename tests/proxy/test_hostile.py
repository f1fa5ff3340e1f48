"""The review's attacks on a real proxy process (H2, H3, M1, M10): refused, bounded, and survived.

Also a flood of pipelined requests, which the review did not try: uvicorn builds a request cycle for
each one of a read, and 20 connections of 8,000 took the old proxy to 430 MB.

Each attack goes over raw sockets to a proxy on 127.0.0.1, with short deadlines so the tests are
quick; they assert status codes, closed connections and memory, never how fast anything was (the
timings are in tools/hostile.py's report).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from tests.processes import MODEL, ServedProxy, metric, proxy, simulator
from tools.hostile import answer_to, send, status
from tools.procfs import peak_rss_mib

KEY = "sk-hostile-0123456789"
MIB = 2**20
LIMITS = ("--header-timeout", "2", "--body-timeout", "2", "--max-concurrency", "1",
          "--max-queue", "1", "--queue-timeout", "600")  # fmt: skip


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    # Long prompts cost no simulated prefill time: the large-body test sends one.
    flags = ("--per-prefill-token-seconds", "0", "--per-kilo-context-seconds", "0")
    with simulator(*flags, step="0.01") as url:
        yield url


@pytest.fixture
def guarded(engine: str, tmp_path: Path) -> Iterator[ServedProxy]:
    """A proxy of its own per test, so its peak memory is this test's."""
    keys = tmp_path / "api-keys"
    keys.write_text(f"hostile:{KEY}\n")
    with proxy(engine, "--api-keys-file", str(keys), *LIMITS) as served:
        yield served


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def attack(url: str, head: bytes, pieces: Iterable[bytes] = ()) -> str:
    """The status the proxy answers to this request; its head and body sent as they go."""
    return send(address(url)[1], head, pieces)


def healthy(url: str) -> bool:
    return httpx.get(f"{url}/health", timeout=30).status_code == 200


def eventually(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_64_mib_header_is_refused_with_431_and_memory_stays_bounded(
    guarded: ServedProxy,
) -> None:
    before = peak_rss_mib(guarded.process.pid)
    header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: "
    assert attack(guarded.url, header, (b"a" * MIB for _ in range(64))) == "431"
    assert peak_rss_mib(guarded.process.pid) - before < 16
    assert healthy(guarded.url)


def test_200000_headers_are_refused_with_431(guarded: ServedProxy) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-N: v\r\n" * 200_000 + b"\r\n"
    assert attack(guarded.url, head) == "431"
    assert healthy(guarded.url)


def test_connections_that_stall_are_closed_at_the_deadline_while_health_answers(
    guarded: ServedProxy,
) -> None:
    before = peak_rss_mib(guarded.process.pid)
    with contextlib.ExitStack() as opened:
        stalled = [opened.enter_context(socket.create_connection(address(guarded.url)))
                   for _ in range(3000)]  # fmt: skip
        for sock in stalled:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: ")
        silent = opened.enter_context(socket.create_connection(address(guarded.url)))
        idle = opened.enter_context(socket.create_connection(address(guarded.url)))
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # one request, then nothing
        assert all(healthy(guarded.url) for _ in range(20))  # on other connections, meanwhile
        answers = [status(answer_to(sock, seconds=60)) for sock in stalled]
        assert answers == ["408"] * 3000
        assert answer_to(silent, seconds=60) == b""  # closed, without an answer to nothing
        assert status(answer_to(idle, seconds=60)) == "200"  # its answer, then the close
    assert peak_rss_mib(guarded.process.pid) - before < 64
    assert healthy(guarded.url)


def test_a_flood_of_pipelined_requests_is_cut_short_and_memory_stays_bounded(
    guarded: ServedProxy,
) -> None:
    before = peak_rss_mib(guarded.process.pid)
    with contextlib.ExitStack() as opened:
        flooding = [opened.enter_context(socket.create_connection(address(guarded.url)))
                    for _ in range(10)]  # fmt: skip
        for sock in flooding:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 8000)
        answered = [answer_to(sock).count(b"HTTP/1.1 200 OK") for sock in flooding]
    # A few served (the one answered and the ones queued behind it), then the connection closed.
    assert all(0 < count <= 16 for count in answered), answered
    assert peak_rss_mib(guarded.process.pid) - before < 32  # the old proxy took 200 MiB more
    assert healthy(guarded.url)


def test_a_body_over_the_limit_is_refused_from_its_content_length_without_reading_it(
    guarded: ServedProxy,
) -> None:
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (KEY.encode(), 100 * MIB))  # fmt: skip
    with socket.create_connection(address(guarded.url)) as sock:
        sock.sendall(head)  # not a byte of the body
        data = answer_to(sock)
    assert status(data) == "413"
    assert b'"code": "request_too_large"' in data


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives_and_memory_stays_bounded(
    guarded: ServedProxy,
) -> None:
    before = peak_rss_mib(guarded.process.pid)
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            % KEY.encode())  # fmt: skip
    chunk = b"%x\r\n%s\r\n" % (MIB, b"x" * MIB)
    assert attack(guarded.url, head, (chunk for _ in range(100))) == "413"
    # The 16 MiB allowed, held once; the old proxy held the 100 MiB twice.
    assert peak_rss_mib(guarded.process.pid) - before < 48
    assert metric(guarded.metrics, "llmserve_requests_total", 'code="413"') == 1


def test_a_large_body_within_the_limit_is_relayed(guarded: ServedProxy) -> None:
    prompt = "x" * 900_000  # 900 KB, one word: sent upstream in slices (the simulator takes 1 MiB)
    answer = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key=KEY, max_retries=0)
    done = answer.completions.create(model=MODEL, prompt=prompt, max_tokens=2)
    assert len(done.choices[0].text.split()) == 2


def test_slow_uploads_hold_no_engine_slot_and_get_408(guarded: ServedProxy) -> None:
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            % KEY.encode())  # fmt: skip
    with contextlib.ExitStack() as opened:
        slow = [opened.enter_context(socket.create_connection(address(guarded.url)))
                for _ in range(2)]  # fmt: skip
        for sock in slow:
            sock.sendall(head)
        # One slot and one queue place, two uploads trickling: a whole request still gets in.
        client = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key=KEY, max_retries=0)
        assert client.completions.create(model=MODEL, prompt="x", max_tokens=1).choices
        assert [status(answer_to(sock)) for sock in slow] == ["408", "408"]
    assert metric(guarded.metrics, "llmserve_requests_total", 'code="408"') == 2


def test_a_queued_client_that_leaves_frees_its_place_at_once(guarded: ServedProxy) -> None:
    body = b'{"model": "%s", "prompt": "x", "max_tokens": 100000, "stream": true}' % (
        MODEL.encode()
    )
    request = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
               % (KEY.encode(), len(body), body))  # fmt: skip
    holder = socket.create_connection(address(guarded.url))  # the one slot, held
    holder.sendall(request)
    assert status(holder.recv(65536)) == "200"
    depth = lambda: metric(guarded.metrics, "llmserve_queue_depth")  # noqa: E731
    try:
        for _ in range(3):  # each leaves; the one queue place must be free again each time
            queued = socket.create_connection(address(guarded.url))
            queued.sendall(request)
            eventually(lambda: depth() == 1, "the request never queued")
            queued.close()
            eventually(lambda: depth() == 0, "the client left, its place in the queue did not")
        assert metric(guarded.metrics, "llmserve_rejected_total", 'reason="queue_full"') == 0
        assert metric(guarded.metrics, "llmserve_requests_total", 'code="499"') == 3
    finally:
        holder.close()
