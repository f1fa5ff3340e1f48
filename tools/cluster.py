#!/usr/bin/env python3
"""A local Kubernetes cluster for the demo and the tests: a real control plane run by kwok.

`up` builds the binaries if needed (tools/testbin.py), starts etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok as local processes (`kwokctl --runtime binary`),
creates fake GPU nodes, a default StorageClass with a small provisioner that binds pending claims,
and writes the kubeconfig. `down` stops every process it started, by PID. With `--kind` (or
CLUSTER=kind in make) it makes a kind cluster instead, for machines that have Docker.

Pod IPs come from 127.1.0.0/16 (each node's spec.podCIDR), so a test may serve
a pod's address with a local process; any other pod or Service IP of this cluster is fake.

Usage: tools/cluster.py up|down|status [--name NAME] [--workdir DIR] [--nodes N] [--gpus N]
       [--gpu-product NAME] [--gpu-memory-mib N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import testbin  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = ROOT / ".cluster"
STORAGE_CLASS = "llmserve-local"
POD_CIDR_PREFIX = "127.1"
SERVICE_RANGE = "10.96.0.0/16"  # the kwokctl default /24 holds only ~250 Services
DEFAULT_PRODUCT = "NVIDIA-A100-SXM4-80GB"
DEFAULT_MEMORY_MIB = 81920


@dataclass(frozen=True)
class Cluster:
    """Where one cluster keeps its files."""

    name: str
    workdir: Path

    @property
    def kwok_workdir(self) -> Path:
        """The KWOK_WORKDIR of kwokctl."""
        return self.workdir / "kwok"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig."""
        return self.workdir / "kubeconfig"

    @property
    def provisioner_pid(self) -> Path:
        """PID file of the claim binder."""
        return self.workdir / "provisioner.pid"

    @property
    def pids_dir(self) -> Path:
        """The PID files kwokctl writes for the components."""
        return self.kwok_workdir / "clusters" / self.name / "pids"

    def env(self) -> dict[str, str]:
        """Environment for kwokctl, kubectl and helm: our binaries first, caches per cluster."""
        bins = testbin.bin_dir()
        env = dict(os.environ)
        env |= {
            "PATH": f"{bins}{os.pathsep}{env.get('PATH', '')}",
            "KWOK_WORKDIR": str(self.kwok_workdir),
            "KWOK_KUBECTL_BINARY": str(bins / "kubectl"),
            "KWOK_KUBE_VERSION": testbin.K8S_VERSION,
            "KUBECONFIG": str(self.kubeconfig),
            # Discovery caches are keyed by host:port, and ports repeat between clusters.
            "KUBECACHEDIR": str(self.workdir / "kube-cache"),
            "HELM_CACHE_HOME": str(self.workdir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.workdir / "helm" / "data"),
        }
        return env


def log(message: str) -> None:
    """Progress on stderr, so stdout stays for values other programs read."""
    print(message, file=sys.stderr, flush=True)


