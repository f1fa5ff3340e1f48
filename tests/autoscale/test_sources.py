"""The metrics sources' pure parts: scanning pages, building queries, reading answers."""

from __future__ import annotations

import json

import pytest

from llmserve.autoscale.policy import PodLoad
from llmserve.autoscale.sources import (
    DEFAULT_QUERIES,
    ENGINE_GAUGES,
    QUEUED,
    PageError,
    PageTooLargeError,
    SourceError,
    Target,
    answered,
    assemble,
    base_url,
    engine_figures,
    gauge_sums,
    pod_load,
    promql,
    proxy_figures,
    vector_by_pod,
)

PROXY_PAGE = b"""\
# HELP llmserve_requests_in_flight Requests at the engine
# TYPE llmserve_requests_in_flight gauge
llmserve_requests_in_flight 3.0
# HELP llmserve_queue_depth Requests waiting for a slot
# TYPE llmserve_queue_depth gauge
llmserve_queue_depth 2.0
# HELP llmserve_requests_total Answered requests
# TYPE llmserve_requests_total counter
llmserve_requests_total{code="200",key="open"} 7.0
"""
VLLM_PAGE = b"""\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 4.0
vllm:num_requests_running{engine="0",model_name="llama-lora"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama"} 6.0
vllm:num_requests_waiting{engine="0",model_name="llama-lora"} NaN
"""
ENGINE_PAGES = {
    "tgi": b"# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 8\n"
    b"# TYPE tgi_queue_size gauge\ntgi_queue_size 1\n",
    "sglang": b'sglang:num_running_reqs{model_name="m",tp_rank="0"} 8\n'
    b'sglang:num_queue_reqs{model_name="m",tp_rank="0"} 1\n',
    "llamacpp": b"llamacpp:requests_processing 8\nllamacpp:requests_deferred 1\n",
}


def target(engine: str = "vllm", ip: str = "127.1.0.7") -> Target:
    return Target("ml", "llama-0", ip, 8080, engine)  # type: ignore[arg-type]


def test_gauges_sum_over_series_and_skip_nan_and_other_names() -> None:
    sums = gauge_sums(VLLM_PAGE, ("vllm:num_requests_running", "vllm:num_requests_waiting", "x"))
    assert sums == {"vllm:num_requests_running": 5.0, "vllm:num_requests_waiting": 6.0}
    assert proxy_figures(PROXY_PAGE) == (3.0, 2.0)
    assert proxy_figures(b"") == (None, None)


def test_only_the_wanted_lines_are_read_whatever_else_the_page_holds() -> None:
    page = (
        b"this line is { not a metric at all\n"
        b'vllm:num_requests_running{path="a} b",q="say \\"hi\\" }"} 2 1700000000000\n'
        b"vllm:num_requests_running_total 100\n"  # a longer name with the same start
        b"vllm:num_requests_running\t3\r\n"
        b"vllm:num_requests_running{unterminated 7\n"  # not a sample's shape: skipped
        b"# vllm:num_requests_waiting 50\n"
        b"vllm:num_requests_waiting +Inf\n"
    )
    sums = gauge_sums(page, ("vllm:num_requests_running", "vllm:num_requests_waiting"))
    assert sums == {"vllm:num_requests_running": 5.0, "vllm:num_requests_waiting": float("inf")}
    with pytest.raises(ValueError, match="could not convert"):
        gauge_sums(b"llmserve_queue_depth lots\n", (QUEUED,))


@pytest.mark.parametrize("engine", sorted(ENGINE_PAGES))
def test_each_engine_is_read_under_its_own_names(engine: str) -> None:
    assert engine_figures(engine, ENGINE_PAGES[engine]) == (8.0, 1.0)  # type: ignore[arg-type]


def test_vllm_and_an_engine_without_metrics() -> None:
    assert engine_figures("vllm", VLLM_PAGE) == (5.0, 6.0)
    assert engine_figures("ollama", VLLM_PAGE) == (None, None)
    assert "ollama" not in ENGINE_GAUGES


def test_a_pod_is_its_proxys_figures_plus_its_engines_when_that_page_came() -> None:
    assert pod_load(target(), PROXY_PAGE, VLLM_PAGE) == PodLoad("llama-0", 5.0, 6.0, 3.0, 2.0)
    assert pod_load(target(), PROXY_PAGE, None) == PodLoad("llama-0", None, None, 3.0, 2.0)
    # An engine page that fails or does not parse is as good as none: the proxy still counts.
    for engine in (PageError("/metrics/engine answered HTTP 502"), b"vllm:num_requests_running x"):
        assert pod_load(target(), PROXY_PAGE, engine) == PodLoad("llama-0", None, None, 3.0, 2.0)
    assert pod_load(target("ollama"), PROXY_PAGE, None).demand == 5.0


