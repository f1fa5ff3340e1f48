"""Download a Hugging Face model repo into the cache layout the engines read.

`HF_HOME/hub/models--ORG--NAME/{blobs,snapshots/<commit>,refs/<revision>}` is written by
huggingface_hub's own `hf_hub_download`, so vLLM, TGI and SGLang started with the same HF_HOME and
HF_HUB_OFFLINE=1 find every file. Every file is fetched at the commit the plan resolved (a branch
that moves meanwhile cannot mix two commits); `refs/<revision>` is written last, when the snapshot
is complete. Files already in the snapshot are skipped without a request, so a second run costs the
plan's two API calls. Files are fetched one at a time: the weights dominate, and Xet already
transfers each of them in parallel; config.json comes first, so that weights of another format than
spec.quantization says are refused before they are downloaded (`quantization`).

Nothing is written outside the repo's folder of the cache (and the `--link` path): the arguments
and the Hub's listing are checked first (`plan`), and the one path built from an argument alone,
`refs/<revision>`, is checked again before it is written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Final, TextIO

from huggingface_hub import HfApi, hf_hub_download, hf_hub_url
from huggingface_hub.hf_api import RepoFile

from llmserve import __version__
from llmserve.fetch import link, quantization, resume
from llmserve.fetch.errors import FetchError, Where, explained
from llmserve.fetch.plan import Plan, Request, plan, retrying, validate
from llmserve.fetch.progress import Progress, human_bytes, sink_class

__all__ = ["Request", "run"]

LIBRARY: Final = "llmserve"
"""Named in the User-Agent of every request."""


def _fetch_file(request: Request, commit: str, file: RepoFile, sink: type[Any]) -> None:
    token: str | bool = request.token or False  # never a token huggingface_hub finds on its own
    if file.lfs is not None:
        resume.stage(
            hf_hub_url(request.repo, file.path, revision=commit, endpoint=request.endpoint),
            sha256=file.lfs.sha256,
            blobs=request.storage / "blobs",
            headers=resume.hub_headers(request.token, LIBRARY, __version__),
            tqdm_class=sink,
        )
    hf_hub_download(
        request.repo,
        file.path,
        revision=commit,
        cache_dir=request.hub,
        endpoint=request.endpoint,
        token=token,
        library_name=LIBRARY,
        library_version=__version__,
        tqdm_class=sink,
    )


def _inside(folder: Path, path: Path) -> Path:
    """`path`, refused unless it stays inside `folder` once its `..` steps are taken.

    Lexically: a snapshot's files are symlinks into `blobs/` (huggingface_hub's layout), which is
    where they belong, so symlinks are not followed.
    """
    if not Path(os.path.normpath(path)).is_relative_to(os.path.normpath(folder)):
        raise FetchError(f"refusing to write or link {path}: it is outside {folder}")
    return path


def _write_ref(storage: Path, revision: str, commit: str) -> None:
    """`refs/<revision>` names the commit, as huggingface_hub writes it (atomically)."""
    ref = _inside(storage / "refs", storage / "refs" / revision)
    if revision == commit or (ref.is_file() and ref.read_text() == commit):
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    temporary = ref.with_name(f"{ref.name}.{os.getpid()}.tmp")
    temporary.write_text(commit)
    temporary.replace(ref)


def _check_room(request: Request, missing: list[RepoFile]) -> None:
    """Refuse at once what cannot fit, rather than after hours of downloading.

    Weights already in `blobs/` (another commit had the same file) and partial files count as there.
    """
    blobs = request.storage / "blobs"
    lfs = [f.lfs.sha256 for f in missing if f.lfs is not None]
    there = sum(resume.partial_size(blobs, sha) for sha in lfs)
    there += sum(f.size for f in missing if f.lfs is not None and (blobs / f.lfs.sha256).is_file())
    need, free = sum(f.size for f in missing) - there, shutil.disk_usage(request.hub).free
    if need > free:
        raise FetchError(
            f"disk full: {request.repo} needs {human_bytes(need)} more but {request.hf_home} has "
            f"{human_bytes(free)} free; increase spec.cache.size"
        )


def _fetch_all(request: Request, todo: Plan, out: TextIO) -> None:
    snapshot = request.storage / "snapshots" / todo.commit
    resume.remove_orphans(request.storage / "blobs")
    missing = [f for f in todo.files if not (snapshot / f.path).is_file()]
    todo_paths = {f.path for f in missing}
    total = sum(f.size for f in todo.files)
    progress = Progress(out, len(todo.files), total, request.progress_seconds)
    sink = sink_class(progress)

    def get(file: RepoFile) -> None:
        if file.path not in todo_paths:
            progress.cached(file.size)
            return

        def fetch() -> None:
            progress.start_file(file.size)
            _fetch_file(request, todo.commit, file, sink)

        retrying(fetch, request.retry_delays)
        progress.end_file()

    # config.json first, when it can tell that the weights are not what the spec says: before
    # the weights fill the disk, or the disk check asks for room they should never take.
    first = [f for f in todo.files if f.path == quantization.CONFIG and request.quantization]
    for file in first:
        get(file)
        where = f"{request.repo} at {request.revision}"
        names = {f.path for f in todo.files}
        quantization.check(snapshot / file.path, request.quantization or "", names, where)
    _check_room(request, [f for f in missing if f not in first])
    print(
        f"fetching {request.repo} at {request.revision} (commit {todo.commit[:12]}) from "
        f"{request.endpoint_url}: {len(todo.files)} files, {human_bytes(total)}, "
        f"{len(todo.files) - len(missing)} already cached",
        file=out,
        flush=True,
    )
    for file in todo.files:
        if file not in first:
            get(file)
    _write_ref(request.storage, request.revision, todo.commit)
    print(f"done: {request.repo} at {request.revision}: {progress.summary()}", file=out, flush=True)


def run(request: Request, out: TextIO) -> None:
    """Fetch the repo (idempotent), link the GGUF file if asked; raise `FetchError` on failure."""
    at = Where(
        request.repo,
        request.revision,
        request.endpoint_url,
        token=bool(request.token),
        cache=str(request.hf_home),
    )
    api = HfApi(
        endpoint=request.endpoint,
        token=request.token or False,
        library_name=LIBRARY,
        library_version=__version__,
    )
    with explained(at):
        validate(request)
        todo = plan(api, request)
        request.hub.mkdir(parents=True, exist_ok=True)
        lock = request.hub / ".locks" / request.storage.name / "llmserve-fetch.lock"
        with resume.exclusive(lock, out):
            _fetch_all(request, todo, out)
        if request.link is not None:
            snapshot = request.storage / "snapshots" / todo.commit
            opened = link.make(snapshot, todo.link_files, request.link)
            parts = (
                f", {len(todo.link_files)} parts: open {opened}" if opened != request.link else ""
            )
            print(f"linked {request.link} -> {todo.link_files[0]}{parts}", file=out, flush=True)
