"""Hugging Face TGI (`text-generation-launcher`), in maintenance mode upstream (ENGINES.md §3)."""

from __future__ import annotations

from typing import Final

from llmserve.render.engines.base import (
    COMMON_FIELDS,
    HUB_CACHE,
    LOOPBACK,
    EngineInputs,
    EngineProfile,
    curl_health_probe,
    opt,
)

PORT: Final = 3000
# Every value here is in tgi-quantize.txt. TGI reads pre-quantized AWQ/GPTQ configs itself, but
# naming them is harmless and makes the launcher refuse a checkpoint of another format early.
QUANTIZATION: Final = {
    "none": None,
    "awq": "awq",
    "gptq": "gptq",
    "fp8": "fp8",
    "bitsandbytes": "bitsandbytes",
}


def args(i: EngineInputs) -> list[str]:
    """Launcher arguments (the image's entrypoint runs the launcher)."""
    context = i.max_model_len
    return [
        *opt("--model-id", i.repo),
        *opt("--revision", i.revision),
        # Kubernetes sets HOSTNAME to the pod name, which TGI would read as --hostname.
        *opt("--hostname", LOOPBACK),
        *opt("--port", PORT),
        *opt("--num-shard", i.gpus),
        *opt("--quantize", QUANTIZATION.get(i.quantization)),
        # TGI wants input < total; the context length is the total.
        *opt("--max-input-tokens", None if context is None else context - 1),
        *opt("--max-total-tokens", context),
        *opt("--huggingface-hub-cache", HUB_CACHE),
        *opt("--usage-stats", "off"),
    ]


PROFILE: Final = EngineProfile(
    engine="tgi",
    port=PORT,
    health_path="/health",
    metrics_path="/metrics",
    args=args,
    probe=curl_health_probe(PORT, "/health"),
    aliases={"-p": "--port", "--max-input-length": "--max-input-tokens"},
    fields={
        **COMMON_FIELDS,
        "--hostname": COMMON_FIELDS["--host"],
        "--model-id": "spec.model.name",
        "--revision": "spec.model.revision",
        "--num-shard": "spec.gpus",
        "--quantize": "spec.quantization",
        "--max-input-tokens": "spec.maxModelLen",
        "--max-total-tokens": "spec.maxModelLen",
        "--huggingface-hub-cache": "spec.cache",
    },
    # clap: `-p9000` is `--port 9000`; long flags are never abbreviated (no infer_long_args).
    attached_values=True,
)
