"""Property tests: every valid LLMService renders, deterministically, with the invariants of §4.

The strategy builds specs the API accepts: an engine, a quantization that engine can load, a GPU
count within its rules (a tensor-parallel size that fits one node, for the engines that shard), a
model name that tells its size (or not), and optional everything else, with engineArgs that set no
flag llmserve renders. `render` may then refuse only on the VRAM fit.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Final

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st
from tests.conftest import examples
from tests.render.cases import by_kind, engine_container, pod_templates
from tests.support import document as base_document

from llmserve import cli, render
from llmserve.api import ENGINES, GGUF_ENGINES, InvalidSpec, parse_llmservice
from llmserve.api import fit as fit_module
from llmserve.api.config import OperatorConfig
from llmserve.api.engines import FACTS, TENSOR_PARALLEL_SIZES
from llmserve.render import meta

GPU: Final = "nvidia.com/gpu"
LABEL_KEYS: Final = frozenset(
    {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/component",
    }
)
HASH: Final = re.compile(r"[0-9a-f]{16}")
SAFE_ENGINE_ARGS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    # Flags each engine accepts and llmserve never renders, so they never clash.
    "vllm": (
        ("--max-num-seqs", "64"),
        ("--enable-prefix-caching",),
        ("--kv-cache-dtype", "fp8"),
        ("--max_num_batched_tokens=4096",),
        ("--trust-remote-code",),
    ),
    "tgi": (("--max-concurrent-requests", "64"), ("--trust-remote-code",), ("--cuda-graphs", "0")),
    "sglang": (
        ("--max-running-requests", "64"),
        ("--disable-radix-cache",),
        ("--trust-remote-code",),
    ),
    "llamacpp": (("--flash-attn", "on"), ("--jinja",), ("--threads-http", "4")),
    "ollama": (),  # configured by environment only
}
SIZES: Final = ("0.5B", "1.5B", "3B", "7B", "8b", "14B", "32B", "70B", "405B", "8x7B", "560m", "")
GGUF_TAGS: Final = sorted(fit_module.GGUF_BYTES_PER_PARAMETER)

# celpy raises the recursion limit when it compiles the CRD's CEL rules, which Hypothesis reports as
# a change made by the test: compile every rule once, before Hypothesis watches.
parse_llmservice(base_document())

names = st.from_regex(r"[a-z]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True).filter(
    lambda n: n != "vllm"
)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def models(draw: st.DrawFn, engine: str) -> dict[str, Any]:
    org = draw(st.sampled_from(["meta-llama", "Qwen", "mistralai", "bartowski", "some-org"]))
    family = draw(st.sampled_from(["Llama-3.1", "Qwen2.5", "Mistral", "model"]))
    size = draw(st.sampled_from(SIZES))
    suffix = draw(st.sampled_from(["", "-Instruct", "-Instruct-GGUF", "-AWQ"]))
    model: dict[str, Any] = {"name": f"{org}/{family}{'-' + size if size else ''}{suffix}"}
    extras = {
        "revision": optional(st.sampled_from(["main", "v1.0", "0e9e39f249a16976918f6564b8830bc8"])),
        "servedName": optional(st.sampled_from(["chat", "llama3.2", "my-model", "yes"])),
        "parametersBillions": optional(st.floats(0.1, 500, allow_nan=False)),
        "tokenSecretRef": optional(
            st.fixed_dictionaries({"name": st.just("hf-token")}, optional={"key": st.just("tok")})
        ),
    }
    if engine in GGUF_ENGINES:
        tag = draw(st.sampled_from([*GGUF_TAGS, None]))
        lower = draw(st.booleans())
        extras["file"] = st.just(
            "model.gguf" if tag is None else f"*-{tag.lower() if lower else tag}.gguf"
        )
    for key, strategy in extras.items():
        value = draw(strategy)
        if value is not None:
            model[key] = value
    return model


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid LLMService document."""
    engine = draw(st.sampled_from(ENGINES))
    facts = FACTS[engine]
    spec: dict[str, Any] = {"model": draw(models(engine))}
    if engine != "vllm" or draw(st.booleans()):
        spec["engine"] = engine
    quantization = draw(optional(st.sampled_from(sorted(facts.quantizations))))
    if quantization is not None:
        spec["quantization"] = quantization
    most = OperatorConfig().max_gpus_per_replica
    sizes = [n for n in TENSOR_PARALLEL_SIZES if n <= most]
    gpus = draw(optional(st.sampled_from(sizes) if facts.tensor_parallel else st.integers(0, most)))
    if gpus is not None:
        spec["gpus"] = gpus
    simple = {
        "gpuMemoryGiB": optional(st.sampled_from([16, 24, 40, 48, 80, 141])),
        "maxModelLen": optional(st.integers(512, 131072)),
        "replicas": optional(st.integers(0, 8)),
        "image": optional(st.just("registry.local/engine:pinned")),
        "nodeSelector": optional(
            st.dictionaries(
                st.sampled_from(["nvidia.com/gpu.product", "pool", "zone"]),
                st.sampled_from(["NVIDIA-H100-80GB-HBM3", "gpu", "a"]),
                max_size=2,
            )
        ),
        "tolerations": optional(
            st.lists(
                st.sampled_from(
                    [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "pool", "operator": "Equal", "value": "gpu"},
                        {"operator": "Exists"},
                    ]
                ),
                max_size=2,
            )
        ),
        "env": optional(
            st.lists(
                st.sampled_from(
                    [
                        {"name": "HF_HOME", "value": "/models/other"},
                        {"name": "NCCL_DEBUG", "value": "INFO"},
                        {"name": "HOME", "value": "/tmp"},  # noqa: S108 - a user's choice
                        {
                            "name": "SECRET",
                            "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                        },
                    ]
                ),
                unique_by=lambda e: e["name"],
                max_size=3,
            )
        ),
        "resources": optional(
            st.fixed_dictionaries(
                {},
                optional={
                    "requests": st.dictionaries(
                        st.sampled_from(["cpu", "memory"]), st.sampled_from(["4", "500m", "8Gi"])
                    ),
                    "limits": st.dictionaries(
                        st.sampled_from(["memory", GPU]), st.sampled_from(["64Gi", 3])
                    ),
                },
            )
        ),
        "cache": optional(
            st.fixed_dictionaries(
                {},
                optional={
                    "enabled": st.booleans(),
                    "size": st.sampled_from(["10Gi", "200Gi", 500]),
                    "storageClassName": st.just("fast"),
                    "accessMode": st.sampled_from(["ReadWriteOnce", "ReadWriteMany"]),
                },
            )
        ),
        "proxy": optional(
            st.fixed_dictionaries(
                {},
                optional={
                    "apiKeySecretRef": st.sampled_from(
                        [{"name": "keys"}, {"name": "k", "key": "x"}]
                    ),
                    "maxConcurrency": st.integers(1, 1024),
                    "maxQueue": st.integers(0, 1000),
                    "queueTimeoutSeconds": st.integers(1, 600),
                    "requestTimeoutSeconds": st.integers(1, 3600),
                },
            )
        ),
    }
    for key, strategy in simple.items():
        value = draw(strategy)
        if value is not None:
            spec[key] = value
    if draw(st.booleans()):
        low = draw(st.integers(1, 3))
        spec["autoscaling"] = {
            "enabled": True,
            "minReplicas": low,
            "maxReplicas": draw(st.integers(low, 8)),
        }
    if SAFE_ENGINE_ARGS[engine]:
        chosen = draw(st.lists(st.sampled_from(SAFE_ENGINE_ARGS[engine]), unique=True, max_size=3))
        spec["engineArgs"] = [token for group in chosen for token in group]
    metadata: dict[str, Any] = {"name": draw(names)}
    namespace = draw(optional(st.sampled_from(["default", "ml-serving"])))
    if namespace:
        metadata["namespace"] = namespace
    uid = draw(optional(st.uuids()))
    if uid:
        metadata["uid"] = str(uid)
    return {
        "apiVersion": "llmserve.io/v1alpha1",
        "kind": "LLMService",
        "metadata": metadata,
        "spec": spec,
    }


