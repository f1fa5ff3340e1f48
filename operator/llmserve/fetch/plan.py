"""What to fetch: the request (arguments and environment) and the plan the Hub's listing gives.

Two API calls: the model info resolves the revision to a commit, and the recursive tree of that
commit lists the files with their sizes and, for LFS files, sha256. `--include` globs select files
the way huggingface_hub's `allow_patterns` do (fnmatch on the path in the repo). Everything that can
be refused (arguments that are not a repo id, revision or file, a revision that does not exist, a
glob that matches nothing, a split GGUF missing parts) is refused here, before a byte is downloaded.
The arguments are checked against the formats the LLMService API enforces (`llmserve.api.shapes`):
they become paths in the cache, and the Job must never write outside it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile

# Public (huggingface_hub.utils.__all__ is built at run time, which mypy cannot see).
from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

from llmserve.api import shapes
from llmserve.fetch import link
from llmserve.fetch.errors import FetchError, is_transient
from llmserve.fetch.progress import INTERVAL_SECONDS

DEFAULT_ENDPOINT: Final = "https://huggingface.co"
RETRY_DELAYS: Final = (2.0, 10.0)
"""Waits before the second and third try of an API call or a file after a network error."""
SHOWN: Final = 5
"""GGUF files named when a glob matches nothing."""
COMMIT: Final = re.compile(r"[0-9a-f]{40}")
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
    quantization: str | None = None
    """spec.quantization, which the weights must match (`llmserve.fetch.quantization`)."""
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


def validate(request: Request) -> None:
    """Refuse arguments that the API would have refused, naming the LLMService field.

    The Job gets them from a validated spec; this is the second line for a hand-run command, an
    older operator, or a spec that dodged validation, since each becomes a path in the cache.
    """
    checks = (
        ([request.repo], shapes.REPO_ID, "--repo", "spec.model.name"),
        ([request.revision], shapes.REVISION, "--revision", "spec.model.revision"),
        (request.include, shapes.REPO_FILE, "--include", "spec.model.file"),
    )
    for values, shape, flag, spec_field in checks:
        for value in values:
            if not shape.matches(value):
                raise FetchError(f"{flag} {value!r} is not {shape.says}; check {spec_field}")
    for pattern in request.include:
        if shapes.climbs(pattern):
            raise FetchError(
                f"--include {pattern!r} climbs out of the repo with '..'; check spec.model.file"
            )


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
    if not info.sha or not COMMIT.fullmatch(info.sha):
        raise FetchError(f"{request.endpoint_url} gave no valid commit for {request.repo}")
    commit = info.sha
    entries = retrying(
        lambda: list(api.list_repo_tree(request.repo, revision=commit, recursive=True)),
        request.retry_delays,
    )
    files = {entry.path: entry for entry in entries if isinstance(entry, RepoFile)}
    outside = [path for path in files if path.startswith("/") or shapes.climbs(path)]
    if outside:  # the Hub's own paths become paths in the snapshot, and links to them
        raise FetchError(
            f"{request.endpoint_url} listed {outside[0]!r} in {request.repo}, a path outside the "
            "repo; check HF_ENDPOINT"
        )
    patterns = list(request.include) or None
    matched: list[str] = sorted(filter_repo_objects(list(files), allow_patterns=patterns))
    if not matched:
        raise _no_match(request, commit, list(files))
    linked = link.choose(matched, request.include) if request.link else []
    return Plan(commit, tuple(files[name] for name in matched), tuple(linked))
