"""The VRAM fit check: do the weights, KV cache and runtime headroom fit the GPUs asked for.

The rule of thumb is ENGINES.md §8: weights = parameters x bytes per parameter, split over the
tensor
parallel GPUs; on top, activations and CUDA graphs (about 10 % of the weights), the CUDA context and
allocator slack (3 GiB per GPU, the worked example's "about 3 GB"), and the KV cache of at least one
full-length sequence, since vLLM refuses to start when a single max-length sequence does not fit.
The
sum per GPU must fit in the GPU's memory times the engine's memory fraction. It is an estimate: it
errs on the safe side and says how it got its numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from llmserve.api.engines import FACTS, NODE_GPUS, TENSOR_PARALLEL_SIZES
from llmserve.api.models import Engine, LLMServiceSpec, Quantization

GIB: Final = 2**30
RUNTIME_OVERHEAD_GIB: Final = 3.0
ACTIVATION_SHARE: Final = 0.10
DEFAULT_CONTEXT_TOKENS: Final = 8192
"""Tokens of KV cache reserved when maxModelLen is unset: a floor, as current models have at least
8k
context (the engine itself takes the model's full context length unless told otherwise)."""

BYTES_PER_PARAMETER: Final = MappingProxyType[Quantization, float](
    {"none": 2.0, "fp8": 1.0, "bitsandbytes": 1.0, "awq": 0.5, "gptq": 0.5}
)
"""Bytes per weight by neutral quantization (ENGINES.md §8). bitsandbytes renders as TGI/SGLang's
8-bit LLM.int8 mode. gguf depends on the file: see GGUF_BYTES_PER_PARAMETER."""

GGUF_BYTES_PER_PARAMETER: Final = MappingProxyType[str, float](
    {
        "F32": 4.0,
        "F16": 2.0,
        "BF16": 2.0,
        "Q8_0": 1.0,
        "Q6_K": 0.75,
        "Q5_1": 0.66,
        "Q5_K_M": 0.61,
        "Q5_0": 0.61,
        "Q5_K_S": 0.60,
        "Q4_1": 0.53,
        "Q4_K_M": 0.48,
        "Q4_K_S": 0.46,
        "Q4_0": 0.45,
        "IQ4_XS": 0.45,
        "IQ4_NL": 0.45,
        "Q3_K_L": 0.43,
        "Q3_K_M": 0.40,
        "Q3_K_S": 0.36,
        "IQ3_M": 0.37,
        "IQ3_XS": 0.35,
        "Q2_K": 0.33,
        "IQ2_M": 0.30,
        "IQ2_XS": 0.27,
    }
)
"""Bytes per weight by GGUF quant tag. Q8_0, Q5_K_M and Q4_K_M are the project's anchor values; the
others are placed between them by their nominal bits per weight (llama.cpp's quantize table)."""

# Tags in file names are delimited by '-', '.', or '_' boundaries: `Llama-3.1-8B-Q4_K_M.gguf`.
_GGUF_TAG = re.compile(
    r"(?<![A-Za-z0-9])("
    + "|".join(sorted(GGUF_BYTES_PER_PARAMETER, key=len, reverse=True))
    + r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# `70B`, `8b`, `0.5B`, `1.5B`; not the `3B` of `A3B` (active parameters of a MoE) nor `3.1`
# versions.
_SIZE = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)[bB](?![A-Za-z0-9])")
_MOE_SIZE = re.compile(r"(?<![A-Za-z0-9.])(\d+)x(\d+(?:\.\d+)?)[bB](?![A-Za-z0-9])")
# `Llama-4-Scout-17B-16E`: the size is the active parameters of one of 16 experts, not the total.
_EXPERT_COUNT = re.compile(r"(?<![A-Za-z0-9.])\d+[bB]-\d+E(?![A-Za-z0-9])")
_MILLIONS = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)[mM](?![A-Za-z0-9])")


