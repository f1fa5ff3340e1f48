"""What to fetch: the request (arguments and environment) and the plan the Hub's listing gives.

Two API calls: the model info resolves the revision to a commit, and the recursive tree of that
commit lists the files with their sizes and, for LFS files, sha256. `--include` globs select files
the way huggingface_hub's `allow_patterns` do (fnmatch on the path in the repo). Everything that can
be refused (a revision that does not exist, a glob that matches nothing, a split GGUF missing parts)
is refused here, before a byte is downloaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile

# Public (huggingface_hub.utils.__all__ is built at run time, which mypy cannot see).
from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

from llmserve.fetch import link
from llmserve.fetch.errors import FetchError, is_transient
from llmserve.fetch.progress import INTERVAL_SECONDS

DEFAULT_ENDPOINT: Final = "https://huggingface.co"
RETRY_DELAYS: Final = (2.0, 10.0)
"""Waits before the second and third try of an API call or a file after a network error."""
SHOWN: Final = 5
"""GGUF files named when a glob matches nothing."""
T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """What to fetch and where: the command's arguments and environment."""

    repo: str
    revision: str
    hf_home: Path
    include: tuple[str, ...] = ()
    link: Path | None = None
    token: str | None = field(default=None, repr=False)
    """From HF_TOKEN; sent as `Authorization: Bearer` and never printed."""
    endpoint: str | None = None
    """From HF_ENDPOINT; None means huggingface.co."""
    progress_seconds: float = INTERVAL_SECONDS
    retry_delays: tuple[float, ...] = RETRY_DELAYS

    @property
    def hub(self) -> Path:
        """`HF_HOME/hub`, where engines look (HF_HUB_CACHE's default)."""
        return self.hf_home / "hub"

    @property
    def endpoint_url(self) -> str:
        """The Hub's URL, for messages."""
        return self.endpoint or DEFAULT_ENDPOINT

    @property
    def storage(self) -> Path:
        """The repo's folder in the cache."""
        return self.hub / f"models--{self.repo.replace('/', '--')}"


@dataclass(frozen=True)
class Plan:
    """The commit the revision names now, the files to fetch, and the GGUF files to link."""

    commit: str
    files: tuple[RepoFile, ...]
    link_files: tuple[str, ...]


def retrying(call: Callable[[], T], delays: Sequence[float]) -> T:
    """`call()`, tried again after each delay while it fails with a transient error."""
    for delay in delays:
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
        time.sleep(delay)
    return call()


def _no_match(request: Request, commit: str, names: Sequence[str]) -> FetchError:
    ggufs = sorted(name for name in names if name.lower().endswith(".gguf"))
    shown = ", ".join(ggufs[:SHOWN]) + (f" ... ({len(ggufs)} in all)" if len(ggufs) > SHOWN else "")
    there = f"GGUF files there: {shown}" if ggufs else "the repo has no GGUF files"
    return FetchError(
        f"no file in {request.repo} at {request.revision} (commit {commit[:12]}) matches "
        f"{', '.join(request.include)}; check spec.model.file ({there})"
    )


def plan(api: HfApi, request: Request) -> Plan:
    """Resolve the revision and list the files to fetch (two API calls)."""
    info = retrying(
        lambda: api.model_info(request.repo, revision=request.revision), request.retry_delays
    )
    if not info.sha:
        raise FetchError(f"{request.endpoint_url} gave no commit for {request.repo}")
    commit = info.sha
    entries = retrying(
        lambda: list(api.list_repo_tree(request.repo, revision=commit, recursive=True)),
        request.retry_delays,
    )
    files = {entry.path: entry for entry in entries if isinstance(entry, RepoFile)}
    patterns = list(request.include) or None
    matched: list[str] = sorted(filter_repo_objects(list(files), allow_patterns=patterns))
    if not matched:
        raise _no_match(request, commit, list(files))
    linked = link.choose(matched, request.include) if request.link else []
    return Plan(commit, tuple(files[name] for name in matched), tuple(linked))
