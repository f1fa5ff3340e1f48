"""The autoscaler's closed loop on the real control plane, with real load on loopback pods.

Each kwok pod's loopback IP is served by a local sim + proxy (tools/podserve.py); clients load
those proxies; the operator reads the load through its production source (a direct scrape of the
pods' proxies on their metrics port, or a real Prometheus scraping them) and writes replicas
through the scale subresource.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.cluster.chart import operator_as, release_in
from tests.cluster.conftest import Kube, eventually
from tests.cluster.test_operator import apply, condition, events, status
from tests.processes import ScrapeJob, metric, prometheus
from tests.support import document
from tools.podserve import PROXY_PORT, Load, Pair, PodServers, running_pods
from tools.procfs import free_port

from llmserve.render.workload import METRICS_PORT

pytestmark = pytest.mark.cluster

DELAY = 10
"""scaleDownDelaySeconds of the test's LLMService: long enough to see it hold, short to test."""

SPEC: dict[str, Any] = {
    "gpuMemoryGiB": 80,
    "cache": {"enabled": False},
    "autoscaling": {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 3,
        "targetQueuePerReplica": 2,
        "scaleDownDelaySeconds": DELAY,
    },
}
SIM_FLAGS = ("--step-seconds", "0.02")
"""About 2 s for a 100-token answer: load that lasts while the autoscaler looks."""


