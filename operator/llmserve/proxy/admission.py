"""Admission: at most `max_concurrency` requests at the engine, at most `max_queue` waiting.

A request that finds the queue full is refused at once (429); one that waits longer than
`queue_timeout` gives up (503). Both tell the client when to come back (`Retry-After`). Waiting is
first come, first served: a freed slot goes to the oldest waiter, never to a newcomer.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


class Refused(Exception):  # noqa: N818 - a refusal, not a fault
    """The request is not admitted: `status` 429 (queue full) or 503 (waited too long)."""

    def __init__(self, status: int, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.status, self.reason, self.retry_after = status, reason, retry_after


@dataclass(frozen=True)
class Limits:
    """The admission settings."""

    max_concurrency: int
    max_queue: int
    queue_timeout: float


class Admission:
    """Slots and a FIFO queue of waiters."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    def _retry_after(self) -> int:
        """Seconds a refused client should wait: about one queue timeout, at least one."""
        return max(1, math.ceil(self.limits.queue_timeout))

    async def acquire(self) -> None:
        """Take a slot, waiting in line if need be; `Refused` when none can be had.

        Every successful acquire must be matched by one `release` (the proxy's hot path does
        this in a `finally` rather than through a context manager, which costs more per request).
        """
        if self.in_flight < self.limits.max_concurrency and not self._waiters:
            self.in_flight += 1
        else:
            await self._wait()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the body of the block; raise `Refused` when none can be had."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def _wait(self) -> None:
        if len(self._waiters) >= self.limits.max_queue:
            raise Refused(429, "queue_full", self._retry_after())
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # Not wait_for: on Python 3.11 it swallows a cancellation that comes as the slot is
            # handed over, and a client that left would then keep the slot.
            async with asyncio.timeout(self.limits.queue_timeout):
                await asyncio.shield(waiter)  # the waiter stays for `release` to see as it was
        except TimeoutError:
            if waiter.done():  # handed a slot at the last moment: take it
                return
            self._waiters.remove(waiter)
            raise Refused(503, "queue_timeout", self._retry_after()) from None
        except asyncio.CancelledError:  # the client left while waiting: its place goes at once
            if waiter.done():
                self.release()  # a slot handed to it as it left passes on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give the slot back: to the oldest waiter, else free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: in_flight stays the same
                return
        self.in_flight -= 1
