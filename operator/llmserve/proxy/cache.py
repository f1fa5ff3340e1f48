"""A value fetched at most once per period, however many callers ask for it at the same time.

For what the proxy reads from the engine on behalf of others (its health for `/ready`, its metrics
page for `/metrics/engine`): without it, every probe or scrape is one more request into the
engine's API-server process, a free amplifier for whoever can reach the proxy (review M4).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Cached(Generic[T]):
    """`fetch()`'s latest result for `seconds`; callers that come while a fetch runs share it."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], seconds: float) -> None:
        self._fetch = fetch
        self._seconds = seconds
        self._value: tuple[float, T] | None = None
        self._running: asyncio.Task[T] | None = None

    async def get(self) -> T:
        """The cached value, or a fresh one."""
        if self._value is not None and time.monotonic() - self._value[0] < self._seconds:
            return self._value[1]
        if self._running is None:
            self._running = asyncio.create_task(self._refresh())
        # Shielded: a caller that gives up does not cancel the fetch the others wait for.
        return await asyncio.shield(self._running)

    async def _refresh(self) -> T:
        try:
            value = await self._fetch()
            self._value = (time.monotonic(), value)
            return value
        finally:
            self._running = None