def infer_parameters_billions(repo_id: str) -> float | None:
    """Parameter count in billions read from a repo id, or None when it does not say.

    `meta-llama/Llama-3.1-70B-Instruct` -> 70, `Qwen/Qwen2.5-0.5B` -> 0.5, `bigscience/bloom-560m`
    -> 0.56, `mistralai/Mixtral-8x7B-v0.1` -> 56 (experts x size: an upper bound, since experts
    share
    the attention weights), `meta-llama/Llama-4-Scout-17B-16E` -> None (17B is one expert's active
    size). With several sizes in the id the largest wins, to err on the safe side.
    """
    name = repo_id.rsplit("/", 1)[-1]
    if _EXPERT_COUNT.search(name):
        return None  # the total is not in the name: the check says so and asks for it
    moe = [int(n) * float(size) for n, size in _MOE_SIZE.findall(name)]
    dense = [float(size) for size in _SIZE.findall(_MOE_SIZE.sub("", name))]
    if moe or dense:
        return max(moe + dense)
    millions = [float(size) / 1000 for size in _MILLIONS.findall(name)]
    return max(millions) if millions else None


def gguf_tag(file_name: str | None) -> str | None:
    """The GGUF quant tag in a file name or glob (`*-Q4_K_M.gguf` -> `Q4_K_M`), upper-cased."""
    if not file_name:
        return None
    match = _GGUF_TAG.search(file_name)
    return match.group(1).upper() if match else None


def kv_bytes_per_token(parameters_billions: float) -> float:
    """KV-cache bytes per token with a BF16 cache, estimated from the model size.

    Grouped-query attention makes the KV cache grow about with the square root of the size:
    48 KiB x sqrt(B) gives 136 KiB for 8B (Llama-3.1-8B: 128 KiB) and 400 KiB for 70B
    (Llama-3.1-70B:
    320 KiB), a little above the real models, as a fit check should be.
    """
    return 48 * 1024 * math.sqrt(parameters_billions)


@dataclass(frozen=True)
class FitInput:
    """What the fit check needs; every field may be unknown except the engine and the GPU count."""

    engine: Engine
    quantization: Quantization
    gpus: int
    parameters_billions: float | None = None
    parameters_source: str = "model.parametersBillions"
    gpu_memory_gib: float | None = None
    max_model_len: int | None = None
    gguf_file: str | None = None


@dataclass(frozen=True)
class FitReport:
    """The numbers of a fit check and its verdict, for `llmserve fit`, validation and status."""

    verdict: Literal["fits", "does-not-fit", "skipped"]
    reason: str
    """One sentence: why it fits, why not (with what to change), or why the check was skipped."""
    parameters_billions: float | None = None
    bytes_per_parameter: float | None = None
    weights_gib: float | None = None
    kv_cache_gib: float | None = None
    overhead_gib: float | None = None
    per_gpu_need_gib: float | None = None
    per_gpu_available_gib: float | None = None
    gpus: int = 1
    gpu_memory_gib: float | None = None
    memory_fraction: float | None = None
    context_tokens: int | None = None
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for `llmserve fit -o json`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def bytes_per_parameter(quantization: Quantization, gguf_file: str | None) -> float | None:
    """Bytes per weight for a quantization (for gguf: from the file's tag), or None if unknown."""
    if quantization == "gguf":
        tag = gguf_tag(gguf_file)
        return GGUF_BYTES_PER_PARAMETER[tag] if tag else None
    return BYTES_PER_PARAMETER[quantization]


def _need_per_gpu(params: float, bpp: float, gpus: int, context: int) -> tuple[float, ...]:
    """(weights, kv, overhead, need per GPU) in GiB."""
    weights = params * 1e9 * bpp / GIB
    kv = kv_bytes_per_token(params) * context / GIB
    overhead = weights * ACTIVATION_SHARE + RUNTIME_OVERHEAD_GIB * max(gpus, 1)
    per_gpu = (weights + kv + overhead) / max(gpus, 1)
    return weights, kv, overhead, per_gpu


