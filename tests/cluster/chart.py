"""The chart's operator on the test cluster: install a release, run its operator as its account.

kwok runs no containers, so the chart's operator pod is Ready but idle; these helpers run the
release's own command line locally, with a token of the release's ServiceAccount (exactly the
chart's RBAC), its settings file and its Lease. The operator tests all run this way: each of them
is also a proof that the chart's RBAC is enough.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cluster.conftest import Kube
from tests.support import ROOT
from tools import chart as chart_tool
from tools import cluster as cluster_tool
from tools import procfs

CHART = "charts/llmserve"
OPERATOR_ACCOUNT = "llmserve"


def helm(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    """Run helm against the test cluster; fail the test with helm's words."""
    try:
        return chart_tool.run_helm(*args, env=kube.env)
    except chart_tool.HelmError as error:
        pytest.fail(f"helm {' '.join(args)} failed: {error}")


def namespaced(watched: str) -> tuple[str, ...]:
    """helm flags for namespaced mode, managing one namespace."""
    return ("--set", "rbac.scope=namespaced", "--set", f"rbac.namespaces={{{watched}}}")


@contextlib.contextmanager
def release_in(kube: Kube, namespace: str, *values: str) -> Iterator[None]:
    """The chart installed into `namespace`, managing it; uninstalled afterwards if installed here.

    `values`: more helm flags (`--set`). A release already there (a second operator in the same
    test) is left to its installer.
    """
    if helm_ok(kube, "status", "llmserve", "-n", namespace):
        yield
        return
    helm(kube, "install", "llmserve", CHART, "-n", namespace, *namespaced(namespace), *values)
    try:
        yield
    finally:
        helm_ok(kube, "uninstall", "llmserve", "-n", namespace)


def helm_ok(kube: Kube, *args: str) -> bool:
    """Whether helm succeeds (for checks and clean-up that may find nothing)."""
    try:
        chart_tool.run_helm(*args, env=kube.env)
    except chart_tool.HelmError:
        return False
    return True


@contextlib.contextmanager
def operator_as(
    kube: Kube, release: str, log: Path, metrics_port: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The release's Deployment's command line, run locally as its ServiceAccount.

    The container's args, with the liveness and metrics ports moved to local ones (`metrics_port`,
    else a free one); the settings file read from the release's ConfigMap; POD_NAMESPACE as the
    downward API sets it.
    """
    container = kube.json("deployment", "llmserve", "-n", release)["spec"]["template"]["spec"][
        "containers"
    ][0]
    args = list(container["args"])
    args[args.index("--liveness") + 1] = f"http://127.0.0.1:{procfs.free_port()}/healthz"
    args[args.index("--metrics-port") + 1] = str(metrics_port or procfs.free_port())
    args += ["--metrics-address", "127.0.0.1"]
    settings = log.with_suffix(".config.yaml")
    config_map = kube.json("configmap", "llmserve-config", "-n", release)
    settings.write_text(config_map["data"]["config.yaml"])
    kubeconfig = cluster_tool.service_account_kubeconfig(
        kube.handle, release, OPERATOR_ACCOUNT, log.with_suffix(".kubeconfig")
    )
    env = kube.env | {
        "KUBECONFIG": str(kubeconfig),
        "POD_NAMESPACE": release,
        "LLMSERVE_CONFIG": str(settings),
    }
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "llmserve.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        yield process
    finally:
        procfs.stop(process)
