"""Names, labels, annotations and owner references shared by every child of an LLMService."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from llmserve.api.models import API_VERSION, KIND, LLMService

ANNOTATION_PREFIX: Final = "llmserve.io"
SPEC_HASH: Final = f"{ANNOTATION_PREFIX}/spec-hash"
"""Hash of the child as rendered (without this annotation): the reconciler patches only on
change."""
CACHE_KEY: Final = f"{ANNOTATION_PREFIX}/cache-key"
"""Hash of model, revision, file and quantization: a new key means a new download."""
MODEL_ANNOTATION: Final = f"{ANNOTATION_PREFIX}/model"

COMPONENT_SERVER: Final = "server"
COMPONENT_CACHE: Final = "model-cache"
COMPONENT_DOWNLOAD: Final = "model-download"
COMPONENT_API_KEYS: Final = "api-keys"


def deployment_name(service: LLMService) -> str:
    """The engine Deployment (and its Service and NetworkPolicy) are named like the LLMService."""
    return service.name


def cache_claim_name(service: LLMService) -> str:
    """The model-cache PersistentVolumeClaim."""
    return f"{service.name}-model-cache"


def download_job_name(service: LLMService) -> str:
    """The Job that fills the model cache."""
    return f"{service.name}-model-download"


def api_keys_secret_name(service: LLMService) -> str:
    """The Secret with the proxy's API keys that the operator creates when the spec names none."""
    return f"{service.name}-api-keys"


def selector_labels(service: LLMService, component: str) -> dict[str, str]:
    """Labels that select one component's pods; immutable once a Deployment exists."""
    return {
        "app.kubernetes.io/name": "llmservice",
        "app.kubernetes.io/instance": service.name,
        "app.kubernetes.io/component": component,
    }


def labels(service: LLMService, component: str) -> dict[str, str]:
    """All labels of a child: the selector labels plus who manages it."""
    return {**selector_labels(service, component), "app.kubernetes.io/managed-by": "llmserve"}


def selector_string(service: LLMService) -> str:
    """The pods' label selector as a string, for `status.selector` (the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(service, COMPONENT_SERVER).items())


def owner_references(service: LLMService) -> list[dict[str, Any]]:
    """The LLMService as controlling owner, when it has a uid (it does once it is in a cluster)."""
    if not service.metadata.uid:
        return []
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": service.name,
            "uid": service.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def metadata(
    service: LLMService, name: str, component: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """The metadata of a child: name, namespace (if known), labels, annotations, owner reference."""
    meta: dict[str, Any] = {"name": name}
    if service.metadata.namespace:
        meta["namespace"] = service.metadata.namespace
    meta["labels"] = labels(service, component)
    meta["annotations"] = {MODEL_ANNOTATION: service.spec.model.name, **(annotations or {})}
    owners = owner_references(service)
    if owners:
        meta["ownerReferences"] = owners
    return meta


def digest(value: Any) -> str:  # noqa: ANN401 - any JSON value
    """A short, stable hash of a JSON value (sorted keys), for annotations."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def cache_key(service: LLMService) -> str:
    """What identifies the cached model: a change re-runs the download."""
    model = service.spec.model
    return digest([model.name, model.revision, model.file, service.spec.quant])


def stamp(manifest: dict[str, Any], *, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Add the spec-hash annotation: a hash of the manifest without it and without `ignore` paths.

    `ignore` holds dotted paths left out of the hash, such as `spec.replicas` of the Deployment,
    which the scale subresource and the autoscaler change without a new rollout.
    """
    hashed = json.loads(json.dumps(manifest))
    for path in ignore:
        *parents, leaf = path.split(".")
        node = hashed
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    manifest["metadata"]["annotations"][SPEC_HASH] = digest(hashed)
    return manifest
