"""Each CEL rule of the CRD, evaluated offline: one object that passes it and one that fails it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from tests.support import document

from llmserve.api import LLMService, cel
from llmserve.api.errors import Problem
from llmserve.api.models import CelRule

GGUF_MODEL = {"name": "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "file": "*-Q4_K_M.gguf"}


def defaulted(spec: dict[str, Any] | None = None, name: str = "llama-8b") -> dict[str, Any]:
    """The object as the API server hands it to CEL: shape-checked and defaulted, camelCase."""
    service = LLMService.model_validate(document(spec, name=name))
    return service.model_dump(by_alias=True, exclude_none=True, mode="json")


def unchecked(spec: dict[str, Any]) -> dict[str, Any]:
    """A defaulted object with `spec` fields put in afterwards, past pydantic's checks: map keys,
    which the API server checks in CEL alone (pydantic refuses them first offline)."""
    doc = defaulted()
    doc["spec"].update(spec)
    return doc


@dataclass(frozen=True)
class RuleCase:
    rule: str
    """A fragment of the rule's expression that identifies it."""
    passing: dict[str, Any]
    failing: dict[str, Any]
    path: str
    """Where the failing object's problem is reported."""


CASES = [
    RuleCase(
        "matches('^[a-z]",
        defaulted(name="llama-8b"),
        defaulted(name="Llama-8B"),
        "metadata.name",
    ),
    RuleCase(
        "size() <= 48",
        defaulted(name="a" * 48),
        defaulted(name="a" * 49),
        "metadata.name",
    ),
    RuleCase(
        "self.metadata.name != 'vllm'",
        defaulted(name="vllm-0"),
        defaulted(name="vllm"),
        "metadata.name",
    ),
    RuleCase(
        "self.quantization != 'gguf'",
        defaulted({"engine": "llamacpp", "model": GGUF_MODEL, "quantization": "gguf"}),
        defaulted({"engine": "sglang", "quantization": "gguf"}),
        "spec.quantization",
    ),
    RuleCase(
        "self.quantization == 'gguf'",
        defaulted({"engine": "ollama", "model": GGUF_MODEL}),
        defaulted({"engine": "ollama", "model": GGUF_MODEL, "quantization": "gptq"}),
        "spec.quantization",
    ),
    RuleCase(
        "self.gpus >= 1",
        defaulted({"engine": "tgi", "gpus": 1}),
        defaulted({"engine": "tgi", "gpus": 0}),
        "spec.gpus",
    ),
    RuleCase(
        "|| has(self.model.file)",
        defaulted({"engine": "llamacpp", "model": GGUF_MODEL}),
        defaulted({"engine": "llamacpp", "model": {"name": "a/b-GGUF"}}),
        "spec.model.file",
    ),
    RuleCase(
        "!has(self.model.file)",
        defaulted({"engine": "vllm", "model": {"name": "a/b"}}),
        defaulted({"engine": "vllm", "model": {"name": "a/b", "file": "x.gguf"}}),
        "spec.model.file",
    ),
    RuleCase(
        "self.engine == 'vllm'",
        defaulted({"engine": "vllm", "quantization": "awq"}),
        defaulted({"engine": "vllm", "quantization": "bitsandbytes"}),
        "spec.quantization",
    ),
    RuleCase(
        "!self.enabled || has(self.maxReplicas)",
        defaulted({"autoscaling": {"enabled": True, "maxReplicas": 4}}),
        defaulted({"autoscaling": {"enabled": True}}),
        "spec.autoscaling.maxReplicas",
    ),
    RuleCase(
        "self.minReplicas <= self.maxReplicas",
        defaulted({"autoscaling": {"minReplicas": 2, "maxReplicas": 2}}),
        defaulted({"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}),
        "spec.autoscaling.minReplicas",
    ),
    RuleCase(
        "self.auth == 'none'",
        defaulted({"proxy": {"auth": "none"}}),
        defaulted({"proxy": {"auth": "none", "apiKeySecretRef": {"name": "keys"}}}),
        "spec.proxy.apiKeySecretRef",
    ),
    RuleCase(
        "self.allowedFrom.all(",
        defaulted({"proxy": {"allowedFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}}),
        defaulted({"proxy": {"allowedFrom": [{}]}}),
        "spec.proxy.allowedFrom",
    ),
    RuleCase(
        "self.gpus in [0, 1, 2, 4, 8, 16]",
        defaulted({"engine": "sglang", "gpus": 16}),
        defaulted({"engine": "sglang", "gpus": 3}),
        "spec.gpus",
    ),
    RuleCase(
        "self.file == '..'",
        defaulted({"engine": "llamacpp", "model": {"name": "a/b", "file": "Q4/x..Q4_K_M.gguf"}}),
        defaulted({"engine": "llamacpp", "model": {"name": "a/b", "file": "Q4/../../x.gguf"}}),
        "spec.model.file",
    ),
    RuleCase(
        "self.nodeSelector.all(",
        defaulted({"nodeSelector": {"nvidia.com/gpu.product": "H100", "pool": ""}}),
        unchecked({"nodeSelector": {"bad key!": "x"}}),
        "spec.nodeSelector",
    ),
    RuleCase(
        "self.limits.all(",
        defaulted({"resources": {"limits": {"nvidia.com/gpu": 1, "hugepages-2Mi": "1Gi"}}}),
        unchecked({"resources": {"limits": {"memory": "1Gi", "-memory": "1Gi"}}}),
        "spec.resources.limits",
    ),
    RuleCase(
        "self.requests.all(",
        defaulted({"resources": {"requests": {"cpu": "500m"}}}),
        unchecked({"resources": {"requests": {"example.com/" + "x" * 64: 1}}}),
        "spec.resources.requests",
    ),
]

ALL_RULES = [rule for rules in cel.RULES.values() for rule in rules]


def rule_of(case: RuleCase) -> CelRule:
    (rule,) = [rule for rule in ALL_RULES if case.rule in rule.rule]
    return rule


def test_every_rule_has_a_case() -> None:
    covered = [rule_of(case) for case in CASES]
    assert sorted(r.rule for r in covered) == sorted(r.rule for r in ALL_RULES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.rule)
def test_a_passing_object_passes_every_rule(case: RuleCase) -> None:
    assert cel.check(case.passing) == []


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.rule)
def test_a_failing_object_fails_that_rule_alone(case: RuleCase) -> None:
    rule = rule_of(case)
    assert cel.check(case.failing) == [Problem(case.path, rule.message)]


def test_rules_are_attached_where_the_crd_puts_them() -> None:
    assert list(cel.RULES) == [
        "",
        "spec",
        "spec.model",
        "spec.autoscaling",
        "spec.resources",
        "spec.proxy",
    ]


def test_an_absent_quantization_is_read_as_the_engine_default() -> None:
    # The API server cannot default quantization (it depends on the engine): CEL sees none.
    for engine, model in (("vllm", {"name": "a/b"}), ("llamacpp", GGUF_MODEL)):
        doc = defaulted({"engine": engine, "model": model})
        del doc["spec"]["quantization"]
        assert cel.check(doc) == []


def test_several_rules_fail_together() -> None:
    doc = defaulted(
        {"engine": "vllm", "gpus": 0, "model": {"name": "a/b", "file": "x.gguf"}}, name="vllm"
    )
    assert [p.path for p in cel.check(doc)] == ["metadata.name", "spec.gpus", "spec.model.file"]


def test_a_rule_that_cannot_be_evaluated_fails() -> None:
    # The API server rejects an object on which a rule errors; so does the offline check.
    doc = defaulted()
    del doc["spec"]["gpus"]
    assert [p.path for p in cel.check(doc)] == ["spec.gpus", "spec.gpus"]  # two rules read it


@pytest.mark.parametrize(
    ("path", "value"),
    [("spec.replicas", 2**63), ("status.replicas", -(2**63) - 1), ("spec.env[0].value", 2**70)],
)
def test_an_integer_beyond_64_bits_is_a_problem_not_a_crash(path: str, value: int) -> None:
    # cel-python raises ValueError("overflow") on such a number; the API server refuses it too.
    doc = defaulted()
    doc["spec"]["replicas"] = value if path == "spec.replicas" else 1
    doc["status"] = {"replicas": value} if path.startswith("status") else {}
    doc["spec"]["env"] = [{"name": "A", "value": value}] if "env" in path else []
    (problem,) = cel.check(doc)
    assert problem.path == path
    assert "must fit in 64 bits" in problem.message


def test_a_missing_object_skips_its_rules() -> None:
    doc = defaulted()
    del doc["spec"]["autoscaling"]
    assert cel.check(doc) == []
