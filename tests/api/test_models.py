"""The LLMService models: the defaults of ARCHITECTURE.md §3, camelCase names and strict types."""

from __future__ import annotations

import pydantic
import pytest
from tests.support import document, service

from llmserve.api import (
    ENGINES,
    GGUF_ENGINES,
    QUANTIZATIONS,
    InvalidSpec,
    LLMService,
    LLMServiceSpec,
    LLMServiceStatus,
    parse_llmservice,
)
from llmserve.api.models import API_VERSION, KIND, NAME_MAX_LENGTH

GGUF_MODEL = {"name": "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "file": "*-Q4_K_M.gguf"}

# A document that sets every spec field, in YAML spelling.
FULL_SPEC = {
    "model": {
        "name": "Qwen/Qwen2.5-7B-Instruct-AWQ",
        "revision": "v1.0",
        "servedName": "qwen",
        "parametersBillions": 7.6,
        "tokenSecretRef": {"name": "hf-token", "key": "hf"},
    },
    "engine": "vllm",
    "quantization": "awq",
    "gpus": 2,
    "gpuMemoryGiB": 24,
    "maxModelLen": 16384,
    "replicas": 3,
    "autoscaling": {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 5,
        "targetQueuePerReplica": 32,
        "scaleUpStabilizationSeconds": 30,
        "scaleDownDelaySeconds": 600,
        "gpuUtilizationGuard": 90,
    },
    "cache": {
        "enabled": True,
        "size": "40Gi",
        "storageClassName": "fast",
        "accessMode": "ReadWriteMany",
    },
    "proxy": {
        "auth": "apiKeys",
        "apiKeySecretRef": {"name": "keys", "key": "keys.txt"},
        "maxBodyBytes": 1048576,
        "maxConcurrency": 64,
        "maxQueue": 10,
        "queueTimeoutSeconds": 5,
        "requestTimeoutSeconds": 120,
    },
    "engineArgs": ["--enforce-eager"],
    "image": "registry.local/vllm:pinned",
    "resources": {"limits": {"memory": "64Gi"}, "requests": {"cpu": "8", "memory": 1024}},
    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
    "tolerations": [
        {
            "key": "nvidia.com/gpu",
            "operator": "Exists",
            "effect": "NoSchedule",
            "tolerationSeconds": 60,
        }
    ],
    "env": [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ],
}


# --- defaults -------------------------------------------------------------------------------------


def test_a_minimal_spec_gets_every_default_of_the_architecture() -> None:
    spec = service().spec
    assert spec.engine == "vllm"
    assert spec.quantization == "none"
    assert spec.quant == "none"
    assert spec.gpus == 1
    assert spec.replicas == 1
    assert spec.gpu_memory_gib is None
    assert spec.max_model_len is None
    assert spec.engine_args == []
    assert spec.image is None
    assert spec.resources is None
    assert spec.node_selector == {}
    assert spec.tolerations == []
    assert spec.env == []


def test_model_defaults() -> None:
    model = service().spec.model
    assert model.name == "meta-llama/Llama-3.1-8B-Instruct"
    assert model.revision == "main"
    assert model.file is None
    assert model.served_name is None  # the renderer uses metadata.name
    assert model.parameters_billions is None  # inferred from the repo id by the fit check
    assert model.token_secret_ref is None


def test_autoscaling_defaults() -> None:
    autoscaling = service().spec.autoscaling
    assert autoscaling.enabled is False
    assert autoscaling.min_replicas == 1
    assert autoscaling.max_replicas is None
    assert autoscaling.target_queue_per_replica is None
    assert autoscaling.scale_up_stabilization_seconds is None
    assert autoscaling.scale_down_delay_seconds == 300
    assert autoscaling.gpu_utilization_guard is None


def test_cache_defaults() -> None:
    cache = service().spec.cache
    assert cache.enabled is True
    assert cache.size is None  # estimated from the model size
    assert cache.storage_class_name is None
    assert cache.access_mode == "ReadWriteOnce"


def test_proxy_defaults() -> None:
    proxy = service().spec.proxy
    assert proxy.api_key_secret_ref is None  # open
    assert proxy.max_concurrency is None  # the engine's batch size
    assert proxy.max_queue == 128
    assert proxy.queue_timeout_seconds == 30
    assert proxy.request_timeout_seconds == 600


def test_secret_refs_default_their_key() -> None:
    spec = service(
        {
            "model": {"name": "a/b", "tokenSecretRef": {"name": "hf"}},
            "proxy": {"apiKeySecretRef": {"name": "keys"}},
        }
    ).spec
    assert spec.model.token_secret_ref is not None
    assert spec.model.token_secret_ref.key == "token"
    assert spec.proxy.api_key_secret_ref is not None
    assert spec.proxy.api_key_secret_ref.key == "api-keys"


@pytest.mark.parametrize("engine", sorted(GGUF_ENGINES))
def test_quantization_defaults_to_gguf_for_llamacpp_and_ollama(engine) -> None:
    spec = service({"engine": engine, "model": GGUF_MODEL}).spec
    assert spec.quantization == "gguf"
    assert spec.quant == "gguf"


@pytest.mark.parametrize("engine", ["vllm", "tgi", "sglang"])
def test_quantization_defaults_to_none_for_the_other_engines(engine) -> None:
    assert service({"engine": engine}).spec.quantization == "none"


def test_an_explicit_null_quantization_gets_the_engine_default() -> None:
    # The API server drops nulls before defaulting; the engine-dependent default then applies.
    assert service({"quantization": None}).spec.quantization == "none"
    spec = service({"engine": "ollama", "model": GGUF_MODEL, "quantization": None}).spec
    assert spec.quantization == "gguf"


def test_quant_is_effective_even_on_a_model_built_in_python() -> None:
    spec = LLMServiceSpec.model_construct(engine="llamacpp", quantization=None)
    assert spec.quant == "gguf"


def test_the_engine_and_quantization_lists_are_those_of_the_architecture() -> None:
    assert ENGINES == ("vllm", "tgi", "sglang", "llamacpp", "ollama")
    assert QUANTIZATIONS == ("none", "awq", "gptq", "fp8", "bitsandbytes", "gguf")
    assert {"llamacpp", "ollama"} == GGUF_ENGINES


def test_a_document_without_apiversion_and_kind_is_refused() -> None:
    # The model has defaults for both, but a document must say what it is.
    doc = document()
    del doc["apiVersion"], doc["kind"]
    with pytest.raises(InvalidSpec) as error:
        parse_llmservice(doc)
    assert {p.path for p in error.value.problems} == {"apiVersion", "kind"}


def test_the_resource_keeps_its_apiversion_kind_and_metadata() -> None:
    svc = service(namespace="ml", labels={"team": "a"})
    assert svc.api_version == API_VERSION == "llmserve.io/v1alpha1"
    assert svc.kind == KIND == "LLMService"
    assert svc.name == "llama-8b"
    assert svc.metadata.namespace == "ml"
    assert svc.metadata.labels == {"team": "a"}
    assert svc.ref == "LLMService ml/llama-8b"
    assert service().ref == "LLMService llama-8b"


def test_unknown_metadata_is_kept() -> None:
    svc = service(resourceVersion="42", finalizers=["x"])
    dumped = svc.metadata.model_dump(by_alias=True)
    assert dumped["resourceVersion"] == "42"
    assert dumped["finalizers"] == ["x"]


def test_name_limit_is_48() -> None:
    assert NAME_MAX_LENGTH == 48
    assert service(name="a" * 48).name == "a" * 48


# --- camelCase names ------------------------------------------------------------------------------


def test_every_field_round_trips_under_its_yaml_name() -> None:
    svc = service(FULL_SPEC)
    assert svc.spec.model_dump(by_alias=True, exclude_none=True, mode="json") == FULL_SPEC


def test_yaml_names_are_camel_case_with_gpu_memory_gib_spelled_as_documented() -> None:
    dumped = service({"gpuMemoryGiB": 80}).spec.model_dump(by_alias=True)
    assert dumped["gpuMemoryGiB"] == 80
    assert "gpuMemoryGib" not in dumped
    assert {"maxModelLen", "engineArgs", "nodeSelector", "gpus", "replicas"} <= dumped.keys()
    assert {"servedName", "parametersBillions", "tokenSecretRef"} <= dumped["model"].keys()
    assert {"minReplicas", "maxReplicas", "scaleDownDelaySeconds"} <= dumped["autoscaling"].keys()
    assert {"targetQueuePerReplica", "scaleUpStabilizationSeconds", "gpuUtilizationGuard"} <= (
        dumped["autoscaling"].keys()
    )
    assert {"storageClassName", "accessMode"} <= dumped["cache"].keys()
    assert {"apiKeySecretRef", "maxConcurrency", "maxQueue", "queueTimeoutSeconds"} <= (
        dumped["proxy"].keys()
    )
    assert "requestTimeoutSeconds" in dumped["proxy"]
    assert not [key for key in dumped if "_" in key]


def test_fields_are_read_in_python_under_snake_case_names() -> None:
    spec = service(FULL_SPEC).spec
    assert spec.gpu_memory_gib == 24
    assert spec.max_model_len == 16384
    assert spec.model.served_name == "qwen"
    assert spec.model.parameters_billions == 7.6
    assert spec.autoscaling.max_replicas == 5
    assert spec.cache.storage_class_name == "fast"
    assert spec.proxy.request_timeout_seconds == 120
    assert spec.tolerations[0].toleration_seconds == 60
    assert spec.env[1].value_from == {"secretKeyRef": {"name": "s", "key": "k"}}


def test_python_names_are_not_yaml_names() -> None:
    # The API server knows only `maxModelLen`; a document must not pass here and fail there.
    with pytest.raises(InvalidSpec) as error:
        service({"max_model_len": 4096})
    assert [p.path for p in error.value.problems] == ["spec.max_model_len"]
    assert "did you mean maxModelLen" in error.value.problems[0].message


def test_the_status_reads_camel_case_and_ignores_what_it_does_not_know() -> None:
    status = LLMServiceStatus.model_validate(
        {
            "phase": "Ready",
            "readyReplicas": 2,
            "observedGeneration": 3,
            "engineArgs": ["--port", "8000"],
            "futureField": True,
            "conditions": [
                {
                    "type": "Valid",
                    "status": "True",
                    "reason": "Valid",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                    "other": 1,
                }
            ],
        }
    )
    assert status.phase == "Ready"
    assert status.ready_replicas == 2
    assert status.engine_args == ["--port", "8000"]
    assert status.conditions[0].last_transition_time == "2026-01-01T00:00:00Z"
    assert status.conditions[0].message == ""


@pytest.mark.parametrize(
    "phase", ["Pending", "Downloading", "Starting", "Ready", "Degraded", "Failed"]
)
def test_every_phase_of_the_architecture_is_accepted(phase) -> None:
    assert LLMServiceStatus.model_validate({"phase": phase}).phase == phase


def test_a_status_phase_outside_the_list_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        LLMServiceStatus.model_validate({"phase": "Running"})


def test_models_are_immutable() -> None:
    spec = service().spec
    with pytest.raises(pydantic.ValidationError):
        spec.gpus = 2  # type: ignore[misc]


# --- strict types, as the API server --------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "expected"),
    [
        ({"gpus": "2"}, "spec.gpus", "an integer"),
        ({"gpus": 1.5}, "spec.gpus", "an integer"),
        ({"gpus": True}, "spec.gpus", "an integer"),
        ({"replicas": "1"}, "spec.replicas", "an integer"),
        ({"gpuMemoryGiB": "80"}, "spec.gpuMemoryGiB", "an integer"),
        ({"maxModelLen": "8k"}, "spec.maxModelLen", "an integer"),
        ({"autoscaling": {"minReplicas": "2"}}, "spec.autoscaling.minReplicas", "an integer"),
        ({"autoscaling": {"enabled": "true"}}, "spec.autoscaling.enabled", "true or false"),
        ({"autoscaling": {"enabled": 1}}, "spec.autoscaling.enabled", "true or false"),
        ({"cache": {"enabled": "no"}}, "spec.cache.enabled", "true or false"),
        ({"model": {"name": 7}}, "spec.model.name", "a string"),
        ({"model": {"name": "a/b", "revision": 1234}}, "spec.model.revision", "a string"),
        (
            {"model": {"name": "a/b", "parametersBillions": "70"}},
            "spec.model.parametersBillions",
            "a number",
        ),
        ({"proxy": {"maxQueue": 1.0}}, "spec.proxy.maxQueue", "an integer"),
        ({"engineArgs": ["--max-num-seqs", 8]}, "spec.engineArgs[1]", "a string"),
        ({"nodeSelector": {"gpu": True}}, "spec.nodeSelector.gpu", "a string"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_types_are_strict(spec, path, expected) -> None:
    with pytest.raises(InvalidSpec) as error:
        service(spec)
    problems = error.value.problems
    assert [p.path for p in problems] == [path]
    assert f"must be {expected}" in problems[0].message


def test_an_integer_is_a_valid_number() -> None:
    spec = service({"model": {"name": "a/b", "parametersBillions": 70}}).spec
    assert spec.model.parameters_billions == 70


@pytest.mark.parametrize("size", [40, "40Gi", "500M"])
def test_quantities_are_integers_or_strings(size) -> None:
    assert service({"cache": {"size": size}}).spec.cache.size == size


@pytest.mark.parametrize("size", [1.5, True, [], {}])
def test_a_quantity_of_another_type_is_rejected(size) -> None:
    with pytest.raises(InvalidSpec) as error:
        service({"cache": {"size": size}})
    assert [p.path for p in error.value.problems] == ["spec.cache.size"]
    assert "integer or a string" in error.value.problems[0].message


def test_the_model_classes_parse_without_the_document_wrapper() -> None:
    svc = LLMService.model_validate(document())
    assert svc.spec == service().spec


def test_null_values_are_pruned_and_defaulted_as_the_api_server_does() -> None:
    spec = service({"gpus": None, "cache": {"enabled": None}, "engineArgs": None}).spec
    assert spec.gpus == 1
    assert spec.cache.enabled is True
    assert spec.engine_args == []
