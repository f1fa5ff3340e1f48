"""Desired state -> apply -> status: one idempotent pass over one LLMService.

Any pass can run again at any time with no effect beyond repairing drift: children are read from
what the operator has seen (`Seen`: its watches and its own writes), only missing or drifted ones
are applied (server-side apply, field manager `llmserve`), the cache volume and the generated
API-keys Secret are created once, the download Job is recreated when the cache key changes or after
a failure and its back-off, and the engine Deployment is applied only once the model is cached
(until then the old one keeps serving). The result is a status and the events to post. A spec the
operator refuses, or a child the API server refuses, makes `Valid=False` and phase Failed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from llmserve import render
from llmserve.api import InvalidSpec, LLMService, parse_llmservice
from llmserve.api.config import OperatorConfig
from llmserve.kube import objects
from llmserve.kube.client import Client
from llmserve.kube.errors import KubeApiError, RejectedChildError
from llmserve.reconcile import state
from llmserve.reconcile.drift import drifted
from llmserve.reconcile.seen import Seen
from llmserve.render import meta, workload

ATTEMPT: Final = f"{meta.ANNOTATION_PREFIX}/attempt"
KEY_PREFIX: Final = "sk-"
"""Generated API keys look like OpenAI's, so tools that check the shape accept them."""
GC_GRACE_SECONDS: Final = 30
"""How long after an LLMService's creation a Secret of its name may still be a deleted namesake's,
not yet garbage-collected."""
SECRET_RETRY_SECONDS: Final = 5


@dataclass
class Outcome:
    """What a pass decided: the status to write and the events to post (type, reason, message)."""

    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)
    retry_after: float | None = None
    """Seconds until the pass should run again on its own (a download back-off), if any."""

    def again_in(self, seconds: float) -> None:
        """Run the pass again after `seconds` at the latest."""
        self.retry_after = min(seconds, self.retry_after or seconds)


