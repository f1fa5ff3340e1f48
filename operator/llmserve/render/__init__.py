"""Pure builders: LLMService in, manifest dicts out. No I/O, clock, randomness or environment.

`render(service, config)` returns the children of docs/ARCHITECTURE.md §4 in apply order:
model-cache PVC and download Job (when the cache is enabled), the Deployment, the Service, the
NetworkPolicy. Same input, same output, byte for byte. Engine differences live in
`render.engines`, one module per engine. The Secret `<name>-api-keys` that the operator creates
for a proxy without `apiKeySecretRef` is not among them: it holds a random key, which the caller
draws and hands to `workload.api_keys_secret`.
"""

from llmserve.render.children import check, render, validate_engine_args

__all__ = ["check", "render", "validate_engine_args"]
