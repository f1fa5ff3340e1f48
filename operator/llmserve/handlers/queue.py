"""A work queue of LLMService keys: each key queued at most once, never two passes of one at once.

Under load, watch events arrive far faster than passes run (a new LLMService brings a dozen events
from its children in its first seconds). Queueing keys rather than events folds every event that
arrives while a key waits into the one pass that reads the latest state. The rules are those of
client-go's workqueue, which controllers built on controller-runtime share:

- a key added while it waits is not added twice;
- a key added while its pass runs is queued again once that pass ends;
- a pass that fails comes back after an exponential back-off, reset by its next success;
- a pass may ask to run again after a delay (a download retry that is due, a slow start);
- a pass cancelled with the queue (the process stepped down) runs again when the queue runs again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    """Keys waiting for `work`, which returns the seconds until a key runs again, or None."""

    def __init__(
        self,
        work: Callable[[K], Awaitable[float | None]],
        *,
        workers: int = 8,
        first_retry: float = 1.0,
        last_retry: float = 60.0,
        expected: tuple[type[Exception], ...] = (),
    ) -> None:
        self._work = work
        self._workers = workers
        self._first_retry = first_retry
        self._last_retry = last_retry
        self._expected = expected
        """Failures logged as one line (the API server is away); others with their traceback."""
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: set[K] = set()
        self._running: set[K] = set()
        self._again: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._failures: dict[K, int] = {}

    def __len__(self) -> int:
        """Keys waiting to run (not those running or waiting for a timer)."""
        return len(self._waiting)

    def add(self, key: K, after: float = 0.0) -> None:
        """Queue the key, now or after `after` seconds (an earlier timer for it wins)."""
        if after > 0:
            loop = asyncio.get_running_loop()
            timer = self._timers.get(key)
            if timer is not None and timer.when() <= loop.time() + after:
                return
            if timer is not None:
                timer.cancel()
            self._timers[key] = loop.call_later(after, self._due, key)
            return
        if key in self._running:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._ready.put_nowait(key)

    def forget(self, key: K) -> None:
        """The object is gone: drop its timer and failure count (a queued pass finds nothing)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    def _due(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _retry_delay(self, key: K) -> float:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return float(min(self._first_retry * 2 ** (failures - 1), self._last_retry))

    async def _one(self, key: K) -> float | None:
        """Run the key's pass; the delay until it runs again, if any."""
        try:
            after = await self._work(key)
        except Exception as error:
            delay = self._retry_delay(key)
            detail = not isinstance(error, self._expected)
            log.warning("pass of %s failed, retrying in %.0f s: %s", key, delay, error,
                        exc_info=detail)  # fmt: skip
            return delay
        self._failures.pop(key, None)
        return after

    async def _worker(self) -> None:
        while True:
            key = await self._ready.get()
            self._waiting.discard(key)
            self._running.add(key)
            try:
                after = await self._one(key)
            except asyncio.CancelledError:
                # Stopped mid-pass (this process stepped down, or it stops): the pass did not
                # finish, so the key waits to run again when the queue runs again.
                self._running.discard(key)
                self._again.discard(key)
                self.add(key)
                raise
            finally:
                self._running.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.add(key)
            elif after is not None:
                self.add(key, after)

    async def run(self) -> None:
        """Work until cancelled; cancelling also cancels the passes in flight (they run again)."""
        workers = [asyncio.create_task(self._worker()) for _ in range(self._workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
