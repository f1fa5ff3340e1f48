"""Progress as plain log lines: at most one per interval, bytes and files of the total, a rate."""

from __future__ import annotations

import io

import pytest

from llmserve.fetch.progress import Progress, human_bytes, human_seconds, sink_class

GIB = 1024**3


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_at_most_every_interval_with_files_bytes_rate_and_time_left():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, files=3, size=4 * GIB, interval=5, clock=clock)
    progress.cached(GIB)
    progress.start_file(3 * GIB)
    for _ in range(10):  # 100 MiB a second for 10 seconds, reported twice
        clock.now += 1
        progress.advance(100 * 1024**2)
    assert out.getvalue().splitlines() == [
        "progress: 1/3 files, 1.5 GiB of 4.0 GiB (37%), 100.0 MiB/s, about 26s left",
        "progress: 1/3 files, 2.0 GiB of 4.0 GiB (49%), 100.0 MiB/s, about 21s left",
    ]


def test_a_file_counts_exactly_its_size_however_the_library_reported_it():
    progress = Progress(io.StringIO(), files=1, size=1000, clock=Clock())
    progress.start_file(1000)
    progress.advance(600)
    progress.start_file(1000)  # a retry of the same file: its earlier bytes no longer count
    assert progress.done == 0
    sink = sink_class(progress)(total=1000, initial=300, desc="x", unit="B")
    with sink:
        sink.update(800)  # e.g. a server that ignored the Range header sends everything again
        sink.update(-300)
        sink.update_transfer(999)  # network bytes are not cache bytes
        sink.set_postfix_str("1 MB/s")
    sink.close()
    progress.end_file()
    assert (progress.files_done, progress.done, progress.fetched) == (1, 1000, 1100)


def test_the_summary_says_what_was_downloaded_and_what_was_there():
    clock = Clock()
    progress = Progress(io.StringIO(), files=3, size=3 * GIB, clock=clock)
    progress.cached(GIB)
    progress.start_file(2 * GIB)
    progress.found(GIB // 2)
    progress.advance(3 * GIB // 2)
    progress.end_file()
    clock.now += 150
    assert progress.summary() == (
        "3 files, 3.0 GiB; downloaded 1.5 GiB in 2m30s (10.2 MiB/s); "
        "1 files (1.0 GiB) already cached"
    )
    everything_cached = Progress(io.StringIO(), files=1, size=10, clock=clock)
    everything_cached.cached(10)
    assert (
        everything_cached.summary() == "1 files, 10 B, all already in the cache; nothing downloaded"
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (15 * GIB, "15.0 GiB"),
        (3 * 1024**5, "3072.0 TiB"),
    ],
)
def test_human_bytes(size, text):
    assert human_bytes(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.42, "0.4s"), (42, "42s"), (185, "3m05s"), (3720, "1h02m")]
)
def test_human_seconds(seconds, text):
    assert human_seconds(seconds) == text
