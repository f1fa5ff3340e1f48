#!/usr/bin/env python3
"""`make demo`: the local cluster, the CRD, the operator, one sample LLMService per engine.

Runs the operator as a local process (kwok's pods run no containers, so there is no operator image
to run in the cluster), applies examples/*.yaml into the namespace `llmserve-demo` and shows
`kubectl get llms` until every LLMService is Ready. Everything keeps running afterwards for you to
poke at; `make cluster-down` stops it all, the operator included.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cluster as cluster_tool  # a sibling script: tools/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "llmserve-demo"
TIMEOUT_SECONDS = 180


def kubectl(handle: cluster_tool.Cluster, *args: str) -> str:
    """Run kubectl of the demo cluster."""
    return cluster_tool.run(handle, "kubectl", *args)


def start_operator(handle: cluster_tool.Cluster) -> None:
    """Start `llmserve operator` in the background, unless the one we started is still running."""
    pid_file = handle.workdir / "operator.pid"
    if pid_file.exists() and cluster_tool.alive(int(pid_file.read_text())):
        print(f"operator already running (pid {pid_file.read_text()})")
        return
    log = handle.workdir / "operator.log"
    process = cluster_tool.start_operator(handle, NAMESPACE, log)  # outlives `make demo`
    pid_file.write_text(str(process.pid))  # `make cluster-down` stops it by this PID
    print(f"operator started (pid {process.pid}, log {log})")


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
    cluster_tool.install_crd(handle)
    namespace = kubectl(handle, "create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml")
    cluster_tool.run(handle, "kubectl", "apply", "-f", "-", stdin=namespace)
    start_operator(handle)
    print(kubectl(handle, "apply", "-n", NAMESPACE, "-f", str(ROOT / "examples")), end="")
    ok = watch(handle)
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
