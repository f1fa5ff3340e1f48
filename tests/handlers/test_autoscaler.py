"""The autoscaler reads only pods that its LLMService's ReplicaSets control (review M5)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest
from tests.support import service

from llmserve.api.config import OperatorConfig
from llmserve.autoscale.policy import PodLoad
from llmserve.autoscale.sources import Target
from llmserve.handlers import autoscaler
from llmserve.handlers.context import Context
from llmserve.handlers.queue import WorkQueue
from llmserve.kube.client import Client
from llmserve.reconcile.autoscale import Pod

KEY = ("ml", "llama-8b")
LABELS = {
    "app.kubernetes.io/name": "llmservice",
    "app.kubernetes.io/instance": "llama-8b",
    "app.kubernetes.io/component": "server",
    "app.kubernetes.io/managed-by": "llmserve",
}


def pod(
    name: str, *owners: dict[str, Any], template_hash: str | None = "5d8f7c9b4"
) -> dict[str, Any]:
    labels = LABELS | ({"pod-template-hash": template_hash} if template_hash else {})
    return {
        "metadata": {"name": name, "namespace": "ml", "labels": labels,
                     "ownerReferences": list(owners)},
        "status": {"podIP": "127.1.0.9", "conditions": [{"type": "Ready", "status": "True"}]},
    }  # fmt: skip


def replica_set(name: str = "llama-8b-5d8f7c9b4", *, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": "u-1",
            "controller": controller, "blockOwnerDeletion": True}  # fmt: skip


class Reported:
    """A source that answers what the pods' pages said, and records the targets it was given."""

    def __init__(self, *loads: PodLoad) -> None:
        self.reported = {load.pod: load for load in loads}
        self.asked: list[Target] = []

    async def loads(self, targets: list[Target]) -> dict[str, PodLoad]:
        self.asked = list(targets)
        return {t.pod: self.reported[t.pod] for t in targets if t.pod in self.reported}

    async def aclose(self) -> None:
        return None


async def watching(*events: tuple[str | None, dict[str, Any]], source: Reported) -> Context:
    """A context whose pod watch saw these events; its API client is never called."""
    client = Client(kopf.ConnectionInfo(server="http://127.0.0.1:9"))
    await client.close()
    ctx = Context(client, OperatorConfig(), WorkQueue(lambda _: asyncio.sleep(0)), source=source)
    memo = kopf.Memo(ctx=ctx)
    for kind, body in events:
        await autoscaler.pod_event(type=kind, body=body, namespace="ml", memo=memo)
    return ctx


def seen(*events: tuple[str | None, dict[str, Any]]) -> dict[str, Pod]:
    """The pods the autoscaler keeps for llama-8b after these watch events."""

    async def run() -> dict[str, Pod]:
        ctx = await watching(*events, source=Reported())
        return dict(ctx.pods.get(KEY, {}))

    return asyncio.run(run())


def test_a_pod_of_the_deployments_replica_set_is_read() -> None:
    got = seen(("ADDED", pod("llama-8b-5d8f7c9b4-x1", replica_set())))
    assert got == {"llama-8b-5d8f7c9b4-x1": Pod("llama-8b-5d8f7c9b4-x1", "127.1.0.9", ready=True)}


@pytest.mark.parametrize(
    "impostor",
    [
        pod("by-hand"),
        pod("other-deployment", replica_set("other-5d8f7c9b4")),
        pod("hash-mismatch", replica_set(), template_hash="0000000"),
        pod("no-hash-label", replica_set(), template_hash=None),
        pod("not-the-controller", replica_set(controller=False)),
        pod("two-controllers", replica_set(), replica_set("llama-8b-5d8f7c9b4x")),
        pod("a-job", {**replica_set(), "apiVersion": "batch/v1", "kind": "Job"}),
    ],
    ids=lambda body: body["metadata"]["name"],
)
def test_a_pod_with_the_labels_but_not_the_deployments_is_not_read(
    impostor: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=autoscaler.__name__):
        assert seen((None, impostor)) == {}  # type None: the initial listing
    name = impostor["metadata"]["name"]
    assert (
        f"pod ml/{name} has the labels of LLMService llama-8b but no ReplicaSet of Deployment "
        "llama-8b controls it: the autoscaler does not count it" in caplog.text
    )


def test_a_pod_that_loses_its_controller_or_goes_is_dropped() -> None:
    owned = pod("llama-8b-5d8f7c9b4-x1", replica_set())
    orphaned = pod("llama-8b-5d8f7c9b4-x1")  # its labels were edited: the ReplicaSet let go
    assert seen(("ADDED", owned), ("MODIFIED", orphaned)) == {}
    assert seen(("ADDED", owned), ("DELETED", owned)) == {}


def test_a_round_counts_only_owned_pods_and_clamps_what_they_claim() -> None:
    """End to end from the watch to the decision: the impostor's page is never asked for, and
    the owned pod's absurd claim is cut to 4 x (maxConcurrency + maxQueue)."""
    spec = {"autoscaling": {"maxReplicas": 10}, "proxy": {"maxConcurrency": 4, "maxQueue": 4}}
    advised = service(spec, namespace="ml")
    source = Reported(
        PodLoad("llama-8b-5d8f7c9b4-x1", in_flight=1e9), PodLoad("by-hand", in_flight=1e9)
    )

    async def run() -> Context:
        ctx = await watching(
            ("ADDED", pod("llama-8b-5d8f7c9b4-x1", replica_set())),
            ("ADDED", pod("by-hand")),
            source=source,
        )
        await autoscaler.round_one(ctx, KEY, advised, 0.0)
        return ctx

    decision = asyncio.run(run()).decisions[KEY]
    assert [t.pod for t in source.asked] == ["llama-8b-5d8f7c9b4-x1"]
    assert [t.port for t in source.asked] == [9090]
    assert decision.load == 32
    assert "llama-8b-5d8f7c9b4-x1: reported a load of 1e+09" in decision.message
