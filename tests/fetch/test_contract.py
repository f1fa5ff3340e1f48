"""The download Job the renderer emits runs this command with arguments it accepts."""

from __future__ import annotations

import pytest
import yaml
from tests.fetch.fakehub import FakeRepo
from tests.fetch.runner import fetch
from tests.support import ROOT

from llmserve import cli
from llmserve.api import parse_llmservice
from llmserve.api.config import OperatorConfig
from llmserve.render import cache
from llmserve.render.engines.base import CACHE_MOUNT, GGUF_PATH, HF_HOME

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def job_args(path):
    service = parse_llmservice(yaml.safe_load(path.read_text()))
    job = cache.download_job(service, OperatorConfig())
    return service, job["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_rendered_arguments_parse(path):
    service, args = job_args(path)
    parsed = cli._parser().parse_args(args)
    model = service.spec.model
    assert parsed.handler is cli.cmd_fetch_model
    assert (parsed.repo, parsed.revision, parsed.hf_home) == (model.name, model.revision, HF_HOME)
    assert parsed.include == ([model.file] if model.file else None)
    assert parsed.link == (GGUF_PATH if model.file else None)
    assert parsed.quantization == (
        None if service.spec.quant in ("none", "gguf") else service.spec.quant
    )
    assert parsed.termination_log == "/dev/termination-log"  # Kubernetes' default path


def test_a_quantized_spec_asks_for_the_check():
    service = parse_llmservice(yaml.safe_load((ROOT / "examples" / "vllm.yaml").read_text()))
    awq = service.model_copy(
        update={"spec": service.spec.model_copy(update={"quantization": "awq"})}
    )
    args = cache.download_job(awq, OperatorConfig())["spec"]["template"]["spec"]["containers"][0]
    assert cli._parser().parse_args(args["args"]).quantization == "awq"


def test_the_llamacpp_example_job_leaves_the_file_where_the_engine_opens_it(hub, tmp_path):
    _, args = job_args(ROOT / "examples" / "llamacpp.yaml")
    repo = hub.add(
        FakeRepo(
            "bartowski/Llama-3.2-3B-Instruct-GGUF",
            {
                "Llama-3.2-3B-Instruct-Q4_K_M.gguf": b"GGUF 4",
                "Llama-3.2-3B-Instruct-Q8_0.gguf": b"8",
            },
        )
    )
    mount = tmp_path / "models"
    local = [arg.replace(CACHE_MOUNT, str(mount), 1) for arg in args[1:]]
    code, _, err = fetch(*local)
    assert code == 0, err
    assert (mount / "model.gguf").read_bytes() == b"GGUF 4"
    snapshot = mount / "hf" / "hub" / "models--bartowski--Llama-3.2-3B-Instruct-GGUF"
    assert [p.name for p in (snapshot / "snapshots" / repo.commit).iterdir()] == [
        "Llama-3.2-3B-Instruct-Q4_K_M.gguf"
    ]
