"""Assemble the children of one LLMService, after the checks only rendering can make."""

from __future__ import annotations

import re
from typing import Any, Final

from llmserve.api import fit
from llmserve.api.config import OperatorConfig
from llmserve.api.errors import InvalidSpec, Problem
from llmserve.api.models import LLMService, NetworkPeer
from llmserve.render import cache, meta, workload
from llmserve.render.engines import PROFILES

DNS: Final = ({"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53})
"""The one egress of an engine that runs offline."""


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


def _peers(peers: list[NetworkPeer]) -> list[dict[str, Any]]:
    return [peer.model_dump(by_alias=True, exclude_defaults=True) for peer in peers]


def _tcp(port: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port}]


def network_policy(service: LLMService, config: OperatorConfig) -> dict[str, Any]:
    """The NetworkPolicy `<name>`: who may connect to the server pods, and where they may go.

    Ingress: the proxy's port from the pods of the LLMService's own namespace and from
    `spec.proxy.allowedFrom`; the metrics port from the operator's `metricsFrom` only (its own
    pods, whose autoscaler scrapes it, and Prometheus); no other port (the engine listens on
    loopback anyway). The API keys decide who gets an answer; this decides who may connect at all,
    where the network plugin enforces policies.

    Egress, with the model cache: the engine runs offline (HF_HUB_OFFLINE=1, the download Job
    fetched the model), so its pods may resolve names and nothing else: a hostile model or image
    reaches neither the cloud metadata endpoint, the API server, other Services nor the Internet.
    Without the cache the engine downloads the model at start, so egress stays open. The download
    Job's pods are another component (other labels): this policy does not select them.

    NetworkPolicies add up (a pod takes what any policy selecting it allows): a user's own policy
    can open more, such as a port of an injected sidecar, but not narrow this one.
    """
    ingress: list[dict[str, Any]] = [
        {
            "from": [{"podSelector": {}}, *_peers(service.spec.proxy.allowed_from or [])],
            "ports": _tcp(workload.PROXY_PORT),
        }
    ]
    if config.metrics_from:  # an empty `from` would admit everyone: leave the port closed instead
        ingress.append({"from": _peers(config.metrics_from), "ports": _tcp(workload.METRICS_PORT)})
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": meta.selector_labels(service, meta.COMPONENT_SERVER)},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }
    if service.spec.cache.enabled:
        spec["policyTypes"].append("Egress")
        spec["egress"] = [{"ports": [dict(port) for port in DNS]}]
    manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta.metadata(service, meta.deployment_name(service), meta.COMPONENT_SERVER),
        "spec": spec,
    }
    return meta.stamp(manifest)


def validate_engine_args(service: LLMService) -> list[Problem]:
    """Problems with spec.engineArgs: flags that llmserve owns, or arguments an engine ignores.

    The engine would take the last of two flags given, and a wrong port, host, parallelism or
    quantization breaks the pod or dodges the checks. So are refused: an owned flag however the
    engine's parser spells it (`EngineProfile.sets`: aliases, `--flag=value`, prefixes, `-qfp8`),
    a config file (it could set any flag), and positional arguments (vLLM takes one as the model).
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
    owned = frozenset(profile.fields) | {
        profile.canonical(token)
        for token in profile.args(workload.engine_inputs(service))
        if token.startswith("-")
    }
    problems = []
    takes_value = False  # whether the token before may take the next one as its value
    for index, token in enumerate(service.spec.engine_args):
        where = f"spec.engineArgs[{index}]"
        if _is_value(token):
            if not takes_value:
                problems.append(Problem(where, _positional(token, index)))
            continue
        takes_value = "=" not in token
        if token == "--":  # noqa: S105 - not a password: argparse's end of options
            problems.append(Problem(where, "-- makes every later argument positional; remove it"))
        elif flag := profile.sets(token, owned):
            spelled = token.split("=", 1)[0]
            if profile.canonical(token) != flag:
                spelled += f", which the engine reads as {flag},"
            field = profile.fields.get(flag, "the matching spec field")
            reason = field.removeprefix("nothing: ")  # a flag no spec field replaces
            fix = f": {reason}" if reason != field else f" and set {field} instead"
            reserved = f"is reserved by llmserve for engine {service.spec.engine}"
            problems.append(Problem(where, f"{spelled} {reserved}; remove it{fix}"))
    return problems


def _is_value(token: str) -> bool:
    """A token that is not a flag: parsers read `-1` and `-0.5` as values too."""
    return not token.startswith("-") or re.fullmatch(r"-\d+|-\d*\.\d+", token) is not None


def _positional(token: str, index: int) -> str:
    what = "the first argument" if index == 0 else "after a --flag=value"
    return (
        f"{token!r} is {what}, so the engine reads it as a positional argument (vLLM as the "
        "model to serve); give it as the value of a flag, or remove it"
    )


def check(service: LLMService, config: OperatorConfig) -> fit.FitReport:
    """Every rule that needs more than the spec alone: engineArgs, GPUs per node and the VRAM fit.

    Raises `InvalidSpec` with all problems; returns the fit report (its notes say what was assumed).
    """
    problems = validate_engine_args(service)
    if service.spec.gpus > config.max_gpus_per_replica:
        problems.append(
            Problem(
                "spec.gpus",
                f"at most {config.max_gpus_per_replica} GPUs fit one node here (the operator's "
                "maxGpusPerReplica), and one replica runs on one node; ask for fewer GPUs, "
                "e.g. with a quantization that needs fewer",
            )
        )
    report = fit.check(fit.input_for(service.spec, config.default_gpu_memory_gib))
    if report.verdict == "does-not-fit":
        problems.append(
            Problem(_fit_field(service, report), f"model does not fit: {report.reason}")
        )
    if problems:
        raise InvalidSpec(service.ref, problems)
    return report


def _fit_field(service: LLMService, report: fit.FitReport) -> str:
    """The field a fit failure is about: spec.maxModelLen or spec.gpus.

    The context length when its KV cache outweighs the weights (more GPUs would not be the fix to
    try first), else the GPU count.
    """
    kv, weights = report.kv_cache_gib or 0.0, report.weights_gib or 0.0
    return "spec.maxModelLen" if service.spec.max_model_len and kv > weights else "spec.gpus"


def render(service: LLMService, config: OperatorConfig) -> list[dict[str, Any]]:
    """The children in apply order. Raises `InvalidSpec` when `check` finds a problem."""
    check(service, config)
    children = []
    if service.spec.cache.enabled:
        children += [cache.claim(service, config), cache.download_job(service, config)]
    children += [
        workload.deployment(service, config),
        service_manifest(service),
        network_policy(service, config),
    ]
    return children
