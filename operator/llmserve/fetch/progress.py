"""Download progress as plain log lines: files and bytes done of the total, with a rate.

A Job's log is not a terminal, so there are no bars: at most one line per interval while bytes
arrive, and a summary at the end. huggingface_hub reports bytes through a tqdm-like class it
instantiates itself; `sink_class` builds one that feeds a `Progress` instead of drawing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Self, TextIO

INTERVAL_SECONDS = 5.0


def human_bytes(size: float) -> str:
    """Binary units, one decimal: `512 B`, `1.5 KiB`, `14.9 GiB`."""
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def human_seconds(seconds: float) -> str:
    """`0.4s`, `42s`, `3m05s`, `1h02m`."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Progress:
    """Counts files and bytes of one run and prints a line at most every `interval` seconds.

    `done` counts bytes present in the cache (including what earlier runs left), `fetched` only
    what this run transferred, so the rate is honest after a resume. Files are fetched one at a
    time; `start_file`/`end_file` make each file add exactly its listed size however the library
    reported it (a restarted transfer reports negative bytes, Xet reports reconstructed bytes).
    """

    def __init__(
        self,
        out: TextIO,
        files: int,
        size: int,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out, self._interval, self._clock = out, interval, clock
        self._lock = threading.Lock()  # the Xet transfer reports from its own threads
        self.files, self.size = files, size
        self.files_done = self.done = self.fetched = 0
        self.cached_files = self.cached_size = 0
        self._file_size = self._file_counted = 0
        self._started = self._last_at = clock()
        self._last_fetched = 0

    def cached(self, size: int) -> None:
        """A file already complete in the cache."""
        with self._lock:
            self.files_done += 1
            self.cached_files += 1
            self.done += size
            self.cached_size += size

    def start_file(self, size: int) -> None:
        """The next file to transfer (or the same again after a failed try), with its size."""
        with self._lock:
            self.done -= self._file_counted
            self._file_size, self._file_counted = size, 0

    def found(self, size: int) -> None:
        """Bytes of the current file that an earlier run left (a resumed download)."""
        with self._lock:
            self.done += size
            self._file_counted += size

    def advance(self, size: int) -> None:
        """Bytes of the current file written by this run; prints a line when one is due."""
        with self._lock:
            self.done += size
            self.fetched += size
            self._file_counted += size
            now = self._clock()
            if now - self._last_at >= self._interval:
                self._report(now)

    def end_file(self) -> None:
        """The current file is complete: count it with exactly its listed size."""
        with self._lock:
            self.done += self._file_size - self._file_counted
            self._file_size = self._file_counted = 0
            self.files_done += 1

    def _report(self, now: float) -> None:
        rate = (self.fetched - self._last_fetched) / max(now - self._last_at, 1e-9)
        self._last_at, self._last_fetched = now, self.fetched
        percent = 100 * self.done / self.size if self.size else 100.0
        line = (
            f"progress: {self.files_done}/{self.files} files, {human_bytes(self.done)} of "
            f"{human_bytes(self.size)} ({percent:.0f}%), {human_bytes(rate)}/s"
        )
        if rate > 0 and self.size > self.done:
            line += f", about {human_seconds((self.size - self.done) / rate)} left"
        print(line, file=self._out, flush=True)

    def summary(self) -> str:
        """The closing line's numbers: what was downloaded, how fast, what was already there."""
        elapsed = self._clock() - self._started
        total = f"{self.files} files, {human_bytes(self.size)}"
        if self.cached_files == self.files:
            return f"{total}, all already in the cache; nothing downloaded"
        rate = self.fetched / max(elapsed, 1e-9)
        line = (
            f"{total}; downloaded {human_bytes(self.fetched)} in {human_seconds(elapsed)} "
            f"({human_bytes(rate)}/s)"
        )
        if self.cached_files:
            line += f"; {self.cached_files} files ({human_bytes(self.cached_size)}) already cached"
        return line


def sink_class(progress: Progress) -> type[Any]:
    """A class with the parts of tqdm's interface huggingface_hub calls, feeding `progress`."""

    class Sink:
        def __init__(self, *_: object, initial: float = 0, **__: object) -> None:
            # `initial` is what a resumed transfer found on disk: present, but not fetched now.
            if initial:
                progress.found(int(initial))

        def __enter__(self) -> Self:
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def update(self, n: float | None = 1) -> None:
            progress.advance(int(n or 0))

        # Xet reports network bytes too; only bytes written to the cache count here. Having
        # `update_transfer` also makes huggingface_hub use one instance for both (no second bar).
        def update_transfer(self, _: float | None = 1) -> None:
            return None

        def set_postfix_str(self, *_: object, **__: object) -> None:
            return None

        set_transfer_postfix_str = set_description = set_description_str = set_postfix_str
        refresh = close = set_postfix_str

    return Sink
