#!/usr/bin/env python3
"""Build the test cluster's binaries from Go modules into a cache outside the repository.

kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (k8s.io/kubernetes), etcd, kwok
and kwokctl, and helm are built from the pinned wrapper modules in tools/<name>/ (go.mod + go.sum)
into ~/.cache/llmserve/bin/<key>, where <key> hashes those files and this script's build flags. A
complete key directory is reused as is; a missing binary is rebuilt (Go's build cache makes that
quick). See docs/architecture.md ("The test cluster") and the README for the recipe and the measured
times.

Prometheus, for the autoscaler's tests, is Debian's `prometheus` package, unpacked rather than
installed: its binary lands in ~/.cache/llmserve/prometheus/<package version>/prometheus.

Usage: tools/testbin.py build | dir | prometheus
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("LLMSERVE_CACHE", Path.home() / ".cache" / "llmserve"))
K8S_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.14"
HELM_VERSION = "v4.2.4"
PROMETHEUS_PACKAGE = "prometheus"  # Debian's; bookworm has 2.42.0+ds-5+deb12u1
MIN_FREE_GIB = 8  # module cache ~1.9 GB + build cache ~4.3 GB + binaries ~0.5 GB, measured


def _k8s_ldflags() -> str:
    """Stamp the Kubernetes version: kwokctl parses it, Helm checks kubeVersion against it."""
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w", "-buildid="]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in (
            ("gitVersion", K8S_VERSION),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitCommit", f"llmserve-testbin-{K8S_VERSION}"),
            ("gitTreeState", "clean"),
            ("buildDate", "2026-01-01T00:00:00Z"),
        ):
            flags.append(f"-X {pkg}.{key}={value}")
    return " ".join(flags)


@dataclass(frozen=True)
class Group:
    """One wrapper module and the binaries it builds in one `go build`."""

    module: str
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    ldflags: str
    tags: str = ""
    cold_minutes: int = 2


GROUPS = (
    Group(
        "k8s",
        tuple(
            f"k8s.io/kubernetes/cmd/{b}"
            for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
        ),
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
        _k8s_ldflags(),
        tags="selinux,notest",
        cold_minutes=7,
    ),
    Group(
        "etcd",
        ("go.etcd.io/etcd/server/v3",),
        ("etcd",),
        f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_VERSION}",
    ),
    Group(
        "kwok",
        ("sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"),
        ("kwok", "kwokctl"),
        "-s -w",
    ),
    Group(
        "helm",
        ("helm.sh/helm/v4/cmd/helm",),
        ("helm",),
        f"-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",
    ),
)


def key() -> str:
    """Hash of the wrapper modules and the build flags: a change means a new binary directory."""
    digest = hashlib.sha256()
    for group in GROUPS:
        for name in ("go.mod", "go.sum"):
            digest.update((TOOLS / group.module / name).read_bytes())
        digest.update(f"{group.packages}{group.ldflags}{group.tags}".encode())
    return digest.hexdigest()[:16]


def bin_dir() -> Path:
    """Where the binaries of the current key live."""
    return CACHE / "bin" / key()


def _free_gib(path: Path) -> float:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free / 2**30


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Static binaries; -buildvcs=false because the wrappers are not the code being built.
    env |= {"CGO_ENABLED": "0", "GOFLAGS": "-trimpath -buildvcs=false", "GOTOOLCHAIN": "local"}
    return env


def _heartbeat(log: Path, started: float, done: threading.Event, name: str) -> None:
    """Print progress every 30 s: how many packages `go build -v` has reported, and the time."""
    while not done.wait(30):
        packages = sum(1 for _ in log.open(errors="replace")) if log.exists() else 0
        print(f"  ... {name}: {packages} packages, {time.monotonic() - started:.0f} s", flush=True)


def _fail(group: Group, code: int, log: Path) -> None:
    tail = log.read_text(errors="replace").splitlines()[-25:]
    gocache = subprocess.run(
        ["go", "env", "GOCACHE", "GOMODCACHE"], capture_output=True, text=True, check=False
    ).stdout.split()
    free = ", ".join(f"{p}: {_free_gib(Path(p)):.1f} GiB free" for p in [str(CACHE), *gocache])
    print("\n".join(["", *tail, ""]), file=sys.stderr)
    sys.exit(
        f"error: building {', '.join(group.binaries)} from tools/{group.module} failed "
        f"(go build exit {code}); the full log is {log}.\n"
        f"disk: {free} (a cold build needs about {MIN_FREE_GIB} GiB).\n"
        f"retry: make tools (Go's module and build caches keep what was done)"
    )


def build_group(group: Group, dest: Path, step: str) -> None:
    """Build one group into a temporary directory, then move the binaries into `dest`."""
    name = ", ".join(group.binaries)
    print(f"{step} building {name} (cold: about {group.cold_minutes} min)", flush=True)
    started = time.monotonic()
    log = CACHE / "logs" / f"build-{group.module}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        # One package: name the file (Go would call go.etcd.io/etcd/server/v3 "server").
        output = f"{tmp}/{group.binaries[0]}" if len(group.packages) == 1 else f"{tmp}/"
        command = ["go", "build", "-v", f"-ldflags={group.ldflags}", "-o", output]
        if group.tags:
            command.append(f"-tags={group.tags}")
        done = threading.Event()
        beat = threading.Thread(target=_heartbeat, args=(log, started, done, name), daemon=True)
        beat.start()
        with log.open("w") as out:
            code = subprocess.run(
                [*command, *group.packages],
                cwd=TOOLS / group.module,
                env=_go_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        done.set()
        if code != 0:
            _fail(group, code, log)
        for binary in group.binaries:
            (Path(tmp) / binary).replace(dest / binary)  # atomic: never a half-written binary
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)


def build() -> Path:
    """Build every missing binary of the current key; print and return the directory."""
    dest = bin_dir()
    missing = [g for g in GROUPS if not all((dest / b).exists() for b in g.binaries)]
    if not missing:
        print(f"binaries up to date in {dest}", file=sys.stderr)
        return dest
    if shutil.which("go") is None:
        sys.exit(
            "error: go is not on PATH; install Go >= 1.26 (the binaries are built from Go modules)"
        )
    free = _free_gib(CACHE)
    if free < MIN_FREE_GIB:
        sys.exit(
            f"error: only {free:.1f} GiB free under {CACHE}; a cold build needs about "
            f"{MIN_FREE_GIB} GiB. Free some space (or set LLMSERVE_CACHE to a larger disk), "
            "then retry"
        )
    dest.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for index, group in enumerate(missing, 1):
        build_group(group, dest, f"[{index}/{len(missing)}]")
    print(f"built in {time.monotonic() - started:.0f} s: {dest}", flush=True)
    return dest


LOCK = TOOLS.parent / "requirements.lock"
LOCKED_INSTALL = ("--require-hashes", "--no-deps", "--only-binary=:all:")
"""How requirements.lock is installed, here and in the Dockerfile (tests/test_image.py checks)."""


def locked_venv(venv: Path, wheel: Path | None = None) -> Path:
    """Make `venv` hold exactly requirements.lock and, if given, llmserve's wheel: its Python.

    The image's install step (Dockerfile), run by this Python's pip: the venv gets no pip of its
    own, the lock's wheels are hash-checked, the wheel comes without dependencies, and `pip check`
    proves the lock holds everything llmserve and its dependencies need.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", *LOCKED_INSTALL, "-r", str(LOCK)], check=True)
    if wheel is not None:
        subprocess.run([*pip, "install", "--quiet", "--no-deps", str(wheel)], check=True)
    checked = subprocess.run([*pip, "check"], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        sys.exit(f"error: {LOCK.name} is incomplete ({venv}):\n{checked.stdout}{checked.stderr}"
                 "run `make lock`, then review the diff")  # fmt: skip
    return python


def runtime_python() -> Path:
    """Python of a virtualenv holding requirements.lock, as the image does; made once per lock.

    llmserve itself is not installed: callers put the checkout's `operator/` on PYTHONPATH.
    """
    venv = CACHE / "runtime" / hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    if not (venv / "complete").exists():
        print(f"making the runtime environment {venv} ...", flush=True)
        locked_venv(venv)
        (venv / "complete").touch()
    return venv / "bin" / "python"


def loadgen() -> Path:
    """The Go load generator of the benchmarks (tools/loadgen), built once per source."""
    source = TOOLS / "loadgen"
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(source.glob("*.go*"))))
    binary = CACHE / "loadgen" / digest.hexdigest()[:16] / "loadgen"
    if not binary.exists():
        subprocess.run(
            ["go", "build", "-o", str(binary), "."], cwd=source, env=_go_env(), check=True
        )
    return binary