def assert_invariants(document: dict[str, Any], children: list[dict[str, Any]]) -> None:
    """What §4 promises for every child of every LLMService."""
    metadata, spec = document["metadata"], document["spec"]
    gpus = spec.get("gpus", 1)
    resources = engine_container(children).get("resources", {})
    if gpus:
        assert resources["limits"][GPU] == resources["requests"][GPU] == str(gpus)
    else:
        assert GPU not in resources.get("limits", {})
        assert GPU not in resources.get("requests", {})
    for child in children:
        labels = child["metadata"]["labels"]
        assert labels.keys() == LABEL_KEYS, child["kind"]
        assert labels["app.kubernetes.io/instance"] == metadata["name"]
        assert HASH.fullmatch(child["metadata"]["annotations"][meta.SPEC_HASH]), child["kind"]
        assert child["metadata"].get("namespace") == metadata.get("namespace")
        owners = child["metadata"].get("ownerReferences", [])
        assert [o["uid"] for o in owners] == ([metadata["uid"]] if "uid" in metadata else [])
    for _, template in pod_templates(children):
        assert template["metadata"]["labels"].keys() == LABEL_KEYS


@settings(max_examples=examples(200))
@given(documents())
def test_every_valid_spec_renders_twice_identically(document: dict[str, Any]) -> None:
    service = parse_llmservice(copy.deepcopy(document))
    config = OperatorConfig()
    report = fit_module.check(fit_module.input_for(service.spec, config.default_gpu_memory_gib))
    if report.verdict == "does-not-fit":
        # The only rule `render` adds to parsing that a valid spec can break is the VRAM fit.
        with pytest.raises(InvalidSpec) as refused:
            render.render(service, config)
        paths = [p.path for p in refused.value.problems]
        assert paths in (["spec.gpus"], ["spec.maxModelLen"]), str(refused.value)
        assert "model does not fit" in refused.value.problems[0].message
        event("refused by the fit check")
        return
    event("rendered")
    children = render.render(service, config)
    again = render.render(parse_llmservice(copy.deepcopy(document)), config)
    assert children == again
    text = cli.dump_yaml(children)
    assert text == cli.dump_yaml(again)
    assert list(yaml.safe_load_all(text)) == children, "the YAML reads back differently"
    assert_invariants(document, children)


@settings(max_examples=examples(100))
@given(documents(), st.integers(0, 50))
def test_replicas_change_only_the_deployment_replicas(
    document: dict[str, Any], replicas: int
) -> None:
    config = OperatorConfig()
    try:
        before = render.render(parse_llmservice(copy.deepcopy(document)), config)
    except InvalidSpec:
        return
    document["spec"]["replicas"] = replicas
    after = render.render(parse_llmservice(document), config)
    assert by_kind(after, "Deployment")["spec"]["replicas"] == replicas
    by_kind(after, "Deployment")["spec"]["replicas"] = by_kind(before, "Deployment")["spec"][
        "replicas"
    ]
    assert after == before, "spec.replicas changed more than Deployment.spec.replicas"
