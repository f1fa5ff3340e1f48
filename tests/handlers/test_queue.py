"""The work queue's rules: one pass per burst, none concurrent per key, back-off, delays."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from llmserve.handlers.llmservice import needs_pass
from llmserve.handlers.queue import WorkQueue


class Recorder:
    """A pass that records its keys, can be held at a gate, and can fail on demand."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures: dict[str, int] = {}
        self.after: float | None = None

    async def __call__(self, key: str) -> float | None:
        if key in self.running:
            self.overlaps += 1
        self.running.add(key)
        try:
            await self.gate.wait()
            self.ran.append(key)
            if self.failures.get(key, 0) > 0:
                self.failures[key] -= 1
                raise RuntimeError(f"{key} failed")
            return self.after
        finally:
            self.running.discard(key)


def scenario(
    body: Callable[[WorkQueue[str], Recorder], Awaitable[None]], **knobs: float
) -> Recorder:
    """Run `body` with a working queue, then stop the queue."""
    recorder = Recorder()

    async def main() -> None:
        queue = WorkQueue(recorder, workers=4, **knobs)  # type: ignore[arg-type]
        task = asyncio.create_task(queue.run())
        try:
            await body(queue, recorder)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return recorder


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_burst_of_adds_runs_one_pass() -> None:
    async def body(queue: WorkQueue[str], _: Recorder) -> None:
        for _ in range(10):
            queue.add("a")
        queue.add("b")
        await settle()

    assert sorted(scenario(body).ran) == ["a", "b"]


def test_an_add_during_a_pass_runs_once_more_after_it_never_beside_it() -> None:
    async def body(queue: WorkQueue[str], recorder: Recorder) -> None:
        recorder.gate.clear()
        queue.add("a")
        await settle()
        assert recorder.running == {"a"}
        queue.add("a")
        queue.add("a")
        await settle()
        recorder.gate.set()
        await settle()

    recorder = scenario(body)
    assert recorder.ran == ["a", "a"]
    assert recorder.overlaps == 0


def test_a_failing_pass_comes_back_after_a_growing_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(queue: WorkQueue[str], recorder: Recorder) -> None:
        recorder.failures["a"] = 3
        for _ in range(4):  # fail, fail, fail, succeed; each time added again at once
            queue.add("a")
            await settle()
        recorder.failures["a"] = 1
        queue.add("a")  # a success reset the count: the next failure waits the least again
        await settle()

    recorder = scenario(body, first_retry=1, last_retry=3)
    assert recorder.ran == ["a"] * 5
    delays = [r.getMessage().split("retrying in ")[1].split(":")[0] for r in caplog.records]
    assert delays == ["1 s", "2 s", "3 s", "1 s"]


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


def test_a_pass_that_asks_to_run_again_does_so_after_its_delay() -> None:
    async def body(queue: WorkQueue[str], recorder: Recorder) -> None:
        recorder.after = 0.01
        queue.add("a")
        await settle()
        recorder.after = None
        assert recorder.ran == ["a"]
        await eventually(lambda: recorder.ran == ["a", "a"])

    scenario(body)


def test_the_earlier_of_two_timers_wins_and_forget_cancels_it() -> None:
    async def body(queue: WorkQueue[str], recorder: Recorder) -> None:
        queue.add("a", after=0.01)
        queue.add("a", after=10)
        queue.add("b", after=0.01)
        queue.forget("b")
        await eventually(lambda: recorder.ran == ["a"])
        await asyncio.sleep(0.02)
        assert recorder.ran == ["a"]

    scenario(body)


def test_a_pass_cancelled_with_the_queue_runs_again_when_the_queue_runs_again() -> None:
    """Stepping down cancels the queue mid-pass; leading again must finish that pass's work."""
    recorder = Recorder()

    async def main() -> None:
        queue = WorkQueue(recorder, workers=2)
        recorder.gate.clear()
        first = asyncio.create_task(queue.run())
        queue.add("a")
        queue.add("b")
        await settle()
        assert recorder.running == {"a", "b"}
        queue.add("b")  # during its pass: once more after it, and only once
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert (recorder.running, recorder.ran, len(queue)) == (set(), [], 2)
        recorder.gate.set()
        second = asyncio.create_task(queue.run())
        await settle()
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)

    asyncio.run(main())
    assert sorted(recorder.ran) == ["a", "b"]


BODY = {"metadata": {"name": "x", "generation": 1, "labels": {}}, "spec": {"gpus": 1}}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"status": {"phase": "Ready"}}, False),
        ({"metadata": {**BODY["metadata"], "resourceVersion": "9"}}, False),
        ({"metadata": {**BODY["metadata"], "generation": 2}, "spec": {"gpus": 2}}, True),
        ({"metadata": {**BODY["metadata"], "labels": {"team": "a"}}}, True),
        ({"metadata": {**BODY["metadata"], "deletionTimestamp": "2026-11-23T12:00:00Z"}}, True),
    ],
)
def test_only_changes_beyond_the_status_need_a_pass(
    change: dict[str, object],
    expected: bool,  # noqa: FBT001 - a parameter of the table
) -> None:
    assert needs_pass(BODY, {**BODY, **change}) is expected
    assert needs_pass(None, BODY) is True