def _by_kind(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {child["kind"]: child for child in children}


@dataclass(frozen=True)
class Known:
    """What the operator process knows beyond the body a pass is handed."""

    last_phase: str | None = None
    """The phase this process wrote last (an event's body can be older)."""
    children: Seen = field(default_factory=Seen)
    """Children from the watches and from the pass's own writes: a pass reads no child."""
    scaling: state.Scaling | None = None
    """The autoscaler's latest decision in this process, if it made one."""


def _live(child: dict[str, Any], seen: Seen) -> dict[str, Any] | None:
    m = child["metadata"]
    return seen.get(child["kind"], m["namespace"], m["name"])


async def _apply(client: Client, child: dict[str, Any], seen: Seen) -> dict[str, Any]:
    live = await objects.apply(client, child)
    seen.wrote(live)
    return live


async def _ensure(client: Client, child: dict[str, Any], seen: Seen) -> dict[str, Any]:
    """Apply the child unless the live object already holds everything we render."""
    live = _live(child, seen)
    return await _apply(client, child, seen) if drifted(child, live) else live or {}


async def _create_once(client: Client, child: dict[str, Any], seen: Seen) -> None:
    """Create the cache volume once and never touch it again.

    A bound claim's size can only grow, and only on StorageClasses that allow it, and its access
    modes never change: resizing is a deliberate act for the user, not something to retry.
    """
    if _live(child, seen) is None:
        created = await objects.create(client, child)  # None: it exists; its event is coming
        if created is not None:
            seen.wrote(created)


def _attempt(job: dict[str, Any] | None) -> int:
    annotations = (job or {}).get("metadata", {}).get("annotations") or {}
    try:
        return int(annotations.get(ATTEMPT, "1"))
    except ValueError:
        return 1


async def _create_job(
    client: Client, job: dict[str, Any], attempt: int, seen: Seen
) -> dict[str, Any]:
    """Create the download Job; when one exists that the watch had not shown yet, read it."""
    meta = job["metadata"]
    annotations = {**meta["annotations"], ATTEMPT: str(attempt)}
    numbered = {**job, "metadata": {**meta, "annotations": annotations}}
    created = await objects.create(client, numbered)
    if created is None:
        created = await objects.get(client, "batch/v1", "Job", meta["namespace"], meta["name"])
    if created is None:  # deleted between the two calls: start over
        msg = f"Job {meta['namespace']}/{meta['name']} vanished while being created"
        raise KubeApiError(msg)
    seen.wrote(created)
    return created


async def _delete_job(client: Client, live: dict[str, Any], seen: Seen) -> None:
    seen.deleting(live)
    m = live["metadata"]
    await objects.delete(client, "batch/v1", "Job", m["namespace"], m["name"])


async def _cache(
    client: Client, job: dict[str, Any], now: datetime, outcome: Outcome, seen: Seen
) -> state.Cache:
    """Run the download step: create, replace on a new cache key, retry after a failure."""
    live = _live(job, seen) or await _create_job(client, job, 1, seen)
    key = job["metadata"]["annotations"][meta.CACHE_KEY]
    if live["metadata"].get("annotations", {}).get(meta.CACHE_KEY) != key:
        # A new model, revision or quantization: the old Job's pod template is immutable.
        await _delete_job(client, live, seen)
        live = await _create_job(client, job, 1, seen)
    cache = state.cache_state(live, enabled=True, attempt=_attempt(live))
    if cache.state != "failed":
        return cache
    delay = state.retry_delay(cache.attempt)
    due = (cache.failed_at or now) + timedelta(seconds=delay)
    if now < due:
        outcome.again_in((due - now).total_seconds())
        return state.Cache(
            cache.state, cache.reason, f"{cache.message}; retrying in {delay} s", cache.attempt
        )
    await _delete_job(client, live, seen)
    live = await _create_job(client, job, cache.attempt + 1, seen)
    outcome.events.append(
        ("Normal", "RetryingDownload", f"{cache.message}; starting attempt {cache.attempt + 1}")
    )
    return state.cache_state(live, enabled=True, attempt=cache.attempt + 1)


def _younger_than(body: dict[str, Any], seconds: float, now: datetime) -> bool:
    created = state.parse_time(body["metadata"].get("creationTimestamp"))
    return created is not None and (now - created).total_seconds() < seconds


async def _api_keys(  # noqa: PLR0913 - what the step reads and writes
    client: Client,
    service: LLMService,
    body: dict[str, Any],
    *,
    now: datetime,
    outcome: Outcome,
    seen: Seen,
) -> None:
    """Create the Secret `<name>-api-keys` with a random key once; never read or change it.

    The operator may create Secrets and nothing more (it sees no one's Secrets), so a 409 means
    the Secret exists and the user's key stays; but for a new LLMService it may be the Secret of a
    deleted one of the same name that the garbage collector has yet to remove, so the pass tries
    again shortly. What was created or found is remembered (metadata only, never the key) with
    the LLMService's uid as owner: a settled LLMService costs no request, and one deleted and
    created again gets its Secret again.
    """
    name, namespace = meta.api_keys_secret_name(service), service.metadata.namespace or ""
    known = seen.get("Secret", namespace, name)
    owners = meta.owner_references(service)
    if known is not None and known["metadata"].get("ownerReferences") == owners:
        return
    secret = workload.api_keys_secret(service, KEY_PREFIX + secrets.token_urlsafe(32))
    created = await objects.create(client, secret)
    if created is None and _younger_than(body, GC_GRACE_SECONDS, now):
        outcome.again_in(SECRET_RETRY_SECONDS)
        return
    seen.wrote({"apiVersion": "v1", "kind": "Secret", "metadata": secret["metadata"]})


def _phase_event(
    body: dict[str, Any], status: dict[str, Any], last_phase: str | None
) -> list[tuple[str, str, str]]:
    old = last_phase or (body.get("status") or {}).get("phase")
    new = status["phase"]
    if old == new:
        return []
    worst = next((c for c in status["conditions"] if c["status"] == "False"), None)
    message = worst["message"] if worst else "every condition holds"
    kind = "Warning" if new in ("Failed", "Degraded") else "Normal"
    return [(kind, new, f"phase {old or 'new'} -> {new}: {message}")]


def _newly(
    body: dict[str, Any], status: dict[str, Any], kind: str, reason: str
) -> list[tuple[str, str, str]]:
    """A Warning when condition `kind` newly has `reason` (once, not on every pass)."""
    old = (body.get("status") or {}).get("conditions") or []
    was: dict[str, Any] = next((c for c in old if c.get("type") == kind), {})
    now = next(c for c in status["conditions"] if c["type"] == kind)
    if now["reason"] == reason and was.get("reason") != reason:
        return [("Warning", reason, now["message"])]
    return []


def _refused(
    body: dict[str, Any], reason: str, message: str, now: datetime, last_phase: str | None
) -> Outcome:
    """Phase Failed and `Valid=False`: the spec cannot run as it is.

    A Warning goes with each new message, not with every pass.
    """
    status = state.invalid_status(body, reason, message, now)
    events = _phase_event(body, status, last_phase)
    previous = (body.get("status") or {}).get("conditions") or []
    said = next((c.get("message") for c in previous if c.get("type") == "Valid"), None)
    if events or said != message:
        events.append(("Warning", reason, message))
    return Outcome(status, events)


async def reconcile(
    body: dict[str, Any],
    client: Client,
    config: OperatorConfig,
    now: datetime,
    known: Known | None = None,
) -> Outcome:
    """One pass: check, apply what is missing or drifted, observe, and say what happened."""
    known = known or Known()
    try:
        service = parse_llmservice(body, admitted=True)  # the API server ran the CEL rules
        rendered = render.render(service, config)  # runs render.check: refuses what cannot run
    except InvalidSpec as error:
        return _refused(body, "InvalidSpec", str(error), now, known.last_phase)
    try:
        return await _converge(body, service, rendered, client, now=now, known=known)
    except RejectedChildError as error:  # the same request would be refused again
        message = (
            f"{error}; change the spec so that this child is valid (or the cluster policy that "
            "refuses it), then the operator tries again"
        )
        return _refused(body, "ChildRejected", message, now, known.last_phase)


async def _converge(  # noqa: PLR0913 - one pass's inputs
    body: dict[str, Any],
    service: LLMService,
    rendered: list[dict[str, Any]],
    client: Client,
    *,
    now: datetime,
    known: Known,
) -> Outcome:
    """Apply what is missing or drifted, observe the children, and compute the status."""
    last_phase, seen = known.last_phase, known.children
    children = _by_kind(rendered)
    outcome = Outcome({})
    if workload.generates_api_keys(service):
        await _api_keys(client, service, body, now=now, outcome=outcome, seen=seen)
    cache = state.cache_state(None, enabled=False, attempt=1)
    if service.spec.cache.enabled:
        await _create_once(client, children["PersistentVolumeClaim"], seen)
        cache = await _cache(client, children["Job"], now, outcome, seen)
    await _ensure(client, children["Service"], seen)
    await _ensure(client, children["NetworkPolicy"], seen)
    deployment = children["Deployment"]
    live = _live(deployment, seen)
    if cache.state in ("succeeded", "disabled") and drifted(deployment, live):
        live = await _apply(client, deployment, seen)
    name, namespace = service.name, service.metadata.namespace
    selector = meta.selector_string(service)
    why = None
    if state.worth_asking_why(live, service.spec.replicas, now):
        pods = await objects.list_(client, "v1", "Pod", namespace or "", selector)
        why = state.unschedulable(pods)
    scaling = None
    if service.spec.autoscaling.enabled:
        # Until this process decides, the decision the status holds stands (after a restart).
        scaling = known.scaling or state.Scaling.kept(body.get("status") or {})
    observation = state.Observation(
        service=service,
        previous=(body.get("status") or {}).get("conditions") or [],
        cache=cache,
        deployment=live,
        engine_args=workload.engine_args(service),
        image=deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        selector=selector,
        endpoint=f"http://{name}.{namespace}.svc/v1",
        unschedulable=why,
        scaling=scaling,
    )
    outcome.status = state.status(observation, now)
    outcome.events += _phase_event(body, outcome.status, last_phase)
    outcome.events += _newly(body, outcome.status, "Available", "Unschedulable")
    outcome.events += _newly(body, outcome.status, "Secure", "AuthDisabled")
    return outcome
