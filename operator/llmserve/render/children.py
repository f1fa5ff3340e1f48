"""Assemble the children of one LLMService, after the checks only rendering can make."""

from __future__ import annotations

from typing import Any

from llmserve.api import fit
from llmserve.api.config import OperatorConfig
from llmserve.api.errors import InvalidSpec, Problem
from llmserve.api.models import LLMService
from llmserve.render import cache, meta, workload
from llmserve.render.engines import PROFILES


def service_manifest(service: LLMService) -> dict[str, Any]:
    """The Service `<name>`: port 80 to the proxy's `http` port."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta.metadata(service, meta.deployment_name(service), meta.COMPONENT_SERVER),
        "spec": {
            "type": "ClusterIP",
            "selector": meta.selector_labels(service, meta.COMPONENT_SERVER),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return meta.stamp(manifest)


def network_policy(service: LLMService) -> dict[str, Any]:
    """The NetworkPolicy `<name>`: into the server pods only on the proxy's port, from anywhere.

    The engine listens on loopback anyway; the policy makes the pod's one open port explicit where
    the network plugin enforces policies, and closes any other. NetworkPolicies add up (a pod takes
    what any policy selecting it allows), so users can open more with their own (a port of an
    injected sidecar) but not narrow this one: the API keys decide who gets an answer.
    """
    manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta.metadata(service, meta.deployment_name(service), meta.COMPONENT_SERVER),
        "spec": {
            "podSelector": {"matchLabels": meta.selector_labels(service, meta.COMPONENT_SERVER)},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": workload.PROXY_PORT}]}],
        },
    }
    return meta.stamp(manifest)


def validate_engine_args(service: LLMService) -> list[Problem]:
    """Problems with spec.engineArgs: flags that llmserve owns, or arguments an engine ignores.

    The engine would take the last of two flags given, and a wrong port, host, parallelism or
    quantization breaks the pod or dodges the checks.
    """
    profile = PROFILES[service.spec.engine]
    if service.spec.engine_args and not profile.takes_args:
        return [
            Problem(
                "spec.engineArgs",
                f"engine {service.spec.engine} takes no arguments, only environment variables; "
                f"move the settings to spec.env (e.g. {profile.env_example})",
            )
        ]
    owned = set(profile.fields) | {
        profile.canonical(token)
        for token in profile.args(workload.engine_inputs(service))
        if token.startswith("-")
    }
    problems = []
    for index, token in enumerate(service.spec.engine_args):
        flag = profile.canonical(token)
        if token.startswith("-") and flag in owned:
            instead = profile.fields.get(flag, "the matching spec field")
            problems.append(
                Problem(
                    f"spec.engineArgs[{index}]",
                    f"{token.split('=', 1)[0]} is set by llmserve for engine "
                    f"{service.spec.engine}; remove it and set {instead} instead",
                )
            )
    return problems


def check(service: LLMService, config: OperatorConfig) -> fit.FitReport:
    """Every rule that needs more than the spec alone: engineArgs and the VRAM fit.

    Raises `InvalidSpec` with all problems; returns the fit report (its notes say what was assumed).
    """
    problems = validate_engine_args(service)
    report = fit.check(fit.input_for(service.spec, config.default_gpu_memory_gib))
    if report.verdict == "does-not-fit":
        problems.append(Problem("spec.gpus", f"model does not fit: {report.reason}"))
    if problems:
        raise InvalidSpec(service.ref, problems)
    return report


def render(service: LLMService, config: OperatorConfig) -> list[dict[str, Any]]:
    """The children in apply order. Raises `InvalidSpec` when `check` finds a problem."""
    check(service, config)
    children = []
    if service.spec.cache.enabled:
        children += [cache.claim(service, config), cache.download_job(service, config)]
    children += [
        workload.deployment(service, config),
        service_manifest(service),
        network_policy(service),
    ]
    return children
