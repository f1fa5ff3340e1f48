"""Facts about each serving engine that validation and the fit check need (ENGINES.md §1, §7, §8).

How an engine is rendered (image, flags, probes) lives in `llmserve.render.engines`; this module
holds
only what the API layer must know to accept or reject a spec. One row per engine, no if-chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from llmserve.api.models import (
    ENGINES,
    GGUF_ENGINES,
    MAX_GPUS,
    QUANTIZATIONS,
    CelRule,
    Engine,
    Quantization,
)

TENSOR_PARALLEL_SIZES: Final = (1, 2, 4, 8, MAX_GPUS)
NODE_GPUS: Final = 8
"""GPUs of a common GPU node (HGX/DGX): the default of the operator's maxGpusPerReplica, and the
most GPUs the fit check suggests."""
"""GPU counts a tensor-parallel engine accepts: the tensor-parallel size must divide the model's
attention heads (and KV heads), which are a power of two, or a multiple of 8, for nearly every
model; 1, 2, 4, 8 and 16 divide them all, where 3, 5 or 6 divide almost none."""


@dataclass(frozen=True)
class EngineFacts:
    """What one engine's current release accepts."""

    quantizations: frozenset[Quantization]
    """Neutral quantizations the engine can load (ENGINES.md §7)."""
    min_gpus: int
    """Fewest GPUs per replica; 0 means the engine also runs on CPU."""
    memory_fraction: float
    """Share of each GPU's memory the engine may use for weights and KV cache (rendered where the
    engine has a flag for it, so the fit check and the engine agree)."""
    batch_size: int
    """Requests the engine runs at once by default; the proxy's and autoscaler's default
    capacity."""
    unsupported_hint: str = ""
    """What to use instead of a quantization this engine dropped; part of the validation message."""
    tensor_parallel: bool = True
    """The GPU count is the engine's tensor-parallel size (one of TENSOR_PARALLEL_SIZES); False
    for llama.cpp and Ollama, which spread layers over any number of GPUs."""


_TRANSFORMER_QUANTS: Final = frozenset[Quantization]({"none", "awq", "gptq", "fp8"})

FACTS: Final = MappingProxyType[Engine, EngineFacts](
    {
        # vLLM 0.33: bitsandbytes left QUANTIZATION_METHODS in 0.30, gguf in 0.25. We render
        # --gpu-memory-utilization 0.9 (the default is 0.92 since 0.20) so the fit check is exact.
        # max_num_seqs defaults to 256 on A100 and GPUs under 70 GiB (arg_utils get_batch_defaults).
        "vllm": EngineFacts(
            quantizations=_TRANSFORMER_QUANTS,
            min_gpus=1,
            memory_fraction=0.9,
            batch_size=256,
            unsupported_hint="vLLM dropped it in 0.30; use quantization: awq or fp8, "
            "or engine: sglang",
        ),
        # TGI: --cuda-memory-fraction defaults to 1.0; --max-concurrent-requests defaults to 128.
        "tgi": EngineFacts(
            quantizations=_TRANSFORMER_QUANTS | {"bitsandbytes"},
            min_gpus=1,
            memory_fraction=1.0,
            batch_size=128,
        ),
        # SGLang: we render --mem-fraction-static 0.85 (its automatic choice is close to that on
        # 80 GiB GPUs) so the fit check and the engine agree.
        "sglang": EngineFacts(
            quantizations=_TRANSFORMER_QUANTS | {"bitsandbytes"},
            min_gpus=1,
            memory_fraction=0.85,
            batch_size=256,
        ),
        # llama.cpp and Ollama take the whole GPU; the quantization is the GGUF file's. We render 4
        # parallel slots for both (llama.cpp defaults to 1 slot, Ollama to OLLAMA_NUM_PARALLEL=1).
        "llamacpp": EngineFacts(
            quantizations=frozenset({"gguf"}),
            min_gpus=0,
            memory_fraction=1.0,
            batch_size=4,
            tensor_parallel=False,
        ),
        "ollama": EngineFacts(
            quantizations=frozenset({"gguf"}),
            min_gpus=0,
            memory_fraction=1.0,
            batch_size=4,
            tensor_parallel=False,
        ),
    }
)


def dropped_quantization_rules() -> tuple[CelRule, ...]:
    """CEL rules rejecting quantizations an engine's current release cannot load.

    gguf pairs are covered by their own rules (with a message that suggests the GGUF engines), so
    these rules cover the rest: e.g. bitsandbytes on vLLM.
    """
    rules = []
    for engine in ENGINES:
        if engine in GGUF_ENGINES:
            continue
        dropped = [q for q in QUANTIZATIONS if q != "gguf" and q not in FACTS[engine].quantizations]
        if not dropped:
            continue
        names = ", ".join(f"'{q}'" for q in dropped)
        rules.append(
            CelRule(
                rule=f"!(self.engine == '{engine}' && has(self.quantization) "
                f"&& self.quantization in [{names}])",
                message=f"{' and '.join(dropped)} cannot be loaded by engine {engine}; "
                f"{FACTS[engine].unsupported_hint}",
                field_path=".quantization",
            )
        )
    return tuple(rules)


def tensor_parallel_rule() -> CelRule:
    """The CEL rule holding the GPU count of tensor-parallel engines to TENSOR_PARALLEL_SIZES.

    0 passes here: the rule on spec.gpus' minimum already names that mistake, once.
    """
    engines = [engine for engine in ENGINES if FACTS[engine].tensor_parallel]
    sizes = [str(size) for size in TENSOR_PARALLEL_SIZES]
    return CelRule(
        rule=f"!(self.engine in [{', '.join(repr(e) for e in engines)}]) "
        f"|| self.gpus in [0, {', '.join(sizes)}]",
        message=f"must be {', '.join(sizes[:-1])} or {sizes[-1]} for engines "
        f"{', '.join(engines[:-1])} and {engines[-1]}: the GPU count is their tensor-parallel "
        "size, which must divide the model's attention heads; set gpus to one of these",
        field_path=".gpus",
    )
