"""Parse LLMService documents and turn every error into a message that names the field and the fix.

pydantic checks shapes, enums and ranges; its errors are rewritten here into `Problem`s with YAML
paths (`spec.tolerations[0].effect`) and hints: a "did you mean" for unknown fields and wrong enum
values, the allowed range for numbers, the format a string must have (`llmserve.api.shapes`). Then
the CRD's CEL rules run offline (`llmserve.api.cel`).

YAML is read without aliases: `&a`/`*a` let a few hundred bytes expand to gigabytes (an "alias
bomb"), and a spec has no use for them. The API server never sees them (kubectl sends JSON).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from llmserve.api import cel, shapes
from llmserve.api.errors import InvalidSpec, Problem
from llmserve.api.models import API_VERSION, KIND, LLMService

SHOWN_CHARACTERS = 60
"""Longest value quoted in a message; longer ones are cut (a 300-character name, say)."""


def parse_llmservice(
    document: object, *, source: str = "document", admitted: bool = False
) -> LLMService:
    """Validate one decoded YAML/JSON document as an LLMService, or raise `InvalidSpec`.

    `source` names the document in messages when it has no usable name (e.g. `llama.yaml`).
    `admitted`: the document comes from the API server, which evaluated the CRD's CEL rules (the
    same rules, see `cel.RULES`) before storing it, so they are not evaluated again: offline CEL
    costs milliseconds per document, most of an operator pass.
    """
    resource = _resource_name(document, source)
    if not isinstance(document, Mapping):
        kind = type(document).__name__
        raise InvalidSpec(
            source, [Problem("document", f"must be a mapping (an LLMService), not a {kind}")]
        )
    problems = _kind_problems(document)
    if problems:
        raise InvalidSpec(resource, problems)
    try:
        # By alias only: the API server knows `maxModelLen`, not `max_model_len`.
        service = LLMService.model_validate(_prune_nulls(document), by_alias=True, by_name=False)
    except ValidationError as error:
        raise InvalidSpec(resource, _problems_from(error)) from None
    if admitted:
        return service
    problems = cel.check(service.model_dump(by_alias=True, exclude_none=True, mode="json"))
    if problems:
        raise InvalidSpec(resource, problems)
    return service


def _prune_nulls(value: Any) -> Any:  # noqa: ANN401 - any decoded YAML value
    """Drop null map values, as the API server prunes them before defaulting (`gpus: null` -> 1)."""
    if isinstance(value, Mapping):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


class _AliasFound(Exception):  # noqa: N818 - found, not failed: the caller words the problem
    """A YAML alias (`*name`), which `_NoAliasLoader` refuses; the text says where it is."""


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, failing at the first alias instead of expanding it."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            alias: yaml.AliasEvent = self.peek_event()  # type: ignore[no-untyped-call] # stub
            mark = alias.start_mark
            raise _AliasFound(f" (the first at line {mark.line + 1})" if mark else "")
        return super().compose_node(parent, index)


def parse_many(text: str, *, source: str = "document") -> Iterator[LLMService]:
    """Parse every non-empty document of a (multi-document) YAML text, in order."""
    try:
        loaded = yaml.load_all(text, Loader=_NoAliasLoader)  # a SafeLoader underneath
        documents = [d for d in loaded if d is not None]
    except _AliasFound as alias:
        refused = "uses YAML aliases (&/*), which llmserve does not accept; write the values out"
        raise InvalidSpec(source, [Problem("document", f"{refused}{alias}")]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidSpec(
            source, [Problem("document", f"is not valid YAML{where}: {problem}; fix the syntax")]
        ) from None
    if not documents:
        raise InvalidSpec(source, [Problem("document", "is empty; give an LLMService document")])
    for index, document in enumerate(documents):
        name = source if len(documents) == 1 else f"{source} (document {index + 1})"
        yield parse_llmservice(document, source=name)


def _resource_name(document: object, source: str) -> str:
    if isinstance(document, Mapping):
        metadata = document.get("metadata")
        if isinstance(metadata, Mapping) and isinstance(metadata.get("name"), str):
            ns = metadata.get("namespace")
            prefix = f"{ns}/" if isinstance(ns, str) and ns else ""
            return f"LLMService {prefix}{metadata['name']}"
    return source


def _kind_problems(document: Mapping[str, Any]) -> list[Problem]:
    problems = []
    kind, api_version = document.get("kind"), document.get("apiVersion")
    if kind != KIND:
        problems.append(
            Problem("kind", f"must be {KIND}, got {kind!r}; llmserve renders only LLMServices")
        )
    if api_version != API_VERSION:
        problems.append(Problem("apiVersion", f"must be {API_VERSION}, got {api_version!r}"))
    if not isinstance(document.get("spec"), Mapping):
        problems.append(Problem("spec", "is required: give at least spec.model.name"))
    return problems


def _problems_from(error: ValidationError) -> list[Problem]:
    """One problem per field; errors of a union's members on one field become one problem.

    A quantity (`int | str`) that has the right type for one member and fails its constraint
    (`-1`, `lots`) is explained by that member's error alone. A map key that fails its format
    is named by the map's path and the key (`spec.nodeSelector: key 'bad key!': ...`).
    """
    by_path: dict[str, list[tuple[ErrorDetails, type[BaseModel] | None, str, str]]] = {}
    for detail in error.errors():
        loc, subject = detail["loc"], ""
        if loc and loc[-1] == "[key]":
            loc, subject = loc[:-2], f"key {_shown(loc[-2])}: "
        path, parent, rest = _walk(loc)
        by_path.setdefault(path, []).append((detail, parent, rest, subject))
    problems = []
    for path, details in by_path.items():
        if len(details) > 1 and all(d["type"].endswith("_type") for d, *_ in details):
            problems.append(Problem(path, _union_message(details[0][0])))
            continue
        if len(details) > 1:
            constrained = [d for d in details if not d[0]["type"].endswith("_type")]
            details = constrained or details  # noqa: PLW2901 - the same details, fewer
        problems.extend(
            Problem(path, subject + _message(detail, parent, rest))
            for detail, parent, rest, subject in details
        )
    return problems


def _shown(value: object) -> str:
    """`repr(value)`, cut to SHOWN_CHARACTERS."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else f"{text[: SHOWN_CHARACTERS - 3]}..."


