"""kopf entry point: importing it registers every handler (`kopf run -m llmserve.main`)."""

from llmserve import handlers

__all__ = ["handlers"]
