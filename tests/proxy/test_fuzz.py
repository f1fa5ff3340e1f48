"""Fuzz the proxy's HTTP surface (hypothesis): no 500 of its own, no crash, memory stable.

Random methods, paths, keys, content types and bodies (JSON or raw bytes) go to a proxy in front
of a healthy simulator, so every 5xx would be the proxy's own fault. Bounded: 300 requests.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.processes import MODEL, proxy, simulator
from tools.procfs import rss_mib

KEY = "sk-fuzz-0123456789"
PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings", "/health",
         "/ready", "/metrics", "/tokenize", "/v1", "/"]  # fmt: skip
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


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(f"fuzz:{KEY}\n")
    with (
        simulator("--default-max-tokens", "2") as engine,
        proxy(engine, "--api-keys-file", str(keys), "--request-timeout", "5") as (url, process),
    ):
        yield url, process.pid


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=st.sampled_from(PATHS) | ANY_PATH,
    key=st.sampled_from([KEY, "sk-wrong", ""]),
    content_type=st.sampled_from(CONTENT_TYPES),
    body=BODIES,
)  # fmt: skip
def test_no_request_makes_the_proxy_fail_or_crash(  # noqa: PLR0913, PLR0917 - the request's parts
    target: tuple[str, int], method: str, path: str, key: str, content_type: str, body: bytes
) -> None:
    url, _ = target
    headers = {"Content-Type": content_type} if content_type else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    answer = httpx.request(method, url + path, headers=headers, content=body, timeout=15)
    assert answer.status_code < 500, (answer.status_code, answer.text[:200])


def test_memory_is_stable_after_the_fuzzing(target: tuple[str, int]) -> None:
    url, pid = target
    before = rss_mib(pid)
    for _ in range(300):
        httpx.post(
            f"{url}/v1/completions", content=b"{", headers={"Authorization": f"Bearer {KEY}"}
        )
        httpx.get(f"{url}/v1/models")
    assert rss_mib(pid) - before < 10
