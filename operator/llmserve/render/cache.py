"""The model cache: a PersistentVolumeClaim and the Job that downloads the model into it."""

from __future__ import annotations

import math
from typing import Any, Final

from llmserve.api import fit
from llmserve.api.config import OperatorConfig
from llmserve.api.models import LLMService
from llmserve.render import meta, workload
from llmserve.render.engines.base import CACHE_MOUNT, GGUF_PATH, HF_HOME

SIZE_MARGIN: Final = 1.25
"""Room over the weights for tokenizer, configs and a second revision during an update."""
DOWNLOAD_RETRIES: Final = 3
TERMINATION_LOG: Final = "/dev/termination-log"
"""Kubernetes' default terminationMessagePath: fetch-model writes its failure there, so the pod's
status says why the download failed."""
UNCHECKED_QUANTIZATIONS: Final = frozenset({"none", "gguf"})
"""Formats fetch-model need not check: engines read any checkpoint as `none`; gguf is the file."""


def cache_size(service: LLMService, config: OperatorConfig) -> str:
    """The PVC size: the spec's, or the weights' size with a margin, or the operator's default."""
    if service.spec.cache.size is not None:
        return str(service.spec.cache.size)
    report = fit.input_for(service.spec, None)
    bpp = fit.bytes_per_parameter(report.quantization, report.gguf_file)
    if report.parameters_billions is None or bpp is None:
        return f"{config.default_cache_size_gib}Gi"
    weights_gib = report.parameters_billions * 1e9 * bpp / fit.GIB
    return f"{max(1, math.ceil(weights_gib * SIZE_MARGIN))}Gi"


def claim(service: LLMService, config: OperatorConfig) -> dict[str, Any]:
    """The PersistentVolumeClaim `<name>-model-cache`."""
    cache = service.spec.cache
    annotations = {meta.CACHE_KEY: meta.cache_key(service)}
    spec: dict[str, Any] = {
        "accessModes": [cache.access_mode],
        "resources": {"requests": {"storage": cache_size(service, config)}},
    }
    if cache.storage_class_name:
        spec["storageClassName"] = cache.storage_class_name
    manifest = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta.metadata(
            service, meta.cache_claim_name(service), meta.COMPONENT_CACHE, annotations
        ),
        "spec": spec,
    }
    return meta.stamp(manifest)


def fetch_args(service: LLMService) -> list[str]:
    """`llmserve fetch-model` arguments.

    What to download, where to, which GGUF file to link, the format the weights must have, and
    where to leave the failure's message.
    """
    model = service.spec.model
    args = ["fetch-model", "--repo", model.name, "--revision", model.revision]
    args += ["--hf-home", HF_HOME]
    if model.file:
        args += ["--include", model.file, "--link", GGUF_PATH]
    if service.spec.quant not in UNCHECKED_QUANTIZATIONS:
        args += ["--quantization", service.spec.quant]
    args += ["--termination-log", TERMINATION_LOG]
    return args


def download_job(service: LLMService, config: OperatorConfig) -> dict[str, Any]:
    """The Job `<name>-model-download`.

    It is placed like the engine pods, so a node-local volume lands where the engines will run.
    """
    annotations = {meta.CACHE_KEY: meta.cache_key(service)}
    env: list[dict[str, Any]] = [{"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}]
    token = service.spec.model.token_secret_ref
    if token:
        secret = {"secretKeyRef": {"name": token.name, "key": token.key}}
        env.append({"name": "HF_TOKEN", "valueFrom": secret})
    container = {
        "name": "fetch-model",
        "image": config.operator_image,
        "args": fetch_args(service),
        "env": env,
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "volumeMounts": [{"name": workload.CACHE_VOLUME, "mountPath": CACHE_MOUNT}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    pod = {
        "metadata": {"labels": meta.labels(service, meta.COMPONENT_DOWNLOAD)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": workload.pod_security(),
            **workload.placement(service),
            "containers": [container],
            "volumes": [workload.cache_volume(service)],
        },
    }
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta.metadata(
            service, meta.download_job_name(service), meta.COMPONENT_DOWNLOAD, annotations
        ),
        "spec": {"backoffLimit": DOWNLOAD_RETRIES, "template": pod},
    }
    return meta.stamp(manifest)
