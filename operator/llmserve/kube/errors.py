"""Domain errors with kopf's retry vocabulary: temporary ones are retried with a delay."""

from __future__ import annotations

import kopf


class KubeApiError(kopf.TemporaryError):
    """The API server failed (409, 429, 5xx, connection): retry after `delay` seconds."""


class RejectedChild(kopf.PermanentError):
    """The API server refused a rendered child (422, 403): a bug or a cluster policy; no retry."""
