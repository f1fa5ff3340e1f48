"""The proxy's deadlines: one sweep for every request, with `asyncio.timeout`'s semantics."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmserve.proxy.deadlines import Deadlines


def test_a_block_past_its_deadline_raises_timeout_error_and_the_task_goes_on() -> None:
    async def main() -> str:
        deadlines = Deadlines()
        sweeping = asyncio.create_task(deadlines.run())
        try:
            with pytest.raises(TimeoutError), deadlines.within(0.05):
                await asyncio.Event().wait()  # never set
            await asyncio.sleep(0)  # no cancellation is left pending on the task
            return "went on"
        finally:
            sweeping.cancel()

    assert asyncio.run(main()) == "went on"


def test_a_block_within_its_deadline_is_not_touched_by_later_sweeps() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        with deadlines.within(0.05):
            await asyncio.sleep(0)
        deadlines.sweep(float("inf"))  # long after: nothing of this task is due any more
        await asyncio.sleep(0)

    asyncio.run(main())


def test_a_cancellation_from_elsewhere_passes_through() -> None:
    async def waiter(deadlines: Deadlines, started: asyncio.Event) -> None:
        with deadlines.within(60):
            started.set()
            await asyncio.Event().wait()

    async def main() -> None:
        deadlines, started = Deadlines(), asyncio.Event()
        task = asyncio.create_task(waiter(deadlines, started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_only_the_tasks_past_due_are_cancelled() -> None:
    async def waiter(deadlines: Deadlines, seconds: float) -> str:
        try:
            with deadlines.within(seconds):
                await asyncio.sleep(3600)
        except TimeoutError:
            return "timed out"
        return "finished"

    async def main() -> list[str]:
        deadlines = Deadlines()
        tasks = [asyncio.create_task(waiter(deadlines, s)) for s in (1, 1000, 2)]
        await asyncio.sleep(0)
        deadlines.sweep(time.monotonic() + 10)  # 10 s later by the deadlines' clock
        done = await asyncio.wait_for(asyncio.gather(tasks[0], tasks[2]), 5)
        assert not tasks[1].done()
        tasks[1].cancel()
        return done

    assert asyncio.run(main()) == ["timed out", "timed out"]
