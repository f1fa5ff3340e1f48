"""Running `llmserve fetch-model` from the tests: in this process, or as the console script."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

from llmserve import cli

TOKEN = "hf_TestTokenNeverPrinted0123456789"  # noqa: S105 - a test token
WEIGHTS = bytes(range(256)) * 256  # 64 KiB


def fetch(*args: str) -> tuple[int, str, str]:
    """`llmserve fetch-model ARGS` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["fetch-model", *args], out, err)
    return code, out.getvalue(), err.getvalue()


def spawn(*args: str) -> subprocess.Popen[str]:
    """The installed console script `llmserve fetch-model ARGS`, started with this environment."""
    script = shutil.which("llmserve", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "llmserve.cli"]
    return subprocess.Popen(  # noqa: S603 - our own console script
        [*command, "fetch-model", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