def _apt_candidate(package: str) -> str | None:
    """The version apt would fetch of `package`; None when its lists do not know it."""
    policy = subprocess.run(
        ["apt-cache", "policy", package],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C"},  # the field names below are English
    ).stdout
    for line in policy.splitlines():
        field, _, value = line.strip().partition(": ")
        if field == "Candidate" and value != "(none)":
            return value
    return None


def _updated_candidate(package: str) -> str:
    """Refresh apt's lists (a fresh machine has none; old ones name dropped versions), then ask."""
    if os.geteuid() != 0:
        sys.exit(
            f"error: apt's lists lack the {package} package or name a version the mirror dropped; "
            "run `sudo apt-get update`, then `make tools`"
        )
    print("updating apt's package lists ...", flush=True)
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    version = _apt_candidate(package)
    if version is None:
        sys.exit(
            f"error: apt knows no {package} package even after `apt-get update`; enable Debian's "
            "main component in /etc/apt/sources.list, then `make tools`"
        )
    return version


def _apt_download(package: str, version: str, into: Path) -> Path | None:
    """Fetch the .deb into `into`, installing nothing; None when apt could not."""
    # As root, apt hands the download to the `_apt` user, which cannot write a private temporary
    # directory, and falls back to root with a warning; ask for root at once.
    sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
    done = subprocess.run(
        ["apt-get", "download", "-q", *sandbox, f"{package}={version}"],
        cwd=into,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(done.stderr.strip(), file=sys.stderr)
        return None
    return next(into.glob("*.deb"))


def _prometheus_binary(version: str) -> Path:
    return CACHE / "prometheus" / version / "prometheus"


def prometheus() -> Path:
    """The Prometheus binary of the Debian package apt offers, fetched and unpacked once.

    Warm, this is one `apt-cache policy` (a fraction of a second, no network).
    """
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        sys.exit(
            "error: the autoscaler tests take Prometheus from Debian's prometheus package, but "
            "apt-get or dpkg-deb is missing; run them on Debian or Ubuntu (as CI does)"
        )
    version = _apt_candidate(PROMETHEUS_PACKAGE) or _updated_candidate(PROMETHEUS_PACKAGE)
    if _prometheus_binary(version).exists():
        return _prometheus_binary(version)
    print(f"fetching Prometheus from Debian's {PROMETHEUS_PACKAGE} {version} ...", flush=True)
    (CACHE / "prometheus").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE / "prometheus") as tmp:
        deb = _apt_download(PROMETHEUS_PACKAGE, version, Path(tmp))
        if deb is None:
            version = _updated_candidate(PROMETHEUS_PACKAGE)
            deb = _apt_download(PROMETHEUS_PACKAGE, version, Path(tmp))
        if deb is None:
            sys.exit(
                f"error: `apt-get download {PROMETHEUS_PACKAGE}={version}` failed (above); check "
                "the network and /etc/apt/sources.list, then `make tools`"
            )
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/root"], check=True)
        unpacked = Path(tmp) / "root" / "usr" / "bin" / "prometheus"
        subprocess.run([str(unpacked), "--version"], check=True, capture_output=True)
        binary = _prometheus_binary(version)
        binary.parent.mkdir(exist_ok=True)
        unpacked.replace(binary)  # atomic: a concurrent run finds a whole binary or none
    print(f"  done: {binary}", flush=True)
    return binary


def main(argv: list[str]) -> int:
    """Entry point: `build` (default), `dir` or `prometheus` (prints the binary's path)."""
    command = argv[0] if argv else "build"
    if command == "build":
        build()
        prometheus()
    elif command == "dir":
        print(bin_dir())
    elif command == "prometheus":
        print(prometheus())
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