def run(cluster: Cluster, *argv: str, stdin: str | None = None, check: bool = True) -> str:
    """Run a command in the cluster's environment; on failure, exit with its output."""
    result = subprocess.run(
        argv, input=stdin, env=cluster.env(), capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise SystemExit(
            f"error: {' '.join(argv[:3])} ... failed (exit {result.returncode}):\n"
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def kwokctl_config() -> str:
    """The kwokctl settings: loopback everywhere, no fsync, a large Service range.

    Pod IPs come from each node's spec.podCIDR (kwok prefers it to its own default range); a
    KwokConfiguration document here would replace kwok's defaults wholesale, so none is given.
    """
    return f"""\
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  disableQPSLimits: true
componentsPatches:
- name: etcd
  extraArgs:
  - key: unsafe-no-fsync
    value: "true"
- name: kube-apiserver
  extraArgs:
  - key: service-cluster-ip-range
    value: {SERVICE_RANGE}
"""


def pod_cidr(index: int, *, loopback: bool) -> str:
    """Node `index`'s pod range: loopback (a test may serve a pod's IP), or a private /16.

    The API server refuses loopback addresses in Endpoints and EndpointSlices, so with loopback
    pods the endpoint controllers retry every Service's update forever: harmless for tests, but
    a benchmark would measure those retries rather than the operator.
    """
    return f"{POD_CIDR_PREFIX}.{index}.0/24" if loopback else f"10.{128 + index}.0.0/16"


def node_manifest(  # noqa: PLR0913 - the node shape
    index: int, gpus: int, product: str, memory_mib: int, pods: int = 110, *, loopback: bool = True
) -> dict[str, object]:
    """A fake GPU node; CPU grows with the pod count (the proxy alone requests 250m a pod)."""
    name = f"gpu-node-{index}"
    cpu, memory = max(64, pods // 2), f"{max(512, pods * 2)}Gi"  # GPU labels below
    resources = {"cpu": str(cpu), "memory": memory, "pods": str(pods), "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.memory": str(memory_mib),
                "nvidia.com/gpu.count": str(gpus),
            },
        },
        "spec": {"podCIDR": pod_cidr(index, loopback=loopback)},
        # Nodes accept status on create only: kwok keeps it, an update would reset it.
        "status": {"capacity": resources, "allocatable": resources},
    }


STORAGE_CLASS_MANIFEST = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {
        "name": STORAGE_CLASS,
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    },
    "provisioner": "llmserve.io/local",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}


def wait_ready(cluster: Cluster, timeout: float = 120) -> None:
    """Wait for /readyz, the nodes and the default ServiceAccount (pods need it)."""
    deadline = time.monotonic() + timeout
    checks = [
        ("the API server", ["kubectl", "get", "--raw", "/readyz"]),
        (
            "the nodes",
            ["kubectl", "wait", "--for=condition=Ready", "node", "--all", "--timeout=5s"],
        ),
        ("the default ServiceAccount", ["kubectl", "get", "serviceaccount", "default"]),
    ]
    for what, argv in checks:
        while True:
            result = subprocess.run(
                argv, env=cluster.env(), capture_output=True, text=True, check=False
            )
            if result.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"error: timed out waiting for {what}: {result.stderr.strip()}")
            time.sleep(0.5)


