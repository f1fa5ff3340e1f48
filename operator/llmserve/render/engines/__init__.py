"""One module per engine, each a row of the render table: image-independent args, env, port, probes.

Adding an engine means adding a module with a `PROFILE` and a line here; nothing else branches on
the
engine name.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from llmserve.api.models import Engine
from llmserve.render.engines import llamacpp, ollama, sglang, tgi, vllm
from llmserve.render.engines.base import EngineInputs, EngineProfile

PROFILES: Final = MappingProxyType[Engine, EngineProfile](
    {
        p.engine: p
        for p in (vllm.PROFILE, tgi.PROFILE, sglang.PROFILE, llamacpp.PROFILE, ollama.PROFILE)
    }
)

__all__ = ["PROFILES", "EngineInputs", "EngineProfile"]
