"""The LLMService CRD on a real API server: printer columns, schema and CEL admission, and rendered
children that pass server-side dry-run under Pod Security `restricted`."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from tests.cluster.conftest import Kube
from tests.render.cases import GOLDEN, stem
from tests.support import ROOT, document

from llmserve import cli, render
from llmserve.api import InvalidSpec, parse_llmservice
from llmserve.api.config import OperatorConfig

pytestmark = pytest.mark.cluster

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GGUF_MODEL = {"name": "org/model-3B-GGUF", "file": "*-Q4_K_M.gguf"}

# (id, document, words the API server's answer must contain). The first group fails the OpenAPI
# schema; the rest fail the CRD's CEL rules, whose text `llmserve render` prints as well.
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("engine enum", document({"engine": "vlm"}), 'Unsupported value: "vlm"'),
    (
        "open with keys",
        document({"proxy": {"auth": "none", "apiKeySecretRef": {"name": "k"}}}),
        "is not used with auth: none",
    ),
    (
        "peer of both kinds",
        document(
            {"proxy": {"allowedFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}}
        ),
        "either ipBlock or namespaceSelector/podSelector",
    ),
    ("quantization enum", document({"quantization": "int4"}), 'Unsupported value: "int4"'),
    ("negative gpus", document({"gpus": -1}), "greater than or equal to 0"),
    ("negative replicas", document({"replicas": -1}), "greater than or equal to 0"),
    ("minReplicas 0", document({"autoscaling": {"minReplicas": 0}}), "greater than or equal to 1"),
    ("maxQueue -1", document({"proxy": {"maxQueue": -1}}), "greater than or equal to 0"),
    ("access mode", document({"cache": {"accessMode": "Shared"}}), 'Unsupported value: "Shared"'),
    ("gpus as string", document({"gpuMemoryGiB": "80"}), "must be of type integer"),
    ("no model name", document({"model": {"revision": "main"}}), "spec.model.name: Required"),
    ("unknown field", document({"gpu": 2}), 'unknown field "spec.gpu"'),
    (
        "min above max",
        document({"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}}),
        "must not exceed maxReplicas",
    ),
    (
        "enabled without max",
        document({"autoscaling": {"enabled": True}}),
        "required when autoscaling is enabled",
    ),
    ("gguf on vllm", document({"quantization": "gguf"}), "gguf runs only on engine llamacpp"),
    (
        "awq on llamacpp",
        document({"engine": "llamacpp", "quantization": "awq", "model": GGUF_MODEL}),
        "load only GGUF files",
    ),
    (
        "bitsandbytes on vllm",
        document({"quantization": "bitsandbytes"}),
        "bitsandbytes cannot be loaded by engine vllm",
    ),
    ("no gpus on vllm", document({"gpus": 0}), "must be at least 1 for engines vllm"),
    (
        "no gpus on tgi",
        document({"engine": "tgi", "gpus": 0}),
        "must be at least 1 for engines vllm",
    ),
    (
        "no file for llamacpp",
        document({"engine": "llamacpp", "model": {"name": "org/m-3B-GGUF"}}),
        "required for engines llamacpp and ollama",
    ),
    (
        "file on vllm",
        document({"model": {"name": "org/m-8B", "file": "x.gguf"}}),
        "used only by engines llamacpp and ollama",
    ),
    ("name vllm", document(name="vllm"), "must not be 'vllm'"),
    ("name starts with a digit", document(name="8b-llama"), "must start with a letter"),
    ("name too long", document(name="a" * 49), "must be at most 48 characters"),
    # Formats and bounds (review M11): the OpenAPI pattern/maximum/maxLength/maxItems of the CRD,
    # and CEL for what OpenAPI cannot say (map keys, '..' steps, tensor-parallel sizes).
    ("repo id as a flag", document({"model": {"name": "--trust-remote-code"}}), "spec.model.name"),
    (
        "repo id with spaces",
        document({"model": {"name": "Qwen/Qwen 2.5 7B; rm -rf /"}}),
        "should match",
    ),
    ("repo id as a URL", document({"model": {"name": "https://evil.example/x"}}), "should match"),
    (
        "repo id too long",
        document({"model": {"name": "a/" + "b" * 200}}),
        "Too long: may not be more than 193",
    ),
    (
        "revision as a flag",
        document({"model": {"name": "a/b", "revision": "--include=*"}}),
        "spec.model.revision",
    ),
    (
        "revision climbing",
        document({"model": {"name": "a/b", "revision": "../../etc/cron.d/x"}}),
        "should match",
    ),
    (
        "file as a flag",
        document({"engine": "llamacpp", "model": {**GGUF_MODEL, "file": "--link=/x"}}),
        "spec.model.file",
    ),
    (
        "file climbing",
        document({"engine": "llamacpp", "model": {**GGUF_MODEL, "file": "a/../../x.gguf"}}),
        "must not climb out of the repo",
    ),
    (
        "servedName as a flag",
        document({"model": {"name": "a/b", "servedName": "--api-key"}}),
        "spec.model.servedName",
    ),
    (
        "servedName with a newline",
        document({"model": {"name": "a/b", "servedName": "a\nb"}}),
        "should match",
    ),
    ("env name", document({"env": [{"name": "1BAD=NAME", "value": "x"}]}), "spec.env[0].name"),
    ("cache size", document({"cache": {"size": "lots"}}), "spec.cache.size"),
    ("negative cache size", document({"cache": {"size": -1}}), "greater than or equal to 0"),
    (
        "memory limit",
        document({"resources": {"limits": {"memory": "64 gigs"}}}),
        "spec.resources.limits.memory",
    ),
    (
        "resource name",
        document({"resources": {"requests": {"bad key!": "1"}}}),
        "every key must be a resource name",
    ),
    (
        "storage class",
        document({"cache": {"storageClassName": "Bad Class!"}}),
        "spec.cache.storageClassName",
    ),
    (
        "node selector key",
        document({"nodeSelector": {"bad key!": "x"}}),
        "every key must be a label key",
    ),
    (
        "node selector value",
        document({"nodeSelector": {"pool": "bad value!"}}),
        "spec.nodeSelector.pool",
    ),
    (
        "toleration key",
        document({"tolerations": [{"key": "bad key!", "operator": "Exists"}]}),
        "spec.tolerations[0].key",
    ),
    ("image", document({"image": "not an image!"}), "spec.image"),
    ("a million gpus", document({"gpus": 1000000}), "less than or equal to 16"),
    ("gpus 3 on vllm", document({"gpus": 3}), "must be 1, 2, 4, 8 or 16 for engines vllm"),
    ("replicas 2^40", document({"replicas": 2**40}), "less than or equal to 2147483647"),
    ("maxModelLen 2^62", document({"maxModelLen": 2**62}), "spec.maxModelLen"),
    (
        "too many engineArgs",
        document({"engineArgs": ["--enforce-eager"] * 129}),
        "must have at most 128 items",
    ),
]


def apply(kube: Kube, namespace: str, doc: dict[str, Any], *, dry_run: bool = False) -> Any:
    """`kubectl apply` a document as a user would (strict field validation is kubectl's default)."""
    args = ["apply", "-n", namespace, "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    return kube.run(*args, stdin=yaml.safe_dump(doc), check=False)


@pytest.mark.parametrize(("case", "doc", "words"), INVALID, ids=[c[0] for c in INVALID])
def test_the_api_server_refuses_invalid_llmservices_with_the_crds_message(
    kube: Kube, namespace: str, case: str, doc: dict[str, Any], words: str
) -> None:
    done = apply(kube, namespace, doc)
    assert done.returncode != 0, f"{case}: the API server accepted it"
    assert words in done.stderr, done.stderr
    with pytest.raises(InvalidSpec):  # and llmserve refuses it offline too
        parse_llmservice(copy.deepcopy(doc))


@pytest.mark.parametrize(
    "spec",
    [
        {"engine": "llamacpp", "quantization": "awq", "model": GGUF_MODEL},
        {"engine": "sglang", "gpus": 6},
        {"engine": "ollama", "model": {**GGUF_MODEL, "file": "../x.gguf"}},
    ],
    ids=["quantization", "tensor-parallel size", "file climbing"],
)
def test_cel_messages_are_the_same_online_and_offline(
    kube: Kube, namespace: str, spec: dict[str, Any]
) -> None:
    doc = document(spec)
    with pytest.raises(InvalidSpec) as offline:
        parse_llmservice(copy.deepcopy(doc))
    online = apply(kube, namespace, doc).stderr
    for problem in offline.value.problems:
        assert problem.message in online
        assert problem.path in online


@pytest.mark.parametrize("path", EXAMPLES + GOLDEN, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_valid_llmservices_are_accepted_and_defaulted(kube: Kube, namespace: str, path) -> None:
    doc = yaml.safe_load(path.read_text())
    doc["metadata"].pop("namespace", None)
    doc["metadata"].pop("uid", None)
    done = apply(kube, namespace, doc)
    assert done.returncode == 0, done.stderr
    stored = kube.json("llms", doc["metadata"]["name"], "-n", namespace)
    assert stored["spec"]["engine"] == doc["spec"].get("engine", "vllm")
    assert {"autoscaling", "cache", "proxy", "gpus", "replicas"} <= set(stored["spec"])  # defaulted
    # What the API server stored parses as the same spec llmserve reads offline.
    offline = parse_llmservice(copy.deepcopy(doc)).spec
    assert parse_llmservice(stored).spec == offline


def test_kubectl_get_llms_shows_the_printer_columns(kube: Kube, namespace: str) -> None:
    apply(kube, namespace, document())
    header, row = kube.run("get", "llms", "-n", namespace).stdout.splitlines()[:2]
    assert header.split() == ["NAME", "MODEL", "ENGINE", "GPUS", "READY", "PHASE", "AGE"]
    assert row.split()[:4] == ["llama-8b", "meta-llama/Llama-3.1-8B-Instruct", "vllm", "1"]
    wide = kube.run("get", "llms", "-n", namespace, "-o", "wide").stdout.splitlines()[0]
    assert "ENDPOINT" in wide.split()


def test_kubectl_explain_shows_the_field_descriptions(kube: Kube) -> None:
    text = kube.run("explain", "llmservices.spec.gpus").stdout
    assert "tensor-parallel size" in text


def test_the_scale_subresource_moves_spec_replicas(kube: Kube, namespace: str) -> None:
    apply(kube, namespace, document())
    kube.run("scale", "llms/llama-8b", "-n", namespace, "--replicas=3")
    assert kube.json("llms", "llama-8b", "-n", namespace)["spec"]["replicas"] == 3


@pytest.fixture
def restricted(kube: Kube, namespace: str) -> str:
    """The test namespace, enforcing Pod Security `restricted`."""
    kube.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    return namespace


@pytest.mark.parametrize("path", GOLDEN, ids=stem)
def test_rendered_children_pass_server_side_dry_run_under_restricted(
    kube: Kube, restricted: str, path
) -> None:
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["namespace"] = restricted
    uid = doc["metadata"].get("uid")
    children = render.render(parse_llmservice(doc), OperatorConfig())
    text = cli.dump_yaml(children)
    done = kube.run("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr  # no PodSecurity warnings either
    kinds = [line.split("/")[0] for line in done.stdout.splitlines()]
    expected = [c["kind"].lower() for c in children]
    assert [k.split(".")[0] for k in kinds] == [
        {"persistentvolumeclaim": "persistentvolumeclaim"}.get(k, k) for k in expected
    ], done.stdout
    assert uid is None or all(c["metadata"]["ownerReferences"][0]["uid"] == uid for c in children)


def pods_of(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A bare Pod from each pod template (the Deployment's, the Job's): Pod Security's `enforce`
    refuses Pods, where for workload objects it only warns."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{child['kind'].lower()}-pod",
                **child["spec"]["template"]["metadata"],
            },
            "spec": child["spec"]["template"]["spec"],
        }
        for child in children
        if child["kind"] in {"Deployment", "Job"}
    ]


@pytest.mark.parametrize("path", GOLDEN, ids=stem)
def test_the_rendered_pods_are_admitted_where_restricted_is_enforced(
    kube: Kube, restricted: str, path
) -> None:
    service = parse_llmservice(yaml.safe_load(path.read_text()))
    pods = pods_of(render.render(service, OperatorConfig()))
    assert len(pods) == (2 if service.spec.cache.enabled else 1)
    for pod in pods:
        done = kube.run("create", "-n", restricted, "--dry-run=server", "-f", "-",
                        stdin=json.dumps(pod), check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr, done.stderr


def test_the_restricted_namespace_refuses_a_pod_that_may_escalate(
    kube: Kube, restricted: str
) -> None:
    # The control for the two tests above: without it, "no warning" could mean "not enforced".
    children = render.render(parse_llmservice(document()), OperatorConfig())
    deployment = next(c for c in children if c["kind"] == "Deployment")
    del deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "allowPrivilegeEscalation"
    ]
    (pod,) = pods_of([deployment])
    done = kube.run("create", "-n", restricted, "--dry-run=server", "-f", "-",
                    stdin=json.dumps(pod), check=False)  # fmt: skip
    assert done.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in done.stderr, done.stderr
    assert "allowPrivilegeEscalation != false" in done.stderr, done.stderr
    # A workload object is stored, with the warning the dry-run test above looks for.
    done = kube.run("apply", "-n", restricted, "--dry-run=server", "-f", "-",
                    stdin=json.dumps(deployment), check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 'Warning: would violate PodSecurity "restricted:latest"' in done.stderr, done.stderr
