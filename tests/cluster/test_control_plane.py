"""The test cluster is real: versions, fake GPU nodes, loopback pod IPs, storage, scheduling, GC."""

from __future__ import annotations

import http.server
import ipaddress
import json
import subprocess
import threading
import urllib.request

import pytest
from tests.cluster.conftest import Kube, eventually

pytestmark = pytest.mark.cluster

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def pod(name: str, gpus: int, **spec: object) -> str:
    """A restricted-compliant pod asking for `gpus` GPUs."""
    container = {
        "name": "c",
        "image": "registry.invalid/none:1",  # kwok runs no containers: the image is never pulled
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": 2000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    body = {"containers": [container], **spec}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body})


def test_the_api_server_reports_the_pinned_version(kube: Kube) -> None:
    version = json.loads(kube.run("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.36.3"
    assert (version["major"], version["minor"]) == ("1", "36")


def test_gpu_nodes_carry_capacity_and_feature_discovery_labels(kube: Kube) -> None:
    nodes = kube.json("nodes")["items"]
    assert len(nodes) >= 1
    for node in nodes:
        labels = node["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
        assert labels["nvidia.com/gpu.memory"] == "81920"
        assert labels["nvidia.com/gpu.count"] == "8"
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert ready["Ready"] == "True"
        assert ipaddress.ip_network(node["spec"]["podCIDR"]).subnet_of(LOOPBACK)


def test_a_pod_that_fits_is_bound_to_a_gpu_node_and_gets_ready(kube: Kube, namespace: str) -> None:
    kube.run("create", "-n", namespace, "-f", "-", stdin=pod("fits", 4))

    def ready() -> dict[str, object] | None:
        status = kube.json("pod", "fits", "-n", namespace)["status"]
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return status if conditions.get("Ready") == "True" else None

    status = eventually(ready, what="pod fits to become Ready")
    spec = kube.json("pod", "fits", "-n", namespace)["spec"]
    assert spec["nodeName"].startswith("gpu-node-")
    assert ipaddress.ip_address(status["podIP"]) in LOOPBACK


def test_a_pod_asking_for_more_gpus_than_a_node_has_stays_pending(
    kube: Kube, namespace: str
) -> None:
    kube.run("create", "-n", namespace, "-f", "-", stdin=pod("too-big", 16))

    def failed_scheduling() -> list[dict[str, object]]:
        events = kube.json("events", "-n", namespace, "--field-selector",
                           "involvedObject.name=too-big")["items"]  # fmt: skip
        return [e for e in events if e["reason"] == "FailedScheduling"]

    events = eventually(failed_scheduling, what="a FailedScheduling event")
    assert "Insufficient nvidia.com/gpu" in str(events[0]["message"])
    assert kube.json("pod", "too-big", "-n", namespace)["status"]["phase"] == "Pending"


def test_a_pod_ip_is_loopback_and_a_local_process_can_serve_it(kube: Kube, namespace: str) -> None:
    kube.run("create", "-n", namespace, "-f", "-", stdin=pod("served", 1))
    address = eventually(
        lambda: kube.json("pod", "served", "-n", namespace)["status"].get("podIP"),
        what="a pod IP",
    )
    # The one exception to "never contact a pod IP": the harness gave pods loopback addresses.
    assert ipaddress.ip_address(address) in LOOPBACK, f"pod IP {address} is not loopback"

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"served by a local process")

        def log_message(self, *_: object) -> None:
            return

    server = http.server.ThreadingHTTPServer((address, 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as response:
            assert response.read() == b"served by a local process"
    finally:
        server.shutdown()
        server.server_close()


def test_a_claim_of_the_default_class_is_bound_and_its_pod_runs(kube: Kube, namespace: str) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "cache"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}},
    }
    kube.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(claim))
    eventually(
        lambda: kube.json("pvc", "cache", "-n", namespace)["status"].get("phase") == "Bound",
        what="the claim to be bound",
    )
    bound = kube.json("pvc", "cache", "-n", namespace)
    assert bound["spec"]["storageClassName"] == "llmserve-local"
    volume = {"name": "v", "persistentVolumeClaim": {"claimName": "cache"}}
    kube.run("create", "-n", namespace, "-f", "-", stdin=pod("mounts", 1, volumes=[volume]))
    eventually(
        lambda: kube.json("pod", "mounts", "-n", namespace)["status"].get("phase") == "Running",
        what="the pod using the claim to run",
    )


def test_deleting_an_owner_garbage_collects_its_dependents(kube: Kube, namespace: str) -> None:
    owner = {
        "apiVersion": "llmserve.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": "owner"},
        "spec": {"model": {"name": "org/model-1B"}},
    }
    kube.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(owner))
    uid = kube.json("llms", "owner", "-n", namespace)["metadata"]["uid"]
    reference = {"apiVersion": "llmserve.io/v1alpha1", "kind": "LLMService", "name": "owner",
                 "uid": uid, "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "child", "ownerReferences": [reference]},
        "data": {"a": "b"},
    }
    kube.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(child))
    kube.run("delete", "llms", "owner", "-n", namespace)
    eventually(
        lambda: kube.run("get", "configmap", "child", "-n", namespace, check=False).returncode != 0,
        what="the garbage collector to delete the child",
    )


def test_helm_reports_its_pinned_version(kube: Kube) -> None:
    done = subprocess.run(
        ["helm", "version", "--short"],  # noqa: S607 - helm of the test cluster, first on PATH
        env=kube.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.startswith("v4.2.4")
