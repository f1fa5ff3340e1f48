"""The `helm test` hook and NOTES.txt show LLMServices the operator accepts and can render."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import yaml
from tests.chart.conftest import NAMESPACED, container_env, helm, is_hook, kinds, render

from llmserve.api import parse_llmservice
from llmserve.api.config import OperatorConfig
from llmserve.render import render as render_children


def hook_pod(values: dict[str, Any] | None = None) -> dict[str, Any]:
    [pod] = [p for p in kinds(render(values), "Pod") if is_hook(p)]
    return pod


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
    env = container_env(hook_pod()["spec"]["containers"][0])
    document = json.loads(env["LLMSERVICE"])
    assert document["metadata"]["name"] == env["NAME"]
    assert document["spec"]["gpus"] == 0  # no GPU needed to test an installation
    renders(document, env["NAMESPACE"])


def test_the_hook_uses_a_namespace_the_operator_manages() -> None:
    env = container_env(hook_pod(NAMESPACED)["spec"]["containers"][0])
    assert env["NAMESPACE"] == "team-a"
    env = container_env(hook_pod()["spec"]["containers"][0])
    assert env["NAMESPACE"] == "llmserve-system"


HOSTILE = {"model": "Qwen/x$(id -u)`id`", "file": "a$(NAME)\"b'$HOME.gguf"}


def test_values_reach_the_hooks_manifest_as_written_never_through_a_shell(tmp_path: Path) -> None:
    pod = hook_pod({"tests": {"llmservice": HOSTILE}})
    [container] = pod["spec"]["containers"]
    assert container["command"] == hook_pod()["spec"]["containers"][0]["command"]  # no value in it
    # Run the script as the pod would, with a kubectl that records what it is asked to apply.
    record = tmp_path / "applied.json"
    fake = tmp_path / "bin" / "kubectl"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\n[ "$1" = apply ] && cat > {record}\nexit 0\n')
    fake.chmod(0o755)
    env = container_env(container) | {"PATH": f"{fake.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(  # noqa: S603 - the chart's own script, run by /bin/sh as in the pod
        container["command"], env=env, capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 0, done.stderr
    applied = json.loads(record.read_text())
    assert applied["spec"]["model"] == {"name": HOSTILE["model"], "file": HOSTILE["file"]}


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


def test_the_notes_show_how_to_read_the_generated_key_and_call_with_the_openai_client() -> None:
    text = notes()
    get = "kubectl get secret qwen-0-5b-api-keys -n default"
    assert f"{get} -o jsonpath='{{.data.api-keys}}' | base64 -d" in text
    assert f"export OPENAI_API_KEY=$({get}" in text
    assert "from openai import OpenAI" in text
    assert 'client = OpenAI(base_url="http://localhost:8080/v1")' in text
    assert "spec.proxy.allowedFrom" in text
