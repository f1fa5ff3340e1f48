"""The string formats of `llmserve.api.shapes`: what each accepts, read alike by pydantic and `re`.

pydantic checks them with Rust's regex crate, fetch-model with Python's `re`, the API server with
Go's RE2 (tests/cluster/test_llmservice_admission.py); a value one accepts and another refuses would
pass one check and fail the next, so every sample below is tried with both engines here.
"""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import TypeAdapter, ValidationError

from llmserve.api import shapes

SAMPLES: dict[shapes.Shape, tuple[list[str], list[str]]] = {
    shapes.REPO_ID: (
        ["gpt2", "Qwen/Qwen2.5-7B-Instruct", "01-ai/Yi-1.5-9B", "a/_b", "org/x_-y"],
        [
            "-x/y",
            "a/b-",
            "a/.b",
            "a--b/c",
            "a/b..c",
            "a/b/c",
            "a b/c",
            "https://x/y",
            "a/b\n",
            "ä/b",
            "a/" + "b" * 200,
        ],
    ),
    shapes.REVISION: (
        ["main", "v1.0", "refs/pr/12", "a" * 40, "release/2024-01", "v1.0-rc.1+build"],
        ["-x", ".x", "a..b", "a//b", "/main", "main/", "main.", "../x", "a b", "main\n", "ü"],
    ),
    shapes.REPO_FILE: (
        ["*-Q4_K_M.gguf", "Q6_K/x-*-of-*.gguf", "a b.gguf", "ünï.gguf", "..x.gguf"],
        ["-x.gguf", "/etc/passwd", "a\nb", "a\tb", "a\x7fb", "x" * 256],
    ),
    shapes.SERVED_NAME: (
        ["llama-8b", "meta-llama/Llama-3.1-8B", "a:b", "~x"],
        ["-x", "a b", "a\nb", "ä", "x" * 129],
    ),
    shapes.ENV_NAME: (["A", "_x", "NCCL_DEBUG", "a1"], ["1A", "A-B", "A=B", "A B", "Ä"]),
    shapes.QUANTITY: (
        ["1", "16Gi", "500m", "1.5", ".5", "1e3", "2E-3", "+1", "1Ei"],
        ["-1", "lots", "64 gigs", "1.5.2", "Gi", "1gi", "1e", "1\n"],
    ),
    shapes.QUALIFIED_NAME: (
        ["memory", "nvidia.com/gpu", "hugepages-2Mi", "a.b-c/X_y.z", "x" * 63],
        ["bad key!", "-a", "a-", "A.com/x", "a/", "/a", "a/b/c", "x" * 64, "a.-b/c"],
    ),
    shapes.LABEL_VALUE: (["", "gpu", "NVIDIA-H100-80GB-HBM3", "a.b_c"], ["a b", "-a", "x" * 64]),
    shapes.DNS_SUBDOMAIN: (["fast", "fast-ssd", "a.b.c"], ["Bad Class!", "-a", "a_b", "A"]),
    shapes.SECRET_KEY: (["token", "api-keys", ".x_y"], ["a b", "a/b", "a:b"]),
    shapes.IMAGE: (
        [
            "vllm/vllm-openai:v0.33.0",
            "ghcr.io/ggml-org/llama.cpp:server-cuda",
            "localhost:5000/team/x",
            "busybox:1.36",
            "registry.example.com/a/b@sha256:" + "a" * 64,
        ],
        ["my image", "a/B", "a:tag with space", ":x", "a//b", "a@sha256:xyz"],
    ),
}


def test_every_shape_has_samples() -> None:
    assert set(SAMPLES) == set(shapes.SHAPES)


@pytest.mark.parametrize("shape", shapes.SHAPES, ids=lambda s: s.says.split(" such")[0][:40])
def test_pydantic_and_python_re_agree_on_every_sample(shape: shapes.Shape) -> None:
    adapter = TypeAdapter(Annotated[str, shape.constraints])
    good, bad = SAMPLES[shape]
    for value in good + bad:
        try:
            adapter.validate_python(value)
            by_pydantic = True
        except ValidationError:
            by_pydantic = False
        assert by_pydantic == shape.matches(value) == (value in good), repr(value)


def test_climbs_is_a_dot_dot_step() -> None:
    assert [
        p for p in ("..", "../x", "a/..", "a/../b", "a..b", "x", "..x/y") if shapes.climbs(p)
    ] == [
        "..",
        "../x",
        "a/..",
        "a/../b",
    ]
