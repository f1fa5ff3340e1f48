"""Get, server-side apply, delete and status-patch objects, as plain dicts, through one client.

One generic path per verb instead of one typed call per kind: the renderer produces dicts, the
reconciler compares dicts, and a kind is one row in `_PATHS`.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any, Final

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from llmserve.api.models import GROUP, PLURAL, VERSION
from llmserve.kube.errors import KubeApiError, RejectedChild

FIELD_MANAGER: Final = "llmserve"
NOT_FOUND: Final = 404
CONFLICT: Final = 409

_PATHS: Final = MappingProxyType(
    {
        ("v1", "PersistentVolumeClaim"): "/api/v1/namespaces/{ns}/persistentvolumeclaims",
        ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
        ("v1", "Event"): "/api/v1/namespaces/{ns}/events",
        ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs",
        ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
        (f"{GROUP}/{VERSION}", "LLMService"): f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}",
    }
)
_JSON: Final = {200: "object", 201: "object"}


def _path(api_version: str, kind: str, namespace: str, name: str = "") -> str:
    base = _PATHS[(api_version, kind)].format(ns=namespace)
    return f"{base}/{name}" if name else base


def _translate(error: ApiException | aiohttp.ClientError, what: str) -> Exception:
    """An API failure as a domain error: retried unless the API server refused the object."""
    if isinstance(error, ApiException):
        status = error.status or 0
        detail = _reason(error)
        if status in (400, 403, 422):
            return RejectedChild(f"the API server refused {what} ({status}): {detail}")
        return KubeApiError(f"{what}: API server answered {status}: {detail}", delay=5)
    return KubeApiError(f"{what}: cannot reach the API server: {error}", delay=5)


def _reason(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


async def _call(  # noqa: PLR0913 - the options of one request, keyword-only
    client: ApiClient,
    method: str,
    path: str,
    what: str,
    *,
    body: Any = None,  # noqa: ANN401 - a JSON body
    content_type: str = "application/json",
    query: list[tuple[str, str]] | None = None,
    missing_ok: bool = False,
) -> dict[str, Any] | None:
    """One request; None when the object is missing and that is fine, else a domain error."""
    try:
        result: dict[str, Any] = await client.call_api(
            path,
            method,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            response_types_map=_JSON,
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except ApiException as error:
        if missing_ok and error.status == NOT_FOUND:
            return None
        raise _translate(error, what) from error
    except aiohttp.ClientError as error:
        raise _translate(error, what) from error
    return result


async def get(
    client: ApiClient, api_version: str, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    path = _path(api_version, kind, namespace, name)
    return await _call(client, "GET", path, f"{kind} {namespace}/{name}", missing_ok=True)


async def apply(client: ApiClient, manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply a whole manifest as `llmserve`, taking over fields others changed."""
    meta = manifest["metadata"]
    path = _path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
    result = await _call(
        client,
        "PATCH",
        path,
        f"{manifest['kind']} {meta['namespace']}/{meta['name']}",
        body=manifest,
        content_type="application/apply-patch+yaml",  # JSON is YAML
        query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
    )
    return result or {}


async def delete(client: ApiClient, api_version: str, kind: str, namespace: str, name: str) -> None:
    """Delete with background propagation; a missing object is already deleted."""
    path = _path(api_version, kind, namespace, name)
    body = {"propagationPolicy": "Background"}
    await _call(client, "DELETE", path, f"{kind} {namespace}/{name}", body=body, missing_ok=True)


async def patch_status(
    client: ApiClient, namespace: str, name: str, status: dict[str, Any]
) -> None:
    """Merge-patch an LLMService's status subresource; a deleted LLMService needs no status."""
    path = _path(f"{GROUP}/{VERSION}", "LLMService", namespace, name) + "/status"
    await _call(
        client,
        "PATCH",
        path,
        f"LLMService {namespace}/{name} status",
        body={"status": status},
        content_type="application/merge-patch+json",
        missing_ok=True,
    )
