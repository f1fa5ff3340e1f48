"""Leader election on a coordination.k8s.io Lease: one operator process acts, others wait.

The holder renews the Lease every `renew_seconds`; another process takes it over only when it has
not been renewed for `duration_seconds`. Updates carry the resourceVersion they read, so two
contenders cannot both win: the API server refuses the second write with 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from llmserve.kube.objects import CONFLICT, NOT_FOUND

_PATH: Final = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
_JSON: Final = {200: "object", 201: "object"}


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


async def _call(client: ApiClient, method: str, path: str, body: Any = None) -> Any:  # noqa: ANN401
    return await client.call_api(
        path,
        method,
        body=body,
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        response_types_map=_JSON,
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


async def try_acquire(client: ApiClient, election: Election, now: datetime) -> bool:
    """Take or renew the Lease; False when another live holder has it or won the race."""
    base = _PATH.format(ns=election.namespace)
    spec = {
        "holderIdentity": election.identity,
        "leaseDurationSeconds": election.duration_seconds,
        "renewTime": _stamp(now),
    }
    try:
        lease = await _call(client, "GET", f"{base}/{election.name}")
    except ApiException as error:
        if error.status != NOT_FOUND:
            raise
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": election.name},
            "spec": {**spec, "acquireTime": _stamp(now)},
        }
        return await _write(client, "POST", base, body)
    current = lease.get("spec") or {}
    ours = current.get("holderIdentity") == election.identity
    if not ours and not _expired(current, now):
        return False
    if not ours:
        spec["acquireTime"] = _stamp(now)
        spec["leaseTransitions"] = (current.get("leaseTransitions") or 0) + 1
    lease["spec"] = {**current, **spec}  # keeps metadata.resourceVersion: a lost race is a 409
    return await _write(client, "PUT", f"{base}/{election.name}", lease)


async def _write(client: ApiClient, method: str, path: str, body: dict[str, Any]) -> bool:
    try:
        await _call(client, method, path, body)
    except ApiException as error:
        if error.status == CONFLICT:
            return False
        raise
    return True
