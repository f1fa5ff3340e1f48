"""The golden LLMServices as test cases, and shortcuts into the manifests they render to."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Final

from tests.render import regenerate_golden

from llmserve import render
from llmserve.api import LLMService, parse_many
from llmserve.api.config import OperatorConfig

GOLDEN: Final = regenerate_golden.inputs()
"""Every tests/data/llmservices/*.yaml, sorted (stable ids for pytest-xdist)."""


def stem(path: Path) -> str:
    """A readable test id."""
    return path.stem


@functools.cache
def _service(path: Path) -> LLMService:
    (service,) = parse_many(path.read_text(encoding="utf-8"), source=path.name)
    return service


def golden_service(path: Path) -> LLMService:
    """The parsed LLMService of one golden input (parsed objects are immutable)."""
    return _service(path)


@functools.cache
def _children(path: Path) -> tuple[dict[str, Any], ...]:
    return tuple(render.render(_service(path), OperatorConfig()))


def golden_children(path: Path) -> list[dict[str, Any]]:
    """The rendered children of one golden input; a fresh copy the caller may change."""
    return copy.deepcopy(list(_children(path)))


def goldens_of(*engines: str) -> list[Path]:
    """The golden inputs whose engine is one of `engines`."""
    return [p for p in GOLDEN if golden_service(p).spec.engine in engines]


def by_kind(children: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one child of a kind."""
    (found,) = [c for c in children if c["kind"] == kind]
    return found


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The container of that name in a pod spec."""
    (found,) = [c for c in pod_spec["containers"] if c["name"] == name]
    return found


def engine_container(children: list[dict[str, Any]]) -> dict[str, Any]:
    """The `engine` container of the Deployment."""
    return container(by_kind(children, "Deployment")["spec"]["template"]["spec"], "engine")


def proxy_container(children: list[dict[str, Any]]) -> dict[str, Any]:
    """The `proxy` container of the Deployment."""
    return container(by_kind(children, "Deployment")["spec"]["template"]["spec"], "proxy")


def pod_templates(children: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, pod template) of every child that runs pods: the Deployment and the download Job."""
    return [
        (c["kind"], c["spec"]["template"]) for c in children if c["kind"] in {"Deployment", "Job"}
    ]


def env_of(container_: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {e["name"]: e for e in container_.get("env", [])}
