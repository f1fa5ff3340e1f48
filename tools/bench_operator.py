#!/usr/bin/env python3
"""`make bench-operator`: 1000 LLMServices in one namespace, against the control plane alone.

Two runs, each on a cluster of its own (2 large fake GPU nodes: capacity is never what is measured;
private pod IPs, see `cluster.pod_cidr`):

- llmserve: create the LLMServices with the operator running; time until every one is Ready
  (children made, model cached, replica Available), the operator's peak RSS, then delete them all
  and time until every child is gone.
- floor: create the very children the operator would make (rendered by llmserve's renderer, without
  owner references), all at once, with no operator; time until every Deployment has its replica
  ready, then delete them. No operator can beat this: it is what the control plane needs for a
  volume, a Job's pod and a Deployment's pod per LLMService, on the same two cores.

Both report API requests per LLMService (from `apiserver_request_total`, so every client counts)
and the CPU time of every process. The operator runs from an environment with llmserve's runtime
dependencies only, as the image installs them (`testbin.runtime_python`): the development tools (the
synchronous Kubernetes client, which kopf imports whenever it is installed) are not in its memory.

Usage: tools/bench_operator.py [--count N] [--no-floor]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import testbin
from procfs import cpu_seconds, peak_rss_mib

import cluster as cluster_tool  # a sibling script: tools/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench"
TIMEOUT = 900
"""Seconds each phase of a run may take."""


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


class Watch:
    """One column of every object of a resource in the namespace, from one `kubectl get --watch`.

    Listing 1,000 objects every few seconds would cost the control plane (and the two cores) more
    than some of what is measured; a watch costs one line per change.
    """

    def __init__(self, handle: cluster_tool.Cluster, resource: str, column: str) -> None:
        columns = f"custom-columns=NAME:.metadata.name,VALUE:{column}"
        self.process = subprocess.Popen(  # ended by stop(), by PID
            ["kubectl", "get", resource, "-n", NAMESPACE, "--watch", "--no-headers", "-o", columns],
            env=handle.env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        self.values: dict[str, str] = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout or ():
            name, value = line.split()
            self.values[name] = value

    def count(self, value: str) -> int:
        """How many objects show `value` now."""
        return sum(v == value for v in list(self.values.values()))

    def stop(self) -> None:
        """End the watch."""
        self.process.terminate()
        self.process.wait(timeout=10)


def remaining(handle: cluster_tool.Cluster, kinds: list[str]) -> list[str]:
    """The kinds (API paths) that still have an object in the namespace: one cheap page each."""
    left = []
    for path in kinds:
        page = json.loads(kubectl(handle, "get", "--raw", f"{path}?limit=1"))
        if page["items"]:
            left.append(path)
    return left


CHILD_PATHS = [
    f"/apis/llmserve.io/v1alpha1/namespaces/{NAMESPACE}/llmservices",
    f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
    f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets",
    f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
    f"/api/v1/namespaces/{NAMESPACE}/pods",
    f"/api/v1/namespaces/{NAMESPACE}/services",
    f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims",
    f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies",
]


def processes(handle: cluster_tool.Cluster) -> dict[str, int]:
    """PIDs of the control plane's processes and the claim binder, by name."""
    pids = {path.stem: int(path.read_text()) for path in handle.pids_dir.glob("*.pid")}
    return {**pids, "claim binder": int(handle.provisioner_pid.read_text())}


def llmservices(total: int) -> list[dict[str, Any]]:
    """The benchmark's LLMServices: the default engine (vLLM) on one GPU, with a model cache."""
    return [
        {
            "apiVersion": "llmserve.io/v1alpha1",
            "kind": "LLMService",
            "metadata": {"name": f"svc-{i:04d}", "namespace": NAMESPACE},
            "spec": {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}, "gpuMemoryGiB": 80},
        }
        for i in range(total)
    ]


