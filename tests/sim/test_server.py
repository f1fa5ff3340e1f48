"""`llmserve sim` as a process on 127.0.0.1, driven by the official `openai` client and raw HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from tests.processes import MODEL, metric, simulator
from tools.procfs import free_port

from llmserve.sim.server import BusyMeter, utilization


@pytest.fixture(scope="module")
def vllm() -> Iterator[str]:
    with simulator() as url:
        yield url


def client(url: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=retries)


def test_chat_and_completions_whole_and_streamed_through_the_openai_client(vllm: str) -> None:
    api = client(vllm)
    messages = [{"role": "user", "content": "Say hello to every token"}]
    whole = api.chat.completions.create(model=MODEL, messages=messages, max_tokens=7)  # type: ignore[arg-type]
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 7
    text = whole.choices[0].message.content or ""
    assert len(text.split()) == 7
    chunks = list(api.chat.completions.create(model=MODEL, messages=messages, max_tokens=7,  # type: ignore[arg-type]
                                               stream=True))  # fmt: skip
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[0].choices[0].delta.role == "assistant"
    completion = api.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=3)
    assert len(completion.choices[0].text.split()) == 3
    assert [m.id for m in api.models.list()] == [MODEL]


def test_the_engines_own_metric_names_count_what_happened(vllm: str) -> None:
    before = metric(vllm, "vllm:request_success_total", 'finished_reason="length"')
    client(vllm).completions.create(model=MODEL, prompt="x" * 400, max_tokens=5)
    assert metric(vllm, "vllm:request_success_total", 'finished_reason="length"') == before + 1
    text = httpx.get(f"{vllm}/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                 "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
                 "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                 "vllm:time_to_first_token_seconds_bucket",
                 "vllm:e2e_request_latency_seconds_sum"):  # fmt: skip
        assert f"\n{name}{{" in text, name
    assert metric(vllm, "vllm:num_requests_running") == 0


def test_errors_come_in_vllms_body_and_map_to_the_clients_exceptions(vllm: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client(vllm).completions.create(model="other", prompt="x", max_tokens=1)
    assert missing.value.body == {"message": "The model `other` does not exist.",  # type: ignore[comparison-overlap]
                                  "type": "NotFoundError", "param": None, "code": 404}  # fmt: skip
    answer = httpx.post(f"{vllm}/v1/completions", content=b"{not json")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 400


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"\x80", "application/json"), (b'{"model": "\xff"}', "application/json"),
     (b"{}", "application/json; charset=no-such-charset")],
)  # fmt: skip
def test_a_body_that_is_not_json_text_is_a_400_in_the_envelope(
    vllm: str, body: bytes, content_type: str
) -> None:
    answer = httpx.post(f"{vllm}/v1/completions", content=body,
                        headers={"Content-Type": content_type})  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "BadRequestError"


def test_a_client_that_leaves_takes_its_sequence_out_of_the_batch(vllm: str) -> None:
    aborted = metric(vllm, "vllm:request_success_total", 'finished_reason="abort"')
    body = {"model": MODEL, "prompt": "x", "max_tokens": 100_000, "stream": True}
    with httpx.stream("POST", f"{vllm}/v1/completions", json=body) as stream:
        first = next(stream.iter_lines())
        assert first.startswith("data: {")
    deadline = time.monotonic() + 10
    while metric(vllm, "vllm:request_success_total", 'finished_reason="abort"') != aborted + 1:
        assert time.monotonic() < deadline, "the simulator never saw the client leave"
        time.sleep(0.05)
    assert metric(vllm, "vllm:num_requests_running") == 0


def test_injected_failures_and_a_dying_engine() -> None:
    with simulator("--fail-rate", "1") as url, pytest.raises(openai.InternalServerError):
        client(url).completions.create(model=MODEL, prompt="x", max_tokens=1)
    with simulator("--die-after", "1") as url:
        client(url).completions.create(model=MODEL, prompt="x", max_tokens=1)
        with pytest.raises(openai.InternalServerError):
            client(url).completions.create(model=MODEL, prompt="x", max_tokens=1)
        assert httpx.get(f"{url}/health").status_code == 503


def test_health_is_503_while_loading_then_200(tmp_path: Path) -> None:
    loaded = tmp_path / "loaded"  # the load ends when the test says so, not after a time
    with simulator("--loading-until", str(loaded)) as url:
        assert httpx.get(f"{url}/health").status_code == 503
        with pytest.raises(openai.InternalServerError):  # 503: the client's retryable error
            client(url).completions.create(model=MODEL, prompt="x", max_tokens=1)
        assert httpx.get(f"{url}/health").status_code == 503
        loaded.touch()
        assert httpx.get(f"{url}/health").status_code == 200
        assert client(url).completions.create(model=MODEL, prompt="x", max_tokens=1).choices


def test_tgi_flavour_routes_streams_errors_and_metric_names() -> None:
    with simulator(flavor="tgi") as url:
        body = {"inputs": "Hello", "parameters": {"max_new_tokens": 4}}
        assert len(httpx.post(f"{url}/generate", json=body).json()["generated_text"].split()) == 4
        with httpx.stream("POST", f"{url}/generate_stream", json=body) as stream:
            events = [line for line in stream.iter_lines() if line]
        assert len(events) == 4
        assert all(line.startswith("data:{") for line in events)
        assert '"generated_text": null' in events[0]
        assert '"finish_reason": "length"' in events[-1]
        refused = httpx.post(f"{url}/generate", json={"inputs": ""})
        assert refused.status_code == 422
        assert refused.json()["error_type"] == "validation"
        assert httpx.get(f"{url}/info").json()["model_id"] == MODEL
        chat = client(url).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert chat.choices[0].message.content
        text = httpx.get(f"{url}/metrics").text
        assert re.search(r"^tgi_request_count 3\.0$", text, re.MULTILINE), text
        for name in ("tgi_queue_size", "tgi_batch_current_size", "tgi_request_duration_bucket"):
            assert f"\n{name}" in text, name


def test_gpu_utilization_is_the_busy_share_of_each_period_in_whole_percent() -> None:
    meter = BusyMeter()
    meter.start(10.0)
    meter.start(10.5)  # still stepping: the spell goes on from 10.0
    assert meter.seconds(11.0) == 1.0
    meter.stop(11.25)
    meter.stop(12.0)
    assert meter.seconds(13.0) == 1.25
    assert [utilization(b, 2.0) for b in (0.0, 0.01, 1.0, 2.0, 2.5)] == [0, 0, 50, 100, 100]
    assert utilization(1.0, 0.0) == 0


def test_the_fake_dcgm_exporter_reads_about_100_for_one_request_and_0_when_idle() -> None:
    port = free_port()
    flags = ("--dcgm-port", str(port), "--dcgm-interval", "0.2", "--dcgm-pod", "llama-0",
             "--dcgm-namespace", "ml")  # fmt: skip
    with simulator(*flags, step="0.02") as url:
        dcgm = f"http://127.0.0.1:{port}"
        text = httpx.get(f"{dcgm}/metrics").text
        labels = re.search(r"^DCGM_FI_DEV_GPU_UTIL\{(.*)\} ", text, re.MULTILINE)
        assert labels, text
        for label in ('gpu="0"', 'UUID="GPU-', 'container="engine"', 'namespace="ml"',
                      'pod="llama-0"'):  # fmt: skip
            assert label in labels.group(1)
        assert metric(dcgm, "DCGM_FI_DEV_GPU_UTIL") == 0
        body = {"model": MODEL, "prompt": "x", "max_tokens": 100_000, "stream": True}
        deadline = time.monotonic() + 10
        with httpx.stream("POST", f"{url}/v1/completions", json=body) as stream:
            lines = stream.iter_lines()  # held: a dropped iterator closes the connection
            assert next(lines).startswith("data: {")
            while metric(dcgm, "DCGM_FI_DEV_GPU_UTIL") < 90:
                assert time.monotonic() < deadline, "one running request never read ~100 %"
                time.sleep(0.05)
        while metric(dcgm, "DCGM_FI_DEV_GPU_UTIL") != 0:
            assert time.monotonic() < deadline + 10, "the GPU never read idle again"
            time.sleep(0.05)
