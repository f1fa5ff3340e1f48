"""`llmserve proxy` in front of `llmserve sim`, both on 127.0.0.1, driven by the official client."""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from tests.processes import MODEL, ServedProxy, metric, proxy, simulator
from tools.procfs import free_port

KEY = "sk-test-0123456789"


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    with simulator(step="0.002") as url:
        yield url


@pytest.fixture(scope="module")
def keyed(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProxy]:
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(f"# test keys\nci:{KEY}\n")
    with proxy(engine, "--api-keys-file", str(keys)) as served:
        yield served


def client(url: str, key: str = KEY, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=retries)


def test_the_openai_client_works_through_the_proxy_whole_and_streamed(keyed: ServedProxy) -> None:
    api = client(keyed.url)
    messages = [{"role": "user", "content": "hello"}]
    whole = api.chat.completions.create(model=MODEL, messages=messages, max_tokens=6)  # type: ignore[arg-type]
    stream = api.chat.completions.create(model=MODEL, messages=messages, max_tokens=6,  # type: ignore[arg-type]
                                         stream=True)  # fmt: skip
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == whole.choices[0].message.content
    assert (
        len(api.completions.create(model=MODEL, prompt="x", max_tokens=3).choices[0].text.split())
        == 3
    )
    assert [m.id for m in api.models.list()] == [MODEL]
    text = httpx.get(f"{keyed.metrics}/metrics").text
    assert 'llmserve_requests_total{code="200",key="ci"}' in text
    assert KEY not in text
    assert metric(keyed.metrics, "llmserve_completion_tokens_total") >= 9  # from `usage`


def test_a_wrong_key_is_a_401_in_the_openai_envelope(keyed: ServedProxy) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        client(keyed.url, key="sk-wrong").models.list()
    assert refused.value.code == "invalid_api_key"
    for base in (keyed.url, keyed.metrics):  # no key needed
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.get(f"{base}/ready").status_code == 200