def children(total: int) -> list[dict[str, Any]]:
    """What the operator makes for those LLMServices, rendered here, without owner references."""
    sys.path.insert(0, str(ROOT / "operator"))
    from llmserve import render  # noqa: PLC0415 - the checkout's renderer, not a tool dependency
    from llmserve.api import parse_llmservice  # noqa: PLC0415
    from llmserve.api.config import OperatorConfig  # noqa: PLC0415

    objects = []
    for document in llmservices(total):
        document["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
        for child in render.render(parse_llmservice(document), OperatorConfig()):
            del child["metadata"]["ownerReferences"]
            objects.append(child)
    return objects


CREATORS = 8
"""kubectl processes creating at once: one alone sends its POSTs one after another (~25 a second
here), which would time kubectl rather than the control plane or the operator."""


def create(handle: cluster_tool.Cluster, objects: list[dict[str, Any]]) -> None:
    """Create the objects with CREATORS kubectl processes, each a contiguous share (in order)."""
    share = -(-len(objects) // CREATORS)
    creators = []
    for start in range(0, len(objects), share):
        listing = {"apiVersion": "v1", "kind": "List", "items": objects[start : start + share]}
        creator = subprocess.Popen(  # waited for below
            ["kubectl", "create", "-n", NAMESPACE, "-f", "-", "-o", "name"],
            env=handle.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        with creator.stdin or open(os.devnull, "w") as stdin:  # noqa: PTH123 - never None here
            stdin.write(json.dumps(listing))  # kubectl reads it all before its first POST
        creators.append(creator)
    codes = [creator.wait(timeout=TIMEOUT) for creator in creators]
    if any(codes):
        raise SystemExit("error: kubectl create failed; see its message above")


def run_until(  # noqa: PLR0913, PLR0917 - what to create and what to wait for
    handle: cluster_tool.Cluster, resource: str, column: str, value: str, total: int,
    objects: list[Any],
) -> dict[str, float]:  # fmt: skip
    """Create the objects, wait until `total` objects of `resource` show `value` in `column`."""
    watch = Watch(handle, resource, column)
    try:
        return _created_until(handle, watch, value, total, objects)
    finally:
        watch.stop()


def _created_until(
    handle: cluster_tool.Cluster, watch: Watch, value: str, total: int, objects: list[Any]
) -> dict[str, float]:
    before = requests_total(handle)
    started = time.monotonic()
    create(handle, objects)
    print(f"  {time.monotonic() - started:6.1f} s  all {len(objects)} objects created", flush=True)
    done = watch.count(value)
    while done < total and time.monotonic() - started < TIMEOUT:
        time.sleep(2)
        done = watch.count(value)
        print(f"  {time.monotonic() - started:6.1f} s  {done}/{total}", flush=True)
    return {
        "done": done,
        "ready_s": time.monotonic() - started,
        "requests": (requests_total(handle) - before) / total,
    }


def deleted_after(handle: cluster_tool.Cluster, resources: str) -> float:
    """Delete every object of those resources in the namespace; seconds until no child is left."""
    started = time.monotonic()
    kubectl(handle, "delete", resources, "--all", "-n", NAMESPACE, "--wait=false")
    while remaining(handle, CHILD_PATHS) and time.monotonic() - started < TIMEOUT:
        time.sleep(2)
    return time.monotonic() - started


def on_a_cluster(
    name: str, measure: Callable[[cluster_tool.Cluster], dict[str, float]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Run `measure` on a cluster of its own: its figures, and CPU seconds per process."""
    workdir = Path(tempfile.mkdtemp(prefix=f"llmserve-bench-{name}-"))
    handle = cluster_tool.Cluster(f"bench-{name}", workdir)
    try:
        cluster_tool.up(handle, nodes=2, gpus=1000, product=cluster_tool.DEFAULT_PRODUCT,
                        memory_mib=cluster_tool.DEFAULT_MEMORY_MIB, pods=1200,
                        loopback=False)  # fmt: skip
        cluster_tool.install_crd(handle)
        kubectl(handle, "create", "namespace", NAMESPACE)
        cluster_tool.wait_ready(handle)
        pids = processes(handle)
        cpu = {process: cpu_seconds(pid) for process, pid in pids.items()}
        figures = measure(handle)
        used = {process: cpu_seconds(pid) - cpu[process] for process, pid in pids.items()}
        if "operator_cpu_s" in figures:
            used["operator"] = figures["operator_cpu_s"]
        return figures, used
    finally:
        cluster_tool.down(handle)


def with_operator(total: int) -> Callable[[cluster_tool.Cluster], dict[str, float]]:
    """LLMServices and the operator: until every one is Ready, then deleted."""

    def measure(handle: cluster_tool.Cluster) -> dict[str, float]:
        log = handle.workdir / "operator.log"
        operator = cluster_tool.start_operator(
            handle, NAMESPACE, log, python=testbin.runtime_python()
        )
        figures = run_until(handle, "llms", ".status.phase", "Ready", total, llmservices(total))
        figures["deleted_s"] = deleted_after(handle, "llms")
        figures["rss_mib"] = peak_rss_mib(operator.pid)
        figures["operator_cpu_s"] = cpu_seconds(operator.pid)  # since it started
        operator.terminate()
        operator.wait(timeout=30)
        return figures

    return measure


def without_operator(
    total: int,
) -> Callable[[cluster_tool.Cluster], dict[str, float]]:
    """The same children created directly, all at once: what the control plane alone needs."""

    def measure(handle: cluster_tool.Cluster) -> dict[str, float]:
        figures = run_until(
            handle, "deployments", ".status.readyReplicas", "1", total, children(total)
        )
        figures["deleted_s"] = deleted_after(handle, "deployments,jobs,services,pvc")
        return figures

    return measure


def main() -> int:
    """Run the floor, then the operator, each on a cluster of its own; print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the run without the operator (half the time)"
    )
    args = parser.parse_args()
    runs = {"llmserve": on_a_cluster("operator", with_operator(args.count))}
    if not args.no_floor:
        runs["floor"] = on_a_cluster("floor", without_operator(args.count))
    print(f"\n{args.count} LLMServices, 2 cores:")
    rows = [
        ("all Ready (children + Available), s", "ready_s", "{:.1f}"),
        ("API requests per LLMService (all clients)", "requests", "{:.1f}"),
        ("all children gone after delete, s", "deleted_s", "{:.1f}"),
        ("operator peak RSS, MiB", "rss_mib", "{:.0f}"),
    ]
    print(f"  {'':44s}" + "".join(f"{name:>12s}" for name in runs))
    for label, key, form in rows:
        cells = [
            form.format(figures[key]) if key in figures else "-" for figures, _ in runs.values()
        ]
        print(f"  {label:44s}" + "".join(f"{cell:>12s}" for cell in cells))
    print("  CPU seconds, create to all deleted:")
    names = sorted(
        {p for _, cpu in runs.values() for p in cpu}, key=lambda p: -runs["llmserve"][1].get(p, 0)
    )
    for process in names:
        cells = [f"{cpu[process]:.1f}" if process in cpu else "-" for _, cpu in runs.values()]
        print(f"    {process:42s}" + "".join(f"{cell:>12s}" for cell in cells))
    return 0 if all(figures["done"] == args.count for figures, _ in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
