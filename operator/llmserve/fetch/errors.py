"""Failures of `llmserve fetch-model` as one line each, naming the LLMService field to fix.

The download Job's log is what a user reads when `ModelCached` is False, so every failure we can
foresee becomes a `FetchError` whose message says what happened and which field to change; the
command prints it and exits 1 without a traceback. Unforeseen exceptions still propagate. The same
line is the container's termination message (`terminate`), which `kubectl describe` and the pod's
status show without the log.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

AUTH_FIELD = "spec.model.tokenSecretRef"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TERMINATION_MESSAGE_BYTES = 4096
"""What Kubernetes keeps of a termination message."""


class FetchError(Exception):
    """A download failure explained in one line (what happened, what to change)."""


@dataclass(frozen=True)
class Where:
    """What the messages name: the repo, the revision, the endpoint and whether a token was sent."""

    repo: str
    revision: str
    endpoint: str
    token: bool
    cache: str


def is_transient(error: BaseException) -> bool:
    """Worth another try: the network, a timeout, or the Hub's 429 and 5xx answers."""
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return error.response.status_code in RETRY_STATUSES
    if isinstance(error, LocalEntryNotFoundError):  # huggingface_hub's wrapper of a failed HEAD
        return error.__cause__ is not None and is_transient(error.__cause__)
    return isinstance(error, httpx2.TransportError)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _http(error: HfHubHTTPError, at: Where) -> str:
    status = error.response.status_code if error.response is not None else 0
    if status == 401:
        return (
            f"the Hub refused the token in HF_TOKEN for {at.repo} (invalid or expired); "
            f"check the Secret named by {AUTH_FIELD}"
        )
    if status == 403:
        return (
            f"access to {at.repo} is forbidden with the token in HF_TOKEN ({_first_line(error)}); "
            f"give the token read access, see {AUTH_FIELD}"
        )
    if status in RETRY_STATUSES:
        return (
            f"{at.endpoint} answered {status} for {at.repo} after retries; the Job will try again"
        )
    return f"request to {at.endpoint} for {at.repo} failed: {_first_line(error)}"


def _os(error: OSError, at: Where) -> str:
    if error.errno in {errno.ENOSPC, errno.EDQUOT}:
        return f"disk full: no space left in {at.cache} for {at.repo}; increase spec.cache.size"
    if error.errno in {errno.EACCES, errno.EPERM, errno.EROFS}:
        return (
            f"cannot write to the cache {at.cache}: {error.strerror} ({error.filename}); "
            "the cache volume must be writable by the Job (fsGroup)"
        )
    if "Consistency check failed" in str(error):
        return f"download of {at.repo} was cut short after retries ({_first_line(error)})"
    return f"cannot write to the cache {at.cache}: {_first_line(error)}"


def explain(error: BaseException, at: Where) -> str | None:
    """The one-line message for a failure we foresee, else None."""
    message: str | None = None
    if isinstance(error, OfflineModeIsEnabled):
        message = "HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it for fetch-model"
    elif isinstance(error, GatedRepoError):
        message = (
            f"{at.repo} is a gated repo and the token in HF_TOKEN has not been granted access; "
            f"accept its terms on the model page with the token's account, see {AUTH_FIELD}"
            if at.token
            else f"{at.repo} is a gated repo: set {AUTH_FIELD} to a Secret with a Hugging Face "
            "token of an account that has accepted its terms"
        )
    elif isinstance(error, RevisionNotFoundError):
        message = (
            f"revision {at.revision!r} not found in {at.repo}; check spec.model.revision "
            "(a branch, tag or commit of the repo)"
        )
    elif isinstance(error, RepositoryNotFoundError):
        message = f"model repo {at.repo} not found on {at.endpoint}; check spec.model.name" + (
            "" if at.token else f" (a private repo also needs {AUTH_FIELD})"
        )
    elif isinstance(error, HfHubHTTPError):
        message = _http(error, at)
    elif isinstance(error, HFValidationError):
        message = f"{at.repo!r} is not a Hugging Face repo id (ORG/NAME); check spec.model.name"
    elif isinstance(error, httpx2.TransportError | LocalEntryNotFoundError):
        message = (
            f"cannot download {at.repo} from {at.endpoint}: network error after retries "
            f"({_first_line(error.__cause__ or error)}); check the cluster's egress or HF_ENDPOINT"
        )
    elif isinstance(error, OSError):
        message = _os(error, at)
    return message


@contextmanager
def explained(at: Where) -> Iterator[None]:
    """Turn foreseen failures inside the block into `FetchError`s with their one-line message."""
    try:
        yield
    except FetchError:
        raise
    except Exception as error:  # each foreseen kind is named in `explain`; others re-raise as is
        message = explain(error, at)
        if message is None:
            raise
        raise FetchError(message) from None


def terminate(path: Path, line: str) -> None:
    """Write `line` as the container's termination message.

    Kubernetes reads it at `path`, the container's terminationMessagePath. Best effort: the line
    is in the log already.
    """
    with contextlib.suppress(OSError):
        path.write_bytes(line.encode()[:TERMINATION_MESSAGE_BYTES])
