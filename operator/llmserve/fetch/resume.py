"""Large files that continue where an earlier run stopped, and the lock that makes that safe.

huggingface_hub 2.x downloads every file to a fresh temporary name and deletes it when the download
fails (huggingface_hub#4306, to stay correct where file locks do not work): within one run it
resumes a cut connection with a Range request, but a Job pod that is killed or evicted starts each
large file again. So LFS files (the weights) that come over plain HTTP are first downloaded here,
into `blobs/<sha256>.partial`, which the next run continues with a Range request. When the file's
size and sha256 match the repo listing it is renamed to the blob name huggingface_hub itself uses
(the ETag from the same metadata call), and `hf_hub_download` then only adds the snapshot symlink.
Files the Hub serves through Xet are left to huggingface_hub: Xet has its own transfer and checks.

One fetch-model at a time writes a repo's cache (`exclusive`), so nobody else appends to a partial
file, and temporary files a killed run left behind can be removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from huggingface_hub import constants, get_hf_file_metadata
from huggingface_hub.file_download import http_get

# Public (huggingface_hub.utils.__all__ is built at run time, which mypy cannot see).
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from llmserve.fetch.errors import FetchError

PARTIAL_SUFFIX = ".partial"


def xet_enabled() -> bool:
    """Whether huggingface_hub will use Xet for files the Hub serves through it."""
    return not constants.HF_HUB_DISABLE_XET and importlib.util.find_spec("hf_xet") is not None


@contextmanager
def exclusive(lock: Path, out: TextIO) -> Iterator[None]:
    """Hold an exclusive lock on `lock` for the block, waiting (and saying so) if it is taken."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting: another fetch-model holds {lock}", file=out, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def remove_orphans(blobs: Path) -> None:
    """Delete huggingface_hub's temporary files that a killed run left (they are never reused)."""
    if blobs.is_dir():
        for leftover in blobs.glob("*.incomplete"):
            leftover.unlink(missing_ok=True)


def partial_size(blobs: Path, sha256: str) -> int:
    """Bytes of a file that an earlier run left in `blobs`."""
    partial = blobs / f"{sha256}{PARTIAL_SUFFIX}"
    return partial.stat().st_size if partial.is_file() else 0


def _same_origin(url: str, other: str) -> bool:
    first, second = urlsplit(url), urlsplit(other)
    return (first.scheme, first.netloc) == (second.scheme, second.netloc)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def stage(
    url: str,
    *,
    sha256: str,
    blobs: Path,
    headers: dict[str, str],
    tqdm_class: type[Any],
) -> None:
    """Download the LFS file at `url` (a `resolve` URL at a commit) into `blobs`, resumably.

    Does nothing when the file comes through Xet or its blob is already there; raises what
    huggingface_hub raises for HTTP and network errors.
    """
    # token=False: `headers` carry the token (or none); never one that huggingface_hub finds itself.
    meta = get_hf_file_metadata(url, token=False, headers=headers)
    if (meta.xet_file_data is not None and xet_enabled()) or meta.etag is None:
        return  # huggingface_hub downloads it (or explains why it cannot)
    blob = blobs / meta.etag
    if blob.exists():
        return
    get_headers = {**headers, "Accept-Encoding": "identity"}  # byte ranges of the file itself
    if not _same_origin(url, meta.location):
        # A signed CDN URL: the token is for the Hub only (huggingface_hub drops it the same way).
        get_headers = {k: v for k, v in get_headers.items() if k.lower() != "authorization"}
    partial = blobs / f"{sha256}{PARTIAL_SUFFIX}"
    blobs.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        have = partial.stat().st_size if partial.exists() else 0
        if meta.size is not None and have > meta.size:
            partial.unlink()
            have = 0
        with partial.open("ab") as handle:
            http_get(
                meta.location,
                handle,
                resume_size=have,
                headers=get_headers,
                expected_size=meta.size,
                displayed_filename=blob.name,
                tqdm_class=tqdm_class,
            )
        if _sha256(partial) == sha256:
            partial.replace(blob)
            return
        partial.unlink()  # corrupt (e.g. the file changed under a partial download): start over
    raise FetchError(
        f"{url} does not match the sha256 in the repo listing after two downloads; "
        "a proxy between the cluster and the Hub may be altering it"
    )


def hub_headers(token: str | None, library: str, version: str) -> dict[str, str]:
    """The headers huggingface_hub sends: user agent, and the token when there is one."""
    return build_hf_headers(token=token or False, library_name=library, library_version=version)
