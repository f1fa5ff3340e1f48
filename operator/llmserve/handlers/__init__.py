"""kopf decorators only: parse at the boundary, delegate to `llmserve.reconcile`, write status.

Importing this package registers the handlers (`llmserve.main` does so for `kopf run -m`).
"""

from llmserve.handlers import autoscaler, children, lifecycle, llmservice

__all__ = ["autoscaler", "children", "lifecycle", "llmservice"]
