"""Helpers shared by the tests: paths, a valid base document, and parsing shortcuts."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from llmserve.api import LLMService, parse_llmservice

ROOT: Final = Path(__file__).resolve().parent.parent
DATA: Final = ROOT / "tests" / "data"
ENGINE_LISTS: Final = DATA / "engines"
"""The engines' real flag and quantization lists (tests/data/engines/README.md)."""


def document(
    spec: dict[str, Any] | None = None, name: str = "llama-8b", **meta: Any
) -> dict[str, Any]:
    """A valid LLMService document; `spec` keys replace the base spec's."""
    base: dict[str, Any] = {
        "apiVersion": "llmserve.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name, **meta},
        "spec": {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}},
    }
    if spec:
        base["spec"].update(copy.deepcopy(spec))
    return base


def service(spec: dict[str, Any] | None = None, **meta: Any) -> LLMService:
    """A parsed LLMService."""
    return parse_llmservice(document(spec, **meta))


def run_llmserve(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed `llmserve` console script (`.venv/bin/llmserve`) as a user would."""
    script = shutil.which("llmserve", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "llmserve.cli"]
    return subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [*command, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
