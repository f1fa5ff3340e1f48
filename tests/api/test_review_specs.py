"""The crafted LLMServices of the 2026-12-03 security review (M11, M7), through `llmserve render`.

Each spec the review names as wrong is refused with exit status 1 and one message naming the field,
and none prints a traceback: those it found "rejected with clear messages" stay so, and those it
found "accepted, then fail at run time" (or crash the command) are now refused up front. The specs
it lists under M7 stay accepted: who may create an LLMService may run a pod (README, trust model).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.support import document

GGUF = {"name": "bartowski/Llama-3.2-3B-Instruct-GGUF", "file": "*-Q4_K_M.gguf"}
LLAMACPP = {"engine": "llamacpp", "model": GGUF}


def spec(**fields: Any) -> dict[str, Any]:
    return document(fields)


def model(**fields: Any) -> dict[str, Any]:
    return document({"model": {"name": "Qwen/Qwen2.5-7B-Instruct", **fields}})


def edit(doc: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**doc, **top}


# (id, document, the field the message names, a word of the message)
REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    # "Rejected with clear, field-named messages (done well)": still so.
    ("gpus as a string", spec(gpus="2"), "spec.gpus", "an integer"),
    ("gpus 1.5", spec(gpus=1.5), "spec.gpus", "an integer"),
    ("negative gpus", spec(gpus=-1), "spec.gpus", ">= 0"),
    ("negative maxQueue", spec(proxy={"maxQueue": -1}), "spec.proxy.maxQueue", ">= 0"),
    ("maxConcurrency 0", spec(proxy={"maxConcurrency": 0}), "spec.proxy.maxConcurrency", ">= 1"),
    ("unknown engine", spec(engine="vlm"), "spec.engine", "did you mean vllm?"),
    ("unicode name", document(name="llam\u0430-8b"), "metadata.name", "lowercase letters"),
    ("uppercase name", document(name="Llama-8B"), "metadata.name", "lowercase letters"),
    ("300-character name", document(name="a" * 300), "metadata.name", "at most 48"),
    ("49-character name", document(name="a" * 49), "metadata.name", "at most 48"),
    ("name vllm", document(name="vllm"), "metadata.name", "VLLM_PORT"),
    ("missing model", edit(document(), spec={}), "spec.model", "required"),
    ("empty model", spec(model={"name": ""}), "spec.model.name", "must not be empty"),
    ("gguf on vllm", spec(quantization="gguf"), "spec.quantization", "engine: llamacpp"),
    (
        "awq on llamacpp",
        spec(engine="llamacpp", quantization="awq"),
        "spec.quantization",
        "quantization: gguf",
    ),
    ("bitsandbytes on vllm", spec(quantization="bitsandbytes"), "spec.quantization", "awq or fp8"),
    (
        "inverted autoscaling",
        spec(autoscaling={"enabled": True, "minReplicas": 4, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
        "must not exceed maxReplicas",
    ),
    ("spec as a list", edit(document(), spec=[]), "spec", "required"),
    (
        "engineArgs --host=0.0.0.0",
        spec(engineArgs=["--host=0.0.0.0"]),
        "spec.engineArgs[0]",
        "loopback",
    ),
    # "Accepted, then fail at run time": refused now, each at its field.
    (
        "repo id --trust-remote-code",
        model(name="--trust-remote-code"),
        "spec.model.name",
        "repo id",
    ),
    (
        "repo id with a shell",
        model(name="Qwen/Qwen 2.5 7B; rm -rf /"),
        "spec.model.name",
        "repo id",
    ),
    ("repo id as a URL", model(name="https://evil.example/x"), "spec.model.name", "ORG/NAME"),
    ("revision --include=*", model(revision="--include=*"), "spec.model.revision", "branch, tag"),
    (
        "revision climbing",
        model(revision="../../../../etc/cron.d/x"),
        "spec.model.revision",
        "no '..'",
    ),
    (
        "file --link=/tmp/x",
        spec(engine="llamacpp", model={**GGUF, "file": "--link=/tmp/x"}),
        "spec.model.file",
        "no '-' or '/' first",
    ),
    ("servedName --api-key", model(servedName="--api-key"), "spec.model.servedName", "'-'"),
    ("servedName a\\nb", model(servedName="a\nb"), "spec.model.servedName", "no spaces"),
    (
        "servedName --help on ollama",
        spec(engine="ollama", model={**GGUF, "servedName": "--help"}),
        "spec.model.servedName",
        "not starting with '-'",
    ),
    ("env 1BAD=NAME", spec(env=[{"name": "1BAD=NAME", "value": "x"}]), "spec.env[0].name", "C id"),
    ("cache.size lots", spec(cache={"size": "lots"}), "spec.cache.size", "quantity"),
    (
        "memory 64 gigs",
        spec(resources={"limits": {"memory": "64 gigs"}}),
        "spec.resources.limits.memory",
        "quantity such as 16Gi",
    ),
    (
        "storageClassName Bad Class!",
        spec(cache={"storageClassName": "Bad Class!"}),
        "spec.cache.storageClassName",
        "DNS subdomain",
    ),
    (
        "nodeSelector key bad key!",
        spec(nodeSelector={"bad key!": "x"}),
        "spec.nodeSelector",
        "key 'bad key!'",
    ),
    ("gpus 1000000", spec(gpus=1_000_000), "spec.gpus", "<= 16"),
    ("replicas 2^40", spec(replicas=2**40), "spec.replicas", "<= 2147483647"),
    ("replicas 2^70", spec(replicas=2**70), "spec.replicas", "<= 2147483647"),
    ("maxModelLen 2^62", spec(maxModelLen=2**62), "spec.maxModelLen", "<= 10485760"),
]

ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("48-character name", document(name="a" * 48)),
    # replicas within int32: the Deployment holds it (the brief's bound; a cap is policy).
    ("replicas 1000000000", spec(replicas=1_000_000_000)),
    # M7: by design, as creating a pod; the chart's admission policy can narrow these.
    ("any image", spec(image="docker.io/someone/anything:latest")),
    (
        "env from any Secret",
        spec(env=[{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]),
    ),
    (
        "tolerate everything on the control plane",
        spec(
            tolerations=[{"operator": "Exists"}],
            nodeSelector={"node-role.kubernetes.io/control-plane": ""},
        ),
    ),
    ("token from any Secret", model(tokenSecretRef={"name": "someone-elses-token"})),
    ("--trust-remote-code", spec(engineArgs=["--trust-remote-code"])),
]


def test_every_spec_the_review_names_is_here() -> None:
    assert len(REFUSED) == 37
    assert len({case[0] for case in REFUSED + ACCEPTED}) == len(REFUSED) + len(ACCEPTED)


@pytest.mark.parametrize(
    ("doc", "field", "word"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_render_refuses_it_naming_the_field(doc, field, word, tmp_path, llmserve) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = llmserve("render", "-f", str(path))
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert f"{field}: " in result.stderr
    assert word in result.stderr


@pytest.mark.parametrize("doc", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_render_accepts_it(doc, tmp_path, llmserve) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = llmserve("render", "-f", str(path))
    assert result.returncode == 0, result.stderr
