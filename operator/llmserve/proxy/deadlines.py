"""Deadlines for every request on one clock: a sweep a tenth of a second apart, not a timer each.

Each request has two deadlines of its own: its body must arrive within `--body-timeout`, and the
engine's answer must start within `--first-byte-timeout`. `asyncio.timeout` arms and cancels a
timer handle for each, and at 64 requests at once those two timers were the largest cost the
hardened proxy added to a request (a sampling profile: 5 % of the proxy's time, against 1.6 % for
the one timer before). Here a request only notes when it is due, in a dict; one task looks over the
dict every `TICK` seconds and cancels the requests past due. Deadlines are seconds to minutes long,
so being up to a tenth of a second late does not matter.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Final

TICK: Final = 0.1
"""Seconds between two sweeps: how late a deadline may be noticed."""


class Deadlines:
    """The deadlines of the requests in flight, and the sweep that enforces them (`run`)."""

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()

    def within(self, seconds: float) -> _Within:
        """A context manager: run its block in this task for at most `seconds`.

        As `asyncio.timeout`: the task is cancelled at the deadline and the cancellation becomes
        a `TimeoutError` at the block's end; a cancellation from elsewhere passes through.
        """
        return _Within(self, seconds)

    def start(self, task: asyncio.Task[Any], seconds: float) -> None:
        """Cancel `task` once `seconds` have passed, unless `stop` comes first."""
        self._due[task] = time.monotonic() + seconds

    def stop(self, task: asyncio.Task[Any]) -> bool:
        """No deadline for `task` any more; whether it had passed (and the task was cancelled)."""
        self._due.pop(task, None)
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return True

    def sweep(self, now: float) -> None:
        """Cancel every task whose deadline has passed."""
        late = [task for task, due in self._due.items() if due <= now]
        for task in late:
            del self._due[task]
            self._expired.add(task)
            task.cancel()

    async def run(self) -> None:
        """Sweep every TICK seconds until cancelled."""
        while True:
            await asyncio.sleep(TICK)
            self.sweep(time.monotonic())


class _Within:
    """One block under a deadline (a class, not a generator: this runs twice per request)."""

    __slots__ = ("_deadlines", "_seconds", "_task")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines, self._seconds = deadlines, seconds
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> None:
        task = self._task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        self._deadlines.start(task, self._seconds)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: TracebackType | None
    ) -> None:
        task = self._task
        assert task is not None  # noqa: S101 - entered
        if not self._deadlines.stop(task):
            return
        # Ours: the block's cancellation becomes a TimeoutError (had the block turned it into
        # another error, that one goes on, and the cancellation is taken back all the same).
        task.uncancel()
        if kind is asyncio.CancelledError:
            raise TimeoutError from error
