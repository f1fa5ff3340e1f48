"""`fetch-model --quantization`: weights of another format than spec.quantization fail the Job
before they are downloaded, naming the field (review L12), also as the termination message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.fetch.fakehub import FakeHub, FakeRepo
from tests.fetch.runner import WEIGHTS, fetch

from llmserve.fetch import quantization


def config(method: str | None) -> bytes:
    """A config.json, pre-quantized with `method` unless None."""
    body: dict[str, object] = {"model_type": "llama"}
    if method:
        body["quantization_config"] = {"quant_method": method, "bits": 4}
    return json.dumps(body).encode()


def add(hub: FakeHub, name: str, method: str | None, **more: bytes) -> str:
    files = {"config.json": config(method), "model.safetensors": WEIGHTS, **more}
    return hub.add(FakeRepo(f"org/{name}", files)).repo_id


def weights_fetched(hub: FakeHub) -> bool:
    return any(r.path.endswith("model.safetensors") for r in hub.requests("GET"))


def test_awq_on_bf16_weights_fails_before_the_weights_naming_the_field(hub, tmp_path):
    # The review's case: Llama-3.1-70B-Instruct (BF16) with quantization: awq renders, then OOMs.
    log = tmp_path / "termination-log"
    code, out, err = fetch(
        "--repo", "org/tiny", "--hf-home", str(tmp_path / "hf"),
        "--quantization", "awq", "--termination-log", str(log),
    )  # fmt: skip
    assert code == 1
    assert err == (
        "error: org/tiny at main holds unquantized weights (config.json has no "
        "quantization_config) but spec.quantization is awq, which would size the fit check at a "
        "fraction of their memory; set spec.quantization: none (and enough GPUs), or pick a repo "
        "with awq weights\n"
    )
    assert log.read_text() == err.rstrip("\n")  # the pod's termination message, the same line
    assert not weights_fetched(hub)
    assert "fetching" not in out  # refused before the download starts, or the disk is checked


@pytest.mark.parametrize(
    ("method", "expected", "fix"),
    [
        ("gptq", "awq", "set spec.quantization: gptq"),
        ("awq", "fp8", "set spec.quantization: awq"),
        ("compressed-tensors", "fp8", "set spec.quantization: none (the engine reads it)"),
        ("fp8", "bitsandbytes", "set spec.quantization: fp8"),
    ],
)
def test_weights_of_another_format_fail_with_the_value_to_set(hub, tmp_path, method, expected, fix):
    repo = add(hub, "model", method)
    code, _, err = fetch(
        "--repo", repo, "--hf-home", str(tmp_path / "hf"), "--quantization", expected
    )  # fmt: skip
    assert code == 1
    assert f"holds {method} weights" in err
    assert f"but spec.quantization is {expected}; {fix}" in err
    assert not weights_fetched(hub)


@pytest.mark.parametrize(
    ("method", "expected", "more"),
    [
        ("awq", "awq", {}),
        ("gptq", "gptq", {}),
        ("fp8", "fp8", {}),
        (None, "fp8", {}),  # quantized at load
        (None, "bitsandbytes", {}),  # quantized at load
        (None, "gptq", {"quantize_config.json": b'{"bits": 4}'}),  # AutoGPTQ before config.json
        (None, "none", {}),
        ("awq", "none", {}),  # engines read the checkpoint's format themselves
        ("AWQ", "awq", {}),
    ],
)
def test_weights_of_the_format_the_spec_says_are_fetched(hub, tmp_path, method, expected, more):
    repo = add(hub, "model", method, **more)
    args = ("--repo", repo, "--hf-home", str(tmp_path / "hf"), "--quantization", expected)
    code, _, err = fetch(*args)
    assert (code, err) == (0, "")
    assert weights_fetched(hub)


def test_a_cached_mismatch_still_fails_and_downloads_nothing(hub, tmp_path):
    home = str(tmp_path / "hf")
    assert fetch("--repo", "org/tiny", "--hf-home", home)[0] == 0  # no check asked: cached
    hub.log.clear()
    code, _, err = fetch("--repo", "org/tiny", "--hf-home", home, "--quantization", "gptq")
    assert code == 1
    assert "spec.quantization is gptq" in err
    assert hub.requests("GET") == []


def test_a_repo_without_config_json_is_not_checked(hub, tmp_path):
    hub.add(FakeRepo("org/bare", {"model.safetensors": WEIGHTS}))
    args = ("--repo", "org/bare", "--hf-home", str(tmp_path / "hf"), "--quantization", "awq")
    assert fetch(*args)[0] == 0


def test_an_unreadable_config_json_fails_naming_the_field(hub, tmp_path):
    hub.add(FakeRepo("org/broken", {"config.json": b"{not json", "model.safetensors": WEIGHTS}))
    args = ("--repo", "org/broken", "--hf-home", str(tmp_path / "hf"), "--quantization", "awq")
    code, _, err = fetch(*args)
    assert code == 1
    assert "cannot read config.json of org/broken at main to check spec.quantization" in err


def test_quant_method_is_read_from_quantization_config() -> None:
    assert quantization.method({"quantization_config": {"quant_method": "GPTQ"}}) == "gptq"
    assert quantization.method({"quantization_config": {"bits": 4}}) is None
    assert quantization.method({"model_type": "llama"}) is None


def test_the_termination_log_is_left_alone_on_success(tmp_path):
    log = tmp_path / "termination-log"
    home = str(tmp_path / "hf")
    assert fetch("--repo", "org/tiny", "--hf-home", home, "--termination-log", str(log))[0] == 0
    assert not Path(log).exists()
