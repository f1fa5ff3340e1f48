"""The VRAM fit check: parameters from repo ids, GGUF tags, verdicts, suggestions and `fit`."""

from __future__ import annotations

import json

import pytest
import yaml
from tests.support import document, service

from llmserve.api import fit
from llmserve.api.fit import FitInput

# --- parameters from the repo id ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "billions"),
    [
        ("meta-llama/Llama-3.1-70B-Instruct", 70),
        ("meta-llama/Llama-3.1-8b-instruct", 8),
        ("meta-llama/Llama-3.1-8B-Instruct", 8),
        ("Qwen/Qwen2.5-0.5B-Instruct", 0.5),
        ("Qwen/Qwen2.5-1.5B", 1.5),
        ("Qwen/Qwen2.5-7B-Instruct-AWQ", 7),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 56),
        ("mistralai/Mixtral-8x22B-v0.1", 176),
        ("Qwen/Qwen3-30B-A3B", 30),
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", None),
        ("Qwen/Qwen3-235B-A22B", 235),
        ("bigscience/bloom-560m", 0.56),
        ("facebook/opt-125m", 0.125),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 1.1),
        ("openai/gpt-oss-20b", 20),
        ("mlx-community/Llama-3.2-3B-Instruct-4bit", 3),  # 4bit is not a size
        ("Qwen/Qwen2.5-7B-Instruct-1M", 7),  # 1M is a context length; billions win
        ("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", 8),
        ("my-org-70B/some-model", None),  # only the repo name counts, not the owner
        ("microsoft/phi-2", None),
        ("org/some-model", None),
        ("Qwen/Qwen1.5-MoE-A2.7B", None),  # only active parameters named: unknown
    ],
)
def test_parameters_are_inferred_from_the_repo_id(repo, billions) -> None:
    assert fit.infer_parameters_billions(repo) == (
        pytest.approx(billions) if billions is not None else None
    )


def test_the_spec_value_wins_over_the_repo_id() -> None:
    spec = service({"model": {"name": "meta-llama/Llama-3.1-8B", "parametersBillions": 8.03}}).spec
    inputs = fit.input_for(spec, None)
    assert inputs.parameters_billions == 8.03
    assert inputs.parameters_source == "spec.model.parametersBillions"


def test_input_for_takes_everything_from_the_spec() -> None:
    spec = service(
        {
            "engine": "llamacpp",
            "model": {"name": "bartowski/Qwen2.5-14B-Instruct-GGUF", "file": "*-Q5_K_M.gguf"},
            "gpus": 2,
            "gpuMemoryGiB": 24,
            "maxModelLen": 4096,
        }
    ).spec
    assert fit.input_for(spec, 80) == FitInput(
        engine="llamacpp",
        quantization="gguf",
        gpus=2,
        parameters_billions=14,
        parameters_source="the repo id bartowski/Qwen2.5-14B-Instruct-GGUF",
        gpu_memory_gib=24,
        max_model_len=4096,
        gguf_file="*-Q5_K_M.gguf",
    )


def test_gpu_memory_falls_back_to_the_operator_default() -> None:
    assert fit.input_for(service().spec, 40).gpu_memory_gib == 40
    assert fit.input_for(service().spec, None).gpu_memory_gib is None


# --- bytes per parameter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "tag"),
    [
        ("*-Q4_K_M.gguf", "Q4_K_M"),
        ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q5_k_m.gguf", "Q5_K_M"),
        ("model.Q8_0.gguf", "Q8_0"),
        ("model-IQ4_XS.gguf", "IQ4_XS"),
        ("model-BF16.gguf", "BF16"),
        ("model-f16.gguf", "F16"),
        ("Q4_K_M/model-00001-of-00002.gguf", "Q4_K_M"),
        ("model.gguf", None),
        ("*.gguf", None),
        ("model-Q4_K_XL.gguf", None),  # not a known tag: no guess
        ("", None),
        (None, None),
    ],
)
def test_the_gguf_tag_is_read_from_the_file_name(file, tag) -> None:
    assert fit.gguf_tag(file) == tag


