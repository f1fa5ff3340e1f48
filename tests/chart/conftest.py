"""Render the Helm chart with the helm of `make tools`, as `helm template` and `helm install` do.

No cluster: `helm template` renders locally. The helm binary is the test cluster's
(tools/testbin.py), which CI builds before the unit tier runs (`.ci/run`: `make tools`, then
`make test`); without it every test here fails saying to run `make tools`.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from typing import Any

import pytest
import yaml
from tests.support import ROOT
from tools import chart

CHART = ROOT / "charts" / "llmserve"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
NAMESPACED = {"rbac": {"scope": "namespaced", "namespaces": ["team-a", "team-b"]}}


def helm(*args: str, values: dict[str, Any] | None = None) -> str:
    """Run helm in the chart's directory's parent; `values` go in as a values file."""
    if values is None:
        return chart.helm(*args)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        return chart.helm(*args, "-f", file.name)


@functools.cache
def _render(values_json: str, release: str, namespace: str) -> tuple[dict[str, Any], ...]:
    values = json.loads(values_json) or None
    out = helm("template", release, "charts/llmserve", "--namespace", namespace, values=values)
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "llmserve",
    namespace: str = "llmserve-system",
) -> list[dict[str, Any]]:
    """The chart's objects (hooks included), as `helm template` renders them; cached per input."""
    return list(_render(json.dumps(values or {}, sort_keys=True), release, namespace))


def refusal(values: dict[str, Any], *, lint: bool = False) -> str:
    """helm's error for values the chart must refuse (fails the test if helm accepts them)."""
    args = ["lint", "--strict"] if lint else ["template", "llmserve"]
    with pytest.raises(chart.HelmError) as error:
        helm(*args, "charts/llmserve", values=values)
    return str(error.value)


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`)."""
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Every object of `kind`."""
    return [o for o in objects if o["kind"] == kind]


def is_hook(obj: dict[str, Any]) -> bool:
    """Whether the object is a `helm test` hook."""
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator Deployment's one container."""
    containers = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def values_yaml() -> dict[str, Any]:
    """The chart's default values."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def schema() -> dict[str, Any]:
    """values.schema.json."""
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return loaded


_REFERENCE = re.compile(r"\$(\$|\(([A-Za-z_][A-Za-z0-9_.-]*)\))")


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's literal env values as the process sees them: kubelet replaces `$(VAR)` with
    an earlier variable's value (unknown names stay as written) and `$$` with `$`."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:

        def expand(match: re.Match[str]) -> str:
            name = match.group(2)
            return "$" if name is None else env.get(name, match.group(0))

        env[entry["name"]] = _REFERENCE.sub(expand, entry["value"])
    return env
