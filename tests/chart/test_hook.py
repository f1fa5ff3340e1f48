"""The `helm test` hook and NOTES.txt show LLMServices the operator accepts and can render."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import yaml
from tests.chart.conftest import NAMESPACED, helm, is_hook, kinds, render

from llmserve.api import parse_llmservice
from llmserve.api.config import OperatorConfig
from llmserve.render import render as render_children


def hook_pod(values: dict[str, Any] | None = None) -> dict[str, Any]:
    [pod] = [p for p in kinds(render(values), "Pod") if is_hook(p)]
    return pod


def heredoc(script: str) -> str:
    """The document between `<<EOF` and `EOF` in a shell script."""
    found = re.search(r"<<EOF\n(.*?)\nEOF\n", script, re.DOTALL)
    assert found, script
    return found.group(1)


def renders(document: dict[str, Any], namespace: str) -> None:
    document["metadata"]["namespace"] = namespace
    render_children(parse_llmservice(document), OperatorConfig())


def test_the_hook_is_a_test_pod_running_a_shell_script() -> None:
    pod = hook_pod()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    [container] = pod["spec"]["containers"]
    assert container["image"] == "registry.k8s.io/kubectl:v1.36.3"
    assert container["command"][:2] == ["/bin/sh", "-ec"]
    script = container["command"][2]
    assert "kubectl wait llmservice" in script
    assert "--for=condition=Available" in script
    assert "kubectl delete llmservice" in script


def test_the_hooks_sample_is_a_valid_llmservice() -> None:
    pod = hook_pod()
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    sample = heredoc(pod["spec"]["containers"][0]["command"][2]).replace("$NAME", env["NAME"])
    document = yaml.safe_load(sample)
    assert document["spec"]["gpus"] == 0  # no GPU needed to test an installation
    renders(document, env["NAMESPACE"])


def test_the_hook_uses_a_namespace_the_operator_manages() -> None:
    env = {e["name"]: e["value"] for e in hook_pod(NAMESPACED)["spec"]["containers"][0]["env"]}
    assert env["NAMESPACE"] == "team-a"
    env = {e["name"]: e["value"] for e in hook_pod()["spec"]["containers"][0]["env"]}
    assert env["NAMESPACE"] == "llmserve-system"


def notes(values: dict[str, Any] | None = None) -> str:
    out = helm(
        "install", "llmserve", "charts/llmserve", "--namespace", "ml-system", "--dry-run=client",
        values=values,
    )  # fmt: skip
    return out[out.index("NOTES:") :]


def test_the_notes_sample_is_a_valid_llmservice() -> None:
    text = notes()
    sample = text[text.index("<<EOF\n") + 6 : text.index("     EOF")]
    renders(yaml.safe_load(textwrap.dedent(sample)), "default")
    assert "kubectl get llms -n default -w" in text
    assert "kubectl -n ml-system logs deployment/llmserve -f" in text
    assert "The LLMService CRD and every LLMService stay" in " ".join(text.split())


def test_the_notes_point_at_a_managed_namespace() -> None:
    text = notes(NAMESPACED)
    assert "the namespaces team-a, team-b" in text
    assert "kubectl get llms -n team-a -w" in text
