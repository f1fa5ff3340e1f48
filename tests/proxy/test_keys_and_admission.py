"""Keys files and the admission queue, as pure units."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from llmserve.proxy import keys
from llmserve.proxy.admission import Admission, Limits, Refused


def names(parsed: dict[bytes, str]) -> list[str]:
    return sorted(parsed.values())


def test_a_keys_file_gives_names_and_ignores_comments_and_blank_lines() -> None:
    text = b"# team keys\n\nalice:sk-a\r\n  bob:sk-c  \n"
    parsed = keys.parse(text, "keys")
    assert names(parsed) == ["alice", "bob"]
    assert parsed[keys.digest(b"sk-c")] == "bob"
    assert keys.digest(b"sk-x") not in parsed
    assert all(len(held) == 32 for held in parsed)  # sha256 digests, not the keys
    assert keys.parse(b"# nobody\n\n", "keys") == {}  # no key: nobody is accepted


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (b"sk-raw-key\n", "keys:1: expected `name:key`"),
        (b"a:1\nsk-raw:with:colons\n", "keys:2: the key of 'sk-raw' is empty or has a character"),
        (b"alice:\n", "keys:1: the key of 'alice' is empty"),
        (b"bob : sk-c\n", "keys:1: expected `name:key`"),
        (b"bob:sk c\n", "keys:1: the key of 'bob'"),
        (b"na\xefve:sk-1\n", "keys: not UTF-8 text"),
        (b"n\xc3\xa4me:sk-1\n", "keys:1: expected `name:key`"),
        (b"%s:sk-1\n" % (b"n" * 65), "keys:1: expected `name:key`"),
        (b"a:1\na:2\n", "keys:2: the name 'a' is also on line 1"),
        (b"a:sk-1\nb:sk-1\n", "keys:2: the key of 'b' is also the key of 'a'"),
    ],
)
def test_a_malformed_or_ambiguous_line_is_refused_by_its_number(text: bytes, error: str) -> None:
    with pytest.raises(keys.KeysFileError, match=error) as refused:
        keys.parse(text, "keys")
    assert "sk-raw-key" not in str(refused.value)  # a bad line may be a key: never quoted
    assert "with:colons" not in str(refused.value)


def reload(loaded: keys.Keys, path: Path, text: str | None) -> None:
    """Replace (or delete) the file and let the next look see it."""
    if text is None:
        path.unlink()
    else:
        staged = path.with_suffix(".new")
        staged.write_text(text)
        staged.replace(path)
    loaded._checked = 0


def test_reloads_fail_closed_and_every_failed_one_is_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "api-keys"
    path.write_text("old:sk-1\n")
    loaded = keys.Keys(path)
    assert loaded.name_of(b"sk-1") == "old"
    reload(loaded, path, "new:sk-2\n")
    assert loaded.name_of(b"sk-1") is None
    assert loaded.name_of(b"sk-2") == "new"
    reload(loaded, path, "carol:sk-3\nsk-typo\n")  # malformed: the keys in force stay
    assert loaded.name_of(b"sk-2") == "new"
    assert loaded.name_of(b"sk-3") is None
    reload(loaded, path, None)  # unreadable: the keys in force stay
    assert loaded.name_of(b"sk-2") == "new"
    loaded._checked = 0
    assert loaded.name_of(b"sk-2") == "new"  # still missing: tried once, not at every look
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == loaded.reload_errors == 2
    assert f"{path}:2:" in errors[0]
    assert f"{path}: cannot be read" in errors[1]
    stamp = loaded.loaded_at
    reload(loaded, path, "# revoked, all of them\n")  # empty: nobody, at once
    assert loaded.name_of(b"sk-2") is None
    assert loaded.current() == {}
    assert loaded.loaded_at >= stamp


def test_a_keys_file_every_user_may_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "api-keys"
    path.write_text("a:sk-1\n")
    path.chmod(0o440)
    keys.Keys(path)
    assert "readable by every user" not in caplog.text
    path.chmod(0o644)
    keys.Keys(path)
    assert "readable by every user" in caplog.text
    assert "defaultMode 0440" in caplog.text


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


def test_a_waiter_that_leaves_frees_its_place_and_a_slot_handed_to_it_passes_on() -> None:
    async def main() -> list[str]:
        admission = Admission(Limits(max_concurrency=1, max_queue=2, queue_timeout=60))
        await admission.acquire()  # the one slot, held
        leaving = asyncio.create_task(admission.acquire())
        staying = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        assert admission.queued == 2
        leaving.cancel()  # the client left while queued
        await asyncio.gather(leaving, return_exceptions=True)
        assert admission.queued == 1  # its place is free at once
        # A slot handed to a waiter in the same moment it leaves goes on to the next one.
        late = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        admission.release()  # handed to `staying`
        await staying
        admission.release()  # handed to `late`...
        late.cancel()  # ...which leaves before it runs
        await asyncio.gather(late, return_exceptions=True)
        return [str(admission.in_flight), str(admission.queued)]

    assert asyncio.run(main()) == ["0", "0"]


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