@contextlib.contextmanager
def operator_with(
    kube: Kube, namespace: str, log: Path, settings: dict[str, Any], metrics_port: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The chart's operator (tests/cluster/chart.py: its ServiceAccount, so the chart's RBAC) with
    these autoscaler settings, once it leads; stopped by PID afterwards."""
    values = [f"config.autoscaler.{k}={v}" for k, v in {"intervalSeconds": 1, **settings}.items()]
    sets = [flag for value in values for flag in ("--set", value)]
    with release_in(kube, namespace, *sets), operator_as(kube, namespace, log, metrics_port) as op:
        eventually(lambda: "leading as" in log.read_text(), what="the operator to lead")
        yield op


def pods_of(kube: Kube, namespace: str, selector: str) -> dict[str, str]:
    """Name -> IP of the LLMService's pods."""
    listing = kube.run("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    return running_pods(listing)


def replicas(kube: Kube, namespace: str) -> int:
    return int(kube.json("llms", "llama-8b", "-n", namespace)["spec"]["replicas"])


def scaling_reasons(kube: Kube, namespace: str) -> list[str]:
    return [e["reason"] for e in events(kube, namespace) if e["reason"].startswith("Scaled")]


def closed_loop(
    kube: Kube,
    namespace: str,
    tmp: Path,
    settings: dict[str, Any],
    changed: Callable[[list[Pair]], None] | None = None,
) -> None:
    """Load up -> 3 replicas; operator killed -> nothing removed; load gone -> back to 1."""
    logs = tmp / "pods"
    logs.mkdir()
    selector = "app.kubernetes.io/instance=llama-8b"
    servers = PodServers(lambda: pods_of(kube, namespace, selector), logs, SIM_FLAGS, changed)
    with operator_with(kube, namespace, tmp / "first.log", settings) as process, servers:
        apply(kube, namespace, document(SPEC))
        eventually(lambda: len(servers.urls()) == 1, timeout=90, what="the first pod served")
        eventually(
            lambda: (
                condition(kube, namespace, "Scaling").get("reason") == "ScaleDownPending"
                or condition(kube, namespace, "Scaling").get("reason") == "Steady"
            ),
            timeout=60,
            what="a first decision on an idle service",
        )
        assert replicas(kube, namespace) == 1
        with Load(servers, clients=8) as load:
            eventually(lambda: replicas(kube, namespace) == 3, timeout=90, what="3 replicas")
            assert "ScaledUp" in scaling_reasons(kube, namespace)
            eventually(lambda: len(servers.urls()) == 3, timeout=90, what="3 pods served")
            kept = status(kube, namespace)["autoscaler"]
            assert kept["lastScaleTime"]

            # Killed mid-run: the restarted operator must not read its empty memory as no load.
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            again = tmp / "again.log"
            with operator_with(kube, namespace, again, settings):
                watched_until = time.monotonic() + DELAY + 10
                while time.monotonic() < watched_until:
                    assert replicas(kube, namespace) == 3, again.read_text()[-3000:]
                    time.sleep(1)
                assert load.sent > 0
                load.stop()
                eventually(lambda: replicas(kube, namespace) == 1, timeout=120,
                           what="back to minReplicas after the delay")  # fmt: skip
                assert scaling_reasons(kube, namespace).count("ScaledDown") == 2
                got = condition(kube, namespace, "Scaling")
                assert got["status"] == "True"


def test_direct_scrape_closed_loop(kube: Kube, namespace: str, tmp_path: Path) -> None:
    closed_loop(kube, namespace, tmp_path, {"source": "scrape"})


def test_prometheus_closed_loop(kube: Kube, namespace: str, tmp_path: Path) -> None:
    """The same loop with a real Prometheus scraping each pod (file discovery, labels as a
    PodMonitor sets them) and the operator reading only Prometheus."""
    jobs = (ScrapeJob("proxy"), ScrapeJob("engine", "/metrics/engine"))
    with prometheus(*jobs) as server:

        def register(pairs: list[Pair]) -> None:
            found = {
                f"{p.ip}:{METRICS_PORT}": {"namespace": namespace, "pod": p.pod} for p in pairs
            }
            for job in jobs:
                server.targets(job.name, found)

        settings = {"source": "prometheus", "prometheusUrl": server.url}
        closed_loop(kube, namespace, tmp_path, settings, register)


def test_with_autoscaling_off_the_decision_is_only_exported(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """maxReplicas without enabled: the desired count is a metric for KEDA; nothing is written."""
    port = free_port()
    advice = {**SPEC, "autoscaling": {**SPEC["autoscaling"], "enabled": False}}
    selector = "app.kubernetes.io/instance=llama-8b"
    servers = PodServers(lambda: pods_of(kube, namespace, selector), tmp_path, SIM_FLAGS)
    settings = {"source": "scrape"}
    with operator_with(kube, namespace, tmp_path / "operator.log", settings, port), servers:
        apply(kube, namespace, document(advice))
        eventually(lambda: len(servers.urls()) == 1, timeout=90, what="the pod served")
        with Load(servers, clients=8):
            labels = f'llmservice="llama-8b",namespace="{namespace}"'
            eventually(
                lambda: (
                    metric(
                        f"http://127.0.0.1:{port}", "llmserve_autoscaler_desired_replicas", labels
                    )
                    >= 2
                ),
                timeout=60,
                what="the exported desired replicas to follow the load",
            )
            time.sleep(3)  # a few more rounds: none of them may write
            assert replicas(kube, namespace) == 1
            got = status(kube, namespace)
            assert "autoscaler" not in got
            assert "Scaling" not in [c["type"] for c in got["conditions"]]


IMPOSTOR = "impostor"


def impostor(kube: Kube, namespace: str, selector: str) -> None:
    """A pod like the LLMService's, labels and all, that no ReplicaSet of its Deployment controls:
    what anyone allowed to create pods in the namespace can make (review M5). Without the
    pod-template-hash label, so that no ReplicaSet adopts it."""
    real = kube.json("pods", "-n", namespace, "-l", selector)["items"][0]
    labels = {k: v for k, v in real["metadata"]["labels"].items() if k != "pod-template-hash"}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": IMPOSTOR, "labels": labels}, "spec": real["spec"]}  # fmt: skip
    kube.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(pod))


def test_a_pod_with_the_labels_but_not_of_the_deployment_is_not_counted(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    selector = "app.kubernetes.io/instance=llama-8b"

    def only(keep: Callable[[str], bool]) -> Callable[[], dict[str, str]]:
        return lambda: {n: ip for n, ip in pods_of(kube, namespace, selector).items() if keep(n)}

    (tmp_path / "real").mkdir()
    (tmp_path / "rogue").mkdir()
    real = PodServers(only(lambda n: n != IMPOSTOR), tmp_path / "real", SIM_FLAGS)
    rogue = PodServers(only(lambda n: n == IMPOSTOR), tmp_path / "rogue", SIM_FLAGS)
    log = tmp_path / "operator.log"
    with operator_with(kube, namespace, log, {"source": "scrape"}), real, rogue:
        apply(kube, namespace, document(SPEC))
        eventually(lambda: len(real.urls()) == 1, timeout=90, what="the LLMService's pod served")
        impostor(kube, namespace, selector)
        eventually(lambda: len(rogue.urls()) == 1, timeout=90, what="the impostor served")
        metrics = rogue.urls()[0].replace(f":{PROXY_PORT}", f":{METRICS_PORT}")
        with Load(rogue, clients=8):
            eventually(lambda: metric(metrics, "llmserve_requests_in_flight") >= 2,
                       what="load on the impostor")  # fmt: skip
            loaded_at = datetime.now(UTC).replace(microsecond=0)
            decided: dict[str, dict[str, Any]] = {}

            def three_decisions() -> bool:
                block = status(kube, namespace).get("autoscaler") or {}
                if datetime.fromisoformat(block.get("decidedAt") or "2000-01-01T00:00:00Z") > (
                    loaded_at
                ):
                    decided[block["decidedAt"]] = block
                return len(decided) >= 3

            eventually(three_decisions, timeout=60, what="three decisions with the impostor loaded")
        for block in decided.values():
            assert block["load"] == 0, block["message"]
            assert "over 1 reporting pod" in block["message"]
        assert replicas(kube, namespace) == 1
        assert (
            f"pod {namespace}/{IMPOSTOR} has the labels of LLMService llama-8b but no ReplicaSet "
            "of Deployment llama-8b controls it" in log.read_text()
        )
