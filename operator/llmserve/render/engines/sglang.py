"""SGLang 0.5.23 (`python3 -m sglang.launch_server`: the image has no entrypoint)."""

from __future__ import annotations

from typing import Final

from llmserve.api.engines import FACTS
from llmserve.render.engines.base import (
    COMMON_FIELDS,
    CONFIG_FILE,
    HUB_CACHE,
    LOOPBACK,
    EngineInputs,
    EngineProfile,
    opt,
    python_health_probe,
)

PORT: Final = 30000
# Values from SGLang's --quantization choices (enforced by its argparse).
QUANTIZATION: Final = {
    "none": None,
    "awq": "awq",
    "gptq": "gptq",
    "fp8": "fp8",
    "bitsandbytes": "bitsandbytes",
}


def args(i: EngineInputs) -> list[str]:
    """launch_server arguments; metrics are off unless asked for."""
    return [
        *opt("--model-path", i.repo),
        *opt("--revision", i.revision),
        *opt("--served-model-name", i.served_name),
        *opt("--host", LOOPBACK),
        *opt("--port", PORT),
        *opt("--tp-size", i.gpus),
        *opt("--mem-fraction-static", FACTS["sglang"].memory_fraction),
        *opt("--quantization", QUANTIZATION.get(i.quantization)),
        *opt("--context-length", i.max_model_len),
        *opt("--download-dir", HUB_CACHE),
        "--enable-metrics",
    ]


PROFILE: Final = EngineProfile(
    engine="sglang",
    port=PORT,
    health_path="/health",
    metrics_path="/metrics",
    command=("python3", "-m", "sglang.launch_server"),
    args=args,
    probe=python_health_probe(PORT, "/health"),
    aliases={"--model": "--model-path", "--tensor-parallel-size": "--tp-size"},
    fields={
        **COMMON_FIELDS,
        **CONFIG_FILE,
        "--model-path": "spec.model.name",
        "--revision": "spec.model.revision",
        "--served-model-name": "spec.model.servedName",
        "--tp-size": "spec.gpus",
        "--quantization": "spec.quantization",
        "--context-length": "spec.maxModelLen",
        "--download-dir": "spec.cache",
        "--mem-fraction-static": "nothing: the fit check relies on it",
    },
    # launch_server's argparse.ArgumentParser() keeps the default allow_abbrev=True.
    abbreviations=True,
    attached_values=True,
)
