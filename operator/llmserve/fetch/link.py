"""`--link PATH`: a fixed path (the renderer's /models/model.gguf) to the downloaded GGUF file.

One GGUF file: PATH is a relative symlink to it in the snapshot.

A split GGUF (`<prefix>-00001-of-00003.gguf`, `-00002-of-00003`, ...): llama.cpp finds the other
parts by name only. From the path it is given it derives the other parts' names in the same
directory, and refuses a path that does not end in `-NNNNN-of-NNNNN.gguf` ("invalid split file
name"); it does not resolve symlinks first. So every part is linked next to PATH under PATH's stem,
`model-00001-of-00003.gguf`, `model-00002-of-00003.gguf`, ..., and PATH links to the first of those.
An engine given `model-00001-of-00003.gguf` finds its siblings, and `readlink PATH` names it. PATH's
stem (rather than each part's own name) keeps the names predictable from PATH and the part count,
and a later download for another model replaces these links instead of adding more next to them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from llmserve.fetch.errors import FetchError

SPLIT = re.compile(r"(?P<prefix>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf")


def choose(files: Sequence[str], include: Sequence[str]) -> list[str]:
    """The repo files to link: one GGUF file, or every part of one split GGUF in order.

    The first GGUF file in sorted order decides; when it is a part of a split file, every part
    must be among `files`, or the engine would fail to load it.
    """
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    if not ggufs:
        patterns = ", ".join(include) or "(all files)"
        raise FetchError(
            f"--link needs a GGUF file, but none of the files matching {patterns} is one; "
            "check spec.model.file"
        )
    split = SPLIT.fullmatch(ggufs[0])
    if split is None:
        return [ggufs[0]]
    prefix, count = split["prefix"], int(split["count"])
    parts = [f"{prefix}-{index:05d}-of-{count:05d}.gguf" for index in range(1, count + 1)]
    missing = [part for part in parts if part not in ggufs]
    if missing:
        name = prefix.rsplit("/", 1)[-1]
        raise FetchError(
            f"{ggufs[0]} is a split GGUF of {count} parts but {missing[0]} does not match "
            f"spec.model.file; match every part, e.g. '{name}-*-of-{count:05d}.gguf'"
        )
    return parts


def _symlink(target: Path, name: Path) -> None:
    """`name` -> `target`, relative (the volume may be mounted elsewhere), replaced atomically."""
    temporary = name.with_name(f".{name.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(os.path.relpath(target, name.parent))
    temporary.replace(name)


def make(snapshot: Path, files: Sequence[str], path: Path) -> Path:
    """Link `path` (and, for a split file, each part) to `files` in `snapshot`.

    Returns the path an engine should open: `path` itself, or the first part's link.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if len(files) == 1:
            _symlink(snapshot / files[0], path)
            return path
        count = len(files)
        links = [
            path.with_name(f"{path.stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
        ]
        for link, file in zip(links, files, strict=True):
            _symlink(snapshot / file, link)
        _symlink(links[0], path)
        return links[0]
    except OSError as error:
        raise FetchError(f"cannot create the link {path}: {error.strerror or error}") from None
