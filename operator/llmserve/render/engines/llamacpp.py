"""llama.cpp `llama-server` (the image's entrypoint), GGUF on GPU or CPU (ENGINES.md §5)."""

from __future__ import annotations

from typing import Final

from llmserve.api.fit import DEFAULT_CONTEXT_TOKENS
from llmserve.render.engines.base import (
    COMMON_FIELDS,
    GGUF_PATH,
    LOOPBACK,
    EngineInputs,
    EngineProfile,
    curl_health_probe,
    opt,
)

PORT: Final = 8081
"""llama-server's default 8080 is the proxy's port, and a pod shares one network namespace."""
ALL_LAYERS: Final = 999
"""`--n-gpu-layers` above any model's layer count offloads every layer."""

# llama-server finds the parts of a split GGUF by the name it is given (`...-00001-of-00003.gguf`)
# and does not follow symlinks first; the download Job links every part next to GGUF_PATH and
# GGUF_PATH to the first part (relative links). So the wrapper opens what GGUF_PATH names, whether
# that is a single file in the snapshot or the first part. Values come from the environment only.
SCRIPT: Final = """\
if [ -n "$LLMSERVE_GGUF_PATH" ]; then
  set -- --model "$(dirname "$LLMSERVE_GGUF_PATH")/$(readlink "$LLMSERVE_GGUF_PATH")" "$@"
fi
exec /app/llama-server "$@"
"""


def _source(i: EngineInputs) -> list[str]:
    if i.cached:
        return []  # --model comes from SCRIPT
    # No cache volume: llama-server downloads by itself, by quant tag or by exact file name.
    if i.gguf_tag:
        return opt("--hf-repo", f"{i.repo}:{i.gguf_tag}")
    return [*opt("--hf-repo", i.repo), *opt("--hf-file", i.gguf_file)]


def args(i: EngineInputs) -> list[str]:
    """llama-server arguments; each slot gets the whole context length."""
    return [
        *_source(i),
        *opt("--alias", i.served_name),
        *opt("--host", LOOPBACK),
        *opt("--port", PORT),
        *opt("--parallel", i.slots),
        # llama-server splits --ctx-size between its slots; its default (4096) would leave each
        # slot 1024 tokens. Without maxModelLen each slot gets the fit check's assumed context.
        *opt("--ctx-size", (i.max_model_len or DEFAULT_CONTEXT_TOKENS) * i.slots),
        *opt("--n-gpu-layers", ALL_LAYERS if i.gpus else 0),
        "--metrics",
    ]


def env(i: EngineInputs) -> dict[str, str]:
    """Where the cached GGUF file is linked, for SCRIPT."""
    return {"LLMSERVE_GGUF_PATH": GGUF_PATH} if i.cached else {}


PROFILE: Final = EngineProfile(
    engine="llamacpp",
    port=PORT,
    health_path="/health",
    metrics_path="/metrics",
    # sh -c SCRIPT NAME ARGS...: NAME becomes $0, the rendered args become "$@".
    command=("/bin/sh", "-c", SCRIPT, "llama-server"),
    args=args,
    env=env,
    probe=curl_health_probe(PORT, "/health"),
    aliases={
        "-m": "--model",
        "-hf": "--hf-repo",
        "-hff": "--hf-file",
        "-a": "--alias",
        "-np": "--parallel",
        "-c": "--ctx-size",
        "-ngl": "--n-gpu-layers",
        "--gpu-layers": "--n-gpu-layers",
    },
    fields={
        **COMMON_FIELDS,
        "--model": "spec.model.file",
        "--hf-repo": "spec.model.name",
        "--hf-file": "spec.model.file",
        "--alias": "spec.model.servedName",
        "--parallel": "spec.proxy.maxConcurrency",
        "--ctx-size": "spec.maxModelLen",
        "--n-gpu-layers": "spec.gpus",
    },
    startup_budget_seconds=1800,
)
