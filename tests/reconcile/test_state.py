"""The pure half of reconciling: cache state from the Job, phase and conditions, drift."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support import service

from llmserve.reconcile import state
from llmserve.reconcile.drift import contains, drifted

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j"}, "status": status}


FAILED = job(
    conditions=[
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastTransitionTime": "2026-11-23T11:59:00Z",
        }
    ]
)


@pytest.mark.parametrize(
    ("live", "enabled", "expected", "reason"),
    [
        (None, False, "disabled", "CacheDisabled"),
        (None, True, "absent", "DownloadPending"),
        (job(active=1), True, "running", "Downloading"),
        (job(succeeded=1), True, "succeeded", "Downloaded"),
        (FAILED, True, "failed", "BackoffLimitExceeded"),
    ],
)
def test_cache_state_follows_the_download_job(live, enabled, expected, reason) -> None:
    cache = state.cache_state(live, enabled=enabled, attempt=2)
    assert (cache.state, cache.reason) == (expected, reason)


def test_a_failed_download_says_which_attempt_and_why() -> None:
    cache = state.cache_state(FAILED, enabled=True, attempt=3)
    assert cache.message.startswith("download attempt 3 failed: Job has reached")
    assert cache.failed_at == NOW - timedelta(minutes=1)


@pytest.mark.parametrize(("attempt", "delay"), [(1, 30), (2, 60), (3, 120), (5, 480), (9, 600)])
def test_retries_back_off_doubling_up_to_ten_minutes(attempt, delay) -> None:
    assert state.retry_delay(attempt) == delay


def observe(
    cache: state.Cache,
    deployment: dict[str, Any] | None,
    previous: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    svc = service(spec)
    observation = state.Observation(
        svc, previous or [], cache, deployment, ["--x"], "img", "a=b", "http://e/v1"
    )
    return state.status(observation, NOW)


def test_a_condition_keeps_its_transition_time_until_its_status_flips() -> None:
    earlier = [
        {"type": "ModelCached", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Available", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ]
    conditions = {c["type"]: c for c in observe(CACHED, None, earlier)["conditions"]}
    assert conditions["ModelCached"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert conditions["Available"]["lastTransitionTime"] != "2026-01-01T00:00:00Z"  # flipped


CACHED = state.Cache("succeeded", "Downloaded", "in the cache")


@pytest.mark.parametrize(
    ("cache", "deployment", "replicas", "phase"),
    [
        (state.Cache("running", "Downloading", "..."), None, 1, "Downloading"),
        (state.Cache("failed", "BackoffLimitExceeded", "..."), None, 1, "Failed"),
        (CACHED, None, 1, "Pending"),
        (CACHED, {"status": {"replicas": 2}}, 2, "Starting"),
        (CACHED, {"status": {"replicas": 2, "readyReplicas": 1}}, 2, "Degraded"),
        (CACHED, {"status": {"replicas": 2, "readyReplicas": 2}}, 2, "Ready"),
        (CACHED, {"status": {}}, 0, "Ready"),
    ],
)
def test_the_phase_tells_where_the_service_is(cache, deployment, replicas, phase) -> None:
    assert observe(cache, deployment, replicas=replicas)["phase"] == phase


def test_status_carries_the_resolved_fields_and_four_conditions() -> None:
    got = observe(CACHED, {"status": {"replicas": 1, "readyReplicas": 1}})
    assert got["endpoint"] == "http://e/v1"
    assert got["engineArgs"] == ["--x"]
    assert (got["replicas"], got["readyReplicas"], got["selector"]) == (1, 1, "a=b")
    assert [(c["type"], c["status"]) for c in got["conditions"]] == [
        ("Valid", "True"),
        ("ModelCached", "True"),
        ("Available", "True"),
        ("Secure", "True"),
    ]


def secure(**proxy: Any) -> dict[str, Any]:
    conditions = observe(CACHED, None, proxy=proxy)["conditions"]
    return next(c for c in conditions if c["type"] == "Secure")


def test_secure_says_where_the_generated_key_is() -> None:
    got = secure()
    assert (got["status"], got["reason"]) == ("True", "GeneratedApiKey")
    assert "Secret llama-8b-api-keys" in got["message"]
    assert "kubectl get secret llama-8b-api-keys -n default" in got["message"]
    assert "jsonpath='{.data.api-keys}' | base64 -d" in got["message"]


def test_secure_names_the_users_secret() -> None:
    got = secure(apiKeySecretRef={"name": "team-keys", "key": "list"})
    assert (got["status"], got["reason"]) == ("True", "ApiKeys")
    assert "Secret team-keys (key list)" in got["message"]


def test_an_open_proxy_is_not_secure_and_the_message_says_who_may_call_it() -> None:
    got = secure(auth="none")
    assert (got["status"], got["reason"]) == ("False", "AuthDisabled")
    assert "spec.proxy.auth is none" in got["message"]
    assert "(pods of namespace default)" in got["message"]
    assert "set spec.proxy.auth: apiKeys" in got["message"]
    wider = secure(auth="none", allowedFrom=[{"namespaceSelector": {}}])
    assert "(pods of namespace default and spec.proxy.allowedFrom)" in wider["message"]


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    earlier = "2026-11-23T10:00:00Z"
    previous = [{"type": "Valid", "status": "False", "lastTransitionTime": earlier}]
    body = {"metadata": {"generation": 4}, "status": {"conditions": previous}}
    again = state.invalid_status(body, "InvalidSpec", "spec.gpus: ...", NOW)
    assert again["conditions"][0]["lastTransitionTime"] == earlier
    assert again["conditions"][0]["observedGeneration"] == 4
    body["status"]["conditions"][0]["status"] = "True"
    flipped = state.invalid_status(body, "ChildRejected", "spec.gpus: ...", NOW)
    assert flipped["conditions"][0]["reason"] == "ChildRejected"
    assert flipped["conditions"][0]["lastTransitionTime"] == "2026-11-23T12:00:00Z"


DESIRED = {
    "metadata": {"labels": {"a": "1"}, "annotations": {"h": "x"}},
    "spec": {
        "replicas": 2,
        "template": {"spec": {"containers": [{"image": "i:1", "resources": {"cpu": "0.5"}}]}},
    },
}


def live(**changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(DESIRED)
    obj["metadata"]["labels"]["team"] = "ml"  # someone else's label
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["cpu"] = "500m"
    for path, value in changes.items():
        node = obj
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[leaf] = value
    return obj


def test_extra_fields_and_normalised_quantities_are_not_drift() -> None:
    assert not drifted(DESIRED, live())


@pytest.mark.parametrize(
    "change",
    [
        {"spec__replicas": 3},
        {"spec__template__spec__containers__0__image": "evil:1"},
        {"metadata__annotations": {}},
    ],
)
def test_a_changed_field_of_ours_is_drift(change) -> None:
    assert drifted(DESIRED, live(**change))


def test_a_missing_child_is_drift() -> None:
    assert drifted(DESIRED, None)


def test_lists_must_match_element_by_element() -> None:
    assert not contains([{"a": 1}], [{"a": 1}, {"b": 2}])
    assert contains([{"a": 1, "z": 0}], [{"a": 1}])


UNSCHEDULABLE_POD = {
    "metadata": {"name": "llama-8b-5d9f-x2x"},
    "status": {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. "}
        ],
    },
}  # fmt: skip


def test_a_pod_no_node_can_take_makes_the_service_pending_and_says_why() -> None:
    why = state.unschedulable([{"metadata": {"name": "ok"}, "status": {}}, UNSCHEDULABLE_POD])
    assert why == (
        "pod llama-8b-5d9f-x2x cannot be scheduled: 0/2 nodes are available: "
        "2 Insufficient nvidia.com/gpu."
    )
    svc = service({})
    observation = state.Observation(
        svc, [], CACHED, {"status": {"replicas": 1}}, [], "img", "a=b", "http://e/v1", why
    )
    status = state.status(observation, NOW)
    assert status["phase"] == "Pending"
    available = next(c for c in status["conditions"] if c["type"] == "Available")
    assert available["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in available["message"]


@pytest.mark.parametrize(
    ("age", "ready", "expected"), [(5, 0, False), (30, 0, True), (30, 1, False)]
)
def test_pods_are_read_only_for_a_deployment_short_of_replicas_for_a_while(
    age: int, ready: int, *, expected: bool
) -> None:
    created = (NOW - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    deployment = {"metadata": {"creationTimestamp": created}, "status": {"readyReplicas": ready}}
    assert state.worth_asking_why(deployment, 1, NOW) is expected
    assert state.worth_asking_why(None, 1, NOW) is False
