"""The CRD: in step with `llmserve crd` and with the models, structural, complete."""

from __future__ import annotations

import copy
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import celpy
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from tests.support import ROOT, document

from llmserve.api import LLMServiceSpec, LLMServiceStatus, cel, crd, models

CRD_FILE = ROOT / "crds" / "llmservices.llmserve.io.yaml"


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    return crd.build()


@pytest.fixture(scope="module")
def version(built) -> dict[str, Any]:
    (only,) = built["spec"]["versions"]
    return only


@pytest.fixture(scope="module")
def schema(version) -> dict[str, Any]:
    return version["schema"]["openAPIV3Schema"]


# --- (a) drift ------------------------------------------------------------------------------------


def test_the_committed_crd_is_the_output_of_llmserve_crd(llmserve) -> None:
    result = llmserve("crd")
    assert result.returncode == 0, result.stderr
    assert CRD_FILE.read_text() == result.stdout, (
        f"{CRD_FILE.relative_to(ROOT)} is stale: run `make crd` and commit the result"
    )


def test_llmserve_crd_prints_what_crd_build_returns(llmserve, built) -> None:
    assert yaml.safe_load(llmserve("crd").stdout) == built


# --- (b) agreement of the models and the schema ---------------------------------------------------


def unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The annotation without Annotated and Optional, and the metadata it carried."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *more = get_args(annotation)
            metadata += more
        elif origin in (Union, types.UnionType) and type(None) in get_args(annotation):
            members = [a for a in get_args(annotation) if a is not type(None)]
            annotation = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        else:
            return annotation, metadata


LENGTHS = {"string": "Length", "array": "Items", "object": "Properties"}
"""OpenAPI's name for the length of a value of each type: maxLength, maxItems, maxProperties."""


