"""The operator survives being killed mid-work and the API server going away."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import pytest
from tests.cluster.conftest import Kube, eventually
from tests.cluster.test_operator import MANAGED, apply, ready, running_operator
from tests.support import document
from tools import cluster as cluster_tool

pytestmark = pytest.mark.cluster

COUNT = 20
CPU = {  # no GPUs: twenty of them must fit the test cluster's 16 fake GPUs and whatever else runs
    "engine": "llamacpp",
    "gpus": 0,
    "model": {"name": "bartowski/Llama-3.2-1B-Instruct-GGUF", "file": "*-Q4_K_M.gguf"},
}
CHILD_KINDS = ("persistentvolumeclaims", "jobs", "deployments", "services", "networkpolicies")


def owners_of(kube: Kube, namespace: str, kind: str) -> collections.Counter[str]:
    """How many children of `kind` each LLMService owns; children without an owner count as ''."""
    counts: collections.Counter[str] = collections.Counter()
    for item in kube.json(kind, "-n", namespace, "-l", MANAGED)["items"]:
        refs = [
            r for r in item["metadata"].get("ownerReferences") or [] if r["kind"] == "LLMService"
        ]
        counts[refs[0]["name"] if refs else ""] += 1
    return counts


def all_ready(kube: Kube, namespace: str) -> bool:
    phases = [i.get("status", {}).get("phase") for i in kube.json("llms", "-n", namespace)["items"]]
    return len(phases) == COUNT and all(phase == "Ready" for phase in phases)


def test_sigkill_in_the_middle_of_twenty_then_restart_converges_without_duplicates(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    names = [f"svc-{i:02d}" for i in range(COUNT)]
    with running_operator(kube, namespace, tmp_path / "first.log") as first:
        eventually(lambda: "leading as" in (tmp_path / "first.log").read_text(), what="leading")
        for name in names:
            apply(kube, namespace, document(CPU, name=name))
        # Kill it while it works: some services have all their children, some a few, some none.
        eventually(lambda: "status written" in (tmp_path / "first.log").read_text(),
                   what="the first pass to finish")  # fmt: skip
        first.send_signal(signal.SIGKILL)
        first.wait()
    done_before = sum(ready(kube, namespace, n) for n in names)
    with running_operator(kube, namespace, tmp_path / "second.log"):
        # The Lease of the killed process must expire first: up to its 15 s duration.
        eventually(lambda: all_ready(kube, namespace), timeout=120, what=f"{COUNT} Ready")
    for kind in CHILD_KINDS:
        counts = owners_of(kube, namespace, kind)
        assert counts == dict.fromkeys(names, 1), f"{kind}: {counts}"
    assert done_before < COUNT, "the kill came too late to prove anything"


def test_the_operator_reconnects_after_the_api_server_restarts(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "operator.log"
    with running_operator(kube, namespace, log):
        eventually(lambda: "leading as" in log.read_text(), what="leading")
        apply(kube, namespace, document(CPU, name="before"))
        eventually(lambda: ready(kube, namespace, "before"), what="the first service Ready")
        # Down for 3 s: the operator's watches break and its requests fail meanwhile.
        cluster_tool.restart_component(kube.handle, "kube-apiserver", pause=3)
        cluster_tool.wait_ready(kube.handle)
        dead = [p for p in cluster_tool.recorded_pids(kube.handle) if not cluster_tool.alive(p)]
        assert not dead, "a control-plane component did not survive the API server's restart"
        apply(kube, namespace, document(CPU, name="after"))
        eventually(lambda: ready(kube, namespace, "after"), timeout=120, what="a service after")
    assert "Traceback" not in log.read_text().split("leading as", 1)[0]
