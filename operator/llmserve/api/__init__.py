"""The LLMService API: pydantic models, defaults, validation rules, the VRAM fit check and the CRD.

Pure data and computation: no I/O, no Kubernetes client, no HTTP client. Everything else in llmserve
depends on this package; it depends on nothing of llmserve's.
"""

from llmserve.api.errors import InvalidSpec, Problem
from llmserve.api.models import (
    ENGINES,
    GGUF_ENGINES,
    QUANTIZATIONS,
    Engine,
    LLMService,
    LLMServiceSpec,
    LLMServiceStatus,
    Quantization,
)
from llmserve.api.parse import parse_llmservice, parse_many

__all__ = [
    "ENGINES",
    "GGUF_ENGINES",
    "QUANTIZATIONS",
    "Engine",
    "InvalidSpec",
    "LLMService",
    "LLMServiceSpec",
    "LLMServiceStatus",
    "Problem",
    "Quantization",
    "parse_llmservice",
    "parse_many",
]
