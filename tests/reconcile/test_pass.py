"""One reconcile pass against an in-memory API: what it creates, when, and what it reports.

The cluster tests prove the same against a real API server; these pin down the timing rules
(download back-off, the cache gate) that a real cluster makes slow or awkward to provoke.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.reconcile.test_state import UNSCHEDULABLE_POD
from tests.support import document

from llmserve import reconcile
from llmserve.api.config import OperatorConfig
from llmserve.kube.errors import RejectedChildError
from llmserve.reconcile.seen import Seen

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
Key = tuple[str, str, str]


class FakeObjects:
    """The calls of llmserve.kube.objects the pass makes, over a dict, with a watch that keeps
    `seen` up to date (unless `watching` is off: a watch that lags)."""

    def __init__(self) -> None:
        self.store: dict[Key, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.seen = Seen()
        self.watching = True
        self.uids = itertools.count(1)
        self.refuse: dict[str, str] = {}
        """kind -> the API server's message when it refuses an object of that kind."""

    def _event(self, obj: dict[str, Any]) -> None:
        if self.watching:
            self.seen.observe(copy.deepcopy(obj))

    async def get(self, _: object, __: str, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind))
        stored = self.store.get((kind, ns, name))
        return copy.deepcopy(stored) if stored else None

    async def create(self, _: object, manifest: dict[str, Any]) -> dict[str, Any] | None:
        key = (manifest["kind"], manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        self.calls.append(("create", manifest["kind"]))
        if key in self.store:
            return None
        return await self._write(key, manifest)

    async def apply(self, _: object, manifest: dict[str, Any]) -> dict[str, Any]:
        key = (manifest["kind"], manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        self.calls.append(("apply", manifest["kind"]))
        if manifest["kind"] in self.refuse:
            what = f"{manifest['kind']} {key[1]}/{key[2]}"
            raise RejectedChildError(
                f"the API server refused {what} (422): {self.refuse[manifest['kind']]}"
            )
        return await self._write(key, manifest)

    async def _write(self, key: Key, manifest: dict[str, Any]) -> dict[str, Any]:
        old = self.store.get(key, {})
        obj = copy.deepcopy(manifest)
        obj["metadata"]["uid"] = old.get("metadata", {}).get("uid") or f"uid-{next(self.uids)}"
        self.store[key] = {**obj, "status": old.get("status", {})}
        self._event(self.store[key])
        return copy.deepcopy(self.store[key])

    async def list_(self, _: object, __: str, kind: str, ns: str, ___: str) -> list[dict[str, Any]]:
        self.calls.append(("list", kind))
        return [copy.deepcopy(o) for (k, n, _), o in self.store.items() if (k, n) == (kind, ns)]

    async def delete(self, _: object, __: str, kind: str, ns: str, name: str) -> None:
        self.calls.append(("delete", kind))
        gone = self.store.pop((kind, ns, name), None)
        if gone and self.watching:
            self.seen.vanished(gone)

    def set_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.store[(kind, "ml", name)]["status"] = status
        self._event(self.store[(kind, "ml", name)])


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeObjects:
    fake = FakeObjects()
    for name in ("get", "create", "apply", "delete", "list_"):
        monkeypatch.setattr(reconcile.objects, name, getattr(fake, name))
    return fake


BODY = document({"gpuMemoryGiB": 80}, namespace="ml", uid="u-1", generation=1)


def run(api: FakeObjects, body: dict[str, Any] = BODY, now: datetime = T0) -> reconcile.Outcome:
    known = reconcile.Known(children=api.seen)
    return asyncio.run(reconcile.reconcile(copy.deepcopy(body), None, CONFIG, now, known))  # type: ignore[arg-type]


CONFIG = OperatorConfig()


FAILED_AT = (T0 + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
FAILED = {
    "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit", "lastTransitionTime": FAILED_AT}
    ]
}  # fmt: skip


def test_the_first_pass_starts_the_download_and_holds_the_engine_back(api: FakeObjects) -> None:
    outcome = run(api)
    assert sorted(kind for kind, _, _ in api.store) == [
        "Job", "NetworkPolicy", "PersistentVolumeClaim", "Secret", "Service"
    ]  # fmt: skip
    assert outcome.status["phase"] == "Downloading"
    assert ("Normal", "Downloading") in [(k, r) for k, r, _ in outcome.events]
    job = api.store[("Job", "ml", "llama-8b-model-download")]
    assert job["metadata"]["annotations"]["llmserve.io/attempt"] == "1"


def test_the_engine_starts_once_the_model_is_cached_then_turns_ready(api: FakeObjects) -> None:
    run(api)
    api.set_status("Job", "llama-8b-model-download", {"succeeded": 1})
    assert run(api).status["phase"] == "Starting"
    assert ("Deployment", "ml", "llama-8b") in api.store
    api.set_status("Deployment", "llama-8b", {"replicas": 1, "readyReplicas": 1})
    outcome = run(api)
    assert outcome.status["phase"] == "Ready"
    assert outcome.status["readyReplicas"] == 1


def test_a_settled_service_costs_no_writes(api: FakeObjects) -> None:
    run(api)
    api.set_status("Job", "llama-8b-model-download", {"succeeded": 1})
    run(api)
    api.calls.clear()
    run(api)
    run(api)
    assert api.calls == []


def test_a_pass_that_sees_nothing_new_writes_the_same_status(api: FakeObjects) -> None:
    first = run(api)
    body = {**copy.deepcopy(BODY), "status": first.status}
    later = run(api, body, now=T0 + timedelta(seconds=30))
    assert later.status == first.status
    assert later.events == []


def test_a_failed_download_waits_its_back_off_then_retries(api: FakeObjects) -> None:
    run(api)
    api.set_status("Job", "llama-8b-model-download", FAILED)
    early = run(api, now=T0 + timedelta(seconds=15))
    assert early.status["phase"] == "Failed"
    cached = next(c for c in early.status["conditions"] if c["type"] == "ModelCached")
    assert cached["status"] == "False"
    assert cached["reason"] == "BackoffLimitExceeded"
    assert "retrying in 30 s" in cached["message"]
    assert early.retry_after == pytest.approx(20)
    assert ("delete", "Job") not in api.calls
    later = run(api, now=T0 + timedelta(seconds=36))
    job = api.store[("Job", "ml", "llama-8b-model-download")]
    assert job["metadata"]["annotations"]["llmserve.io/attempt"] == "2"
    assert ("Normal", "RetryingDownload") in [(k, r) for k, r, _ in later.events]
    assert later.status["phase"] == "Downloading"


def test_the_second_failure_waits_twice_as_long(api: FakeObjects) -> None:
    run(api)
    api.set_status("Job", "llama-8b-model-download", FAILED)
    run(api, now=T0 + timedelta(seconds=36))  # attempt 2 starts
    api.set_status("Job", "llama-8b-model-download", FAILED)
    outcome = run(api, now=T0 + timedelta(seconds=40))
    assert outcome.retry_after == pytest.approx(60 - 35)


def test_a_new_model_replaces_the_download_job(api: FakeObjects) -> None:
    run(api)
    api.set_status("Job", "llama-8b-model-download", {"succeeded": 1})
    run(api)
    changed = copy.deepcopy(BODY)
    changed["spec"]["model"]["name"] = "Qwen/Qwen2.5-7B-Instruct"
    api.calls.clear()
    outcome = run(api, changed)
    assert ("delete", "Job") in api.calls
    job = api.store[("Job", "ml", "llama-8b-model-download")]
    assert "Qwen/Qwen2.5-7B-Instruct" in job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert outcome.status["phase"] == "Downloading"
    # The old engine keeps serving until the new model is in.
    deployment = api.store[("Deployment", "ml", "llama-8b")]
    assert (
        "meta-llama/Llama-3.1-8B-Instruct"
        in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_an_invalid_spec_fails_without_children(api: FakeObjects) -> None:
    body = document({"gpuMemoryGiB": 80, "model": {"name": "org/big-70B"}}, namespace="ml")
    outcome = run(api, body)
    assert api.store == {}
    assert outcome.status["phase"] == "Failed"
    assert [r for _, r, _ in outcome.events] == ["Failed", "InvalidSpec"]
    assert "spec.gpus" in outcome.status["conditions"][0]["message"]


def test_a_lagging_watch_costs_a_409_and_a_read_never_a_second_child(api: FakeObjects) -> None:
    run(api)
    api.set_status("Job", "llama-8b-model-download", {"succeeded": 1})
    run(api)
    api.seen = Seen()  # a restarted operator whose watches have not listed yet
    api.watching = False
    api.calls.clear()
    outcome = run(api)
    assert outcome.status["phase"] == "Starting"
    assert ("create", "PersistentVolumeClaim") in api.calls
    assert ("get", "Job") in api.calls  # the Job exists: read it rather than replace it
    assert ("delete", "Job") not in api.calls
    assert sorted(kind for kind, _, _ in api.store) == [
        "Deployment", "Job", "NetworkPolicy", "PersistentVolumeClaim", "Secret", "Service"
    ]  # fmt: skip


def test_a_late_event_of_the_replaced_job_is_ignored(api: FakeObjects) -> None:
    run(api)
    api.set_status("Job", "llama-8b-model-download", FAILED)
    old = copy.deepcopy(api.store[("Job", "ml", "llama-8b-model-download")])
    api.watching = False  # the watch falls behind while the pass replaces the Job
    run(api, now=T0 + timedelta(seconds=36))
    old["metadata"]["deletionTimestamp"] = "2026-11-23T12:00:36Z"
    api.seen.observe(old)  # then the old Job's last update arrives
    api.seen.vanished(old)  # and its deletion
    job = api.seen.get("Job", "ml", "llama-8b-model-download")
    assert job is not None
    assert job["metadata"]["annotations"]["llmserve.io/attempt"] == "2"


def test_a_replica_no_node_can_take_is_reported_once(api: FakeObjects) -> None:
    run(api)
    api.set_status("Job", "llama-8b-model-download", {"succeeded": 1})
    starting = run(api)
    assert starting.status["phase"] == "Starting"
    assert ("list", "Pod") not in api.calls  # a new Deployment: no reason to ask yet
    created = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    api.store[("Deployment", "ml", "llama-8b")]["metadata"]["creationTimestamp"] = created
    api.seen.observe(api.store[("Deployment", "ml", "llama-8b")])
    api.store[("Pod", "ml", "llama-8b-x")] = UNSCHEDULABLE_POD
    body = {**copy.deepcopy(BODY), "status": starting.status}
    stuck = run(api, body, now=T0 + timedelta(seconds=30))
    assert stuck.status["phase"] == "Pending"
    assert [r for _, r, _ in stuck.events] == ["Pending", "Unschedulable"]
    again = run(api, {**body, "status": stuck.status}, now=T0 + timedelta(seconds=50))
    assert again.events == []


SECRET = ("Secret", "ml", "llama-8b-api-keys")


def test_the_api_keys_secret_is_created_once_with_a_random_key_of_its_own(
    api: FakeObjects,
) -> None:
    run(api)
    secret = api.store[SECRET]
    assert re.fullmatch(r"default:sk-[A-Za-z0-9_-]{43}\n", secret["stringData"]["api-keys"])
    assert [(o["kind"], o["uid"]) for o in secret["metadata"]["ownerReferences"]] == [
        ("LLMService", "u-1")
    ]
    remembered = api.seen.get(*SECRET)
    assert remembered is not None
    assert "stringData" not in remembered  # the operator keeps no key in memory
    for _ in range(3):
        run(api)
    assert api.calls.count(("create", "Secret")) == 1
    other = document({"gpuMemoryGiB": 80}, name="other", namespace="ml", uid="u-2")
    run(api, other)
    assert api.store[("Secret", "ml", "other-api-keys")]["stringData"] != secret["stringData"]


def test_an_existing_secret_is_never_overwritten(api: FakeObjects) -> None:
    mine = {"kind": "Secret", "metadata": {"name": "llama-8b-api-keys", "namespace": "ml"},
            "stringData": {"api-keys": "alice:sk-alice"}}  # fmt: skip
    api.store[SECRET] = copy.deepcopy(mine)
    run(api)
    run(api)
    assert api.store[SECRET] == mine
    assert api.calls.count(("create", "Secret")) == 1  # the 409 is remembered


def test_a_new_llmservice_tries_again_while_a_namesakes_secret_may_await_collection(
    api: FakeObjects,
) -> None:
    api.store[SECRET] = {"kind": "Secret", "metadata": {"name": "llama-8b-api-keys"}}
    body = copy.deepcopy(BODY)
    body["metadata"]["creationTimestamp"] = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    young = run(api, body, now=T0 + timedelta(seconds=2))
    assert young.retry_after == reconcile.SECRET_RETRY_SECONDS
    del api.store[SECRET]  # the garbage collector removes the old one
    run(api, body, now=T0 + timedelta(seconds=7))
    assert api.calls.count(("create", "Secret")) == 2
    assert api.store[SECRET]["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_a_recreated_llmservice_gets_its_secret_again(api: FakeObjects) -> None:
    run(api)
    del api.store[SECRET]  # collected with the deleted LLMService
    again = document({"gpuMemoryGiB": 80}, namespace="ml", uid="u-9", generation=1)
    run(api, again)
    assert api.store[SECRET]["metadata"]["ownerReferences"][0]["uid"] == "u-9"


@pytest.mark.parametrize(
    "proxy", [{"auth": "none"}, {"apiKeySecretRef": {"name": "mine"}}], ids=["open", "own"]
)
def test_no_secret_is_made_for_an_open_proxy_or_the_users_own(
    api: FakeObjects, proxy: dict[str, Any]
) -> None:
    run(api, document({"gpuMemoryGiB": 80, "proxy": proxy}, namespace="ml", uid="u-1"))
    assert ("create", "Secret") not in api.calls


def test_an_open_proxy_is_warned_about_once_and_stays_in_the_status(api: FakeObjects) -> None:
    body = document({"gpuMemoryGiB": 80, "proxy": {"auth": "none"}}, namespace="ml", uid="u-1")
    first = run(api, body)
    warnings = [(r, m) for k, r, m in first.events if k == "Warning"]
    assert [r for r, _ in warnings] == ["AuthDisabled"]
    assert "spec.proxy.auth is none" in warnings[0][1]
    secure = next(c for c in first.status["conditions"] if c["type"] == "Secure")
    assert (secure["status"], secure["reason"]) == ("False", "AuthDisabled")
    later = run(api, {**body, "status": first.status}, now=T0 + timedelta(seconds=30))
    assert later.events == []


def test_a_child_the_api_server_refuses_fails_the_llmservice_with_its_words(
    api: FakeObjects,
) -> None:
    api.refuse["NetworkPolicy"] = "spec.ingress[0].from[1].ipBlock.except[0]: Invalid value"
    first = run(api)
    assert first.status["phase"] == "Failed"
    (valid,) = first.status["conditions"]
    assert (valid["type"], valid["status"], valid["reason"]) == ("Valid", "False", "ChildRejected")
    assert valid["message"].startswith(
        "the API server refused NetworkPolicy ml/llama-8b (422): "
        "spec.ingress[0].from[1].ipBlock.except[0]: Invalid value; change the spec"
    )
    assert [(k, r) for k, r, _ in first.events] == [
        ("Warning", "Failed"),
        ("Warning", "ChildRejected"),
    ]
    assert ("Deployment", "ml", "llama-8b") not in api.store
    again = run(api, {**copy.deepcopy(BODY), "status": first.status}, now=T0 + timedelta(seconds=9))
    assert again.status == first.status
    assert again.events == []  # said once
    del api.refuse["NetworkPolicy"]  # e.g. the spec was fixed
    fixed = run(api, {**copy.deepcopy(BODY), "status": first.status})
    assert fixed.status["phase"] == "Downloading"
    assert next(c for c in fixed.status["conditions"] if c["type"] == "Valid")["status"] == "True"
