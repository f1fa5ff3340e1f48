#!/usr/bin/env python3
"""`make demo`: the local cluster, the chart, the operator, a sample LLMService per engine, traffic.

Installs the Helm chart (into `llmserve-system`, managing the namespace `llmserve-demo`) and runs
its operator as a local process: kwok's pods run no containers, so the chart's operator pod is
Ready but idle, and the local process acts with the chart's settings, ServiceAccount and Lease. It
applies examples/*.yaml into the namespace `llmserve-demo` and shows
`kubectl get llms` until every LLMService is Ready. Then it drives simulated traffic at the
autoscaled sample (examples/vllm.yaml): each of its pods' loopback IPs is served by a local
`llmserve sim` + `llmserve proxy` (tools/podserve.py), clients load them, and the table shows the
replicas following the load up and, once it stops, back down after the delay. Everything but the
traffic keeps running afterwards for you to poke at; `make cluster-down` stops it all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import podserve

import cluster as cluster_tool  # a sibling script: tools/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "llmserve-demo"
SYSTEM = "llmserve-system"
"""Where the chart is installed."""
RELEASE = "llmserve"
TIMEOUT_SECONDS = 180
AUTOSCALED = "llama-8b"
HOLD_SECONDS = 20
"""How long traffic stays on once the replicas are up."""
CLIENTS = 40
"""Clients sending requests back to back: with their turnaround (and two cores shared by it all),
about 25-35 requests in flight, three or four replicas' worth at the sample's target of 8."""


def kubectl(handle: cluster_tool.Cluster, *args: str) -> str:
    """Run kubectl of the demo cluster."""
    return cluster_tool.run(handle, "kubectl", *args)


HELM_INSTALL = (
    "upgrade", "--install", RELEASE, str(ROOT / "charts" / "llmserve"),
    "--namespace", SYSTEM, "--create-namespace", "--wait", "--timeout", "120s",
    "--set", "rbac.scope=namespaced", "--set", f"rbac.namespaces={{{NAMESPACE}}}",
    "--set", "config.autoscaler.intervalSeconds=2",
)  # fmt: skip


def install_chart(handle: cluster_tool.Cluster) -> None:
    """`helm upgrade --install` the chart, managing the demo namespace, and print its notes."""
    print(cluster_tool.run(handle, "helm", *HELM_INSTALL), end="")
    # Helm installs a chart's CRDs on the first install only; keep the CRD current on re-runs.
    cluster_tool.install_crd(handle)


def start_operator(handle: cluster_tool.Cluster) -> None:
    """Start `llmserve operator` in the background, unless the one we started is still running.

    It is the chart's operator in all but where it runs: the chart's settings (its ConfigMap), the
    chart's ServiceAccount (a token for it, so exactly the chart's RBAC), the chart's Lease.
    """
    pid_file = handle.workdir / "operator.pid"
    if pid_file.exists() and cluster_tool.alive(int(pid_file.read_text())):
        print(f"operator already running (pid {pid_file.read_text()})")
        return
    config = handle.workdir / "operator-config.yaml"
    path = "jsonpath={.data.config\\.yaml}"
    config.write_text(
        kubectl(handle, "get", "configmap", f"{RELEASE}-config", "-n", SYSTEM, "-o", path)
    )
    kubeconfig = cluster_tool.service_account_kubeconfig(
        handle, SYSTEM, RELEASE, handle.workdir / "operator.kubeconfig", duration="24h"
    )
    log = handle.workdir / "operator.log"
    env = {"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": SYSTEM}
    process = cluster_tool.start_operator(handle, NAMESPACE, log, config=config, env=env)
    pid_file.write_text(str(process.pid))  # `make cluster-down` stops it by this PID
    print(f"operator started as ServiceAccount {SYSTEM}/{RELEASE} (pid {process.pid}, log {log})")


def watch(handle: cluster_tool.Cluster) -> bool:
    """Print `kubectl get llms` whenever it changes; True once every LLMService is Ready."""
    started, last = time.monotonic(), ""
    while time.monotonic() - started < TIMEOUT_SECONDS:
        table = kubectl(handle, "get", "llms", "-n", NAMESPACE)
        if table != last:
            print(f"\n--- after {time.monotonic() - started:.1f} s\n{table}", end="", flush=True)
            last = table
        phases = kubectl(
            handle, "get", "llms", "-n", NAMESPACE, "-o", "jsonpath={.items[*].status.phase}"
        ).split()
        expected = len(list((ROOT / "examples").glob("*.yaml")))
        if len(phases) == expected and all(phase == "Ready" for phase in phases):
            print(f"\nall {expected} LLMServices Ready in {time.monotonic() - started:.1f} s")
            return True
        time.sleep(0.5)
    print(f"\nnot all Ready after {TIMEOUT_SECONDS} s; see {handle.workdir / 'operator.log'}")
    return False


def replicas_now(handle: cluster_tool.Cluster) -> tuple[str, str, str, str]:
    """Replicas wanted and ready, and the autoscaler's last reason and message."""
    path = (
        "{.spec.replicas}|{.status.readyReplicas}|{.status.autoscaler.reason}"
        "|{.status.autoscaler.message}"
    )
    out = kubectl(handle, "get", "llms", AUTOSCALED, "-n", NAMESPACE, "-o", f"jsonpath={path}")
    wanted, ready, reason, message = [*out.split("|"), "", "", "", ""][:4]
    return wanted, ready, reason, message


