"""Get, server-side apply, delete and status-patch objects, as plain dicts, through one client.

One generic path per verb instead of one typed call per kind: the renderer produces dicts, the
reconciler compares dicts, and a kind is one row in `_PATHS`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

import aiohttp

from llmserve.api.models import GROUP, PLURAL, VERSION
from llmserve.kube.client import ApiStatusError, Client
from llmserve.kube.errors import KubeApiError, RejectedChildError

FIELD_MANAGER: Final = "llmserve"
NOT_FOUND: Final = 404
CONFLICT: Final = 409

_PATHS: Final = MappingProxyType(
    {
        ("v1", "PersistentVolumeClaim"): "/api/v1/namespaces/{ns}/persistentvolumeclaims",
        ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
        ("v1", "Event"): "/api/v1/namespaces/{ns}/events",
        ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
        ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets",
        ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs",
        ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
        ("networking.k8s.io/v1", "NetworkPolicy"): (
            "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
        ),
        ("coordination.k8s.io/v1", "Lease"): "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
        (f"{GROUP}/{VERSION}", "LLMService"): f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}",
    }
)


def _path(api_version: str, kind: str, namespace: str, name: str = "") -> str:
    base = _PATHS[(api_version, kind)].format(ns=namespace)
    return f"{base}/{name}" if name else base


def _translate(error: Exception, what: str) -> Exception:
    """An API failure as a domain error: retried unless the API server refused the object."""
    if isinstance(error, ApiStatusError):
        if error.status in (400, 403, 422):
            return RejectedChildError(
                f"the API server refused {what} ({error.status}): {error.message}"
            )
        return KubeApiError(f"{what}: API server answered {error.status}: {error.message}")
    return KubeApiError(f"{what}: cannot reach the API server: {error!r}")


async def _call(  # noqa: PLR0913 - the options of one request, keyword-only
    client: Client,
    method: str,
    path: str,
    what: str,
    *,
    body: Any = None,  # noqa: ANN401 - a JSON body
    content_type: str = "application/json",
    query: list[tuple[str, str]] | None = None,
    missing_ok: bool = False,
    conflict_ok: bool = False,
) -> dict[str, Any] | None:
    """One request; None for a 404 or 409 the caller expects, else a domain error."""
    try:
        return await client.request(method, path, body=body, content_type=content_type, query=query)
    except ApiStatusError as error:
        if (missing_ok and error.status == NOT_FOUND) or (conflict_ok and error.status == CONFLICT):
            return None
        raise _translate(error, what) from error
    except (aiohttp.ClientError, TimeoutError) as error:
        raise _translate(error, what) from error


async def get(
    client: Client, api_version: str, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    path = _path(api_version, kind, namespace, name)
    return await _call(client, "GET", path, f"{kind} {namespace}/{name}", missing_ok=True)


async def list_(
    client: Client, api_version: str, kind: str, namespace: str, label_selector: str
) -> list[dict[str, Any]]:
    """The objects of a kind in a namespace that match a label selector."""
    path = _path(api_version, kind, namespace)
    query = [("labelSelector", label_selector)]
    result = await _call(client, "GET", path, f"{kind}s in {namespace}", query=query)
    items: list[dict[str, Any]] = (result or {}).get("items") or []
    return items


def _what(manifest: dict[str, Any]) -> str:
    meta = manifest["metadata"]
    return f"{manifest['kind']} {meta['namespace']}/{meta['name']}"


async def create(client: Client, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Create the object; None when it already exists (409): then the caller reads it."""
    path = _path(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["namespace"])
    query = [("fieldManager", FIELD_MANAGER)]
    return await _call(
        client, "POST", path, _what(manifest), body=manifest, query=query, conflict_ok=True
    )


async def replace(client: Client, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Replace the object as read (its resourceVersion); None when it changed since (409)."""
    meta = manifest["metadata"]
    path = _path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
    return await _call(client, "PUT", path, _what(manifest), body=manifest, conflict_ok=True)


async def apply(client: Client, manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply a whole manifest as `llmserve`, taking over fields others changed."""
    meta = manifest["metadata"]
    path = _path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
    result = await _call(
        client,
        "PATCH",
        path,
        _what(manifest),
        body=manifest,
        content_type="application/apply-patch+yaml",  # JSON is YAML
        query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
    )
    return result or {}


async def delete(client: Client, api_version: str, kind: str, namespace: str, name: str) -> None:
    """Delete with background propagation; a missing object is already deleted."""
    path = _path(api_version, kind, namespace, name)
    body = {"propagationPolicy": "Background"}
    await _call(client, "DELETE", path, f"{kind} {namespace}/{name}", body=body, missing_ok=True)


async def _patch_subresource(
    client: Client, namespace: str, name: str, subresource: str, body: dict[str, Any]
) -> None:
    """Merge-patch a subresource of an LLMService; a deleted LLMService needs nothing more."""
    path = _path(f"{GROUP}/{VERSION}", "LLMService", namespace, name) + f"/{subresource}"
    what = f"LLMService {namespace}/{name} {subresource}"
    await _call(client, "PATCH", path, what, body=body,
                content_type="application/merge-patch+json", missing_ok=True)  # fmt: skip


async def patch_status(client: Client, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Merge-patch an LLMService's status."""
    await _patch_subresource(client, namespace, name, "status", {"status": status})


async def scale(client: Client, namespace: str, name: str, replicas: int) -> None:
    """Set an LLMService's spec.replicas through its scale subresource."""
    await _patch_subresource(client, namespace, name, "scale", {"spec": {"replicas": replicas}})


async def post_event(  # noqa: PLR0913 - an Event's fields, keyword-only
    client: Client,
    about: dict[str, Any],
    *,
    kind: str,
    reason: str,
    message: str,
    now: datetime,
) -> None:
    """A Kubernetes Event about `about` (a body), as `kubectl describe` and `get events` show it."""
    meta = about["metadata"]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": about["apiVersion"],
            "kind": about["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],  # the API server refuses longer messages
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": FIELD_MANAGER,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    path = _path("v1", "Event", meta["namespace"])
    await _call(client, "POST", path, f"Event about {about['kind']} {meta['name']}", body=event)
