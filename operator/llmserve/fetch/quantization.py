"""Whether the weights are what spec.quantization says, read from the repo's config.json.

A pre-quantized checkpoint names its format in `config.json` (`quantization_config.quant_method`).
spec.quantization sizes the fit check and, on TGI and SGLang, becomes a flag; vLLM reads the
checkpoint's own format for awq and gptq. So a spec that names a format the weights do not have
fails late: BF16 weights labelled awq load as BF16 on vLLM and run out of memory (the fit check
counted 0.5 bytes per parameter, not 2), and the other engines refuse to start. fetch-model checks
it once config.json is in the cache, before the weights, and fails the Job naming the field.

`none` is never checked (every engine reads a pre-quantized checkpoint's format itself, and the
fit check then errs on the safe side), nor is gguf (the file is the format).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from llmserve.fetch.errors import FetchError

CONFIG: Final = "config.json"
FIELD: Final = "spec.quantization"

ACCEPTED: Final = MappingProxyType[str, frozenset[str | None]](
    {
        "awq": frozenset({"awq"}),
        "gptq": frozenset({"gptq"}),
        # Quantized at load from BF16 weights, or already in that format.
        "fp8": frozenset({None, "fp8"}),
        "bitsandbytes": frozenset({None, "bitsandbytes"}),
    }
)
"""The `quant_method`s (None: not quantized) that each checked spec.quantization can load."""
LEGACY_FILES: Final = ("quantize_config.json", "quant_config.json")
"""Where AutoGPTQ and AutoAWQ wrote the format before config.json had quantization_config."""


def method(config: Mapping[str, object]) -> str | None:
    """The checkpoint's `quant_method` (lowercase), or None for unquantized weights."""
    quantization = config.get("quantization_config")
    if not isinstance(quantization, Mapping):
        return None
    found = quantization.get("quant_method")
    return found.lower() if isinstance(found, str) else None


def check(config: Path, expected: str, files: Collection[str], where: str) -> None:
    """Raise `FetchError` when the weights `config` describes are not `expected`.

    `files` are the repo's paths (a legacy quantize_config.json vouches for awq and gptq);
    `where` names the repo and revision in the message.
    """
    accepted = ACCEPTED.get(expected)
    if accepted is None:
        return
    try:
        loaded = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FetchError(
            f"cannot read {CONFIG} of {where} to check {FIELD} ({error}); "
            f"set {FIELD}: none to skip the check"
        ) from None
    found = method(loaded) if isinstance(loaded, Mapping) else None
    if found in accepted or (found is None and any(f in files for f in LEGACY_FILES)):
        return
    if found is None:
        raise FetchError(
            f"{where} holds unquantized weights ({CONFIG} has no quantization_config) but "
            f"{FIELD} is {expected}, which would size the fit check at a fraction of their "
            f"memory; set {FIELD}: none (and enough GPUs), or pick a repo with {expected} weights"
        )
    fix = f"{FIELD}: {found}" if found in ACCEPTED else f"{FIELD}: none (the engine reads it)"
    raise FetchError(
        f"{where} holds {found} weights ({CONFIG} quantization_config.quant_method) but {FIELD} "
        f"is {expected}; set {fix}, or pick a repo with {expected} weights"
    )
