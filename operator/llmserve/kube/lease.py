"""Leader election on a coordination.k8s.io Lease: one operator process acts, others wait.

The holder renews the Lease every `renew_seconds`; another process takes it over only when it has
not been renewed for `duration_seconds`. Updates carry the resourceVersion they read, so two
contenders cannot both win: the API server refuses the second write with 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from llmserve.kube import objects
from llmserve.kube.client import Client

API_VERSION: Final = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class Election:
    """Who competes for which Lease, and how long a silent holder keeps it."""

    namespace: str
    name: str
    identity: str
    duration_seconds: int = 15


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expired(spec: dict[str, Any], now: datetime) -> bool:
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not renewed:
        return True
    seconds = spec.get("leaseDurationSeconds") or 0
    return datetime.fromisoformat(renewed) + timedelta(seconds=seconds) < now


async def try_acquire(client: Client, election: Election, now: datetime) -> bool:
    """Take or renew the Lease; False when another live holder has it or won the race."""
    spec = {
        "holderIdentity": election.identity,
        "leaseDurationSeconds": election.duration_seconds,
        "renewTime": _stamp(now),
    }
    lease = await objects.get(client, API_VERSION, "Lease", election.namespace, election.name)
    if lease is None:
        body = {
            "apiVersion": API_VERSION,
            "kind": "Lease",
            "metadata": {"name": election.name, "namespace": election.namespace},
            "spec": {**spec, "acquireTime": _stamp(now)},
        }
        return await objects.create(client, body) is not None  # None: another process was first
    current = lease.get("spec") or {}
    ours = current.get("holderIdentity") == election.identity
    if not ours and not _expired(current, now):
        return False
    if not ours:
        spec["acquireTime"] = _stamp(now)
        spec["leaseTransitions"] = (current.get("leaseTransitions") or 0) + 1
    lease["spec"] = {**current, **spec}  # keeps metadata.resourceVersion: a lost race is a 409
    return await objects.replace(client, lease) is not None