_STARTED: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this Python process started and must reap (a test session runs `up` and `down`)."""


def start_provisioner(cluster: Cluster) -> None:
    """Start the claim binder in the background; its PID goes to a file for `down`."""
    with (cluster.workdir / "provisioner.log").open("a") as log_file:  # the child keeps its copy
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "provisioner.py"), STORAGE_CLASS],
            env=cluster.env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives `make`, stopped by `down`
        )
    _STARTED[process.pid] = process
    cluster.provisioner_pid.write_text(str(process.pid))


def up(  # noqa: PLR0913 - the node shape is five numbers
    cluster: Cluster,
    nodes: int,
    gpus: int,
    product: str,
    memory_mib: int,
    *,
    pods: int = 110,
    loopback: bool = True,
) -> None:
    """Build if needed, start the control plane, add GPU nodes and storage."""
    started = time.monotonic()
    testbin.build()
    cluster.workdir.mkdir(parents=True, exist_ok=True)
    if (cluster.kwok_workdir / "clusters" / cluster.name).exists():
        log(f"cluster {cluster.name} exists in {cluster.workdir}; run `down` first to recreate it")
        wait_ready(cluster)
        return
    config = cluster.workdir / "kwokctl.yaml"
    config.write_text(kwokctl_config())
    bins = testbin.bin_dir()
    log(f"starting cluster {cluster.name} (kwok, binary runtime) ...")
    run(
        cluster,
        "kwokctl", "create", "cluster", "--name", cluster.name, "--config", str(config),
        "--kube-apiserver-binary", str(bins / "kube-apiserver"),
        "--kube-controller-manager-binary", str(bins / "kube-controller-manager"),
        "--kube-scheduler-binary", str(bins / "kube-scheduler"),
        "--etcd-binary", str(bins / "etcd"),
        "--kwok-controller-binary", str(bins / "kwok"),
        "--kubeconfig", "",  # leave ~/.kube/config alone
        "--wait", "2m",
    )  # fmt: skip
    kubeconfig = cluster.kwok_workdir / "clusters" / cluster.name / "kubeconfig.yaml"
    shutil.copyfile(kubeconfig, cluster.kubeconfig)
    manifests = [
        node_manifest(i, gpus, product, memory_mib, pods, loopback=loopback) for i in range(nodes)
    ]
    manifests.append(STORAGE_CLASS_MANIFEST)
    for manifest in manifests:  # create, not apply: a Node keeps only the status it is created with
        run(cluster, "kubectl", "create", "-f", "-", stdin=json.dumps(manifest))
    start_provisioner(cluster)
    wait_ready(cluster)
    log(f"cluster {cluster.name} is ready in {time.monotonic() - started:.1f} s")
    log(f"  export KUBECONFIG={cluster.kubeconfig}")
    log(f"  export PATH={bins}:$PATH  # kubectl and helm of this cluster")
    log("  kubectl get nodes -L nvidia.com/gpu.product")


def install_crd(cluster: Cluster) -> None:
    """Apply the LLMService CRD and wait until the API server serves it."""
    run(cluster, "kubectl", "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    run(cluster, "kubectl", "wait", "--for=condition=Established", "crd/llmservices.llmserve.io")


def start_operator(  # noqa: PLR0913 - the operator's options, keyword-only
    cluster: Cluster,
    namespace: str,
    log: Path,
    *,
    python: Path | None = None,
    config: Path | None = None,
    flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`llmserve operator -n NAMESPACE` of this checkout, in a session of its own, logging to `log`.

    `python`: an interpreter of another environment to run it with (the benchmark's, which holds
    the runtime dependencies only), with this checkout's source on its path. `config`: the
    operator settings file ($LLMSERVE_CONFIG); `flags`: more `llmserve operator` flags; `env`:
    more environment (another KUBECONFIG, say, to act as a ServiceAccount).
    Returns once it leads (holds its Lease), so what follows is handled at once.
    """
    env = cluster.env() | (env or {})
    if config is not None:
        env["LLMSERVE_CONFIG"] = str(config)
    if python is None:
        argv = [str(ROOT / ".venv" / "bin" / "llmserve"), "operator", "-n", namespace, *flags]
    else:
        argv = [str(python), "-m", "llmserve.cli", "operator", "-n", namespace, *flags]
        env["PYTHONPATH"] = str(ROOT / "operator")
    with log.open("a") as out:
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # may outlive its starter (`make demo`); stopped by PID
        )
    deadline = time.monotonic() + 60
    while "leading as" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"error: the operator did not start; see {log}")
        time.sleep(0.2)
    return process


def service_account_kubeconfig(
    cluster: Cluster, namespace: str, account: str, path: Path, *, duration: str = "1h"
) -> Path:
    """Write a kubeconfig at `path` that acts as ServiceAccount `namespace`/`account`.

    The token is minted by the TokenRequest API (`kubectl create token`), the server and CA are the
    admin kubeconfig's: a process run with it has exactly the account's RBAC, as in a pod.
    """
    token = run(cluster, "kubectl", "create", "token", account, "-n", namespace,
                f"--duration={duration}").strip()  # fmt: skip
    admin = json.loads(run(cluster, "kubectl", "config", "view", "--raw", "--minify", "-o", "json"))
    server = admin["clusters"][0]["cluster"]
    name = f"{namespace}-{account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": server}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)  # a bearer token
    return path


