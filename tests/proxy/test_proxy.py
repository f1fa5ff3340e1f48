"""`llmserve proxy` in front of `llmserve sim`, both on 127.0.0.1, driven by the official client."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections.abc import Iterator

import httpx2 as httpx
import openai
import pytest
from tests.processes import MODEL, metric, proxy, simulator
from tools.procfs import free_port

KEY = "sk-test-0123456789"


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    with simulator(step="0.002") as url:
        yield url


@pytest.fixture(scope="module")
def keyed(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(f"# test keys\nci:{KEY}\n")
    with proxy(engine, "--api-keys-file", str(keys)) as (url, _):
        yield url


def client(url: str, key: str = KEY, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=retries)


def test_the_openai_client_works_through_the_proxy_whole_and_streamed(keyed: str) -> None:
    api = client(keyed)
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
    text = httpx.get(f"{keyed}/metrics").text
    assert 'llmserve_requests_total{code="200",key="ci"}' in text
    assert KEY not in text
    assert metric(keyed, "llmserve_completion_tokens_total") >= 9  # from `usage`


def test_a_wrong_key_is_a_401_in_the_openai_envelope(keyed: str) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        client(keyed, key="sk-wrong").models.list()
    assert refused.value.code == "invalid_api_key"
    assert httpx.get(f"{keyed}/health").status_code == 200  # no key needed
    assert httpx.get(f"{keyed}/ready").status_code == 200


def test_only_the_openai_routes_of_the_engine_are_reachable(keyed: str, engine: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{engine}/v1/models").status_code == 200  # the engine has more routes
    for path in ("/tokenize", "/invocations", "/v1/load_lora_adapter", "/version"):
        assert httpx.post(f"{keyed}{path}", headers=headers).status_code == 404, path
    assert "vllm:num_requests_running" in httpx.get(f"{keyed}/metrics/engine").text


def test_the_queue_admits_queues_and_refuses_exact_counts(engine: str) -> None:
    with proxy(engine, "--max-concurrency", "2", "--max-queue", "3", "--queue-timeout", "60") as (
        url,
        _,
    ):
        body = {"model": MODEL, "prompt": "x", "max_tokens": 300}  # ~0.6 s at the engine each

        def one(_: int) -> tuple[int, str | None]:
            answer = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
            return answer.status_code, answer.headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            results = list(pool.map(one, range(10)))
        codes = sorted(code for code, _ in results)
        assert codes == [200] * 5 + [429] * 5
        assert all(after == "60" for code, after in results if code == 429)
        assert metric(url, "llmserve_rejected_total", 'reason="queue_full"') == 5


def test_the_client_honours_retry_after_and_gets_through(engine: str) -> None:
    with proxy(engine, "--max-concurrency", "1", "--max-queue", "0", "--queue-timeout", "1") as (
        url,
        _,
    ):
        body = {"model": MODEL, "prompt": "x", "max_tokens": 400}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(httpx.post, f"{url}/v1/completions", json=body, timeout=30)
            time.sleep(0.2)
            answer = client(url, key="unused", retries=5).completions.create(
                model=MODEL, prompt="y", max_tokens=1
            )
            assert busy.result().status_code == 200
        assert answer.choices[0].text
        assert metric(url, "llmserve_rejected_total", 'reason="queue_full"') >= 1


def test_a_client_that_leaves_cancels_the_engine_request(engine: str) -> None:
    with proxy(engine) as (url, _):
        aborted = metric(engine, "vllm:request_success_total", 'finished_reason="abort"')
        body = {"model": MODEL, "prompt": "x", "max_tokens": 100_000, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body) as stream:
            assert next(stream.iter_lines()).startswith("data: {")
        deadline = time.monotonic() + 10
        while metric(engine, "vllm:request_success_total", 'finished_reason="abort"') <= aborted:
            assert time.monotonic() < deadline, "the engine never saw the client leave"
            time.sleep(0.05)


def test_engine_faults_map_to_500_503_and_504() -> None:
    with simulator("--fail-rate", "1") as failing, proxy(failing) as (url, _):
        answer = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x"})
        assert answer.status_code == 500
        assert answer.json()["error"]["message"] == "injected failure"  # the engine's own answer
    with proxy(f"http://127.0.0.1:{free_port()}") as (url, _):  # nothing listens there
        answer = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x"})
        assert answer.status_code == 503
        assert answer.json()["error"]["type"] == "server_error"
        assert httpx.get(f"{url}/ready").status_code == 503
    with (
        simulator("--hang-rate", "1") as hanging,
        proxy(hanging, "--request-timeout", "1") as (url, _),
    ):
        answer = httpx.post(
            f"{url}/v1/completions", json={"model": MODEL, "prompt": "x"}, timeout=10
        )
        assert answer.status_code == 504


def test_sigterm_lets_the_stream_in_flight_finish_and_refuses_new_work(engine: str) -> None:
    with proxy(engine, "--drain-seconds", "30") as (url, process):
        body = {"model": MODEL, "prompt": "x", "max_tokens": 500, "stream": True}  # ~1 s
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: {")
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert refused_or_503(url)  # new work goes elsewhere
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert len(rest) == 500  # 499 more tokens and [DONE]: nothing lost
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn exits by the signal


def refused_or_503(url: str) -> bool:
    try:
        answer = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x"})
    except httpx.ConnectError:
        return True
    return answer.status_code == 503


def test_a_tgi_engine_behind_the_proxy_serves_the_openai_client() -> None:
    with simulator(flavor="tgi") as engine, proxy(engine, "--engine", "tgi") as (url, _):
        answer = client(url, key="unused").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert len((answer.choices[0].message.content or "").split()) == 3
        assert httpx.get(f"{url}/ready").status_code == 200
        assert "tgi_queue_size" in httpx.get(f"{url}/metrics/engine").text
        assert httpx.post(f"{url}/generate", json={"inputs": "x"}).status_code == 404  # not OpenAI