@pytest.mark.parametrize(
    ("quantization", "file", "expected"),
    [
        ("none", None, 2.0),
        ("fp8", None, 1.0),
        ("bitsandbytes", None, 1.0),
        ("awq", None, 0.5),
        ("gptq", None, 0.5),
        ("gguf", "*-Q8_0.gguf", 1.0),
        ("gguf", "*-Q5_K_M.gguf", 0.61),
        ("gguf", "*-q4_k_m.gguf", 0.48),
        ("gguf", "*.gguf", None),
        ("gguf", None, None),
    ],
)
def test_bytes_per_parameter(quantization, file, expected) -> None:
    assert fit.bytes_per_parameter(quantization, file) == expected


def test_gguf_bytes_per_parameter_shrink_with_the_bits() -> None:
    table = fit.GGUF_BYTES_PER_PARAMETER
    assert table["F16"] > table["Q8_0"] > table["Q6_K"] > table["Q5_K_M"] > table["Q4_K_M"]
    assert table["Q4_K_M"] > table["Q3_K_M"] > table["Q2_K"]


# --- verdicts -------------------------------------------------------------------------------------


def inputs(**fields) -> FitInput:
    base = {"engine": "vllm", "quantization": "none", "gpus": 1, "parameters_billions": 8.0}
    return FitInput(**(base | fields))


def test_70b_fp16_does_not_fit_one_80_gib_gpu() -> None:
    report = fit.check(inputs(parameters_billions=70, gpu_memory_gib=80))
    assert report.verdict == "does-not-fit"
    assert report.reason == "needs ~150 GiB per GPU, have 72 GiB: use gpus: 4 or quantization: awq"
    assert report.weights_gib == pytest.approx(130.4)
    assert report.per_gpu_available_gib == 72.0
    assert report.memory_fraction == 0.9
    assert report.context_tokens == fit.DEFAULT_CONTEXT_TOKENS


def test_70b_fits_four_80_gib_gpus() -> None:
    report = fit.check(inputs(parameters_billions=70, gpu_memory_gib=80, gpus=4))
    assert report.verdict == "fits"
    assert report.reason.startswith("needs ~")
    assert report.per_gpu_need_gib is not None
    assert report.per_gpu_available_gib is not None
    assert report.per_gpu_need_gib <= report.per_gpu_available_gib


def test_8b_fp16_fits_a_24_gib_gpu() -> None:
    report = fit.check(inputs(gpu_memory_gib=24))
    assert report.verdict == "fits"
    assert report.reason == "needs ~20 GiB per GPU, have 22 GiB"


def test_the_sum_is_weights_plus_kv_plus_overhead_over_the_gpus() -> None:
    report = fit.check(inputs(parameters_billions=70, gpu_memory_gib=80, gpus=4))
    assert report.weights_gib is not None
    assert report.kv_cache_gib is not None
    assert report.overhead_gib is not None
    total = report.weights_gib + report.kv_cache_gib + report.overhead_gib
    assert report.per_gpu_need_gib == pytest.approx(total / 4, abs=0.1)


@pytest.mark.parametrize(("engine", "have"), [("vllm", 72), ("tgi", 80), ("sglang", 68)])
def test_the_engine_memory_fraction_sets_what_is_available(engine, have) -> None:
    report = fit.check(inputs(engine=engine, gpu_memory_gib=80))
    assert report.per_gpu_available_gib == have


def test_a_longer_context_needs_more_memory() -> None:
    short = fit.check(inputs(gpu_memory_gib=80, max_model_len=4096))
    long = fit.check(inputs(gpu_memory_gib=80, max_model_len=131072))
    assert short.kv_cache_gib is not None
    assert long.kv_cache_gib is not None
    assert long.kv_cache_gib > short.kv_cache_gib
    assert long.context_tokens == 131072
    assert not [note for note in long.notes if "maxModelLen" in note]
    assert [note for note in fit.check(inputs(gpu_memory_gib=80)).notes if "maxModelLen" in note]


def test_quantization_shrinks_the_weights() -> None:
    fp16 = fit.check(inputs(parameters_billions=70, gpu_memory_gib=80))
    awq = fit.check(inputs(parameters_billions=70, gpu_memory_gib=80, quantization="awq"))
    assert fp16.weights_gib is not None
    assert awq.weights_gib is not None
    assert awq.weights_gib == pytest.approx(fp16.weights_gib / 4, abs=0.1)
    assert awq.verdict == "fits"