def bounds(metadata: list[Any], kind: str = "string") -> dict[str, Any]:
    """The OpenAPI keywords of Field(ge=...), max_length=..., pattern=... and friends, however
    deeply pydantic nested them, for a value of OpenAPI type `kind`."""
    out: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            out |= bounds(item.metadata, kind)
        elif isinstance(item, annotated_types.Ge):
            out["minimum"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            out |= {"minimum": item.gt, "exclusiveMinimum": True}
        elif isinstance(item, annotated_types.Le):
            out["maximum"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            out[f"min{LENGTHS[kind]}"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            out[f"max{LENGTHS[kind]}"] = item.max_length
        elif isinstance(item, annotated_types.GroupedMetadata):
            out |= bounds(list(item), kind)
        elif isinstance(getattr(item, "pattern", None), str):
            out["pattern"] = item.pattern
    return out


BOUND_KEYWORDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "pattern",
    *(f"{end}{length}" for length in LENGTHS.values() for end in ("min", "max")),
)


def assert_bounds(metadata: list[Any], prop: dict[str, Any], kind: str, where: str) -> None:
    """The schema node has exactly the model's bounds."""
    expected = bounds(metadata, kind)
    for keyword, value in expected.items():
        assert prop.get(keyword) == value, f"{where}: {keyword} differs"
    for keyword in BOUND_KEYWORDS:
        if keyword in prop:
            assert keyword in expected, f"{where}: {keyword} not in the model"


def model_default(info: FieldInfo) -> Any:
    """What the API server should fill in for an absent field: None for nothing."""
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):  # written out: the API server does not default inside
            return value.model_dump(by_alias=True, exclude_none=True, mode="json")
        return value or None
    if info.default is PydanticUndefined:
        return None
    return info.default


ENGINE_DEPENDENT_DEFAULTS = {("LLMServiceSpec", "quantization")}
"""Defaults the CRD cannot express (they depend on another field); the operator fills them."""

SCALAR_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def walk(model: type[BaseModel], node: dict[str, Any], path: str) -> Iterator[type[BaseModel]]:
    """Assert that `model` and its schema `node` agree; yield every model met on the way."""
    yield model
    assert node["type"] == "object", path
    fields = {info.alias or name: (name, info) for name, info in model.model_fields.items()}
    assert list(node["properties"]) == list(fields), f"{path}: field names differ"
    required = [key for key, (_, info) in fields.items() if info.is_required()]
    assert node.get("required", []) == required, f"{path}: required fields differ"
    for key, (name, info) in fields.items():
        prop, where = node["properties"][key], f"{path}.{key}"
        annotation, metadata = unwrap(info.annotation)
        metadata += info.metadata
        default = model_default(info)
        if (model.__name__, name) in ENGINE_DEPENDENT_DEFAULTS:
            assert default is None
            assert "default" not in prop, where
        elif default is None:
            assert "default" not in prop, f"{where}: the CRD has a default the model has not"
        else:
            assert prop.get("default") == default, f"{where}: defaults differ"
        assert prop.get("description"), f"{where}: no description for kubectl explain"
        yield from walk_type(annotation, metadata, prop, where)


def walk_type(
    annotation: Any, metadata: list[Any], prop: dict[str, Any], where: str
) -> Iterator[type[BaseModel]]:
    origin = get_origin(annotation)
    if origin is Literal:
        assert prop["type"] == "string", where
        assert prop["enum"] == list(get_args(annotation)), f"{where}: enums differ"
        return
    assert "enum" not in prop, where
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from walk(annotation, prop, where)
    elif origin is list:
        assert prop["type"] == "array", where
        assert_bounds(metadata, prop, "array", where)
        (item,) = get_args(annotation)
        yield from walk_type(*unwrap(item), prop["items"], f"{where}[]")
    elif origin is dict:
        assert prop["type"] == "object", where
        value = get_args(annotation)[1]
        if value is Any:
            assert prop["x-kubernetes-preserve-unknown-fields"] is True, where
        else:
            assert_bounds(metadata, prop, "object", where)
            yield from walk_type(*unwrap(value), prop["additionalProperties"], f"{where}.*")
    elif origin in (Union, types.UnionType):
        members = dict(unwrap(member) for member in get_args(annotation))
        assert set(members) == {int, str}, where
        assert prop["x-kubernetes-int-or-string"] is True, where
        assert "type" not in prop, where
        # OpenAPI applies each keyword to the values it fits: minimum to numbers, pattern to text.
        assert_bounds(members[int] + members[str], prop, "string", where)
    else:
        assert prop["type"] == SCALAR_TYPES[annotation], f"{where}: types differ"
        assert_bounds(metadata, prop, SCALAR_TYPES[annotation], where)


def spec_models() -> set[type[BaseModel]]:
    """Every model of the spec and status, as defined in llmserve.api.models."""
    return {
        value
        for value in vars(models).values()
        if isinstance(value, type)
        and issubclass(value, models._Model)
        and value is not models._Model
    }


def test_spec_and_status_agree_with_the_models(schema) -> None:
    met = set(walk(LLMServiceSpec, schema["properties"]["spec"], "spec"))
    met |= set(walk(LLMServiceStatus, schema["properties"]["status"], "status"))
    assert met == spec_models(), "a model of llmserve.api.models is not in the CRD"


def test_the_checker_catches_a_difference(schema) -> None:
    # The agreement test is only worth something if it fails on a drifted schema.
    spec = copy.deepcopy(schema["properties"]["spec"])
    spec["properties"]["engine"]["enum"].remove("ollama")
    with pytest.raises(AssertionError, match="enums differ"):
        list(walk(LLMServiceSpec, spec, "spec"))
    spec = copy.deepcopy(schema["properties"]["spec"])
    spec["properties"]["autoscaling"]["properties"]["scaleDownDelaySeconds"]["default"] = 60
    with pytest.raises(AssertionError, match="defaults differ"):
        list(walk(LLMServiceSpec, spec, "spec"))


def apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: absent properties get their default."""
    if isinstance(value, dict) and "properties" in node:
        out = dict(value)
        for key, prop in node["properties"].items():
            if key not in out and "default" in prop:
                out[key] = prop["default"]
            if key in out:
                out[key] = apply_defaults(prop, out[key])
        return out
    if isinstance(value, list) and "items" in node:
        return [apply_defaults(node["items"], item) for item in value]
    return value


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {
            "autoscaling": {"enabled": True, "maxReplicas": 3},
            "proxy": {"apiKeySecretRef": {"name": "k"}},
        },
        {"model": {"name": "a/b", "tokenSecretRef": {"name": "hf"}}, "cache": {"enabled": False}},
        {"engine": "ollama", "model": {"name": "a/b", "file": "x-Q4_K_M.gguf"}},
    ],
)
def test_the_api_server_and_the_models_default_a_spec_alike(schema, spec) -> None:
    doc = document(spec)
    by_server = apply_defaults(schema, doc)["spec"]
    by_models = LLMServiceSpec.model_validate(doc["spec"]).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    # Left to the operator: the engine-dependent quantization, and empty lists and maps.
    by_models = {k: v for k, v in by_models.items() if v not in ([], {})}
    assert by_server == {k: v for k, v in by_models.items() if k != "quantization"}


# --- (c) structural -------------------------------------------------------------------------------


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, prop in node.get("properties", {}).items():
        yield from nodes(prop, f"{path}.{key}")
    for keyword in ("items", "additionalProperties"):
        if isinstance(node.get(keyword), dict):
            yield from nodes(node[keyword], f"{path}.{keyword}")


def test_the_schema_is_structural(schema) -> None:
    text = yaml.safe_dump(schema)
    assert "$ref" not in text
    assert "$defs" not in text
    for path, node in nodes(schema):
        where = path or "<root>"
        for keyword in ("anyOf", "oneOf", "allOf", "not"):
            assert keyword not in node, f"{where}: {keyword} is not structural"
        assert "nullable" not in node, where
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, where
            continue
        assert "type" in node, f"{where}: no type"
        if "properties" in node or "additionalProperties" in node:
            assert node["type"] == "object", where
            assert not ("properties" in node and "additionalProperties" in node), where
        if node["type"] == "array":
            assert "items" in node, where


def test_defaults_are_valid_against_their_own_schema(schema) -> None:
    for path, node in nodes(schema):
        if "default" not in node:
            continue
        default = node["default"]
        if "enum" in node:
            assert default in node["enum"], path
        if "minimum" in node:
            assert default >= node["minimum"], path
        if "maximum" in node:
            assert default <= node["maximum"], path
        kind = {
            "integer": int,
            "number": (int, float),
            "boolean": bool,
            "string": str,
            "object": dict,
        }
        assert isinstance(default, kind[node["type"]]), path


def test_the_root_declares_only_what_kubernetes_allows(schema) -> None:
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert schema["required"] == ["spec"]
    metadata = schema["properties"]["metadata"]
    assert metadata["type"] == "object"
    assert set(metadata.get("properties", {})) <= {"name", "generateName"}


def test_every_rule_field_path_names_a_field_of_its_schema(schema) -> None:
    # The API server rejects a CRD whose fieldPath is not a property path of the rule's node.
    for path, node in nodes(schema):
        for rule in node.get("x-kubernetes-validations", []):
            target = node
            for part in rule.get("fieldPath", "").split(".")[1:]:
                assert part in target.get("properties", {}), f"{path}: {rule['fieldPath']}"
                target = target["properties"][part]


def test_every_spec_field_is_described(schema) -> None:
    for path, node in nodes(schema["properties"]["spec"], "spec"):
        if path != "spec" and not path.endswith((".items", ".additionalProperties")):
            assert node.get("description"), path


# --- (d) names, columns and subresources ----------------------------------------------------------


def test_names(built) -> None:
    assert built["apiVersion"] == "apiextensions.k8s.io/v1"
    assert built["kind"] == "CustomResourceDefinition"
    assert built["metadata"]["name"] == "llmservices.llmserve.io"
    spec = built["spec"]
    assert spec["group"] == "llmserve.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == "LLMService"
    assert names["plural"] == "llmservices"
    assert names["singular"] == "llmservice"
    assert names["shortNames"] == ["llms"]


def test_one_served_storage_version(version) -> None:
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True


def test_printer_columns(version, schema) -> None:
    columns = version["additionalPrinterColumns"]
    default = [c for c in columns if c.get("priority", 0) == 0]
    assert [c["name"] for c in default] == ["Model", "Engine", "GPUs", "Ready", "Phase", "Age"]
    by_name = {c["name"]: c for c in columns}
    assert by_name["Model"]["jsonPath"] == ".spec.model.name"
    assert by_name["Engine"]["jsonPath"] == ".spec.engine"
    assert by_name["GPUs"]["jsonPath"] == ".spec.gpus"
    assert by_name["Ready"]["jsonPath"] == ".status.readyReplicas"
    assert by_name["Phase"]["jsonPath"] == ".status.phase"
    assert by_name["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    for column in columns:
        if column["jsonPath"].startswith(".metadata."):
            continue
        node = schema
        for part in column["jsonPath"].split(".")[1:]:
            node = node["properties"][part]
        expected = {"string": "string", "integer": "integer"}[column["type"]]
        assert node["type"] == expected, column["name"]


def test_status_and_scale_subresources(version, schema) -> None:
    subresources = version["subresources"]
    assert subresources["status"] == {}
    assert subresources["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    status = schema["properties"]["status"]["properties"]
    assert schema["properties"]["spec"]["properties"]["replicas"]["type"] == "integer"
    assert status["replicas"]["type"] == "integer"
    assert status["selector"]["type"] == "string"


# --- (e) CEL rules --------------------------------------------------------------------------------


def crd_rules(schema) -> list[tuple[str, str, str, str | None]]:
    return [
        (path.lstrip("."), rule["rule"], rule["message"], rule.get("fieldPath"))
        for path, node in nodes(schema)
        for rule in node.get("x-kubernetes-validations", [])
    ]


def test_the_crd_rules_are_exactly_those_of_llmserve_api_cel(schema) -> None:
    offline = [
        (path, rule.rule, rule.message, rule.field_path)
        for path, rules in cel.RULES.items()
        for rule in rules
    ]
    assert sorted(crd_rules(schema), key=repr) == sorted(offline, key=repr)


@pytest.mark.parametrize(
    "rule", [rule for _, rules in cel.RULES.items() for rule in rules], ids=lambda r: r.rule
)
def test_every_rule_compiles_with_cel_python(rule) -> None:
    env = celpy.Environment()
    env.program(env.compile(rule.rule))


def test_every_rule_has_a_one_line_message_with_a_fix(schema) -> None:
    for _, rule, message, field_path in crd_rules(schema):
        assert message.strip(), rule
        assert "\n" not in message, rule
        assert field_path, rule
        assert ";" in message or ":" in message, f"{rule}: the message should say what to do"


def test_rule_expressions_fit_on_one_line(schema) -> None:
    # The API server requires a message when a rule spans lines; ours are one line each.
    for _, rule, _, _ in crd_rules(schema):
        assert "\n" not in rule
