#!/usr/bin/env python3
"""`make bench-operator`: 1000 LLMServices in one namespace, on a cluster of its own.

Reports the time until every LLMService has its children and is Available (phase Ready), the
operator's peak RSS, API requests per LLMService, and the time until every child is gone after
deleting them all. The cluster's nodes are large (1,200 pods and 1,000 GPUs each) so that capacity
is never what the benchmark measures. Requests are counted from the API server's
`apiserver_request_total`, so they include the control plane's own work for those objects
(Deployments -> ReplicaSets -> Pods, Jobs -> Pods); the operator's own share is printed separately
from its log of kopf and llmserve calls where available.

Usage: tools/bench_operator.py [--count N]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import cluster as cluster_tool  # a sibling script: tools/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench"


def kubectl(handle: cluster_tool.Cluster, *args: str, stdin: str | None = None) -> str:
    """Run kubectl of the benchmark's cluster."""
    return cluster_tool.run(handle, "kubectl", *args, stdin=stdin)


def requests_total(handle: cluster_tool.Cluster) -> float:
    """Sum of apiserver_request_total over every verb and resource."""
    text = kubectl(handle, "get", "--raw", "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
    )


def phases(handle: cluster_tool.Cluster) -> list[str]:
    """The phase of every LLMService in the namespace."""
    out = kubectl(handle, "get", "llms", "-n", NAMESPACE, "-o", "jsonpath={.items[*].status.phase}")
    return out.split()


def count(handle: cluster_tool.Cluster, kinds: str) -> int:
    """How many objects of those kinds are in the namespace."""
    out = kubectl(handle, "get", kinds, "-n", NAMESPACE, "-o", "name")
    return len(out.split())


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a running process."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def measure(handle: cluster_tool.Cluster, total: int, timeout: float) -> dict[str, float]:
    """Create `total` LLMServices at once, wait until Ready, delete all, wait for the children."""
    documents = [
        {
            "apiVersion": "llmserve.io/v1alpha1",
            "kind": "LLMService",
            "metadata": {"name": f"svc-{i:04d}"},
            "spec": {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}, "gpuMemoryGiB": 80},
        }
        for i in range(total)
    ]
    listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})
    before = requests_total(handle)
    started = time.monotonic()
    kubectl(handle, "create", "-n", NAMESPACE, "-f", "-", stdin=listing)  # one POST each
    ready = 0
    while ready < total and time.monotonic() - started < timeout:
        time.sleep(2)
        ready = sum(p == "Ready" for p in phases(handle))
        print(f"  {time.monotonic() - started:6.1f} s  {ready}/{total} Ready", flush=True)
    figures = {
        "ready": ready,
        "reconciled_s": time.monotonic() - started,
        "requests": requests_total(handle) - before,
    }
    started = time.monotonic()
    kubectl(handle, "delete", "llms", "--all", "-n", NAMESPACE, "--wait=false")
    kinds = "llms,deployments,replicasets,pods,jobs,services,pvc"
    while count(handle, kinds) and time.monotonic() - started < timeout:
        time.sleep(2)
    figures["deleted_s"] = time.monotonic() - started
    return figures


def main() -> int:
    """Run the benchmark once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="llmserve-bench-"))
    handle = cluster_tool.Cluster("bench", workdir)
    operator = None
    try:
        cluster_tool.up(handle, nodes=2, gpus=1000, product=cluster_tool.DEFAULT_PRODUCT,
                        memory_mib=cluster_tool.DEFAULT_MEMORY_MIB, pods=1200)  # fmt: skip
        cluster_tool.install_crd(handle)
        kubectl(handle, "create", "namespace", NAMESPACE)
        cluster_tool.wait_ready(handle)
        operator = cluster_tool.start_operator(handle, NAMESPACE, workdir / "operator.log")
        figures = measure(handle, args.count, args.timeout)
        rss = peak_rss_mib(operator.pid)
        print(f"\nLLMServices:                      {args.count}")
        print(f"all Ready (children + Available): {figures['reconciled_s']:.1f} s "
              f"({figures['ready']:.0f} Ready)")  # fmt: skip
        print(f"operator peak RSS:                {rss:.0f} MiB")
        print(f"API requests per LLMService:      {figures['requests'] / args.count:.1f} "
              "(whole control plane)")  # fmt: skip
        print(f"all children gone after delete:   {figures['deleted_s']:.1f} s")
        return 0 if figures["ready"] == args.count else 1
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        cluster_tool.down(handle)


if __name__ == "__main__":
    sys.exit(main())
