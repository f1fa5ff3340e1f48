"""tools/cluster.py starts a whole control plane and stops every process it started."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools import cluster as cluster_tool

pytestmark = pytest.mark.cluster


def test_up_then_down_leaves_no_process_behind(tmp_path: Path) -> None:
    handle = cluster_tool.Cluster("lifecycle", tmp_path / "cluster")
    try:
        cluster_tool.up(handle, nodes=1, gpus=2, product="NVIDIA-L4", memory_mib=23034)
        pids = cluster_tool.recorded_pids(handle)
        components = {p.stem for p in handle.pids_dir.glob("*.pid")}
        assert components == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok-controller",
        }
        assert handle.provisioner_pid.exists()
        assert all(cluster_tool.alive(pid) for pid in pids)
        assert cluster_tool.status(handle) == 0
    finally:
        cluster_tool.down(handle)
    assert pids
    assert not [pid for pid in pids if cluster_tool.alive(pid)]
    assert not handle.workdir.exists()