def recorded_pids(cluster: Cluster) -> list[int]:
    """PIDs of every process the cluster started, from their pid files."""
    pids = []
    # kwokctl's components, the claim binder, and the operator `make demo` started.
    files = [
        *cluster.pids_dir.glob("*.pid"),
        cluster.provisioner_pid,
        cluster.workdir / "operator.pid",
    ]
    for pid_file in files:
        try:
            pids.append(int(pid_file.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    if pid in _STARTED:
        return _STARTED[pid].poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def restart_component(cluster: Cluster, component: str, pause: float = 3.0) -> None:
    """Kill one component (e.g. kube-apiserver) by PID and start it again with the same command.

    For tests of clients that must ride out an API server crash. The other components keep running
    and reconnect, as long as the gap stays under their leader-election renew deadline (10 s):
    past it, kube-controller-manager and kube-scheduler exit, and here no kubelet restarts them.
    """
    pid_file = cluster.pids_dir / f"{component}.pid"
    pid = int(pid_file.read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    cwd = Path(f"/proc/{pid}/cwd").resolve()
    os.kill(pid, signal.SIGKILL)  # a crash: no graceful drain that would stretch the gap
    while alive(pid):
        time.sleep(0.05)
    time.sleep(pause)
    log_path = cluster.kwok_workdir / "clusters" / cluster.name / "logs" / f"{component}.log"
    # Started by a shell that exits at once, as kwokctl does: the component is nobody's child, so
    # it outlives this process (a test session reusing a cluster) and `down` stops it by PID.
    started = subprocess.run(
        ["/bin/sh", "-c", '"$@" >>"$0" 2>&1 </dev/null & echo $!', str(log_path)]
        + [a.decode() for a in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    pid_file.write_text(started.stdout.strip())


def down(cluster: Cluster) -> None:
    """Stop every process of the cluster (kwokctl's components and the provisioner), by PID."""
    pids = recorded_pids(cluster)
    if (cluster.kwok_workdir / "clusters" / cluster.name).exists():
        run(cluster, "kwokctl", "delete", "cluster", "--name", cluster.name, check=False)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:  # only PIDs this cluster recorded: never anyone else's process
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        if pid in _STARTED:
            _STARTED.pop(pid).wait(timeout=10)
    shutil.rmtree(cluster.workdir, ignore_errors=True)
    log(f"cluster {cluster.name} stopped ({len(pids)} processes)")


def status(cluster: Cluster) -> int:
    """Exit 0 when the cluster answers, 1 otherwise."""
    if not cluster.kubeconfig.exists():
        log(f"no cluster in {cluster.workdir}")
        return 1
    result = subprocess.run(
        ["kubectl", "get", "--raw", "/readyz"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    log(f"cluster {cluster.name}: {'ready' if result.returncode == 0 else 'not answering'}")
    return result.returncode


def kind_up(workdir: Path, gpus: int, product: str, memory_mib: int) -> None:
    """A kind cluster (needs Docker) whose nodes advertise fake GPUs, for the same demo."""
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig = workdir / "kubeconfig"
    subprocess.run(
        ["kind", "create", "cluster", "--name", "llmserve", "--kubeconfig", str(kubeconfig)],
        check=True,
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    names = subprocess.run(
        ["kubectl", "get", "nodes", "-o", "name"], env=env, check=True, capture_output=True,
        text=True,
    ).stdout.split()  # fmt: skip
    for node in names:
        patch = {"status": {"capacity": {"nvidia.com/gpu": str(gpus)}}}
        subprocess.run(
            ["kubectl", "patch", node, "--subresource=status", "--type=merge", "-p",
             json.dumps(patch)], env=env, check=True,
        )  # fmt: skip
        labels = [f"nvidia.com/gpu.product={product}", f"nvidia.com/gpu.memory={memory_mib}"]
        subprocess.run(["kubectl", "label", node, "--overwrite", *labels], env=env, check=True)
    log(f"kind cluster llmserve is ready: export KUBECONFIG={kubeconfig}")


def main(argv: list[str]) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--name", default="llmserve")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per node")
    parser.add_argument("--gpu-product", default=DEFAULT_PRODUCT)
    parser.add_argument("--gpu-memory-mib", type=int, default=DEFAULT_MEMORY_MIB)
    parser.add_argument("--kind", action="store_true", help="make a kind cluster (needs Docker)")
    args = parser.parse_args(argv)
    cluster = Cluster(args.name, args.workdir.resolve())
    if args.command == "up" and args.kind:
        kind_up(cluster.workdir, args.gpus, args.gpu_product, args.gpu_memory_mib)
    elif args.command == "up":
        up(cluster, args.nodes, args.gpus, args.gpu_product, args.gpu_memory_mib)
    elif args.command == "down" and args.kind:
        subprocess.run(["kind", "delete", "cluster", "--name", "llmserve"], check=False)
        shutil.rmtree(cluster.workdir, ignore_errors=True)
    elif args.command == "down":
        down(cluster)
    else:
        return status(cluster)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
