"""Fixtures of the API tests: the `llmserve` command as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support import ROOT

Run = Callable[..., subprocess.CompletedProcess[str]]


def _command() -> list[str]:
    """The installed console script next to the running interpreter (`.venv/bin/llmserve`)."""
    script = shutil.which("llmserve", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "llmserve.cli"]


@pytest.fixture(scope="session")
def llmserve() -> Run:
    """Run `llmserve ARGS...` in a subprocess, stdin from `stdin=`; return the finished process."""

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own console script, fixed arguments
            [*_command(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
            timeout=120,
        )

    return run