def test_a_page_over_the_limit_or_a_failed_proxy_page_makes_the_pod_missing_with_why() -> None:
    big = PageTooLargeError("its /metrics/engine page is over 1048576 bytes")
    assert pod_load(target(), PROXY_PAGE, big) == PodLoad("llama-0", problem=str(big))
    failed = PageError("/metrics did not answer within 2 s")
    assert pod_load(target(), failed, VLLM_PAGE) == PodLoad("llama-0", problem=str(failed))
    broken = pod_load(target(), b"llmserve_queue_depth ?\n", VLLM_PAGE)
    assert broken.demand is None
    assert broken.problem is not None
    assert broken.problem.startswith("/metrics does not parse")


def test_pod_addresses_bracket_ipv6() -> None:
    assert base_url(target()) == "http://127.1.0.7:8080"
    assert base_url(target(ip="::1")) == "http://[::1]:8080"


def test_queries_filter_stale_series_before_aggregating_by_pod() -> None:
    assert promql(DEFAULT_QUERIES["in_flight"], "ml", 30) == (
        'sum by (pod) (llmserve_requests_in_flight{namespace="ml"} and '
        '((time() - timestamp(llmserve_requests_in_flight{namespace="ml"})) < 30))'
    )
    gpu = promql(DEFAULT_QUERIES["gpu_utilization"], "ml", 7.5)
    assert gpu.startswith('max by (pod) (DCGM_FI_DEV_GPU_UTIL{namespace="ml"} and ')
    assert gpu.endswith("< 7.5))")


def test_one_running_query_serves_every_engine() -> None:
    running = promql(DEFAULT_QUERIES["running"], "ml", 30)
    for name in ("vllm:num_requests_running", "tgi_batch_current_size",
                 "sglang:num_running_reqs", "llamacpp:requests_processing"):  # fmt: skip
        assert name in running
    assert '__name__=~"' in running
    assert 'namespace="ml"' in running


def test_a_namespace_cannot_break_out_of_its_label_value() -> None:
    query = promql(DEFAULT_QUERIES["queued"], 'a"b\\', 30)
    assert 'llmserve_queue_depth{namespace="a\\"b\\\\"}' in query


def test_exported_pod_labels_for_dcgm_behind_a_service_monitor() -> None:
    dcgm = DEFAULT_QUERIES["gpu_utilization"]
    renamed = type(dcgm)(
        'DCGM_FI_DEV_GPU_UTIL{exported_namespace="{namespace}"}', "max", "exported_pod"
    )
    assert promql(renamed, "ml", 30).startswith("max by (exported_pod) (")
    body = {"data": {"result": [{"metric": {"exported_pod": "llama-0"}, "value": [1, "97"]}]}}
    assert vector_by_pod(body, "exported_pod") == {"llama-0": 97.0}


def test_answers_are_read_by_pod_skipping_nan_and_unlabelled_series() -> None:
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": "llama-0"}, "value": [1700000000.1, "3"]},
        {"metric": {"pod": "llama-1"}, "value": [1700000000.1, "NaN"]},
        {"metric": {}, "value": [1700000000.1, "9"]},
    ]}}  # fmt: skip
    assert vector_by_pod(body, "pod") == {"llama-0": 3.0}


def test_only_the_pods_asked_for_are_assembled_with_the_figures_found() -> None:
    answers = {
        ("ml", "running"): {"llama-0": 2.0, "other-0": 9.0},
        ("ml", "in_flight"): {"llama-0": 2.0, "llama-1": 0.0},
        ("ml", "gpu_utilization"): {"llama-1": 100.0},
        ("dev", "running"): {"llama-2": 1.0},
    }
    loads = assemble(answers, {"ml": {"llama-0", "llama-1", "llama-3"}, "dev": set()})
    assert loads == {
        "llama-0": PodLoad("llama-0", running=2.0, in_flight=2.0),
        "llama-1": PodLoad("llama-1", in_flight=0.0, gpu_utilization=100.0),
    }


def test_a_successful_answer_is_returned_and_a_failure_says_what_to_check() -> None:
    ok = {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert answered("http://p:9090", "running", "q", 200, json.dumps(ok).encode()) == ok
    bad = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    with pytest.raises(SourceError) as error:
        answered("http://p:9090", "queued", "x{", 400, json.dumps(bad).encode())
    message = str(error.value)
    for part in ("http://p:9090", "HTTP 400", "bad_data: parse error", "queued query x{"):
        assert part in message
    with pytest.raises(SourceError, match=r"not a Prometheus API answer.*base URL"):
        answered("http://p:9090/api/v1", "queued", "q", 404, b"404 page not found")
