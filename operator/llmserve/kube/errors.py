"""Domain errors of API calls: temporary ones are retried, refusals are reported."""

from __future__ import annotations


class KubeApiError(Exception):
    """The API server failed (409, 429, 5xx, connection): worth retrying after a back-off."""


class RejectedChildError(Exception):
    """The API server refused a rendered child (422, 403): a bug or a cluster policy.

    Retrying the same request cannot help; the next change to the LLMService or its children does.
    """
