#!/usr/bin/env python3
"""Bind pending claims of the test cluster's StorageClass to volumes made on the spot.

kwok runs no storage driver, so a PersistentVolumeClaim would stay Pending forever, and so would
every pod that mounts it. This watcher plays the part of kind's local-path provisioner: for each
Pending claim of the class it creates a hostPath PersistentVolume of the requested size, pre-bound
to the claim; the API server's binder does the rest. Nothing is ever written to the path: kwok's
pods run no containers. Volumes are created by a few threads at once, so that a burst of claims
(the operator benchmark makes 1000) is not served one round trip at a time. Started by
`tools/cluster.py up`, stopped by `down`.

Usage: tools/provisioner.py STORAGE_CLASS
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

CONFLICT = 409
GONE = 410
THREADS = 8


def volume_for(
    claim: client.V1PersistentVolumeClaim, storage_class: str
) -> client.V1PersistentVolume:
    """A PersistentVolume that fits the claim and is reserved for it."""
    meta = claim.metadata
    return client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(
            name=f"pvc-{meta.uid}", labels={"llmserve.io/provisioned-for": meta.name[:63]}
        ),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": claim.spec.resources.requests["storage"]},
            access_modes=claim.spec.access_modes,
            storage_class_name=storage_class,
            persistent_volume_reclaim_policy="Delete",
            host_path=client.V1HostPathVolumeSource(path=f"/var/lib/llmserve-test/{meta.uid}"),
            claim_ref=client.V1ObjectReference(
                kind="PersistentVolumeClaim",
                namespace=meta.namespace,
                name=meta.name,
                uid=meta.uid,
            ),
        ),
    )


def provision(
    core: client.CoreV1Api, claim: client.V1PersistentVolumeClaim, storage_class: str
) -> None:
    """Create the volume of a pending claim of our class (idempotent: 409 means it exists)."""
    if claim.spec.storage_class_name != storage_class or claim.status.phase != "Pending":
        return
    if claim.metadata.deletion_timestamp is not None:
        return
    try:
        core.create_persistent_volume(volume_for(claim, storage_class))
        print(f"bound {claim.metadata.namespace}/{claim.metadata.name}", flush=True)
    except ApiException as error:
        if error.status != CONFLICT:
            raise


class Provisioner:
    """Provisions each pending claim once, on a pool of threads."""

    def __init__(self, core: client.CoreV1Api, storage_class: str) -> None:
        self.core = core
        self.storage_class = storage_class
        self.pool = ThreadPoolExecutor(THREADS)
        self.started: set[str] = set()  # claim uids: later events of a claim need nothing more
        self.lock = threading.Lock()

    def submit(self, claim: client.V1PersistentVolumeClaim) -> None:
        """Provision the claim in the background, unless that was done already."""
        if claim.spec.storage_class_name != self.storage_class:
            return
        with self.lock:
            if claim.metadata.uid in self.started:
                return
            self.started.add(claim.metadata.uid)
        self.pool.submit(self.run, claim)

    def run(self, claim: client.V1PersistentVolumeClaim) -> None:
        """Provision one claim; a failure lets a later event of the claim try again."""
        try:
            provision(self.core, claim, self.storage_class)
        except Exception as error:  # noqa: BLE001 - a daemon: log, and let the next event retry
            print(f"error provisioning {claim.metadata.name}: {error!r}", flush=True)
            with self.lock:
                self.started.discard(claim.metadata.uid)


def main(storage_class: str) -> None:
    """List, then watch, forever; a broken watch starts over from a fresh list."""
    config.load_kube_config()
    core = client.CoreV1Api()
    provisioner = Provisioner(core, storage_class)
    while True:
        try:
            claims = core.list_persistent_volume_claim_for_all_namespaces()
            for claim in claims.items:
                provisioner.submit(claim)
            stream = watch.Watch().stream(
                core.list_persistent_volume_claim_for_all_namespaces,
                resource_version=claims.metadata.resource_version,
                timeout_seconds=300,
            )
            for event in stream:
                if event["type"] in ("ADDED", "MODIFIED"):
                    provisioner.submit(event["object"])
        except ApiException as error:
            if error.status != GONE:
                print(f"API error {error.status}: {error.reason}; retrying", flush=True)
                time.sleep(1)
        except Exception as error:  # noqa: BLE001 - a daemon: log, wait, list again
            print(f"error: {error!r}; retrying", flush=True)
            time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1])
