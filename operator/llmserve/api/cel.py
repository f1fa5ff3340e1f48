"""The CEL rules of the LLMService CRD, gathered by schema path, and their offline evaluation.

The same rule text goes into the CRD (`x-kubernetes-validations`, checked by the API server at apply
time) and is evaluated here with cel-python for `llmserve render` and the operator, so a rule is
written once and both places give the same message.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from types import MappingProxyType
from typing import Any, Final

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from llmserve.api.engines import dropped_quantization_rules, tensor_parallel_rule
from llmserve.api.errors import Problem
from llmserve.api.models import (
    NAME_RULES,
    Autoscaling,
    CelRule,
    LLMServiceSpec,
    ModelSource,
    Proxy,
    Resources,
)

RULES: Final = MappingProxyType[str, tuple[CelRule, ...]](
    {
        "": NAME_RULES,
        "spec": LLMServiceSpec.CEL_RULES + dropped_quantization_rules() + (tensor_parallel_rule(),),
        "spec.model": ModelSource.CEL_RULES,
        "spec.autoscaling": Autoscaling.CEL_RULES,
        "spec.resources": Resources.CEL_RULES,
        "spec.proxy": Proxy.CEL_RULES,
    }
)
"""Rules by the dotted path of the object they are attached to ("" is the resource itself)."""


@cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _at(document: dict[str, Any], path: str) -> Any:  # noqa: ANN401 - JSON value
    node: Any = document
    for part in filter(None, path.split(".")):
        node = node.get(part) if isinstance(node, dict) else None
    return node


INT64: Final = range(-(2**63), 2**63)
"""CEL's int; the API server, too, refuses a number outside it when it decodes the object."""


def _oversized(value: Any, path: str) -> Iterator[str]:  # noqa: ANN401 - any JSON value
    """Paths of the integers in `value` that CEL cannot hold (cel-python would raise on them)."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _oversized(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _oversized(item, f"{path}[{index}]")


def _holds(rule: CelRule, activation: dict[str, Any]) -> bool:
    try:
        result = _program(rule.rule).evaluate(activation)
    except CELEvalError:
        return False  # the API server, too, rejects an object on which a rule fails to evaluate
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def check(document: dict[str, Any]) -> list[Problem]:
    """Evaluate every rule against a defaulted document (camelCase, as the API server sees it).

    `document` must already carry the defaults (`LLMService.model_dump(by_alias=True)`), as the API
    server applies structural defaults before it runs CEL. The models bound the integers that
    matter, but not every one (status, say): one beyond 64 bits is a problem of its own.
    """
    limits = f"{INT64.start} to {INT64.stop - 1}"
    too_big = [
        Problem(path, f"must fit in 64 bits ({limits}); use a smaller number")
        for path in _oversized(document, "")
    ]
    if too_big:
        return too_big
    problems = []
    for path, rules in RULES.items():
        target = _at(document, path)
        if target is None:
            continue
        activation = {"self": json_to_cel(target)}
        for rule in rules:
            if not _holds(rule, activation):
                where = ".".join(filter(None, [path, (rule.field_path or "").lstrip(".")]))
                problems.append(Problem(where or "metadata", rule.message))
    return problems