def test_a_gguf_file_is_measured_by_its_tag() -> None:
    q4 = inputs(engine="llamacpp", quantization="gguf", parameters_billions=70, gpu_memory_gib=48)
    assert fit.check(FitInput(**{**q4.__dict__, "gguf_file": "*-Q4_K_M.gguf"})).verdict == "fits"
    q8 = FitInput(**{**q4.__dict__, "gguf_file": "*-Q8_0.gguf"})
    assert fit.check(q8).verdict == "does-not-fit"


def test_the_notes_say_where_the_parameter_count_came_from() -> None:
    spec = service({"model": {"name": "meta-llama/Llama-3.1-70B-Instruct"}}).spec
    report = fit.check(fit.input_for(spec, 80))
    assert "parameters: 70B from the repo id meta-llama/Llama-3.1-70B-Instruct" in report.notes


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"parameters_billions": None, "gpu_memory_gib": 80}, "spec.model.parametersBillions"),
        ({"gpu_memory_gib": None}, "spec.gpuMemoryGiB"),
        (
            {
                "engine": "llamacpp",
                "quantization": "gguf",
                "gpu_memory_gib": 24,
                "gguf_file": "x.gguf",
            },
            "GGUF quant type",
        ),
        ({"engine": "llamacpp", "quantization": "gguf", "gpus": 0, "gpu_memory_gib": 24}, "CPU"),
    ],
    ids=["unknown parameters", "unknown GPU memory", "unknown GGUF tag", "gpus 0 on CPU"],
)
def test_the_check_is_skipped_when_it_cannot_tell_and_says_why(fields, says) -> None:
    report = fit.check(inputs(**fields))
    assert report.verdict == "skipped"
    assert says in report.reason
    assert report.per_gpu_need_gib is None


def test_a_skipped_check_names_everything_it_misses() -> None:
    report = fit.check(inputs(parameters_billions=None, gpu_memory_gib=None))
    assert report.reason.startswith("VRAM fit check skipped")
    assert "spec.model.parametersBillions" in report.reason
    assert "spec.gpuMemoryGiB" in report.reason


# --- suggestions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "suggestion"),
    [
        ({"gpu_memory_gib": 16}, "use gpus: 2 or quantization: fp8"),
        (
            {"parameters_billions": 70, "gpu_memory_gib": 80, "gpus": 2},
            "use gpus: 4 or quantization: fp8",
        ),
        (
            {"parameters_billions": 70, "gpu_memory_gib": 80, "quantization": "fp8"},
            "use gpus: 2 or quantization: awq",
        ),
        (
            {"engine": "sglang", "parameters_billions": 70, "gpu_memory_gib": 80},
            "use gpus: 4 or quantization: awq",
        ),
        (
            {"gpu_memory_gib": 24, "max_model_len": 131072},
            "use gpus: 2 or maxModelLen: 8192",
        ),
        (
            {
                "engine": "llamacpp",
                "quantization": "gguf",
                "parameters_billions": 70,
                "gpu_memory_gib": 24,
                "gguf_file": "*-Q8_0.gguf",
            },
            "use gpus: 4 or a smaller GGUF file (e.g. Q4_K_M)",
        ),
        (
            {"parameters_billions": 405, "gpu_memory_gib": 24, "gpus": 8},
            "use a GPU with more memory or a smaller model",
        ),
    ],
    ids=[
        "8B on 16 GiB",
        "70B on 2x80",
        "70B fp8",
        "sglang 70B",
        "long context",
        "gguf",
        "hopeless",
    ],
)
def test_a_model_that_does_not_fit_gets_a_suggestion(fields, suggestion) -> None:
    report = fit.check(inputs(**fields))
    assert report.verdict == "does-not-fit"
    assert report.reason.endswith(": " + suggestion)


def test_suggested_quantizations_are_ones_the_engine_can_load() -> None:
    # bitsandbytes is smaller than FP16 but vLLM cannot load it; fp8 is suggested instead.
    report = fit.check(inputs(gpu_memory_gib=16))
    assert "bitsandbytes" not in report.reason


