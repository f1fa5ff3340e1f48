"""What the children say, in words: the cache state, the phase, conditions and status fields.

Pure functions of the LLMService, the observed children and the time; the reconciler feeds them and
writes their result. A condition keeps its lastTransitionTime while its status does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from llmserve.api.models import LLMService, Phase
from llmserve.render import workload

CacheState = Literal["disabled", "absent", "running", "succeeded", "failed"]
RETRY_BASE_SECONDS: Final = 30
RETRY_MAX_SECONDS: Final = 600


@dataclass(frozen=True)
class Cache:
    """The model cache as the download Job shows it."""

    state: CacheState
    reason: str
    message: str
    attempt: int = 1
    failed_at: datetime | None = None


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time of the API server, or None."""
    return datetime.fromisoformat(value) if value else None


def cache_state(job: dict[str, Any] | None, *, enabled: bool, attempt: int) -> Cache:
    """The cache step from the download Job (`attempt` counts Jobs made for this cache key)."""
    if not enabled:
        return Cache("disabled", "CacheDisabled", "spec.cache.enabled is false: engines download")
    if job is None:
        return Cache("absent", "DownloadPending", "the download Job is being created", attempt)
    if (job.get("status", {}).get("succeeded") or 0) > 0:
        return Cache("succeeded", "Downloaded", "the model is in the cache volume", attempt)
    failed = _condition(job, "Failed")
    if failed:
        message = f"download attempt {attempt} failed: {failed.get('message') or failed['reason']}"
        when = parse_time(failed.get("lastTransitionTime"))
        return Cache("failed", failed.get("reason") or "DownloadFailed", message, attempt, when)
    return Cache("running", "Downloading", f"download attempt {attempt} is running", attempt)


def retry_delay(attempt: int) -> int:
    """Seconds to wait after failed attempt `attempt` (30 s, doubling, at most 10 min)."""
    return int(min(RETRY_BASE_SECONDS * 2 ** (attempt - 1), RETRY_MAX_SECONDS))


@dataclass(frozen=True)
class Verdict:
    """One condition's new state."""

    kind: str
    holds: bool
    reason: str
    message: str


