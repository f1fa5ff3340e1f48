#!/usr/bin/env python3
"""`make bench-operator`: 1000 LLMServices in one namespace, on a cluster of its own.

Reports the time until every LLMService has its children and is Available (phase Ready), the
operator's peak RSS, API requests per LLMService, and the time until every child is gone after
deleting them all. The cluster's nodes are large (1,200 pods and 1,000 GPUs each) so that capacity
is never what the benchmark measures, and pod IPs are private rather than loopback (see
`cluster.pod_cidr`: no pod is contacted here). Requests are counted from the API server's
`apiserver_request_total`, so they include the control plane's own work for those objects
(Deployments -> ReplicaSets -> Pods, Jobs -> Pods); the operator's own share is printed separately
from its log of kopf and llmserve calls where available.

The operator runs from an environment with llmserve's runtime dependencies only, as the image
installs them (`runtime_python`): the test tools of the development environment (the synchronous
Kubernetes client, which kopf imports whenever it is installed) are not part of its memory.

Usage: tools/bench_operator.py [--count N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import cluster as cluster_tool  # a sibling script: tools/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench"


def runtime_python() -> Path:
    """Python of a virtualenv with pyproject.toml's runtime dependencies, made once per list."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    key = hashlib.sha256(json.dumps(dependencies).encode()).hexdigest()[:16]
    venv = Path.home() / ".cache" / "llmserve" / "runtime" / key
    python = venv / "bin" / "python"
    if not (venv / "complete").exists():
        print(f"making the runtime environment {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *dependencies], check=True)
        (venv / "complete").touch()
    return python


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


class Phases:
    """The phase of every LLMService in the namespace, from one `kubectl get --watch`.

    Listing 1,000 LLMServices every few seconds would cost the control plane (and the two cores)
    more than some of what is measured; a watch costs one line per change.
    """

    def __init__(self, handle: cluster_tool.Cluster) -> None:
        columns = "custom-columns=NAME:.metadata.name,PHASE:.status.phase"
        self.process = subprocess.Popen(  # ended by stop(), by PID
            ["kubectl", "get", "llms", "-n", NAMESPACE, "--watch", "--no-headers", "-o", columns],
            env=handle.env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        self.phases: dict[str, str] = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout or ():
            name, phase = line.split()
            self.phases[name] = phase

    def ready(self) -> int:
        """How many are Ready now."""
        return sum(phase == "Ready" for phase in list(self.phases.values()))

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
]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(handle: cluster_tool.Cluster, operator: int) -> dict[str, int]:
    """PIDs of the control plane's processes, the claim binder and the operator, by name."""
    pids = {path.stem: int(path.read_text()) for path in handle.pids_dir.glob("*.pid")}
    return {**pids, "claim binder": int(handle.provisioner_pid.read_text()), "operator": operator}


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
    watch = Phases(handle)
    try:
        before = requests_total(handle)
        started = time.monotonic()
        kubectl(handle, "create", "-n", NAMESPACE, "-f", "-", stdin=listing)  # one POST each
        print(f"  {time.monotonic() - started:6.1f} s  all {total} created", flush=True)
        ready = watch.ready()
        while ready < total and time.monotonic() - started < timeout:
            time.sleep(2)
            ready = watch.ready()
            print(f"  {time.monotonic() - started:6.1f} s  {ready}/{total} Ready", flush=True)
        figures = {
            "ready": ready,
            "reconciled_s": time.monotonic() - started,
            "requests": requests_total(handle) - before,
        }
    finally:
        watch.stop()
    started = time.monotonic()
    kubectl(handle, "delete", "llms", "--all", "-n", NAMESPACE, "--wait=false")
    while remaining(handle, CHILD_PATHS) and time.monotonic() - started < timeout:
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
                        memory_mib=cluster_tool.DEFAULT_MEMORY_MIB, pods=1200,
                        loopback=False)  # fmt: skip
        cluster_tool.install_crd(handle)
        kubectl(handle, "create", "namespace", NAMESPACE)
        cluster_tool.wait_ready(handle)
        log = workdir / "operator.log"
        operator = cluster_tool.start_operator(handle, NAMESPACE, log, runtime_python())
        pids = processes(handle, operator.pid)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        figures = measure(handle, args.count, args.timeout)
        rss = peak_rss_mib(operator.pid)
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        print(f"\nLLMServices:                      {args.count}")
        print(f"all Ready (children + Available): {figures['reconciled_s']:.1f} s "
              f"({figures['ready']:.0f} Ready)")  # fmt: skip
        print(f"operator peak RSS:                {rss:.0f} MiB")
        print(f"API requests per LLMService:      {figures['requests'] / args.count:.1f} "
              "(whole control plane)")  # fmt: skip
        print(f"all children gone after delete:   {figures['deleted_s']:.1f} s")
        print("CPU seconds, create to all deleted (2 cores are shared by all of these):")
        for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
            print(f"  {name:28s} {seconds:6.1f}")
        return 0 if figures["ready"] == args.count else 1
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        cluster_tool.down(handle)


if __name__ == "__main__":
    sys.exit(main())
