"""`llmserve fetch-model`: download a Hugging Face model repo into the model cache.

The download Job runs it (render/cache.py `fetch_args`). It writes the standard Hugging Face cache
layout under `--hf-home` (`hub/models--ORG--NAME/{blobs,snapshots,refs}`) through huggingface_hub
itself, so engines started with the same HF_HOME and HF_HUB_OFFLINE=1 find the files. Modules:
`download` (plan and run), `resume` (large files continue across restarts), `progress` (log lines),
`link` (the GGUF path for llama.cpp and Ollama), `errors` (one clear line per failure).

Nothing here is imported by the rest of llmserve: huggingface_hub reads HF_HOME when it is first
imported, so the command sets HF_HOME before importing `llmserve.fetch.download`.
"""
