"""llmserve: run open LLMs on Kubernetes GPU clusters from one small custom resource.

Public entry points are `llmserve.cli` (the `llmserve` command) and, later, `llmserve.main` (kopf).
Everything else is internal; see docs/ARCHITECTURE.md for the layers.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llmserve")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
