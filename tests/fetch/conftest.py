"""Fixtures for `llmserve fetch-model`: a fake Hub on 127.0.0.1, and the environment aimed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fetch.fakehub import FakeHub, FakeRepo, serve
from tests.fetch.runner import TOKEN, WEIGHTS


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """A running fake Hub with a plain model repo; shut down (stalled replies released) after."""
    fake = FakeHub(tokens={TOKEN})
    fake.add(
        FakeRepo(
            "org/tiny",
            {
                "config.json": b'{"model_type": "llama"}\n',
                "tokenizer.json": b'{"version": "1.0"}\n',
                "model.safetensors": WEIGHTS,
                "README.md": b"# tiny\n",
            },
        )
    )
    server = serve(fake)
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def env(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process's environment (inherited by subprocesses) aimed at the fake Hub, for every test.

    HF_HUB_DISABLE_XET=1: the fake Hub speaks plain HTTP only. It sends no Xet headers, so
    huggingface_hub would not try Xet anyway; the variable makes sure. Production keeps the default.
    Proxies are removed so that 127.0.0.1 is reached directly. HF_HOME is set so the value the
    command writes into os.environ is undone after the test.
    """
    for name in list(os.environ):
        if name.startswith(("HF_", "HUGGING")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "unused-hf-home"))


@pytest.fixture
def gguf_repo(hub: FakeHub) -> FakeRepo:
    """A GGUF repo: two single-file quantizations and one split in three parts, in a folder."""
    parts = {f"Q6_K/tiny-Q6_K-{i:05d}-of-00003.gguf": b"GGUF part %d" % i for i in (1, 2, 3)}
    return hub.add(
        FakeRepo(
            "org/tiny-GGUF",
            {
                "README.md": b"# tiny GGUF\n",
                "tiny-Q4_K_M.gguf": b"GGUF q4_k_m",
                "tiny-Q8_0.gguf": b"GGUF q8_0",
                **parts,
            },
            commit="fedcba9876543210fedcba9876543210fedcba98",
        )
    )
