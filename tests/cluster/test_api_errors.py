"""The API server answers 409, 429 and 500 for a while: the operator retries and ends consistent.

The faults are injected for real, by the API server itself: a validating admission webhook (a local
HTTPS server on 127.0.0.1) refuses every write of a Deployment or Service in the test's namespace
with those codes for a few seconds, then lets them through.
"""

from __future__ import annotations

import base64
import http.server
import itertools
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.cluster.chart import release_in
from tests.cluster.conftest import Kube, eventually
from tests.cluster.test_operator import apply, ready, running_operator
from tests.cluster.test_resilience import CPU
from tests.support import document

pytestmark = pytest.mark.cluster

FAULT_SECONDS = 8
CODES = (409, 429, 500)


def certificate(directory: Path) -> tuple[Path, Path, bytes]:
    """A self-signed certificate for 127.0.0.1 (it is also its own CA)."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(  # noqa: S603 - fixed arguments
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",  # noqa: S607
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key, cert.read_bytes()


class Faults:
    """Refuses with 409, 429, 500 in turn until `until`; records what it refused."""

    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds
        self.codes = itertools.cycle(CODES)
        self.refused: list[int] = []
        self.lock = threading.Lock()

    def answer(self, review: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
        with self.lock:
            if time.monotonic() < self.until:
                code = next(self.codes)
                self.refused.append(code)
                status = {"code": code, "message": f"injected fault {code}"}
                response = {**response, "allowed": False, "status": status}
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }


@pytest.fixture
def faults(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Faults]:
    """The webhook server and its configuration, removed afterwards."""
    cert, key, ca = certificate(tmp_path)
    state = Faults(FAULT_SECONDS)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps(state.answer(review)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    name = f"faults-{namespace}"
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "faults.llmserve.test",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{server.server_address[1]}/validate",
                    "caBundle": base64.b64encode(ca).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["apps", ""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments", "services"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    kube.run("apply", "-f", "-", stdin=json.dumps(webhook))
    try:
        yield state
    finally:
        kube.run("delete", "validatingwebhookconfiguration", name, check=False)
        server.shutdown()
        server.server_close()


@pytest.fixture
def chart(kube: Kube, namespace: str) -> Iterator[None]:
    """The chart installed before the faults start (helm is not what is tested here)."""
    with release_in(kube, namespace):
        yield


@pytest.mark.usefixtures("chart")  # before `faults`: usefixtures come first
def test_faults_from_the_api_server_are_retried_until_everything_is_consistent(
    kube: Kube, namespace: str, tmp_path: Path, faults: Faults
) -> None:
    log = tmp_path / "operator.log"
    with running_operator(kube, namespace, log):
        names = ["one", "two", "three"]
        for name in names:
            apply(kube, namespace, document(CPU, name=name))
        for name in names:
            eventually(lambda n=name: ready(kube, namespace, n), timeout=120, what=f"{name} Ready")
    assert set(faults.refused) == set(CODES), faults.refused
    text = log.read_text()
    assert "injected fault 429" in text or "injected fault 500" in text
    for name in names:  # one of each child, each owned, each as rendered
        for kind in ("deployment", "service"):
            owners = kube.json(kind, name, "-n", namespace)["metadata"]["ownerReferences"]
            assert [o["name"] for o in owners] == [name]