@dataclass
class Follower:
    """Prints the autoscaled sample's replicas and the reason whenever they change."""

    handle: cluster_tool.Cluster
    started: float = field(default_factory=time.monotonic)
    last: tuple[str, ...] = ()

    def until(self, done: Callable[[int], bool], timeout: float, *, quiet: bool = False) -> bool:
        """Follow until `done(ready replicas)`; `quiet`: running out of time is the plan."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            wanted, ready, reason, message = replicas_now(self.handle)
            if (wanted, ready, reason) != self.last:
                elapsed = time.monotonic() - self.started
                said = f"{reason}: {message}" if reason else "(no decision yet)"
                print(f"  {elapsed:4.0f} s  replicas {wanted}, ready {ready or 0}  {said}",
                      flush=True)  # fmt: skip
                self.last = (wanted, ready, reason)
            if wanted == ready and done(int(ready or 0)):
                return True
            time.sleep(1)
        if not quiet:
            print(f"  replicas did not get there in {timeout:.0f} s; see the operator log")
        return False


def traffic(handle: cluster_tool.Cluster) -> bool:
    """Load the autoscaled sample, then stop, and show its replicas following."""
    selector = f"app.kubernetes.io/instance={AUTOSCALED}"
    logs = handle.workdir / "demo-pods"
    logs.mkdir(exist_ok=True)

    def pods() -> dict[str, str]:
        return podserve.running_pods(
            kubectl(handle, "get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json")
        )

    print(f"\ntraffic: {CLIENTS} clients against {AUTOSCALED}'s pods (sim + proxy on loopback)")
    follow = Follower(handle)
    with podserve.PodServers(pods, logs, ("--step-seconds", "0.02")) as servers:
        with podserve.Load(servers, clients=CLIENTS):
            up = follow.until(lambda ready: ready >= 3, 120)
            # Keep it up a little: the load spreads over the new pods, and nothing is removed.
            follow.until(lambda _: False, HOLD_SECONDS, quiet=True)
        print("traffic stopped: replicas go back one at a time after scaleDownDelaySeconds (60 s)")
        down = follow.until(lambda ready: ready == 1, 300)
    return up and down


def main() -> int:
    """Bring everything up and show it converging."""
    handle = cluster_tool.Cluster("llmserve", cluster_tool.DEFAULT_WORKDIR)
    cluster_tool.up(
        handle,
        nodes=2,
        gpus=8,
        product=cluster_tool.DEFAULT_PRODUCT,
        memory_mib=cluster_tool.DEFAULT_MEMORY_MIB,
    )
    namespace = kubectl(handle, "create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml")
    cluster_tool.run(handle, "kubectl", "apply", "-f", "-", stdin=namespace)
    install_chart(handle)
    start_operator(handle)
    print(kubectl(handle, "apply", "-n", NAMESPACE, "-f", str(ROOT / "examples")), end="")
    ok = watch(handle) and traffic(handle)
    print(
        "\nnext:\n"
        f"  export KUBECONFIG={handle.kubeconfig} PATH={cluster_tool.testbin.bin_dir()}:$PATH\n"
        f"  kubectl get llms,deploy,pods -n {NAMESPACE}\n"
        f"  kubectl describe llms llama-8b -n {NAMESPACE}\n"
        "  make cluster-down    # stops the cluster and the operator"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
