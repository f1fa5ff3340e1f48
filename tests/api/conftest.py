"""Fixtures of the API tests: the `llmserve` command as a user runs it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from tests.support import run_llmserve

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def llmserve() -> Run:
    """Run `llmserve ARGS...` in a subprocess, stdin from `stdin=`; return the finished process."""
    return run_llmserve