def test_every_suggestion_fits() -> None:
    base = inputs(parameters_billions=70, gpu_memory_gib=80)
    for changed in (
        FitInput(**{**base.__dict__, "gpus": 4}),
        FitInput(**{**base.__dict__, "quantization": "awq"}),
    ):
        assert fit.check(changed).verdict == "fits"


def test_the_report_serialises_to_json() -> None:
    report = fit.check(inputs(gpu_memory_gib=24))
    data = json.loads(json.dumps(report.as_dict()))
    assert data["verdict"] == "fits"
    assert isinstance(data["notes"], list)
    assert data["per_gpu_need_gib"] == report.per_gpu_need_gib


# --- llmserve fit ---------------------------------------------------------------------------------

SEVENTY_B = ("--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu-memory-gib", "80")


def test_fit_prints_the_numbers_and_exits_1_when_it_does_not_fit(llmserve) -> None:
    result = llmserve("fit", *SEVENTY_B, "--gpus", "1")
    assert result.returncode == 1
    for word in ("weights", "KV cache", "per-GPU need", "available", "verdict"):
        assert word in result.stdout
    assert "does not fit" in result.stdout
    assert "needs ~150 GiB per GPU, have 72 GiB: use gpus: 4 or quantization: awq" in result.stdout
    assert "Traceback" not in result.stderr


def test_fit_exits_0_when_it_fits(llmserve) -> None:
    result = llmserve("fit", *SEVENTY_B, "--gpus", "4")
    assert result.returncode == 0
    assert "fits" in result.stdout


def test_fit_exits_0_when_it_cannot_tell(llmserve) -> None:
    result = llmserve("fit", "--model", "org/some-model")
    assert result.returncode == 0
    assert "skipped" in result.stdout
    assert "spec.model.parametersBillions" in result.stdout


def test_fit_json(llmserve) -> None:
    result = llmserve("fit", *SEVENTY_B, "--gpus", "1", "-o", "json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["model"] == "meta-llama/Llama-3.1-70B-Instruct"
    assert data["verdict"] == "does-not-fit"
    assert data["reason"] == "needs ~150 GiB per GPU, have 72 GiB: use gpus: 4 or quantization: awq"
    assert data["parameters_billions"] == 70
    assert data["gpus"] == 1
    assert data["per_gpu_available_gib"] == 72.0
    assert data["per_gpu_need_gib"] > data["per_gpu_available_gib"]


@pytest.mark.parametrize(
    ("args", "code", "verdict"),
    [
        (("--model", "meta-llama/Llama-3.1-8B", "--gpu-memory-gib", "24"), 0, "fits"),
        (("--model", "org/x", "--gpu-memory-gib", "24"), 0, "skipped"),
        (
            ("--model", "org/x", "--parameters-billions", "8", "--gpu-memory-gib", "12"),
            1,
            "does-not-fit",
        ),
        (
            (
                "--model",
                "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
                "--engine",
                "llamacpp",
                "--file",
                "*-Q4_K_M.gguf",
                "--gpu-memory-gib",
                "8",
            ),
            0,
            "fits",
        ),
        (
            ("--model", "m/Llama-3.1-70B", "--quantization", "awq", "--gpu-memory-gib", "80"),
            0,
            "fits",
        ),
    ],
    ids=["fits", "skipped", "does not fit", "gguf", "awq"],
)
def test_fit_json_verdicts_and_exit_codes(args, code, verdict, llmserve) -> None:
    result = llmserve("fit", *args, "-o", "json")
    assert result.returncode == code, result.stderr
    assert json.loads(result.stdout)["verdict"] == verdict


def test_fit_reads_an_llmservice_file(tmp_path, llmserve) -> None:
    path = tmp_path / "svc.yaml"
    doc = document({"model": {"name": "meta-llama/Llama-3.1-70B-Instruct"}, "gpuMemoryGiB": 80})
    path.write_text(yaml.safe_dump(doc))
    result = llmserve("fit", "-f", str(path), "-o", "json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["verdict"] == "does-not-fit"


def test_fit_refuses_an_invalid_request_with_one_message(llmserve) -> None:
    result = llmserve("fit", "--model", "org/x-8B", "--gpus", "0")
    assert result.returncode == 1
    assert result.stderr.count("error:") == 1
    assert "spec.gpus" in result.stderr
    assert "Traceback" not in result.stderr