def check(fit: FitInput) -> FitReport:
    """Estimate the memory need of one replica and compare it with the GPUs it gets."""
    if fit.gpus == 0:
        return FitReport("skipped", "runs on CPU (gpus: 0): no GPU memory to check", gpus=0)
    bpp = bytes_per_parameter(fit.quantization, fit.gguf_file)
    missing = []
    if fit.parameters_billions is None:
        missing.append("parameter count unknown (set spec.model.parametersBillions)")
    if fit.gpu_memory_gib is None:
        missing.append("GPU memory unknown (set spec.gpuMemoryGiB)")
    if bpp is None:
        missing.append("GGUF quant type unknown (name it in spec.model.file, e.g. '*-Q4_K_M.gguf')")
    if fit.parameters_billions is None or fit.gpu_memory_gib is None or bpp is None:
        return FitReport("skipped", "VRAM fit check skipped: " + "; ".join(missing), gpus=fit.gpus)
    params, memory = fit.parameters_billions, fit.gpu_memory_gib
    context = fit.max_model_len or DEFAULT_CONTEXT_TOKENS
    weights, kv, overhead, need = _need_per_gpu(params, bpp, fit.gpus, context)
    have = memory * FACTS[fit.engine].memory_fraction
    notes = [f"parameters: {params:g}B from {fit.parameters_source}"]
    if fit.max_model_len is None:
        notes.append(
            f"KV cache reserved for {DEFAULT_CONTEXT_TOKENS} tokens; the engine uses the model's "
            "own context length, so set spec.maxModelLen to check that one"
        )
    fits = need <= have
    reason = f"needs ~{need:.0f} GiB per GPU, have {have:.0f} GiB"
    if not fits:
        reason += ": " + _suggest(fit, params, bpp, context, have)
    return FitReport(
        "fits" if fits else "does-not-fit",
        reason,
        parameters_billions=params,
        bytes_per_parameter=bpp,
        weights_gib=round(weights, 1),
        kv_cache_gib=round(kv, 1),
        overhead_gib=round(overhead, 1),
        per_gpu_need_gib=round(need, 1),
        per_gpu_available_gib=round(have, 1),
        gpus=fit.gpus,
        gpu_memory_gib=memory,
        memory_fraction=FACTS[fit.engine].memory_fraction,
        context_tokens=context,
        notes=tuple(notes),
    )


_TENSOR_PARALLEL_SIZES: Final = tuple(n for n in TENSOR_PARALLEL_SIZES if n <= NODE_GPUS)
"""GPU counts to suggest: tensor-parallel sizes that fit one common node."""
_SMALLER_FIRST: Final[tuple[Quantization, ...]] = ("fp8", "awq", "gptq", "bitsandbytes")
"""Quantizations to suggest, the least lossy first."""


def _suggest(fit: FitInput, params: float, bpp: float, context: int, have: float) -> str:
    """What would make it fit: more GPUs, and/or a smaller quantization the engine can load."""
    options = []
    for gpus in _TENSOR_PARALLEL_SIZES:
        if gpus > fit.gpus and _need_per_gpu(params, bpp, gpus, context)[3] <= have:
            options.append(f"gpus: {gpus}")
            break
    supported = FACTS[fit.engine].quantizations
    for quant in _SMALLER_FIRST:
        smaller = BYTES_PER_PARAMETER[quant] < bpp and quant in supported
        if (
            smaller
            and _need_per_gpu(params, BYTES_PER_PARAMETER[quant], fit.gpus, context)[3] <= have
        ):
            options.append(f"quantization: {quant}")
            break
    if fit.quantization == "gguf" and bpp > GGUF_BYTES_PER_PARAMETER["Q4_K_M"]:
        options.append("a smaller GGUF file (e.g. Q4_K_M)")
    shorter = _need_per_gpu(params, bpp, fit.gpus, DEFAULT_CONTEXT_TOKENS)[3]
    if context > DEFAULT_CONTEXT_TOKENS and shorter <= have:
        options.append(f"maxModelLen: {DEFAULT_CONTEXT_TOKENS}")
    if not options:
        return "use a GPU with more memory or a smaller model"
    return "use " + " or ".join(options)


def input_for(spec: LLMServiceSpec, default_gpu_memory_gib: float | None) -> FitInput:
    """The fit check's input for a spec; GPU memory from the spec, else the operator's default."""
    params, source = spec.model.parameters_billions, "spec.model.parametersBillions"
    if params is None:
        params, source = (
            infer_parameters_billions(spec.model.name),
            f"the repo id {spec.model.name}",
        )
    return FitInput(
        engine=spec.engine,
        quantization=spec.quant,
        gpus=spec.gpus,
        parameters_billions=params,
        parameters_source=source,
        gpu_memory_gib=spec.gpu_memory_gib or default_gpu_memory_gib,
        max_model_len=spec.max_model_len,
        gguf_file=spec.model.file,
    )
