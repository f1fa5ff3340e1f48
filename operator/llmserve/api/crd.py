"""The LLMService CustomResourceDefinition, generated from the pydantic models.

One source: field names, types, enums, minimums, defaults and descriptions come from
`llmserve.api.models`; CEL rules from `llmserve.api.cel`. `llmserve crd` prints it and
`crds/llmservices.llmserve.io.yaml` is that output (a test fails when they drift).
The schema is structural (no `$ref`, no `anyOf` over types), as `apiextensions.k8s.io/v1` requires.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from llmserve.api import cel
from llmserve.api.models import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    LLMServiceSpec,
    LLMServiceStatus,
)

_SCALARS: dict[type, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
}
_INT_OR_STRING = {"x-kubernetes-int-or-string": True}
_BOUNDS: dict[type, tuple[str, str]] = {
    annotated_types.Ge: ("ge", "minimum"),
    annotated_types.Gt: ("gt", "minimum"),
    annotated_types.Le: ("le", "maximum"),
    annotated_types.Lt: ("lt", "maximum"),
}


_LENGTHS: dict[str, tuple[str, str]] = {
    "string": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
    "object": ("minProperties", "maxProperties"),
}


def _constraints(metadata: list[Any], kind: str) -> dict[str, Any]:
    """OpenAPI keywords for pydantic/annotated-types constraints on a value of OpenAPI type `kind`.

    A length limit is `maxLength`, `maxItems` or `maxProperties` by the kind of value it limits.
    """
    out: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.GroupedMetadata):  # e.g. StringConstraints
            out |= _constraints(list(item), kind)
        if isinstance(item, FieldInfo):  # Field(ge=...) inside Annotated inside an Optional
            out |= _constraints(item.metadata, kind)
        for bound, (attribute, keyword) in _BOUNDS.items():
            if isinstance(item, bound):
                out[keyword] = getattr(item, attribute)
                if bound in (annotated_types.Gt, annotated_types.Lt):
                    out[f"exclusive{keyword.capitalize()}"] = True
        shortest, longest = _LENGTHS.get(kind, ("", ""))
        if isinstance(item, annotated_types.MinLen) and shortest:
            out[shortest] = item.min_length
        if isinstance(item, annotated_types.MaxLen) and longest:
            out[longest] = item.max_length
        if isinstance(getattr(item, "pattern", None), str):  # pydantic's StringConstraints part
            out["pattern"] = item.pattern
    return out


def _union_schema(annotation: Any, metadata: list[Any]) -> dict[str, Any]:  # noqa: ANN401
    """`X | None` is X (absent when None); `int | str` is a quantity; other unions are refused.

    A quantity keeps the bounds of both members: OpenAPI applies `minimum` to numbers only and
    `pattern` and `maxLength` to strings only.
    """
    members = [a for a in get_args(annotation) if a is not type(None)]
    if len(members) == 1:
        return schema_of(members[0], metadata)
    bases = {get_args(a)[0] if get_origin(a) is Annotated else a: a for a in members}
    if set(bases) == {int, str}:
        bounds = {**schema_of(bases[int], metadata), **schema_of(bases[str], metadata)}
        del bounds["type"]  # int-or-string has none
        return {**_INT_OR_STRING, **bounds}
    raise TypeError(f"no structural schema for {annotation}")


def _container_schema(annotation: Any, metadata: list[Any]) -> dict[str, Any]:  # noqa: ANN401
    """Lists, maps (free-form for `dict[str, Any]`) and enums, with their length limits."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return {"type": "string", "enum": list(args)}
    if origin is list:
        return {"type": "array", "items": schema_of(args[0]), **_constraints(metadata, "array")}
    if args[1] is Any:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    # Map keys cannot be constrained in OpenAPI: models.keys_rule checks them in CEL.
    return {
        "type": "object",
        "additionalProperties": schema_of(args[1]),
        **_constraints(metadata, "object"),
    }


def schema_of(annotation: Any, metadata: list[Any] | None = None) -> dict[str, Any]:  # noqa: ANN401
    """The structural OpenAPI schema of a Python type annotation."""
    extra = list(metadata or [])
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *more = get_args(annotation)
        return schema_of(inner, extra + more)
    if origin in (Union, types.UnionType):
        return _union_schema(annotation, extra)
    if origin in (Literal, list, dict):
        return _container_schema(annotation, extra)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return object_schema(annotation)
    if annotation in _SCALARS:
        kind = _SCALARS[annotation]["type"]
        return {"type": kind, **_constraints(extra, kind)}
    raise TypeError(f"no structural schema for {annotation}")


def _default(info: FieldInfo) -> Any:  # noqa: ANN401 - any JSON value
    """The field's default as JSON, or None for no default.

    A nested model defaults to its own defaults written out in full: the API server validates a
    default against the schema's CEL rules without defaulting inside it, so `{}` would fail a rule
    that reads `self.enabled`.
    """
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(by_alias=True, exclude_none=True, mode="json")
        return value or None  # empty lists and maps are left out rather than defaulted
    if info.default is PydanticUndefined or info.default is None:
        return None
    return info.default


def object_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema of a model: properties by alias, required fields, defaults, descriptions."""
    properties: dict[str, Any] = {}
    required = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        prop = schema_of(info.annotation, list(info.metadata))
        if info.description:
            prop = {"description": " ".join(info.description.split()), **prop}
        default = _default(info)
        if default is not None:
            prop["default"] = default
        if info.is_required():
            required.append(key)
        properties[key] = prop
    schema: dict[str, Any] = {"type": "object"}
    if model.__doc__:
        schema["description"] = " ".join(model.__doc__.split())
    schema["properties"] = properties
    if required:
        schema["required"] = required
    return schema


def _attach_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """Put each CEL rule on the schema node of the object it is written against."""
    for path, rules in cel.RULES.items():
        node = schema
        for part in filter(None, path.split(".")):
            node = node["properties"][part]
        node["x-kubernetes-validations"] = [
            {
                "rule": r.rule,
                "message": r.message,
                **({"fieldPath": r.field_path} if r.field_path else {}),
            }
            for r in rules
        ]
    return schema


def _column(name: str, kind: str, path: str, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    return {"name": name, "type": kind, "jsonPath": path, **extra}


def build() -> dict[str, Any]:
    """The whole CRD document."""
    root: dict[str, Any] = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # `name` is declared so the name rules' fieldPath `.metadata.name` resolves: the API
            # server rejects a fieldPath that does not name a property of the schema.
            "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
            "spec": object_schema(LLMServiceSpec),
            "status": object_schema(LLMServiceStatus),
        },
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "llmserve"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "llmserve"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _attach_rules(root)},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        _column("Model", "string", ".spec.model.name"),
                        _column("Engine", "string", ".spec.engine"),
                        _column("GPUs", "integer", ".spec.gpus"),
                        _column("Ready", "integer", ".status.readyReplicas"),
                        _column("Phase", "string", ".status.phase"),
                        _column("Age", "date", ".metadata.creationTimestamp"),
                        _column("Endpoint", "string", ".status.endpoint", priority=1),
                    ],
                }
            ],
        },
    }
