"""Leader election on a coordination.k8s.io Lease, as client-go's `leaderelection` does it.

One operator process acts; the others wait. The rules, and why (review M6):

- **Expiry by the standby's own clock.** A standby never compares the holder's `renewTime` with
  its own clock: clocks of two nodes differ, and the difference would move the takeover, earlier
  as easily as later. It notes on its own monotonic clock when it last saw the Lease change (its
  resourceVersion; client-go's `observedTime`) and takes the Lease over only when it has seen no
  change for `leaseDurationSeconds`.
- **A renew deadline below the duration.** The holder acts only while its last successful renewal
  began less than `renew_deadline_seconds` ago (10 s against a 15 s Lease), and each renewal may
  take only what is left of that (the caller's timeout around `Elector.try_acquire`): a hung API
  call cannot keep it acting. A standby saw that renewal only after it was sent, so the holder
  has stopped at least duration - deadline (5 s) before any standby may take over: room for
  writes already sent, and for clocks that run at slightly different rates.
- **Optimistic concurrency.** Updates carry the resourceVersion they read, so two contenders cannot
  both win: the API server refuses the second write with 409.

`renewTime` and `acquireTime` are still written from the wall clock, for people (`kubectl get
lease -o yaml`) and other tools; no decision here reads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from llmserve.kube import objects
from llmserve.kube.client import Client

API_VERSION: Final = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class Election:
    """Who competes for which Lease, and the timing (client-go's defaults)."""

    namespace: str
    name: str
    identity: str
    duration_seconds: int = 15
    """How long a standby waits, from when it last saw the Lease change, before taking it over
    (client-go's LeaseDuration); written into the Lease, where standbys read it."""
    renew_deadline_seconds: float = 10.0
    """How long the holder goes on acting without a successful renewal (client-go's
    RenewDeadline)."""
    retry_seconds: float = 2.0
    """How often the holder renews and a standby looks (client-go's RetryPeriod)."""

    def __post_init__(self) -> None:
        """Refuse timings under which a holder could still act once a standby takes over."""
        if not 0 < self.retry_seconds < self.renew_deadline_seconds < self.duration_seconds:
            msg = (
                f"Lease {self.namespace}/{self.name}: the retry period "
                f"({self.retry_seconds:g} s) must be below the renew deadline "
                f"({self.renew_deadline_seconds:g} s), and that below the Lease duration "
                f"({self.duration_seconds} s)"
            )
            raise ValueError(msg)


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One contender for the Lease, with what it last saw of it and when, by its own clock."""

    def __init__(
        self, client: Client, election: Election, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.election = election
        self._clock = clock
        self._seen_version: str | None = None
        self._seen_at = 0.0
        """When `_seen_version` was first seen, on `clock` (client-go's observedTime)."""
        self.holder: str | None = None
        """The holder the Lease named when last read."""

    async def try_acquire(self) -> bool:
        """Take or renew the Lease; False when another live holder has it or won the race.

        A read, then a write; API failures raise `objects`' errors. The caller bounds the whole
        with `asyncio.timeout`: a cancelled call leaves the Lease as it was or renewed, both fine.
        """
        election = self.election
        now = _stamp(datetime.now(UTC))
        spec: dict[str, Any] = {
            "holderIdentity": election.identity,
            "leaseDurationSeconds": election.duration_seconds,
            "renewTime": now,
        }
        lease = await objects.get(
            self.client, API_VERSION, "Lease", election.namespace, election.name
        )
        if lease is None:
            body = {
                "apiVersion": API_VERSION,
                "kind": "Lease",
                "metadata": {"name": election.name, "namespace": election.namespace},
                "spec": {**spec, "acquireTime": now},
            }
            created = await objects.create(self.client, body)
            if created is None:  # another process was first
                return False
            self._observe(created)
            return True
        self._observe(lease)
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        if holder != election.identity:
            if holder and not self._expired(current):
                return False
            spec["acquireTime"] = now
            spec["leaseTransitions"] = (current.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**current, **spec}  # keeps metadata.resourceVersion: a lost race is a 409
        replaced = await objects.replace(self.client, lease)
        if replaced is None:
            return False
        self._observe(replaced)
        return True

    def _observe(self, lease: dict[str, Any]) -> None:
        """Note the Lease as read: a new resourceVersion restarts the holder's time."""
        version = lease["metadata"].get("resourceVersion")
        if version != self._seen_version:
            self._seen_version, self._seen_at = version, self._clock()
        self.holder = (lease.get("spec") or {}).get("holderIdentity")

    def _expired(self, spec: dict[str, Any]) -> bool:
        """No change seen for the duration the holder declared (ours if it declared none)."""
        duration = spec.get("leaseDurationSeconds") or self.election.duration_seconds
        return self._clock() > self._seen_at + duration
