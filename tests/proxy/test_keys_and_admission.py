"""Keys files and the admission queue, as pure units."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from llmserve.proxy import keys
from llmserve.proxy.admission import Admission, Limits, Refused


def test_a_keys_file_gives_names_and_ignores_comments_and_blank_lines() -> None:
    text = "# team keys\n\nalice:sk-a\nsk-b\n  bob : sk-c  \n"
    parsed = keys.parse(text, "keys")
    assert [(k.name, k.secret) for k in parsed] == [
        ("alice", b"sk-a"), ("key-2", b"sk-b"), ("bob", b"sk-c")
    ]  # fmt: skip
    assert keys.match(parsed, b"sk-c") == "bob"
    assert keys.match(parsed, b"sk-x") is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("alice:\n", "keys:1: expected `key` or `name:key`"),
        ("a:1\na:2\n", "keys:2: the name 'a' is used twice"),
        ("# nothing\n", "keys: no key in the file"),
    ],
)
def test_a_bad_keys_file_names_the_line(text: str, error: str) -> None:
    with pytest.raises(keys.KeysFileError, match=error):
        keys.parse(text, "keys")


def test_a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_keys(tmp_path: Path) -> None:
    path = tmp_path / "api-keys"
    path.write_text("old:sk-1\n")
    loaded = keys.Keys(path)
    path.write_text("new:sk-2\n")
    os.utime(path, (1, 1))
    loaded._checked = 0
    assert [k.name for k in loaded.current()] == ["new"]
    path.write_text("\n")
    os.utime(path, (2, 2))
    loaded._checked = 0
    assert [k.name for k in loaded.current()] == ["new"]
    assert loaded.error is not None
    assert "no key" in loaded.error


def test_admission_admits_queues_and_refuses_exactly() -> None:
    async def main() -> tuple[list[str], int]:
        admission = Admission(Limits(max_concurrency=2, max_queue=3, queue_timeout=5))
        release = asyncio.Event()
        order: list[str] = []

        async def request(name: str) -> str:
            try:
                async with admission.slot():
                    order.append(name)
                    await release.wait()
            except Refused as refused:
                return str(refused.status)
            return "ok"

        tasks = [asyncio.create_task(request(f"r{i}")) for i in range(8)]
        await asyncio.sleep(0.01)
        peak = admission.in_flight
        release.set()
        results = await asyncio.gather(*tasks)
        assert admission.in_flight == 0
        return [*results, *order], peak

    results, peak = asyncio.run(main())
    assert peak == 2
    assert results[:8] == ["ok"] * 5 + ["429"] * 3
    assert results[8:] == ["r0", "r1", "r2", "r3", "r4"]  # first come, first served


def test_a_wait_longer_than_the_queue_timeout_is_a_503() -> None:
    async def main() -> int:
        admission = Admission(Limits(max_concurrency=1, max_queue=1, queue_timeout=0.05))
        hold = asyncio.Event()

        async def holder() -> None:
            async with admission.slot():
                await hold.wait()

        task = asyncio.create_task(holder())
        await asyncio.sleep(0)
        try:
            async with admission.slot():
                return 200
        except Refused as refused:
            return refused.status
        finally:
            hold.set()
            await task

    assert asyncio.run(main()) == 503