def _unwrap(annotation: Any) -> Any:  # noqa: ANN401 - typing objects
    """Strip Annotated and Optional; leave other unions as they are."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _walk(loc: tuple[int | str, ...]) -> tuple[str, type[BaseModel] | None, str]:
    """YAML path of a pydantic error location, the model of its last field, and that field's key.

    Location parts that are not fields, list indexes or map keys (pydantic's union member tags such
    as `int` and `str`) end the walk.
    """
    path, current, parent, last = "", _unwrap(LLMService), None, ""
    for part in loc:
        origin = get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            fields = {(f.alias or name): f for name, f in current.model_fields.items()}
            parent, last = current, part
            path = f"{path}.{part}" if path else part
            if part not in fields:
                break  # an unknown field: the walk ends at it
            current = _unwrap(fields[part].annotation)
        elif origin is list and isinstance(part, int):
            path, current = f"{path}[{part}]", _unwrap(get_args(current)[0])
        elif origin is dict and isinstance(part, str):
            path, current = f"{path}.{part}", _unwrap(get_args(current)[1])
        else:
            break
    return path, parent, last


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        close = [c for c in choices if c.lower() == word.lower()]
    return f"; did you mean {close[0]}?" if close else ""


def _message(detail: ErrorDetails, parent: type[BaseModel] | None, key: str) -> str:
    kind, ctx, value = detail["type"], detail.get("ctx", {}), detail.get("input")
    if kind == "extra_forbidden":
        known = _field_names(parent)
        hint = _suggest(key, known) or f"; known fields here: {', '.join(known)}"
        return f"unknown field{hint}"
    if kind == "missing":
        return "is required; add it"
    if kind == "literal_error":
        allowed = [
            a.strip(" '") for a in str(ctx.get("expected", "")).replace(" or ", ", ").split(",")
        ]
        hint = _suggest(str(value), allowed) if isinstance(value, str) else ""
        return f"must be one of {', '.join(allowed)}; got {value!r}{hint}"
    bounds = {
        "greater_than_equal": ">=",
        "greater_than": ">",
        "less_than_equal": "<=",
        "less_than": "<",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}; got {_shown(value)}"
    return _length_message(kind, ctx, value) or _type_message(kind, value, str(detail["msg"]))


def _length_message(kind: str, ctx: dict[str, Any], value: object) -> str | None:
    """Messages for strings that are empty, too long or of the wrong format, and long lists."""
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        size = len(value) if isinstance(value, str) else "more"
        return f"must be at most {ctx['max_length']} characters; got {size}: {_shown(value)}"
    if kind == "too_long" and isinstance(value, list | dict):
        what = "entries" if isinstance(value, list) else "keys"
        return f"must have at most {ctx['max_length']} {what}; got {len(value)}"
    if kind == "string_pattern_mismatch":
        shape = shapes.BY_PATTERN.get(str(ctx.get("pattern")))
        says = shape.says if shape else f"a string matching {ctx.get('pattern')}"
        return f"must be {says}; got {_shown(value)}"
    return None


def _type_message(kind: str, value: object, fallback: str) -> str:
    expected: dict[str, str] = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "a whole number",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
    }
    if kind in expected:
        return f"must be {expected[kind]}; got {_shown(value)}"
    return f"{fallback}; got {_shown(value)}"


def _union_message(detail: ErrorDetails) -> str:
    return f"must be an integer or a string such as 16Gi; got {_shown(detail.get('input'))}"