def test_only_the_openai_routes_of_the_engine_are_reachable(
    keyed: ServedProxy, engine: str
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{engine}/v1/models").status_code == 200  # the engine has more routes
    for path in ("/tokenize", "/invocations", "/v1/load_lora_adapter", "/version"):
        answer = httpx.post(f"{keyed.url}{path}", headers=headers)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "unknown_url"
    assert "vllm:num_requests_running" in httpx.get(f"{keyed.metrics}/metrics/engine").text


def test_the_queue_admits_queues_and_refuses_exact_counts(engine: str) -> None:
    with proxy(engine, "--max-concurrency", "2", "--max-queue", "3", "--queue-timeout", "60") as p:
        url = p.url
        body = {"model": MODEL, "prompt": "x", "max_tokens": 300}  # ~0.6 s at the engine each

        def one(_: int) -> tuple[int, str | None]:
            answer = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
            return answer.status_code, answer.headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            results = list(pool.map(one, range(10)))
        codes = sorted(code for code, _ in results)
        assert codes == [200] * 5 + [429] * 5
        assert all(after == "60" for code, after in results if code == 429)
        assert metric(p.metrics, "llmserve_rejected_total", 'reason="queue_full"') == 5


def test_the_client_honours_retry_after_and_gets_through(engine: str) -> None:
    with proxy(engine, "--max-concurrency", "1", "--max-queue", "0", "--queue-timeout", "1") as p:
        url = p.url
        body = {"model": MODEL, "prompt": "x", "max_tokens": 400}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(httpx.post, f"{url}/v1/completions", json=body, timeout=30)
            time.sleep(0.2)
            answer = client(url, key="unused", retries=5).completions.create(
                model=MODEL, prompt="y", max_tokens=1
            )
            assert busy.result().status_code == 200
        assert answer.choices[0].text
        assert metric(p.metrics, "llmserve_rejected_total", 'reason="queue_full"') >= 1


def test_a_client_that_leaves_cancels_the_engine_request(engine: str) -> None:
    with proxy(engine) as p:
        url = p.url
        aborted = metric(engine, "vllm:request_success_total", 'finished_reason="abort"')
        body = {"model": MODEL, "prompt": "x", "max_tokens": 100_000, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body) as stream:
            assert next(stream.iter_lines()).startswith("data: {")
        deadline = time.monotonic() + 10
        while metric(engine, "vllm:request_success_total", 'finished_reason="abort"') <= aborted:
            assert time.monotonic() < deadline, "the engine never saw the client leave"
            time.sleep(0.05)


def test_engine_faults_map_to_500_503_and_504() -> None:
    with simulator("--fail-rate", "1") as failing, proxy(failing) as p:
        answer = httpx.post(f"{p.url}/v1/completions", json={"model": MODEL, "prompt": "x"})
        assert answer.status_code == 500
        assert answer.json()["error"]["message"] == "injected failure"  # the engine's own answer
    port = free_port()
    with proxy(f"http://127.0.0.1:{port}") as p:  # nothing listens there
        answer = httpx.post(f"{p.url}/v1/completions", json={"model": MODEL, "prompt": "x"})
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"]["type"] == "server_error"
        assert str(port) not in answer.text  # the engine's address stays in the log
        assert httpx.get(f"{p.url}/ready").status_code == 503
        engine_page = httpx.get(f"{p.metrics}/metrics/engine")
        assert engine_page.status_code == 503
        assert engine_page.json()["error"]["code"] == "engine_unavailable"
        assert str(port) not in engine_page.text
        assert "Error" not in engine_page.text  # no exception repr
    with (
        simulator("--hang-rate", "1") as hanging,
        proxy(hanging, "--request-timeout", "1") as p,
    ):
        answer = httpx.post(
            f"{p.url}/v1/completions", json={"model": MODEL, "prompt": "x"}, timeout=10
        )
        assert answer.status_code == 504


def test_sigterm_lets_the_stream_in_flight_finish_and_refuses_new_work(engine: str) -> None:
    with proxy(engine, "--drain-seconds", "30") as p:
        body = {"model": MODEL, "prompt": "x", "max_tokens": 500, "stream": True}  # ~1 s
        with httpx.stream("POST", f"{p.url}/v1/completions", json=body, timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: {")
            p.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not refused_or_503(p.url):  # new work goes elsewhere, once the signal is seen
                assert time.monotonic() < deadline, "new requests still served after SIGTERM"
            assert httpx.get(f"{p.metrics}/ready").status_code == 503  # metrics port still up
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert len(rest) == 500  # 499 more tokens and [DONE]: nothing lost
        assert p.process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn exits by the signal


def refused_or_503(url: str) -> bool:
    try:
        answer = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x"})
    except httpx.ConnectError:
        return True
    return answer.status_code == 503


def test_a_tgi_engine_behind_the_proxy_serves_the_openai_client() -> None:
    with simulator(flavor="tgi") as engine, proxy(engine, "--engine", "tgi") as p:
        answer = client(p.url, key="unused").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert len((answer.choices[0].message.content or "").split()) == 3
        assert httpx.get(f"{p.url}/ready").status_code == 200
        assert "tgi_queue_size" in httpx.get(f"{p.metrics}/metrics/engine").text
        assert httpx.post(f"{p.url}/generate", json={"inputs": "x"}).status_code == 404


def test_metrics_are_served_on_the_metrics_port_only(keyed: ServedProxy) -> None:
    for path in ("/metrics", "/metrics/engine"):
        hidden = httpx.get(f"{keyed.url}{path}")
        assert hidden.status_code == 404, path
        assert hidden.json()["error"]["code"] == "unknown_url"
        assert httpx.get(f"{keyed.metrics}{path}").status_code == 200, path
    text = httpx.get(f"{keyed.metrics}/metrics").text
    assert metric(keyed.metrics, "llmserve_api_keys_loaded") == 1
    assert metric(keyed.metrics, "llmserve_api_keys_reload_errors_total") == 0
    assert metric(keyed.metrics, "llmserve_api_keys_last_reload_timestamp_seconds") > 0
    assert "llmserve_queue_depth" in text
    # The OpenAI routes are not on the metrics port.
    assert httpx.get(f"{keyed.metrics}/v1/models").status_code == 404


def test_each_route_allows_only_its_method_and_no_server_header_is_sent(
    keyed: ServedProxy,
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    for method, path, allowed in [("DELETE", "/v1/models", "GET"), ("PUT", "/v1/models", "GET"),
                                  ("GET", "/v1/completions", "POST"),
                                  ("OPTIONS", "/v1/chat/completions", "POST"),
                                  ("POST", "/health", "GET")]:  # fmt: skip
        answer = httpx.request(method, f"{keyed.url}{path}", headers=headers)
        assert answer.status_code == 405, (method, path)
        assert answer.headers["allow"] == allowed
        assert answer.json()["error"]["code"] == "method_not_allowed"
    assert httpx.post(f"{keyed.metrics}/metrics").status_code == 405
    answer = httpx.get(f"{keyed.url}/v1/models", headers=headers)
    assert answer.status_code == 200
    assert "server" not in answer.headers


def test_two_authorization_headers_are_refused(keyed: ServedProxy) -> None:
    for first, second in [("Basic eDp5", f"Bearer {KEY}"), (f"Bearer {KEY}", "Bearer sk-nope"),
                          ("Bearer sk-nope", f"Bearer {KEY}")]:  # fmt: skip
        both = [("Authorization", first), ("Authorization", second)]
        answer = httpx.get(f"{keyed.url}/v1/models", headers=both)
        assert answer.status_code == 400, (first, second)
        assert answer.json()["error"]["code"] == "duplicate_authorization"


def test_a_header_that_is_not_utf8_is_a_400_not_a_500(keyed: ServedProxy) -> None:
    for name in ("Content-Type", "Accept"):
        answer = httpx.post(f"{keyed.url}/v1/completions", content=b"{}",
                            headers=[("Authorization", f"Bearer {KEY}"),
                                     (name, b"application/json\xff")])  # fmt: skip
        assert answer.status_code == 400, name
        assert answer.json()["error"]["code"] == "invalid_header"


def test_without_keys_the_proxy_refuses_to_start_unless_told_auth_none(engine: str) -> None:
    argv = [sys.executable, "-m", "llmserve.cli", "proxy", "--upstream", engine,
            "--port", str(free_port()), "--metrics-port", str(free_port())]  # fmt: skip
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    assert refused.returncode == 1
    assert "--api-keys-file" in refused.stderr
    assert "--auth none" in refused.stderr
    with proxy(engine, "--auth", "none") as p:
        assert client(p.url, key="anything").models.list().data[0].id == MODEL


def test_a_malformed_keys_file_stops_the_start_and_an_empty_one_refuses_everyone(
    engine: str, tmp_path: Path
) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text("alice:sk-alice-123\nsk-raw:with:colons\n")
    argv = [sys.executable, "-m", "llmserve.cli", "proxy", "--upstream", engine,
            "--port", str(free_port()), "--metrics-port", str(free_port()),
            "--api-keys-file", str(keys)]  # fmt: skip
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    assert refused.returncode == 1
    assert f"{keys}:2:" in refused.stderr
    assert "with:colons" not in refused.stderr  # a bad line may be a key: never quoted
    keys.write_text("# nobody yet\n")
    with proxy(engine, "--api-keys-file", str(keys)) as p:
        with pytest.raises(openai.AuthenticationError):
            client(p.url, key="sk-anything").models.list()
        assert metric(p.metrics, "llmserve_api_keys_loaded") == 0


def test_emptying_the_keys_file_revokes_every_key_and_a_broken_one_keeps_them(
    engine: str, tmp_path: Path
) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(f"ci:{KEY}\n")
    with proxy(engine, "--api-keys-file", str(keys)) as p:
        assert client(p.url).models.list().data
        replace(keys, "alice:sk-alice-0123456789\nnot a key line\n")  # a typo: the keys stay
        until(lambda: metric(p.metrics, "llmserve_api_keys_reload_errors_total") == 1)
        assert client(p.url).models.list().data
        replace(keys, "# every key revoked\n")
        until(lambda: metric(p.metrics, "llmserve_api_keys_loaded") == 0)
        with pytest.raises(openai.AuthenticationError):
            client(p.url).models.list()
        keys.unlink()  # gone: the keys in force (none) stay
        until(lambda: metric(p.metrics, "llmserve_api_keys_reload_errors_total") == 2)
        with pytest.raises(openai.AuthenticationError):
            client(p.url).models.list()


def test_a_stream_cut_by_the_request_timeout_ends_with_an_error_event() -> None:
    with simulator(step="0.05") as slow, proxy(slow, "--request-timeout", "1") as p:
        stream = client(p.url, key="unused").completions.create(
            model=MODEL, prompt="x", max_tokens=10_000, stream=True
        )
        with pytest.raises(openai.APIError) as ended:
            for _ in stream:
                pass
        assert "did not finish" in ended.value.message
        assert metric(p.metrics, "llmserve_interrupted_responses_total", 'code="504"') == 1


def replace(path: Path, text: str) -> None:
    """Write a file as the kubelet updates a Secret volume: whole, in one rename."""
    staged = path.with_suffix(".new")
    staged.write_text(text)
    staged.replace(path)


def until(check: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)
