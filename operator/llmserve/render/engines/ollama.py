"""Ollama (`ollama serve`), configured by environment; a GGUF file becomes a named model."""

from __future__ import annotations

from typing import Final

from llmserve.render.engines.base import (
    CACHE_MOUNT,
    GGUF_PATH,
    LOOPBACK,
    EngineInputs,
    EngineProfile,
)

PORT: Final = 11434

# Ollama has no flag for a model file: the server starts, then the GGUF file the download Job cached
# becomes a model named as clients will ask for it (or, without a cache, is pulled from the Hub by
# quant tag). Values come from the environment, quoted, so no spec value is ever parsed as shell.
# The shell is the container's first process: it passes SIGTERM on to the server.
SCRIPT: Final = """\
ollama serve &
server=$!
trap 'kill -TERM "$server"' TERM INT
until ollama list >/dev/null 2>&1; do sleep 1; done
if [ -n "$LLMSERVE_GGUF_PATH" ]; then
  printf 'FROM %s\\n' "$LLMSERVE_GGUF_PATH" > "$HOME/Modelfile"
  ollama create "$LLMSERVE_SERVED_NAME" -f "$HOME/Modelfile"
else
  ollama pull "$LLMSERVE_HF_MODEL"
  ollama cp "$LLMSERVE_HF_MODEL" "$LLMSERVE_SERVED_NAME"
fi
wait "$server"
"""


def args(_: EngineInputs) -> list[str]:
    """The start script (see SCRIPT)."""
    return [SCRIPT]


def env(i: EngineInputs) -> dict[str, str]:
    """Ollama reads all its settings from the environment."""
    values = {
        "OLLAMA_HOST": f"{LOOPBACK}:{PORT}",
        "OLLAMA_MODELS": f"{CACHE_MOUNT}/ollama",
        "OLLAMA_KEEP_ALIVE": "-1",  # never unload the one model this server exists for
        "OLLAMA_NUM_PARALLEL": str(i.slots),
        "LLMSERVE_SERVED_NAME": i.served_name,
    }
    if i.max_model_len is not None:
        values["OLLAMA_CONTEXT_LENGTH"] = str(i.max_model_len)
    if i.cached:
        values["LLMSERVE_GGUF_PATH"] = GGUF_PATH
    else:
        values["LLMSERVE_HF_MODEL"] = f"hf.co/{i.repo}:{i.gguf_tag or 'latest'}"
    return values


PROFILE: Final = EngineProfile(
    engine="ollama",
    port=PORT,
    # `GET /` answers once the server is up, before the model exists; the exec probe below asks
    # for the model itself, so the pod turns ready only once the model was created.
    health_path="/",
    metrics_path=None,
    command=("/bin/sh", "-c"),
    args=args,
    env=env,
    probe=("/bin/sh", "-c", 'ollama show "$LLMSERVE_SERVED_NAME" >/dev/null'),
    startup_budget_seconds=1800,
    takes_args=False,
    env_example="OLLAMA_FLASH_ATTENTION=1",
)