def _set(
    previous: list[dict[str, Any]], verdict: Verdict, now: datetime, generation: int | None
) -> dict[str, Any]:
    kind = verdict.kind
    value = "True" if verdict.holds else "False"
    old = next((c for c in previous if c.get("type") == kind), None)
    changed = old is None or old.get("status") != value
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition: dict[str, Any] = {
        "type": kind,
        "status": value,
        "reason": verdict.reason,
        "message": verdict.message,
        "lastTransitionTime": stamp if changed or old is None else old.get("lastTransitionTime"),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


@dataclass(frozen=True)
class Scaling:
    """The autoscaler's last decision, as status shows it."""

    replicas: int
    reason: str
    message: str
    autoscaler: dict[str, Any]
    """`status.autoscaler`: the decision and the policy's memory."""

    @classmethod
    def kept(cls, status: dict[str, Any]) -> Scaling | None:
        """The decision a status holds (an operator that just started has made none yet)."""
        block = status.get("autoscaler")
        if not block or status.get("desiredReplicas") is None:
            return None
        return cls(status["desiredReplicas"], block.get("reason") or "", block.get("message") or "",
                   block)  # fmt: skip

    @property
    def blind(self) -> bool:
        """Whether the autoscaler has no load to decide on."""
        return self.reason == "NoMetrics"


@dataclass(frozen=True)
class Observation:
    """Everything the status is computed from."""

    service: LLMService
    previous: list[dict[str, Any]]
    """The conditions as last written: each keeps its transition time until its status flips."""
    cache: Cache
    deployment: dict[str, Any] | None
    engine_args: list[str]
    image: str
    selector: str
    endpoint: str
    unschedulable: str | None = None
    """Why the scheduler cannot place a replica's pod (its PodScheduled message), if it cannot."""
    scaling: Scaling | None = None
    """The autoscaler's last decision, when spec.autoscaling is enabled."""


def _phase(  # noqa: PLR0913 - what the phase depends on
    cache: Cache,
    desired: int,
    ready: int,
    deployment: dict[str, Any] | None,
    *,
    placed: bool,
    autoscaled: bool,
) -> Phase:
    if cache.state == "failed":
        return "Failed"
    if cache.state in ("absent", "running"):
        return "Downloading"
    if deployment is None or (ready == 0 and not placed):
        return "Pending"  # no Deployment yet, or no node can take its pods
    if desired == 0 or ready >= desired:
        return "Ready"
    if ready == 0:
        return "Starting"
    # Short of replicas the autoscaler just added is not a fault: they are loading the model.
    return "Scaling" if autoscaled and placed else "Degraded"


def secure(service: LLMService) -> Verdict:
    """Whether clients need an API key, and where it is: `kubectl describe` shows it."""
    keys = workload.api_keys_source(service)
    namespace = service.metadata.namespace or "default"
    if keys is None:
        admitted = f"pods of namespace {namespace}"
        if service.spec.proxy.allowed_from:
            admitted += " and spec.proxy.allowedFrom"
        return Verdict(
            "Secure",
            holds=False,
            reason="AuthDisabled",
            message=f"spec.proxy.auth is none: the proxy asks for no API key, so every client "
            f"the NetworkPolicy admits ({admitted}) may use the model; set spec.proxy.auth: "
            "apiKeys to require keys",
        )
    if workload.generates_api_keys(service):
        return Verdict(
            "Secure",
            holds=True,
            reason="GeneratedApiKey",
            message=f"clients send the key in Secret {keys.name}, made by llmserve, as "
            f"Authorization: Bearer; read it with kubectl get secret {keys.name} -n {namespace} "
            f"-o jsonpath='{{.data.{keys.key}}}' | base64 -d",
        )
    return Verdict(
        "Secure",
        holds=True,
        reason="ApiKeys",
        message=f"clients send a key from Secret {keys.name} (key {keys.key}) as "
        "Authorization: Bearer",
    )


def status(observation: Observation, now: datetime) -> dict[str, Any]:
    """The whole status of a valid LLMService."""
    service, cache, deployment = observation.service, observation.cache, observation.deployment
    previous = observation.previous
    generation = service.metadata.generation
    live = (deployment or {}).get("status", {})
    desired = service.spec.replicas
    ready, replicas = live.get("readyReplicas") or 0, live.get("replicas") or 0
    cached = cache.state in ("succeeded", "disabled")
    available = deployment is not None and ready > 0
    if available:
        avail_reason, avail_message = "ReplicasReady", f"{ready}/{desired} replicas ready"
    elif deployment is None:
        avail_reason, avail_message = (
            "WaitingForCache",
            "the engine starts once the model is cached",
        )
    else:
        avail_reason, avail_message = "ReplicasStarting", f"0/{desired} replicas ready: loading"
    if observation.unschedulable and deployment is not None:
        avail_reason = "Unschedulable"
        avail_message = f"{ready}/{desired} replicas ready; {observation.unschedulable}"
    verdicts = [
        Verdict("Valid", holds=True, reason="Valid", message="the spec passed every check"),
        Verdict("ModelCached", holds=cached, reason=cache.reason, message=cache.message),
        Verdict("Available", holds=available, reason=avail_reason, message=avail_message),
        secure(service),
    ]
    scaling = observation.scaling
    if scaling is not None:
        verdicts.append(
            Verdict(
                "Scaling", holds=not scaling.blind, reason=scaling.reason, message=scaling.message
            )
        )
    conditions = [_set(previous, v, now, generation) for v in verdicts]
    placed = not observation.unschedulable
    return {
        "phase": _phase(
            cache, desired, ready, deployment, placed=placed, autoscaled=scaling is not None
        ),
        "conditions": conditions,
        # None removes what an earlier, autoscaled generation wrote (a merge patch deletes nulls).
        "desiredReplicas": scaling.replicas if scaling else None,
        "autoscaler": scaling.autoscaler if scaling else None,
        "replicas": replicas,
        "readyReplicas": ready,
        "selector": observation.selector,
        "endpoint": observation.endpoint,
        "observedGeneration": generation,
        "engineArgs": observation.engine_args,
        "image": observation.image,
    }


def invalid_status(
    service_body: dict[str, Any], reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """Status of an LLMService that cannot run as it is.

    The operator refuses its spec (`InvalidSpec`), or the API server refuses a child
    (`ChildRejected`).
    """
    meta = service_body.get("metadata", {})
    previous = (service_body.get("status") or {}).get("conditions") or []
    generation = meta.get("generation")
    invalid = Verdict("Valid", holds=False, reason=reason, message=message)
    return {
        "phase": "Failed",
        "conditions": [_set(previous, invalid, now, generation)],
        "observedGeneration": generation,
    }


def unschedulable(pods: list[dict[str, Any]]) -> str | None:
    """The scheduler's word on the first pod it cannot place, e.g. `Insufficient nvidia.com/gpu`."""
    for pod in pods:
        for condition in pod.get("status", {}).get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                name = pod["metadata"]["name"]
                return f"pod {name} cannot be scheduled: {condition.get('message', '').strip()}"
    return None


def worth_asking_why(deployment: dict[str, Any] | None, desired: int, now: datetime) -> bool:
    """Whether to read the pods of a Deployment short of ready replicas.

    Only once it has been short for a while: most pods start within seconds, and listing pods on
    every pass of a starting LLMService would double what a start costs the API server.
    """
    if deployment is None:
        return False
    ready = deployment.get("status", {}).get("readyReplicas") or 0
    created = parse_time(deployment.get("metadata", {}).get("creationTimestamp"))
    return ready < desired and created is not None and (now - created).total_seconds() > ASK_AFTER


ASK_AFTER: Final = 10
"""Seconds a Deployment may be short of ready replicas before its pods are read."""
