"""The `llmserve` command: render, crd and fit as a user runs them, and their --help."""

from __future__ import annotations

import io
import sys

import pytest
import yaml
from tests.support import ROOT, run_llmserve

from llmserve import cli

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = cli.main(list(argv), out, err)
    finally:
        sys.stdin = sys.__stdin__
    return code, out.getvalue(), err.getvalue()


def test_every_engine_has_an_example() -> None:
    engines = {yaml.safe_load(p.read_text())["spec"].get("engine", "vllm") for p in EXAMPLES}
    assert engines == {"vllm", "tgi", "sglang", "llamacpp", "ollama"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_render_prints_the_children_of_each_example(path) -> None:
    code, out, err = run("render", "-f", str(path))
    assert code == 0, err
    kinds = [doc["kind"] for doc in yaml.safe_load_all(out)]
    assert kinds == ["PersistentVolumeClaim", "Job", "Deployment", "Service", "NetworkPolicy"]
    assert "Traceback" not in err


def test_render_reads_stdin_and_many_documents() -> None:
    text = "\n---\n".join(p.read_text() for p in EXAMPLES[:2])
    code, out, _ = run("render", "-f", "-", stdin=text)
    assert code == 0
    names = {doc["metadata"]["name"] for doc in yaml.safe_load_all(out) if doc["kind"] == "Service"}
    assert len(names) == 2


def test_render_says_when_the_fit_check_is_skipped(tmp_path) -> None:
    spec = tmp_path / "x.yaml"
    spec.write_text(
        "apiVersion: llmserve.io/v1alpha1\nkind: LLMService\nmetadata: {name: x}\n"
        "spec: {model: {name: org/some-model}}\n"
    )
    code, _, err = run("render", "-f", str(spec))
    assert code == 0
    assert "note: LLMService x: VRAM fit check skipped" in err
    assert "spec.model.parametersBillions" in err
    assert "spec.gpuMemoryGiB" in err


def test_render_with_an_operator_config_uses_its_images_and_gpu_memory(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "images: {vllm: registry.local/vllm:pinned}\n"
        "operatorImage: registry.local/llmserve:1\ndefaultGpuMemoryGiB: 24\n"
    )
    spec = tmp_path / "x.yaml"
    spec.write_text(
        "apiVersion: llmserve.io/v1alpha1\nkind: LLMService\nmetadata: {name: x}\n"
        "spec: {model: {name: meta-llama/Llama-3.1-70B-Instruct}}\n"
    )
    code, _, err = run("render", "-f", str(spec), "--config", str(config))
    assert code == 1
    assert "spec.gpus: model does not fit" in err
    assert "have 22 GiB" in err

    spec.write_text(spec.read_text().replace("70B", "8B"))
    code, out, _ = run("render", "-f", str(spec), "--config", str(config))
    assert code == 0
    images = {
        c["image"]
        for d in yaml.safe_load_all(out)
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.local/vllm:pinned", "registry.local/llmserve:1"}


def test_render_refuses_more_gpus_than_the_operator_config_allows_per_replica(tmp_path) -> None:
    spec = tmp_path / "x.yaml"
    spec.write_text(
        "apiVersion: llmserve.io/v1alpha1\nkind: LLMService\nmetadata: {name: x}\n"
        "spec: {model: {name: meta-llama/Llama-3.1-70B-Instruct}, gpus: 8}\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text("maxGpusPerReplica: 4\n")
    code, _, err = run("render", "-f", str(spec), "--config", str(config))
    assert code == 1
    assert "spec.gpus: at most 4 GPUs fit one node here (the operator's maxGpusPerReplica)" in err
    config.write_text("maxGpusPerReplica: 8\n")
    assert run("render", "-f", str(spec), "--config", str(config))[0] == 0
    config.write_text("maxGpusPerReplica: 32\n")  # beyond the API's 16
    code, _, err = run("render", "-f", str(spec), "--config", str(config))
    assert code == 1
    assert "maxGpusPerReplica" in err


def test_a_bad_operator_config_is_named(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("imagez: {}\n")
    code, _, err = run("render", "-f", str(EXAMPLES[0]), "--config", str(config))
    assert code == 1
    assert f"operator config {config} is invalid" in err
    assert "imagez" in err


def test_crd_prints_the_committed_crd() -> None:
    code, out, _ = run("crd")
    assert code == 0
    assert out == (ROOT / "crds" / "llmservices.llmserve.io.yaml").read_text()


@pytest.mark.parametrize("command", [[], ["render"], ["crd"], ["fit"]])
def test_help_is_useful(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: llmserve" in text
    assert "Example" in text or "COMMAND" in text


def test_the_console_script_is_installed() -> None:
    result = run_llmserve("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("llmserve ")
