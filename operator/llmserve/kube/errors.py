"""Domain errors of API calls: temporary ones are retried, refusals are reported."""

from __future__ import annotations


class KubeApiError(Exception):
    """The API server failed (409, 429, 5xx, connection): worth retrying after a back-off."""


class RejectedChildError(Exception):
    """The API server refused a rendered child (400, 403, 422).

    A value only the API server checks, or a cluster policy; the message names the child and
    carries the API server's words. Retrying the same request cannot help, so the pass reports it
    (`Valid=False`, reason `ChildRejected`); the next change to the LLMService or its children runs
    it again.
    """
