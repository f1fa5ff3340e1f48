"""vLLM 0.33 (`vllm serve`): the default engine (ENGINES.md §2)."""

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

PORT: Final = 8000
# A pre-quantized AWQ/GPTQ checkpoint carries its quant_method and vLLM picks the fastest kernel
# (Marlin) itself; naming it would force the slower plain kernel. fp8 quantizes a BF16 checkpoint on
# the fly (and is accepted for FP8 checkpoints). Every value here is in vllm-quantization.txt.
QUANTIZATION: Final = {"none": None, "awq": None, "gptq": None, "fp8": "fp8"}


def args(i: EngineInputs) -> list[str]:
    """`vllm serve` arguments, the model first as its positional `model_tag`.

    Positional rather than `--model`: a stray positional in spec.engineArgs (say a value after a
    flag that takes none) is then an argparse error at start, not a second model that silently
    replaces ours (the positional wins over `--model`).
    """
    return [
        i.repo,
        *opt("--revision", i.revision),
        *opt("--served-model-name", i.served_name),
        *opt("--host", LOOPBACK),
        *opt("--port", PORT),
        *opt("--tensor-parallel-size", i.gpus),
        *opt("--gpu-memory-utilization", FACTS["vllm"].memory_fraction),
        *opt("--quantization", QUANTIZATION.get(i.quantization)),
        *opt("--max-model-len", i.max_model_len),
        *opt("--download-dir", HUB_CACHE),
    ]


def env(_: EngineInputs) -> dict[str, str]:
    """No usage reports to vLLM's servers from a user's cluster."""
    return {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1"}


PROFILE: Final = EngineProfile(
    engine="vllm",
    port=PORT,
    health_path="/health",
    metrics_path="/metrics",
    command=("vllm", "serve"),
    args=args,
    env=env,
    probe=python_health_probe(PORT, "/health"),
    aliases={
        "-tp": "--tensor-parallel-size",
        "-q": "--quantization",
        "--device-memory-utilization": "--gpu-memory-utilization",
    },
    fields={
        **COMMON_FIELDS,
        **CONFIG_FILE,
        "--model": "spec.model.name",
        "--revision": "spec.model.revision",
        "--served-model-name": "spec.model.servedName",
        "--tensor-parallel-size": "spec.gpus",
        "--quantization": "spec.quantization",
        "--max-model-len": "spec.maxModelLen",
        "--download-dir": "spec.cache",
        "--gpu-memory-utilization": "nothing: the fit check relies on it",
    },
    underscore_flags=True,
    # FlexibleArgumentParser leaves argparse's allow_abbrev on (vllm/utils/argparse_utils.py).
    abbreviations=True,
    attached_values=True,
)
