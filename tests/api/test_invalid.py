"""Invalid LLMServices: each is refused with a message that names the field and says what to do.

The table runs every document through what `llmserve render` runs (parse, CEL rules, engineArgs and
the VRAM fit); a few go through the real command line too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from tests.support import document

from llmserve import render
from llmserve.api import InvalidSpec, LLMService, parse_llmservice, parse_many
from llmserve.api.config import OperatorConfig

Doc = dict[str, Any]

GGUF_MODEL = {"name": "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "file": "*-Q4_K_M.gguf"}
LLAMA_70B = {"name": "meta-llama/Llama-3.1-70B-Instruct"}


def validate(doc: Doc, config: OperatorConfig | None = None) -> LLMService:
    """Everything `llmserve render` checks before it builds anything."""
    service = parse_llmservice(doc)
    render.check(service, config or OperatorConfig())
    return service


def edit(change: Callable[[Doc], object]) -> Doc:
    """A valid document changed in place by `change`."""
    doc = document()
    change(doc)
    return doc


def spec(**fields: Any) -> Doc:
    """A valid document with these spec fields (YAML names; `gpuMemoryGiB` as a keyword)."""
    return document(fields)


def renamed(name: str) -> Doc:
    return document(name=name)


@dataclass(frozen=True)
class Case:
    id: str
    doc: Doc
    path: str
    word: str
    """A word (or phrase) the message must contain: the fix, the allowed values, the suggestion."""


CASES = [
    # --- model ---
    Case("missing model.name", spec(model={}), "spec.model.name", "required"),
    Case("empty model.name", spec(model={"name": ""}), "spec.model.name", "must not be empty"),
    Case("missing model", edit(lambda d: d["spec"].pop("model")), "spec.model", "required"),
    Case("model as a string", spec(model="a/b"), "spec.model", "a mapping"),
    Case(
        "empty revision",
        spec(model={"name": "a/b", "revision": ""}),
        "spec.model.revision",
        "must not be empty",
    ),
    Case(
        "parametersBillions 0",
        spec(model={"name": "a/b", "parametersBillions": 0}),
        "spec.model.parametersBillions",
        "> 0",
    ),
    Case(
        "tokenSecretRef without name",
        spec(model={"name": "a/b", "tokenSecretRef": {"key": "t"}}),
        "spec.model.tokenSecretRef.name",
        "required",
    ),
    # --- engine and quantization ---
    Case("bad engine", spec(engine="vlm"), "spec.engine", "did you mean vllm?"),
    Case("engine in capitals", spec(engine="VLLM"), "spec.engine", "did you mean vllm?"),
    Case("engine llama.cpp", spec(engine="llama.cpp"), "spec.engine", "did you mean llamacpp?"),
    Case("bad quantization", spec(quantization="awk"), "spec.quantization", "did you mean awq?"),
    Case("quantization int4", spec(quantization="int4"), "spec.quantization", "one of none, awq"),
    Case("gguf on vllm", spec(quantization="gguf"), "spec.quantization", "engine: llamacpp"),
    Case("gguf on tgi", spec(engine="tgi", quantization="gguf"), "spec.quantization", "llamacpp"),
    Case(
        "gguf on sglang",
        spec(engine="sglang", quantization="gguf"),
        "spec.quantization",
        "llamacpp",
    ),
    Case(
        "awq on llamacpp",
        spec(engine="llamacpp", model=GGUF_MODEL, quantization="awq"),
        "spec.quantization",
        "quantization: gguf",
    ),
    Case(
        "awq on ollama",
        spec(engine="ollama", model=GGUF_MODEL, quantization="awq"),
        "spec.quantization",
        "quantization: gguf",
    ),
    Case(
        "none on ollama",
        spec(engine="ollama", model=GGUF_MODEL, quantization="none"),
        "spec.quantization",
        "only GGUF",
    ),
    Case(
        "bitsandbytes on vllm",
        spec(quantization="bitsandbytes"),
        "spec.quantization",
        "use quantization: awq or fp8",
    ),
    Case(
        "model.file missing for llamacpp",
        spec(engine="llamacpp"),
        "spec.model.file",
        "Q4_K_M.gguf",
    ),
    Case("model.file missing for ollama", spec(engine="ollama"), "spec.model.file", "required"),
    Case(
        "model.file on vllm",
        spec(model={"name": "a/b", "file": "x-Q4_K_M.gguf"}),
        "spec.model.file",
        "remove it",
    ),
    Case(
        "model.file on sglang",
        spec(engine="sglang", model={"name": "a/b", "file": "x.gguf"}),
        "spec.model.file",
        "engine: llamacpp",
    ),
    # --- gpus and replicas ---
    Case("gpus 0 on vllm", spec(gpus=0), "spec.gpus", "llamacpp or ollama"),
    Case("gpus 0 on tgi", spec(engine="tgi", gpus=0), "spec.gpus", "at least 1"),
    Case("gpus 0 on sglang", spec(engine="sglang", gpus=0), "spec.gpus", "at least 1"),
    Case("negative gpus", spec(gpus=-1), "spec.gpus", ">= 0"),
    Case(
        "negative gpus on llamacpp",
        spec(engine="llamacpp", model=GGUF_MODEL, gpus=-2),
        "spec.gpus",
        ">= 0",
    ),
    Case("gpus as a string", spec(gpus="2"), "spec.gpus", "an integer"),
    Case("gpus as a float", spec(gpus=2.5), "spec.gpus", "an integer"),
    Case("gpuMemoryGiB 0", spec(gpuMemoryGiB=0), "spec.gpuMemoryGiB", ">= 1"),
    Case("maxModelLen 0", spec(maxModelLen=0), "spec.maxModelLen", ">= 1"),
    Case("replicas -1", spec(replicas=-1), "spec.replicas", ">= 0"),
    # --- autoscaling ---
    Case(
        "minReplicas 0",
        spec(autoscaling={"minReplicas": 0}),
        "spec.autoscaling.minReplicas",
        ">= 1",
    ),
    Case(
        "maxReplicas 0",
        spec(autoscaling={"maxReplicas": 0}),
        "spec.autoscaling.maxReplicas",
        ">= 1",
    ),
    Case(
        "minReplicas above maxReplicas",
        spec(autoscaling={"enabled": True, "minReplicas": 3, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
        "must not exceed maxReplicas",
    ),
    Case(
        "minReplicas above maxReplicas while disabled",
        spec(autoscaling={"minReplicas": 4, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
        "lower minReplicas",
    ),
    Case(
        "enabled without maxReplicas",
        spec(autoscaling={"enabled": True}),
        "spec.autoscaling.maxReplicas",
        "required when autoscaling is enabled",
    ),
    Case(
        "gpuUtilizationGuard above 100",
        spec(autoscaling={"gpuUtilizationGuard": 101}),
        "spec.autoscaling.gpuUtilizationGuard",
        "<= 100",
    ),
    Case(
        "negative scaleDownDelaySeconds",
        spec(autoscaling={"scaleDownDelaySeconds": -1}),
        "spec.autoscaling.scaleDownDelaySeconds",
        ">= 0",
    ),
    Case(
        "autoscaling enabled as a string",
        spec(autoscaling={"enabled": "yes"}),
        "spec.autoscaling.enabled",
        "true or false",
    ),
    # --- proxy and cache ---
    Case("negative maxQueue", spec(proxy={"maxQueue": -1}), "spec.proxy.maxQueue", ">= 0"),
    Case(
        "queueTimeoutSeconds 0",
        spec(proxy={"queueTimeoutSeconds": 0}),
        "spec.proxy.queueTimeoutSeconds",
        ">= 1",
    ),
    Case(
        "cache.accessMode enum",
        spec(cache={"accessMode": "ReadWriteonce"}),
        "spec.cache.accessMode",
        "did you mean ReadWriteOnce?",
    ),
    Case(
        "cache.accessMode RWX",
        spec(cache={"accessMode": "RWX"}),
        "spec.cache.accessMode",
        "ReadWriteMany",
    ),
    Case(
        "cache.size as a float",
        spec(cache={"size": 1.5}),
        "spec.cache.size",
        "such as 16Gi",
    ),
    # --- pod overrides ---
    Case(
        "tolerations effect enum",
        spec(tolerations=[{"key": "gpu", "effect": "NoScedule"}]),
        "spec.tolerations[0].effect",
        "did you mean NoSchedule?",
    ),
    Case(
        "tolerations operator enum",
        spec(tolerations=[{"key": "gpu", "operator": "Exists"}, {"operator": "In"}]),
        "spec.tolerations[1].operator",
        "Exists, Equal",
    ),
    Case(
        "env without name",
        spec(env=[{"name": "A", "value": "1"}, {"value": "x"}]),
        "spec.env[1].name",
        "required",
    ),
    Case(
        "resources limit as a float",
        spec(resources={"limits": {"memory": 1.5}}),
        "spec.resources.limits.memory",
        "integer or a string",
    ),
    Case("nodeSelector value", spec(nodeSelector={"a": 1}), "spec.nodeSelector.a", "a string"),
    Case("engineArgs as a string", spec(engineArgs="--enforce-eager"), "spec.engineArgs", "a list"),
    Case("empty image", spec(image=""), "spec.image", "must not be empty"),
    # --- unknown fields ---
    Case("spec.gpu", spec(gpu=2), "spec.gpu", "did you mean gpus?"),
    Case(
        "spec.model.revison",
        spec(model={"name": "a/b", "revison": "v1"}),
        "spec.model.revison",
        "did you mean revision?",
    ),
    Case(
        "spec.autoscaling.maxReplica",
        spec(autoscaling={"maxReplica": 3}),
        "spec.autoscaling.maxReplica",
        "did you mean maxReplicas?",
    ),
    Case(
        "spec.gpuMemoryGib",
        spec(gpuMemoryGib=80),
        "spec.gpuMemoryGib",
        "did you mean gpuMemoryGiB?",
    ),
    Case(
        "spec.max_model_len",
        spec(max_model_len=4096),
        "spec.max_model_len",
        "did you mean maxModelLen?",
    ),
    Case(
        "spec.cache.storageClass",
        spec(cache={"storageClass": "fast"}),
        "spec.cache.storageClass",
        "did you mean storageClassName?",
    ),
    Case(
        "spec.tolerations[0].efect",
        spec(tolerations=[{"efect": "NoSchedule"}]),
        "spec.tolerations[0].efect",
        "did you mean effect?",
    ),
    Case(
        "unknown field with no near miss",
        spec(colour="blue"),
        "spec.colour",
        "known fields here: model, engine",
    ),
    # --- metadata, kind, apiVersion ---
    Case("metadata.name uppercase", renamed("Llama-8b"), "metadata.name", "lowercase"),
    Case("metadata.name starts with a digit", renamed("8b-llama"), "metadata.name", "letter"),
    Case("metadata.name ends with a dash", renamed("llama-"), "metadata.name", "rename"),
    Case("metadata.name 49 characters", renamed("a" * 49), "metadata.name", "at most 48"),
    Case("metadata.name vllm", renamed("vllm"), "metadata.name", "VLLM_PORT"),
    Case("metadata.name empty", renamed(""), "metadata.name", "must not be empty"),
    Case("missing metadata", edit(lambda d: d.pop("metadata")), "metadata", "required"),
    Case("wrong kind", edit(lambda d: d.update(kind="Deployment")), "kind", "LLMService"),
    Case(
        "wrong apiVersion",
        edit(lambda d: d.update(apiVersion="llmserve.io/v1")),
        "apiVersion",
        "llmserve.io/v1alpha1",
    ),
    Case("missing spec", edit(lambda d: d.pop("spec")), "spec", "spec.model.name"),
    Case("spec as a list", edit(lambda d: d.update(spec=[])), "spec", "required"),
    # --- engineArgs that set a rendered flag ---
    Case(
        "engineArgs --port",
        spec(engineArgs=["--enforce-eager", "--port", "9000"]),
        "spec.engineArgs[1]",
        "--port is reserved by llmserve",
    ),
    Case(
        "engineArgs --tensor-parallel-size=",
        spec(engineArgs=["--tensor-parallel-size=4"]),
        "spec.engineArgs[0]",
        "set spec.gpus",
    ),
    Case(
        "engineArgs -tp",
        spec(engineArgs=["--enforce-eager", "-tp", "2"]),
        "spec.engineArgs[1]",
        "set spec.gpus",
    ),
    Case(
        "engineArgs --max_model_len",
        spec(maxModelLen=8192, engineArgs=["--max_model_len", "4096"]),
        "spec.engineArgs[0]",
        "set spec.maxModelLen",
    ),
    Case(
        "engineArgs --served-model-name",
        spec(engineArgs=["--served-model-name=x"]),
        "spec.engineArgs[0]",
        "spec.model.servedName",
    ),
    Case(
        "engineArgs --host",
        spec(engineArgs=["--host", "0.0.0.0"]),  # noqa: S104 - a value under test
        "spec.engineArgs[0]",
        "loopback",
    ),
    Case(
        "engineArgs --num-shard on tgi",
        spec(engine="tgi", engineArgs=["--num-shard", "2"]),
        "spec.engineArgs[0]",
        "set spec.gpus",
    ),
    Case(
        "engineArgs --tp-size on sglang",
        spec(engine="sglang", engineArgs=["--tp-size=2"]),
        "spec.engineArgs[0]",
        "set spec.gpus",
    ),
    # --- engineArgs however the engine's parser spells a rendered flag (review L11) ---
    Case(
        "engineArgs --hos on sglang",
        spec(engine="sglang", engineArgs=["--hos", "0.0.0.0"]),  # noqa: S104 - a value under test
        "spec.engineArgs[0]",
        "--hos, which the engine reads as --host,",
    ),
    Case(
        "engineArgs --tp on sglang",
        spec(engine="sglang", engineArgs=["--enable-torch-compile", "--tp", "8"]),
        "spec.engineArgs[1]",
        "--tp-size, is reserved by llmserve for engine sglang; remove it and set spec.gpus",
    ),
    Case(
        "engineArgs --por= on vllm",
        spec(engineArgs=["--por=9999"]),
        "spec.engineArgs[0]",
        "reads as --port",
    ),
    Case(
        "engineArgs --tensor_parallel on vllm",
        spec(engineArgs=["--tensor_parallel", "2"]),
        "spec.engineArgs[0]",
        "set spec.gpus",
    ),
    Case("engineArgs -t on vllm", spec(engineArgs=["-t", "2"]), "spec.engineArgs[0]", "spec.gpus"),
    Case(
        "engineArgs -qfp8 on vllm",
        spec(engineArgs=["-qfp8"]),
        "spec.engineArgs[0]",
        "set spec.quantization",
    ),
    Case(
        "engineArgs -p9000 on tgi",
        spec(engine="tgi", engineArgs=["-p9000"]),
        "spec.engineArgs[0]",
        "the port is part of the pod layout",
    ),
    Case(
        "engineArgs --config on vllm",
        spec(engineArgs=["--config", "serve.yaml"]),
        "spec.engineArgs[0]",
        "a config file could set the flags llmserve owns",
    ),
    Case(
        "engineArgs --config= on sglang",
        spec(engine="sglang", engineArgs=["--config=serve.yaml"]),
        "spec.engineArgs[0]",
        "a flag of its own",
    ),
    Case(
        "engineArgs positional model on vllm",
        spec(engineArgs=["evil/model", "--enforce-eager"]),
        "spec.engineArgs[0]",
        "positional argument (vLLM as the model to serve)",
    ),
    Case(
        "engineArgs positional after --flag=value",
        spec(engineArgs=["--max-num-seqs=8", "evil/model"]),
        "spec.engineArgs[1]",
        "after a --flag=value",
    ),
    Case(
        "engineArgs --",
        spec(engine="tgi", engineArgs=["--"]),
        "spec.engineArgs[0]",
        "every later argument positional",
    ),
    # --- formats and bounds (review M11) beyond the review's own specs ---
    Case(
        "tokenSecretRef name",
        spec(model={"name": "a/b", "tokenSecretRef": {"name": "HF_Token"}}),
        "spec.model.tokenSecretRef.name",
        "DNS subdomain",
    ),
    Case(
        "tokenSecretRef key",
        spec(model={"name": "a/b", "tokenSecretRef": {"name": "hf", "key": "a b"}}),
        "spec.model.tokenSecretRef.key",
        "key of a Secret",
    ),
    Case(
        "revision with ..",
        spec(model={"name": "a/b", "revision": "v1..v2"}),
        "spec.model.revision",
        "no '..' or '//'",
    ),
    Case(
        "revision too long",
        spec(model={"name": "a/b", "revision": "v" * 256}),
        "spec.model.revision",
        "at most 255 characters; got 256",
    ),
    Case(
        "repo id with --",
        spec(model={"name": "org/model--x"}),
        "spec.model.name",
        "single '-' or '.'",
    ),
    Case(
        "model.file climbing",
        spec(engine="llamacpp", model={"name": "a/b-GGUF", "file": "Q4/../../x.gguf"}),
        "spec.model.file",
        "must not climb out of the repo",
    ),
    Case(
        "model.file absolute",
        spec(engine="llamacpp", model={"name": "a/b-GGUF", "file": "/etc/passwd"}),
        "spec.model.file",
        "no '-' or '/' first",
    ),
    Case(
        "servedName with a space",
        spec(model={"name": "a/b", "servedName": "my model"}),
        "spec.model.servedName",
        "no spaces",
    ),
    Case(
        "parametersBillions huge",
        spec(model={"name": "a/b", "parametersBillions": 1e9}),
        "spec.model.parametersBillions",
        "<= 100000",
    ),
    Case("image with spaces", spec(image="my image"), "spec.image", "image reference"),
    Case("gpuMemoryGiB huge", spec(gpuMemoryGiB=4096), "spec.gpuMemoryGiB", "<= 1024"),
    Case(
        "maxReplicas beyond int32",
        spec(autoscaling={"maxReplicas": 2**31}),
        "spec.autoscaling.maxReplicas",
        "<= 2147483647",
    ),
    Case(
        "scaleDownDelaySeconds beyond a day",
        spec(autoscaling={"scaleDownDelaySeconds": 86401}),
        "spec.autoscaling.scaleDownDelaySeconds",
        "<= 86400",
    ),
    Case(
        "negative cache.size",
        spec(cache={"size": -1}),
        "spec.cache.size",
        ">= 0",
    ),
    Case(
        "resource name",
        spec(resources={"requests": {"-cpu": "1"}}),
        "spec.resources.requests",
        "key '-cpu': must be a Kubernetes qualified name",
    ),
    Case(
        "nodeSelector value format",
        spec(nodeSelector={"pool": "a b"}),
        "spec.nodeSelector.pool",
        "label value",
    ),
    Case(
        "toleration key",
        spec(tolerations=[{"key": "a b", "operator": "Exists"}]),
        "spec.tolerations[0].key",
        "qualified name",
    ),
    Case(
        "negative tolerationSeconds",
        spec(tolerations=[{"key": "a", "effect": "NoExecute", "tolerationSeconds": -1}]),
        "spec.tolerations[0].tolerationSeconds",
        ">= 0",
    ),
    Case(
        "env value too long",
        spec(env=[{"name": "A", "value": "x" * 32769}]),
        "spec.env[0].value",
        "at most 32768 characters; got 32769: 'xxxx",
    ),
    Case(
        "too many engineArgs",
        spec(engineArgs=["--enforce-eager"] * 129),
        "spec.engineArgs",
        "at most 128 entries; got 129",
    ),
    Case(
        "too many nodeSelector keys",
        spec(nodeSelector={f"k{i}": "v" for i in range(65)}),
        "spec.nodeSelector",
        "at most 64 keys; got 65",
    ),
    # --- GPUs: the tensor-parallel size and one node ---
    Case("gpus 3 on vllm", spec(gpus=3), "spec.gpus", "must be 1, 2, 4, 8 or 16 for engines vllm"),
    Case("gpus 6 on tgi", spec(engine="tgi", gpus=6), "spec.gpus", "tensor-parallel size"),
    Case("gpus 12 on sglang", spec(engine="sglang", gpus=12), "spec.gpus", "set gpus to one"),
    Case("gpus 17", spec(engine="llamacpp", model=GGUF_MODEL, gpus=17), "spec.gpus", "<= 16"),
    Case(
        "gpus 16 on an 8-GPU node",
        spec(gpus=16),
        "spec.gpus",
        "at most 8 GPUs fit one node here (the operator's maxGpusPerReplica)",
    ),
    # --- VRAM fit ---
    Case(
        "a 10M-token context on an 80 GiB GPU",
        spec(gpuMemoryGiB=80, maxModelLen=10_000_000),
        "spec.maxModelLen",
        "model does not fit",
    ),
    Case(
        "70B FP16 on one 80 GiB GPU",
        spec(model=LLAMA_70B, gpuMemoryGiB=80),
        "spec.gpus",
        "needs ~150 GiB per GPU, have 72 GiB: use gpus: 4 or quantization: awq",
    ),
    Case(
        "70B FP16 on two 80 GiB GPUs",
        spec(model=LLAMA_70B, gpuMemoryGiB=80, gpus=2),
        "spec.gpus",
        "use gpus: 4",
    ),
    Case(
        "8B on a 12 GiB GPU",
        spec(gpuMemoryGiB=12),
        "spec.gpus",
        "model does not fit",
    ),
]


def test_the_table_is_large_and_its_ids_unique() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_an_invalid_document_names_the_field(case: Case) -> None:
    with pytest.raises(InvalidSpec) as error:
        validate(copy.deepcopy(case.doc))
    problems = error.value.problems
    assert [p.path for p in problems] == [case.path], str(error.value)
    assert case.word in problems[0].message
    assert f"{case.path}: " in str(error.value)
    assert "\n" not in str(error.value)  # one problem, one line


def test_every_problem_of_a_document_is_reported_at_once() -> None:
    doc = spec(gpus=-1, replicas=-1, engine="vlm")
    with pytest.raises(InvalidSpec) as error:
        validate(doc)
    assert {p.path for p in error.value.problems} == {"spec.gpus", "spec.replicas", "spec.engine"}
    text = str(error.value)
    assert text.startswith("LLMService llama-8b is invalid (3 problems):")
    assert text.count("\n  - ") == 3


def test_the_message_names_the_resource_with_its_namespace() -> None:
    with pytest.raises(InvalidSpec) as error:
        validate(document({"gpus": -1}, namespace="ml"))
    assert str(error.value).startswith("LLMService ml/llama-8b is invalid: spec.gpus: ")


def test_a_document_that_is_not_a_mapping_is_named_by_its_source() -> None:
    with pytest.raises(InvalidSpec) as error:
        parse_llmservice(["not", "a", "mapping"], source="x.yaml")
    assert str(error.value) == (
        "x.yaml is invalid: document: must be a mapping (an LLMService), not a list"
    )


def test_a_wrong_kind_does_not_bury_the_message_under_field_errors() -> None:
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(InvalidSpec) as error:
        validate(doc)
    assert [p.path for p in error.value.problems] == ["kind", "apiVersion"]


# --- what is accepted -----------------------------------------------------------------------------

VALID = [
    pytest.param(spec(engine="llamacpp", model=GGUF_MODEL, gpus=0), id="gpus 0 on llamacpp"),
    pytest.param(spec(engine="ollama", model=GGUF_MODEL, gpus=0), id="gpus 0 on ollama"),
    pytest.param(spec(engine="llamacpp", model=GGUF_MODEL, quantization="gguf"), id="gguf"),
    pytest.param(spec(engine="tgi", quantization="bitsandbytes"), id="bitsandbytes on tgi"),
    pytest.param(spec(engine="sglang", quantization="bitsandbytes"), id="bitsandbytes on sglang"),
    pytest.param(spec(quantization="fp8"), id="fp8 on vllm"),
    pytest.param(spec(replicas=0), id="replicas 0"),
    pytest.param(
        spec(autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 2}), id="min == max"
    ),
    pytest.param(spec(autoscaling={"minReplicas": 3}), id="minReplicas alone while disabled"),
    pytest.param(renamed("a" * 48), id="48-character name"),
    pytest.param(renamed("vllm-0"), id="vllm-0"),
    pytest.param(renamed("a"), id="one-letter name"),
    pytest.param(spec(model=LLAMA_70B, gpuMemoryGiB=80, gpus=4), id="70B on four 80 GiB"),
    pytest.param(
        spec(model=LLAMA_70B, gpuMemoryGiB=80, quantization="awq"), id="70B AWQ on one 80 GiB"
    ),
    pytest.param(spec(model=LLAMA_70B), id="70B with unknown GPU memory (fit skipped)"),
    pytest.param(
        spec(engineArgs=["--enforce-eager", "--max-num-seqs", "64"]), id="harmless engineArgs"
    ),
    pytest.param(spec(engineArgs=["--max-num-seqs", "-1"]), id="negative engineArgs values"),
    pytest.param(
        spec(engineArgs=["--lora-modules", "a=org/a", "b=org/b"]), id="a flag with two values"
    ),
    pytest.param(
        spec(engine="tgi", engineArgs=["--hostnam", "x"]), id="tgi does not abbreviate flags"
    ),
    pytest.param(
        spec(engine="sglang", engineArgs=["--enable-metrics-for-all-schedulers"]),
        id="a flag that a rendered one is a prefix of",
    ),
    pytest.param(spec(engine="llamacpp", model=GGUF_MODEL, gpus=3), id="gpus 3 on llamacpp"),
    pytest.param(spec(gpus=8), id="gpus 8 on vllm"),
    pytest.param(spec(model={"name": "gpt2"}), id="a repo id without an org"),
    pytest.param(spec(model={"name": "01-ai/Yi-1.5-9B-Chat"}), id="an org starting with a digit"),
    pytest.param(
        spec(model={"name": "a/b", "revision": "refs/pr/12"}), id="a pull request revision"
    ),
    pytest.param(spec(model={"name": "a/b", "revision": "a" * 40}), id="a commit revision"),
    pytest.param(
        spec(engine="llamacpp", model={"name": "a/b-GGUF", "file": "Q6_K/x-Q6_K-*-of-*.gguf"}),
        id="a file in a folder",
    ),
    pytest.param(
        spec(model={"name": "a/b", "servedName": "meta-llama/Llama-3.1-8B"}),
        id="a served name with a slash",
    ),
    pytest.param(
        spec(image="localhost:5000/team/vllm-openai:v0.33.0@sha256:" + "a" * 64),
        id="an image with a registry port and a digest",
    ),
    pytest.param(
        spec(
            cache={"size": "1.5Ti"},
            resources={"limits": {"hugepages-2Mi": "1Gi", "memory": "64e9"}},
            nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "empty": ""},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "tolerationSeconds": 0}],
        ),
        id="Kubernetes names and quantities",
    ),
]


@pytest.mark.parametrize("doc", VALID)
def test_a_valid_document_passes(doc: Doc) -> None:
    validate(doc)


def test_the_fit_check_uses_the_operator_default_gpu_memory() -> None:
    doc = spec(model=LLAMA_70B)
    with pytest.raises(InvalidSpec) as error:
        validate(doc, OperatorConfig(default_gpu_memory_gib=80))
    assert "have 72 GiB" in error.value.problems[0].message
    # The spec's own gpuMemoryGiB wins over the operator default.
    validate(
        spec(model=LLAMA_70B, gpuMemoryGiB=80, gpus=4), OperatorConfig(default_gpu_memory_gib=8)
    )


def test_the_largest_gpu_count_per_replica_is_an_operator_setting() -> None:
    validate(spec(gpus=16), OperatorConfig(max_gpus_per_replica=16))
    with pytest.raises(InvalidSpec) as error:
        validate(spec(gpus=4), OperatorConfig.model_validate({"maxGpusPerReplica": 2}))
    assert str(error.value).endswith(
        "spec.gpus: at most 2 GPUs fit one node here (the operator's maxGpusPerReplica), and one "
        "replica runs on one node; ask for fewer GPUs, e.g. with a quantization that needs fewer"
    )


def test_check_returns_the_fit_report() -> None:
    report = render.check(parse_llmservice(spec(gpuMemoryGiB=80)), OperatorConfig())
    assert report.verdict == "fits"
    report = render.check(parse_llmservice(spec()), OperatorConfig())
    assert report.verdict == "skipped"


# --- through the command line ---------------------------------------------------------------------

CLI_CASES = [
    case
    for case in CASES
    if case.id
    in {
        "spec.gpu",
        "spec.model.revison",
        "bad engine",
        "gguf on vllm",
        "minReplicas 0",
        "metadata.name vllm",
        "engineArgs --port",
        "70B FP16 on one 80 GiB GPU",
        "wrong kind",
    }
]


def assert_one_error(result, *needles: str) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.count("error:") == 1
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda case: case.id)
def test_render_refuses_an_invalid_file(case: Case, tmp_path, llmserve) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(case.doc))
    assert_one_error(llmserve("render", "-f", str(path)), case.path, case.word)


@pytest.mark.parametrize("case", CLI_CASES[:3], ids=lambda case: case.id)
def test_render_refuses_invalid_stdin(case: Case, llmserve) -> None:
    result = llmserve("render", "-f", "-", stdin=yaml.safe_dump(case.doc))
    assert_one_error(result, "LLMService llama-8b is invalid", case.path, case.word)


def test_render_prints_nothing_when_one_document_of_many_is_invalid(tmp_path, llmserve) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([document(), document({"gpus": 0}, name="b")]))
    assert_one_error(llmserve("render", "-f", str(path)), "LLMService b", "spec.gpus")


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        pytest.param("spec: [1,\n", ("is not valid YAML at line", "fix the syntax"), id="broken"),
        pytest.param("a: b\n  c: d\n", ("is not valid YAML",), id="bad indentation"),
        pytest.param("", ("is empty",), id="empty"),
        pytest.param("---\n---\n", ("is empty",), id="only separators"),
        pytest.param("just text\n", ("must be a mapping",), id="a scalar"),
        pytest.param("- a\n- b\n", ("must be a mapping",), id="a list"),
    ],
)
def test_render_refuses_a_file_that_is_not_an_llmservice(text, needles, tmp_path, llmserve) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(text)
    assert_one_error(llmserve("render", "-f", str(path)), str(path), *needles)
    assert_one_error(llmserve("render", "-f", "-", stdin=text), "<stdin>", *needles)


def test_render_refuses_a_missing_file(tmp_path, llmserve) -> None:
    path = tmp_path / "nope.yaml"
    assert_one_error(llmserve("render", "-f", str(path)), str(path), "no such file")


def test_render_refuses_a_directory(tmp_path, llmserve) -> None:
    assert_one_error(llmserve("render", "-f", str(tmp_path)), str(tmp_path), "directory")


BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""
"""The review's alias bomb (L9): 9^7 strings, 14.5 s and 485 MB to expand."""


def test_render_refuses_a_yaml_alias_bomb(tmp_path, llmserve) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert_one_error(
        llmserve("render", "-f", str(path)),
        f"{path} is invalid: document: uses YAML aliases (&/*), which llmserve does not accept; "
        "write the values out (the first at line 2)",
    )


def test_an_alias_is_refused_even_where_it_would_be_harmless() -> None:
    doc = yaml.safe_dump(document())
    text = doc.replace("metadata:\n  name: llama-8b", "metadata: &m\n  name: llama-8b")
    text += "extra: *m\n"
    with pytest.raises(InvalidSpec, match="uses YAML aliases"):
        list(parse_many(text))
    assert [s.name for s in parse_many(doc)] == ["llama-8b"]  # the same without the alias


def test_render_refuses_a_file_that_is_not_utf8(tmp_path, llmserve) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    assert_one_error(llmserve("render", "-f", str(path)), str(path))
