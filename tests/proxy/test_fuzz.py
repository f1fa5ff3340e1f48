"""Fuzz the proxy's HTTP surface (hypothesis): no 500 of its own, no crash, memory stable.

Random methods, paths, keys, content types and bodies (JSON or raw bytes) go to a proxy in front
of a healthy simulator, so every 5xx would be the proxy's own fault. A second test writes raw
requests byte by byte: any bytes in the header values (non-ASCII content types, control
characters), random header names, repeated Authorization headers. The example counts are the `ci`
profile's (tests/conftest.py); `make fuzz` multiplies them.
"""

from __future__ import annotations

import json
import socket
import string
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import examples
from tests.processes import MODEL, ServedProxy, proxy, simulator
from tools.procfs import rss_mib

KEY = "sk-fuzz-0123456789"
PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings", "/health",
         "/ready", "/metrics", "/tokenize", "/v1", "/"]  # fmt: skip
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
ROUTES = [(b"POST", b"/v1/completions"), (b"POST", b"/v1/chat/completions"),
          (b"GET", b"/v1/models"), (b"POST", b"/v1/embeddings"), (b"GET", b"/health"),
          (b"PUT", b"/v1/models"), (b"GET", b"/metrics")]  # fmt: skip
"""Mostly the routes with their methods, so that most requests get past the checks to the relay."""
SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=20)
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
NEAR_VALID = st.fixed_dictionaries(
    {"model": st.just(MODEL)},
    optional={
        "prompt": st.text(max_size=50),
        "max_tokens": st.integers(-5, 8),
        "stream": st.booleans(),
    },
)
BODIES = st.one_of(
    JSON.map(lambda value: json.dumps(value).encode()),
    NEAR_VALID.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
)
ANY_PATH = st.text(string.ascii_letters + string.digits + "/._-%", max_size=30).map(
    lambda p: "/" + p
)
CONTENT_TYPES = ["application/json", "text/plain", "", "application/x-www-form-urlencoded"]
VALUES = st.sampled_from([
    b"application/json", b"application/json; charset=utf-8", b"application/json\xff",
    b"text/\x80plain", b"application/json; charset=latin-1", b"*/*", b"text/event-stream",
    b"\xc3\xa9", b"a\x00b", b"a\x01b", b"", b" ", b"Bearer " + KEY.encode(), b"Bearer \xff",
]) | st.binary(max_size=40)  # fmt: skip
FRAMING = {b"content-length", b"transfer-encoding", b"upgrade"}
"""Left to the test, so that each request is whole and answered at once."""
NAMES = st.sampled_from([b"Content-Type", b"Accept", b"Authorization", b"Connection", b"Expect",
                         b"X-\xffName", b"Content-Type "]) | st.binary(
    min_size=1, max_size=12
).filter(lambda name: name.lower() not in FRAMING)  # fmt: skip


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProxy]:
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(f"fuzz:{KEY}\n")
    with (
        simulator("--default-max-tokens", "2") as engine,
        proxy(engine, "--api-keys-file", str(keys), "--request-timeout", "5",
              "--body-timeout", "5", "--header-timeout", "5") as served,
    ):  # fmt: skip
        yield served


@settings(max_examples=examples(300))
@given(
    method=st.sampled_from(METHODS),
    path=st.sampled_from(PATHS) | ANY_PATH,
    key=st.sampled_from([KEY, "sk-wrong", ""]),
    content_type=st.sampled_from(CONTENT_TYPES),
    body=BODIES,
)  # fmt: skip
def test_no_request_makes_the_proxy_fail_or_crash(  # noqa: PLR0913, PLR0917 - the request's parts
    target: ServedProxy, method: str, path: str, key: str, content_type: str, body: bytes
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    answer = httpx.request(method, target.url + path, headers=headers, content=body, timeout=15)
    assert answer.status_code < 500, (answer.status_code, answer.text[:200])


@settings(max_examples=examples(300))
@given(
    route=st.sampled_from(ROUTES),
    key=st.sampled_from([KEY.encode(), b"sk-wrong"]),
    headers=st.lists(st.tuples(NAMES, VALUES), max_size=6),
    body=BODIES,
)
def test_no_raw_header_bytes_make_the_proxy_fail(
    target: ServedProxy, route: tuple[bytes, bytes], key: bytes,
    headers: list[tuple[bytes, bytes]], body: bytes,
) -> None:  # fmt: skip
    head = b"%s %s HTTP/1.1\r\nHost: fuzz\r\nContent-Length: %d\r\n" % (*route, len(body))
    head += b"Authorization: Bearer %s\r\n" % key
    head += b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
    host, port = target.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b"\r\n" + body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    assert int(answer.split(b" ", 2)[1]) < 500, answer[:300]


def test_memory_is_stable_after_the_fuzzing(target: ServedProxy) -> None:
    before = rss_mib(target.process.pid)
    for _ in range(300):
        httpx.post(
            f"{target.url}/v1/completions",
            content=b"{",
            headers={"Authorization": f"Bearer {KEY}"},
        )
        httpx.get(f"{target.url}/v1/models")
    assert rss_mib(target.process.pid) - before < 10
