"""The cluster tier: a real control plane (tools/cluster.py), one per test session.

With LLMSERVE_KUBECONFIG set (make does so after `make cluster-up`) the tests use that cluster;
otherwise the session starts its own in a temporary directory and stops it, by PID, at the end, also
when a test fails or the run is interrupted. If the control plane cannot be built or started, every
cluster test fails with the reason: there is no mock to fall back to, and nothing is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support import ROOT
from tools import cluster as cluster_tool

CRD = ROOT / "crds" / "llmservices.llmserve.io.yaml"


@dataclass(frozen=True)
class Kube:
    """kubectl against the test cluster."""

    handle: cluster_tool.Cluster
    """The cluster's files and processes (tests that restart the control plane need it)."""
    env: dict[str, str]

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; with check, fail the test with kubectl's own words."""
        done = subprocess.run(  # noqa: S603 - kubectl of the test cluster, fixed arguments
            ["kubectl", *args],  # noqa: S607 - found first on the PATH of `env`
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def json(self, *args: str) -> dict[str, Any]:
        """`kubectl get ... -o json`, decoded."""
        result: dict[str, Any] = json.loads(self.run("get", *args, "-o", "json").stdout)
        return result


def eventually(check: Callable[[], Any], *, timeout: float = 60, what: str = "") -> Any:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or check}")
        time.sleep(0.2)


def _start(tmp: Path) -> tuple[cluster_tool.Cluster, bool]:
    reuse = os.environ.get("LLMSERVE_KUBECONFIG")
    if reuse:
        workdir = Path(reuse).resolve().parent
        return cluster_tool.Cluster("llmserve", workdir), False
    handle = cluster_tool.Cluster(f"test-{os.getpid()}", tmp)
    try:
        cluster_tool.up(handle, nodes=2, gpus=8, product=cluster_tool.DEFAULT_PRODUCT,
                        memory_mib=cluster_tool.DEFAULT_MEMORY_MIB)  # fmt: skip
    except SystemExit as error:
        cluster_tool.down(handle)
        pytest.fail(f"the test cluster could not be started: {error}", pytrace=False)
    return handle, True


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """The cluster, with the CRD installed; stopped at the end if this session started it."""
    handle, started = _start(tmp_path_factory.mktemp("cluster"))
    try:
        env = handle.env()
        kube = Kube(handle, env)
        ready = kube.run("get", "--raw", "/readyz", check=False)
        if ready.returncode != 0:
            pytest.fail(f"the cluster at {handle.kubeconfig} does not answer: {ready.stderr}")
        kube.run("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
        kube.run("wait", "--for=condition=Established", "crd/llmservices.llmserve.io")
        yield kube
    finally:
        if started:
            cluster_tool.down(handle)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.run("create", "namespace", name)
    # The ServiceAccount controller adds `default` a moment later; pods need it.
    eventually(lambda: kube.run("get", "sa", "default", "-n", name, check=False).returncode == 0,
               what=f"the default ServiceAccount of {name}")  # fmt: skip
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)
