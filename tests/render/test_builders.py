"""Unit tests of the builders behind `render`: names, labels, hashes, cache, env, proxy, engines."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tests.render.cases import by_kind, engine_container, env_of, proxy_container
from tests.support import run_llmserve, service

from llmserve import render
from llmserve.api import InvalidSpec
from llmserve.api.config import OperatorConfig
from llmserve.api.engines import FACTS
from llmserve.render import cache, meta, workload
from llmserve.render.engines import PROFILES, llamacpp, ollama

CONFIG = OperatorConfig()
GGUF = {
    "engine": "llamacpp",
    "model": {"name": "bartowski/Llama-3.2-3B-GGUF", "file": "*-Q4_K_M.gguf"},
}


def children(spec: dict[str, Any] | None = None, **meta_: Any) -> list[dict[str, Any]]:
    return render.render(service(spec, **meta_), CONFIG)


def spec_hash(manifest: dict[str, Any]) -> str:
    return manifest["metadata"]["annotations"][meta.SPEC_HASH]


class TestLabels:
    def test_labels_name_the_instance_component_and_manager(self) -> None:
        assert meta.labels(service(), "server") == {
            "app.kubernetes.io/name": "llmservice",
            "app.kubernetes.io/instance": "llama-8b",
            "app.kubernetes.io/component": "server",
            "app.kubernetes.io/managed-by": "llmserve",
        }

    def test_the_selector_is_the_labels_without_the_manager(self) -> None:
        selector = meta.selector_labels(service(), "server")
        labels = meta.labels(service(), "server")
        assert selector == {k: v for k, v in labels.items() if k != "app.kubernetes.io/managed-by"}

    def test_selector_string_for_the_scale_subresource(self) -> None:
        assert meta.selector_string(service()) == (
            "app.kubernetes.io/name=llmservice,app.kubernetes.io/instance=llama-8b,"
            "app.kubernetes.io/component=server"
        )

    def test_every_child_has_its_component(self) -> None:
        components = {
            c["kind"]: c["metadata"]["labels"]["app.kubernetes.io/component"] for c in children()
        }
        assert components == {
            "PersistentVolumeClaim": "model-cache",
            "Job": "model-download",
            "Deployment": "server",
            "Service": "server",
            "NetworkPolicy": "server",
        }

    def test_names_of_the_children(self) -> None:
        names = {c["kind"]: c["metadata"]["name"] for c in children()}
        assert names == {
            "PersistentVolumeClaim": "llama-8b-model-cache",
            "Job": "llama-8b-model-download",
            "Deployment": "llama-8b",
            "Service": "llama-8b",
            "NetworkPolicy": "llama-8b",
        }

    def test_children_come_in_apply_order_and_without_cache_without_pvc_and_job(self) -> None:
        assert [c["kind"] for c in children()] == [
            "PersistentVolumeClaim",
            "Job",
            "Deployment",
            "Service",
            "NetworkPolicy",
        ]
        assert [c["kind"] for c in children({"cache": {"enabled": False}})] == [
            "Deployment",
            "Service",
            "NetworkPolicy",
        ]


class TestOwnerReferences:
    def test_none_without_a_uid(self) -> None:
        assert meta.owner_references(service()) == []
        assert all("ownerReferences" not in c["metadata"] for c in children())

    def test_the_llmservice_controls_every_child_once_it_has_a_uid(self) -> None:
        owned = service(uid="1234-abcd")
        assert meta.owner_references(owned) == [
            {
                "apiVersion": "llmserve.io/v1alpha1",
                "kind": "LLMService",
                "name": "llama-8b",
                "uid": "1234-abcd",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        for child in render.render(owned, CONFIG):
            assert child["metadata"]["ownerReferences"] == meta.owner_references(owned)

    def test_namespace_only_when_known(self) -> None:
        assert all("namespace" not in c["metadata"] for c in children())
        assert {c["metadata"]["namespace"] for c in children(namespace="ml")} == {"ml"}


class TestSpecHash:
    def test_the_hash_is_of_the_child_without_the_hash(self) -> None:
        for child in children():
            unhashed = copy.deepcopy(child)
            del unhashed["metadata"]["annotations"][meta.SPEC_HASH]
            if child["kind"] == "Deployment":
                del unhashed["spec"]["replicas"]
            assert spec_hash(child) == meta.digest(unhashed)
            assert re.fullmatch(r"[0-9a-f]{16}", spec_hash(child))

    def test_stable_across_renders(self) -> None:
        assert [spec_hash(c) for c in children()] == [spec_hash(c) for c in children()]

    def test_digest_ignores_key_order(self) -> None:
        assert meta.digest({"a": 1, "b": [1, 2]}) == meta.digest({"b": [1, 2], "a": 1})
        assert meta.digest([1, 2]) != meta.digest([2, 1])

    def test_replicas_do_not_change_the_deployment_hash(self) -> None:
        one = by_kind(children({"replicas": 1}), "Deployment")
        five = by_kind(children({"replicas": 5}), "Deployment")
        assert five["spec"]["replicas"] == 5
        assert spec_hash(one) == spec_hash(five)

    def test_the_image_changes_the_deployment_hash(self) -> None:
        default = by_kind(children(), "Deployment")
        pinned = by_kind(children({"image": "registry.local/vllm:pinned"}), "Deployment")
        assert spec_hash(default) != spec_hash(pinned)

    def test_stamping_ignores_only_the_paths_given(self) -> None:
        manifest = {"metadata": {"annotations": {}}, "spec": {"replicas": 2, "x": 1}}
        stamped = meta.stamp(copy.deepcopy(manifest), ignore=("spec.replicas",))
        rescaled = copy.deepcopy(manifest)
        rescaled["spec"]["replicas"] = 9
        assert spec_hash(stamped) == spec_hash(meta.stamp(rescaled, ignore=("spec.replicas",)))
        changed = copy.deepcopy(manifest)
        changed["spec"]["x"] = 2
        assert spec_hash(stamped) != spec_hash(meta.stamp(changed, ignore=("spec.replicas",)))
        assert stamped["spec"]["replicas"] == 2, "the manifest itself keeps the ignored field"


class TestCacheKey:
    BASE: ClassVar = {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}}

    def key(self, spec: dict[str, Any]) -> str:
        return meta.cache_key(service(spec))

    @pytest.mark.parametrize(
        "change",
        [
            {"model": {"name": "meta-llama/Llama-3.1-70B-Instruct"}},
            {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "revision": "v2"}},
            {"quantization": "fp8"},
        ],
        ids=["model", "revision", "quantization"],
    )
    def test_changes_with_what_is_downloaded(self, change: dict[str, Any]) -> None:
        assert self.key({**self.BASE, **change}) != self.key(self.BASE)

    def test_changes_with_the_gguf_file(self) -> None:
        other = {**GGUF, "model": {**GGUF["model"], "file": "*-Q8_0.gguf"}}
        assert self.key(GGUF) != self.key(other)

    @pytest.mark.parametrize(
        "change",
        [{"gpus": 2}, {"replicas": 3}, {"maxModelLen": 4096}, {"engine": "sglang"}],
        ids=["gpus", "replicas", "maxModelLen", "engine"],
    )
    def test_does_not_change_with_how_it_is_served(self, change: dict[str, Any]) -> None:
        assert self.key({**self.BASE, **change}) == self.key(self.BASE)

    def test_on_the_pvc_and_the_job(self) -> None:
        rendered = children()
        expected = meta.cache_key(service())
        for kind in ("PersistentVolumeClaim", "Job"):
            assert by_kind(rendered, kind)["metadata"]["annotations"][meta.CACHE_KEY] == expected


class TestCacheSize:
    def size(self, spec: dict[str, Any], config: OperatorConfig = CONFIG) -> str:
        return cache.cache_size(service(spec), config)

    def test_from_the_model_size_with_a_margin(self) -> None:
        # 8B x 2 bytes = 14.9 GiB, x 1.25 = 18.6 -> 19Gi
        assert self.size({}) == "19Gi"
        # AWQ: 8B x 0.5 bytes = 3.7 GiB, x 1.25 = 4.7 -> 5Gi
        assert self.size({"quantization": "awq"}) == "5Gi"
        # parametersBillions wins over the repo id: 70B x 2 bytes = 130.4 GiB, x 1.25 -> 163Gi
        assert self.size({"model": {"name": "org/m-8B", "parametersBillions": 70.0}}) == "163Gi"

    def test_from_the_gguf_file_tag(self) -> None:
        # 3B x 0.48 bytes = 1.34 GiB, x 1.25 = 1.7 -> 2Gi
        assert self.size(GGUF) == "2Gi"

    def test_at_least_one_gibibyte(self) -> None:
        assert self.size({"model": {"name": "org/tiny", "parametersBillions": 0.01}}) == "1Gi"

    def test_from_cache_size(self) -> None:
        assert self.size({"cache": {"size": "300Gi"}}) == "300Gi"

    def test_the_default_when_the_size_is_unknown(self) -> None:
        assert self.size({"model": {"name": "org/some-model"}}) == "50Gi"
        gguf_without_tag = {
            **GGUF,
            "model": {"name": "bartowski/Llama-3.2-3B-GGUF", "file": "m.gguf"},
        }
        assert self.size(gguf_without_tag) == "50Gi"
        custom = OperatorConfig(default_cache_size_gib=80)
        assert self.size({"model": {"name": "org/some-model"}}, custom) == "80Gi"

    def test_the_pvc_carries_size_class_and_access_mode(self) -> None:
        spec = {"cache": {"size": "40Gi", "storageClassName": "nfs", "accessMode": "ReadWriteMany"}}
        claim = by_kind(children(spec), "PersistentVolumeClaim")["spec"]
        assert claim == {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "40Gi"}},
            "storageClassName": "nfs",
        }


class TestEnv:
    TOKEN: ClassVar = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "tokenSecretRef": {"name": "hf"}}
    }
    SECRET: ClassVar = {"secretKeyRef": {"name": "hf", "key": "token"}}

    def test_offline_only_with_the_cache(self) -> None:
        assert env_of(engine_container(children()))["HF_HUB_OFFLINE"]["value"] == "1"
        assert "HF_HUB_OFFLINE" not in env_of(
            engine_container(children({"cache": {"enabled": False}}))
        )

    def test_the_token_goes_to_the_job_not_to_a_cached_engine(self) -> None:
        rendered = children(self.TOKEN)
        job = by_kind(rendered, "Job")["spec"]["template"]["spec"]["containers"][0]
        assert env_of(job)["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": self.SECRET}
        assert "HF_TOKEN" not in env_of(engine_container(rendered))

    def test_the_token_goes_to_the_engine_without_the_cache(self) -> None:
        engine = engine_container(children({**self.TOKEN, "cache": {"enabled": False}}))
        assert env_of(engine)["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": self.SECRET}

    def test_no_token_without_a_secret(self) -> None:
        rendered = children()
        job = by_kind(rendered, "Job")["spec"]["template"]["spec"]["containers"][0]
        assert "HF_TOKEN" not in env_of(job)
        assert "HF_TOKEN" not in env_of(engine_container(children({"cache": {"enabled": False}})))

    def test_a_name_in_spec_env_replaces_ours(self) -> None:
        env = engine_container(children({"env": [{"name": "HF_HOME", "value": "/elsewhere"}]}))[
            "env"
        ]
        assert [e for e in env if e["name"] == "HF_HOME"] == [
            {"name": "HF_HOME", "value": "/elsewhere"}
        ]

    def test_spec_env_value_from_is_kept(self) -> None:
        source = {"secretKeyRef": {"name": "s", "key": "k"}}
        env = engine_container(children({"env": [{"name": "X", "valueFrom": source}]}))
        assert env_of(env)["X"] == {"name": "X", "valueFrom": source}

    @pytest.mark.parametrize(
        "engine_spec",
        [{}, {"engine": "tgi"}, {"engine": "sglang"}, GGUF, {**GGUF, "engine": "ollama"}],
    )
    def test_sorted_by_name(self, engine_spec: dict[str, Any]) -> None:
        spec = {
            **engine_spec,
            "env": [{"name": "ZZZ", "value": "1"}, {"name": "AAA", "value": "2"}],
        }
        names = [e["name"] for e in engine_container(children(spec))["env"]]
        assert names == sorted(names)
        assert {"AAA", "ZZZ", "HF_HOME", "HOME"} <= set(names)


class TestResources:
    def test_the_gpu_count_wins_over_the_users_gpu_entry(self) -> None:
        spec = {"gpus": 2, "resources": {"limits": {"nvidia.com/gpu": 8, "memory": "64Gi"}}}
        resources = engine_container(children(spec))["resources"]
        assert resources == {
            "requests": {"nvidia.com/gpu": "2"},
            "limits": {"memory": "64Gi", "nvidia.com/gpu": "2"},
        }

    def test_a_cpu_replica_holds_no_gpu(self) -> None:
        spec = {**GGUF, "gpus": 0, "resources": {"requests": {"nvidia.com/gpu": 1, "cpu": "4"}}}
        assert engine_container(children(spec))["resources"] == {"requests": {"cpu": "4"}}

    def test_the_cpu_image_for_gpus_zero(self) -> None:
        assert (
            engine_container(children({**GGUF, "gpus": 0}))["image"]
            == CONFIG.cpu_images["llamacpp"]
        )
        assert engine_container(children(GGUF))["image"] == CONFIG.images["llamacpp"]

    def test_placement_reaches_the_job_and_the_deployment(self) -> None:
        spec = {
            "nodeSelector": {"b": "2", "a": "1"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        }
        for kind in ("Job", "Deployment"):
            pod = by_kind(children(spec), kind)["spec"]["template"]["spec"]
            assert list(pod["nodeSelector"].items()) == [("a", "1"), ("b", "2")]
            assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]


class TestProxy:
    def args(self, spec: dict[str, Any] | None = None) -> list[str]:
        return proxy_container(children(spec))["args"]

    def value(self, args: list[str], flag: str) -> str:
        return args[args.index(flag) + 1]

    @pytest.mark.parametrize(
        "engine_spec", [{}, {"engine": "tgi"}, GGUF], ids=["vllm", "tgi", "llamacpp"]
    )
    def test_max_concurrency_defaults_to_the_engines_batch_size(
        self, engine_spec: dict[str, Any]
    ) -> None:
        engine = engine_spec.get("engine", "vllm")
        assert self.value(self.args(engine_spec), "--max-concurrency") == str(
            FACTS[engine].batch_size
        )

    def test_queue_and_timeouts_from_the_spec(self) -> None:
        proxy = {
            "maxConcurrency": 8,
            "maxQueue": 16,
            "queueTimeoutSeconds": 5,
            "requestTimeoutSeconds": 60,
        }
        args = self.args({"proxy": proxy})
        assert self.value(args, "--max-concurrency") == "8"
        assert self.value(args, "--max-queue") == "16"
        assert self.value(args, "--queue-timeout") == "5"
        assert self.value(args, "--request-timeout") == "60"

    def test_queue_and_timeout_defaults(self) -> None:
        args = self.args()
        assert self.value(args, "--max-queue") == "128"
        assert self.value(args, "--queue-timeout") == "30"
        assert self.value(args, "--request-timeout") == "600"

    def test_runs_llmserve_proxy_from_the_operator_image_on_port_http(self) -> None:
        proxy = proxy_container(children())
        assert proxy["image"] == CONFIG.operator_image
        assert proxy["args"][0] == "proxy"
        assert self.value(proxy["args"], "--engine") == "vllm"
        assert self.value(proxy["args"], "--port") == str(workload.PROXY_PORT)
        assert proxy["ports"][0] == {"name": "http", "containerPort": 8080, "protocol": "TCP"}

    def test_metrics_have_their_own_port_which_the_service_does_not_expose(self) -> None:
        rendered = children()
        proxy = proxy_container(rendered)
        assert self.value(proxy["args"], "--metrics-port") == "9090"
        assert proxy["ports"][1] == {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
        service_ports = by_kind(rendered, "Service")["spec"]["ports"]
        assert service_ports == [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
        ]

    def test_the_body_limit_defaults_to_16_mib_and_follows_the_spec(self) -> None:
        assert self.value(self.args(), "--max-body-bytes") == str(16 * 1024 * 1024)
        assert (
            self.value(self.args({"proxy": {"maxBodyBytes": 4096}}), "--max-body-bytes") == "4096"
        )

    def test_the_grace_period_covers_the_pre_stop_sleep_and_the_drain(self) -> None:
        deployment = by_kind(children(), "Deployment")
        drain = int(self.value(proxy_container(children())["args"], "--drain-seconds"))
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == drain + 5

    def keys_volume(self, rendered: list[dict[str, Any]]) -> dict[str, Any]:
        proxy = proxy_container(rendered)
        (mount,) = proxy["volumeMounts"]
        assert mount["readOnly"] is True
        assert self.value(proxy["args"], "--api-keys-file") == f"{mount['mountPath']}/keys"
        assert "--auth" not in proxy["args"]
        volumes = by_kind(rendered, "Deployment")["spec"]["template"]["spec"]["volumes"]
        (volume,) = [v for v in volumes if v["name"] == mount["name"]]
        return dict(volume["secret"])

    def test_api_keys_from_the_users_secret_are_mounted_read_only_for_the_group(self) -> None:
        rendered = children({"proxy": {"apiKeySecretRef": {"name": "keys", "key": "list"}}})
        assert self.keys_volume(rendered) == {
            "secretName": "keys",
            "items": [{"key": "list", "path": "keys"}],
            "defaultMode": 0o440,
        }

    def test_without_a_secret_the_proxy_reads_the_one_the_operator_makes(self) -> None:
        assert self.keys_volume(children()) == {
            "secretName": "llama-8b-api-keys",
            "items": [{"key": "api-keys", "path": "keys"}],
            "defaultMode": 0o440,
        }

    def test_auth_none_runs_the_proxy_open_with_no_keys_volume(self) -> None:
        rendered = children({"proxy": {"auth": "none"}})
        proxy = proxy_container(rendered)
        assert self.value(proxy["args"], "--auth") == "none"
        assert "--api-keys-file" not in proxy["args"]
        assert "volumeMounts" not in proxy
        volumes = by_kind(rendered, "Deployment")["spec"]["template"]["spec"]["volumes"]
        assert all("secret" not in v for v in volumes)


class TestApiKeysSecret:
    def test_only_for_auth_api_keys_without_a_secret_of_the_users(self) -> None:
        assert workload.generates_api_keys(service())
        assert not workload.generates_api_keys(service({"proxy": {"auth": "none"}}))
        ref = {"proxy": {"apiKeySecretRef": {"name": "mine"}}}
        assert not workload.generates_api_keys(service(ref))

    def test_one_named_key_in_the_proxys_format_owned_by_the_llmservice(self) -> None:
        owned = service(uid="u-1", namespace="ml")
        secret = workload.api_keys_secret(owned, "sk-abc_DEF-123")
        assert secret["kind"] == "Secret"
        assert secret["type"] == "Opaque"
        assert secret["metadata"]["name"] == "llama-8b-api-keys"
        assert secret["metadata"]["namespace"] == "ml"
        assert secret["metadata"]["labels"] == meta.labels(owned, "api-keys")
        assert secret["metadata"]["ownerReferences"] == meta.owner_references(owned)
        assert secret["stringData"] == {"api-keys": "default:sk-abc_DEF-123\n"}
        # The proxy's keys file: `name:key` lines, the name [A-Za-z0-9_.-]{1,64}.
        (line,) = secret["stringData"]["api-keys"].splitlines()
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,64}:[^:\s]+", line)

    def test_the_key_is_not_rendered_the_deployment_only_names_the_secret(self) -> None:
        rendered = children()
        assert "Secret" not in [c["kind"] for c in rendered]
        done = run_llmserve("render", "-f", "examples/vllm.yaml")
        assert done.returncode == 0, done.stderr
        printed = done.stdout
        assert "kind: Secret" not in printed
        assert "stringData" not in printed
        assert "secretName: llama-8b-api-keys" in printed


class TestNetworkPolicy:
    PROXY_PORT: ClassVar = [{"protocol": "TCP", "port": 8080}]
    METRICS_PORT: ClassVar = [{"protocol": "TCP", "port": 9090}]
    OPERATOR: ClassVar = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "llmserve-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
    }

    def policy(
        self, spec: dict[str, Any] | None = None, config: OperatorConfig = CONFIG
    ) -> dict[str, Any]:
        return dict(by_kind(render.render(service(spec), config), "NetworkPolicy")["spec"])

    def test_the_proxy_port_admits_the_llmservices_own_namespace_only_by_default(self) -> None:
        policy = self.policy()
        assert policy["podSelector"] == {
            "matchLabels": meta.selector_labels(service(), meta.COMPONENT_SERVER)
        }
        assert policy["ingress"] == [{"from": [{"podSelector": {}}], "ports": self.PROXY_PORT}]

    def test_allowed_from_adds_namespaces_pods_and_networks(self) -> None:
        peers = [
            {"namespaceSelector": {"matchLabels": {"team": "web"}}},
            {
                "namespaceSelector": {},
                "podSelector": {
                    "matchExpressions": [{"key": "app", "operator": "In", "values": ["chat"]}]
                },
            },
            {"ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.1.0/24"]}},
        ]
        policy = self.policy({"proxy": {"allowedFrom": peers}})
        assert policy["ingress"] == [
            {"from": [{"podSelector": {}}, *peers], "ports": self.PROXY_PORT}
        ]

    def test_the_metrics_port_admits_only_the_operators_metrics_from(self) -> None:
        config = OperatorConfig.model_validate({"metricsFrom": [self.OPERATOR]})
        (_, metrics) = self.policy(config=config)["ingress"]
        assert metrics == {"from": [self.OPERATOR], "ports": self.METRICS_PORT}

    def test_without_metrics_from_the_metrics_port_stays_closed(self) -> None:
        ports = [p for rule in self.policy()["ingress"] for p in rule["ports"]]
        assert ports == self.PROXY_PORT

    def test_an_offline_engine_may_only_resolve_names(self) -> None:
        policy = self.policy()
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        assert policy["egress"] == [
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
        ]

    def test_an_engine_that_downloads_its_model_keeps_egress(self) -> None:
        policy = self.policy({"cache": {"enabled": False}})
        assert policy["policyTypes"] == ["Ingress"]
        assert "egress" not in policy

    def test_the_download_jobs_pods_are_not_selected(self) -> None:
        rendered = children()
        selector = by_kind(rendered, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
        job_labels = by_kind(rendered, "Job")["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= job_labels.items()

    def test_selects_the_deployments_pods_with_or_without_the_cache(self) -> None:
        for spec in ({}, {"cache": {"enabled": False}}, GGUF):
            rendered = children(spec)
            policy = by_kind(rendered, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
            deployment = by_kind(rendered, "Deployment")["spec"]
            assert policy == deployment["selector"]["matchLabels"]
            assert policy.items() <= deployment["template"]["metadata"]["labels"].items()


class TestVolumes:
    def volumes(self, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
        pod = by_kind(children(spec), "Deployment")["spec"]["template"]["spec"]
        return {v["name"]: v for v in pod["volumes"]}

    def test_memory_backed_shm_and_home_are_bounded(self) -> None:
        volumes = self.volumes({"gpus": 2})
        assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
        assert volumes["home"]["emptyDir"] == {"sizeLimit": "10Gi"}


class TestEngines:
    def test_engine_args_are_appended_after_the_rendered_ones(self) -> None:
        args = engine_container(children({"engineArgs": ["--max-num-seqs", "8"]}))["args"]
        assert args[-2:] == ["--max-num-seqs", "8"]
        assert args[:-2] == engine_container(children())["args"]

    def test_no_engine_port_is_the_proxy_port(self) -> None:
        ports = [p.port for p in PROFILES.values()]
        assert workload.PROXY_PORT not in ports
        assert len(set(ports)) == len(ports)

    def test_llamacpp_listens_on_another_port_than_its_default_8080(self) -> None:
        assert llamacpp.PORT != 8080
        args = engine_container(children(GGUF))["args"]
        assert args[args.index("--port") + 1] == str(llamacpp.PORT)

    def test_llamacpp_reads_the_cached_file_or_downloads_by_tag(self) -> None:
        cached = engine_container(children(GGUF))
        assert "--model" not in cached["args"]  # the wrapper script adds it from the link
        env = {e["name"]: e.get("value") for e in cached["env"]}
        assert env["LLMSERVE_GGUF_PATH"] == "/models/model.gguf"
        assert cached["command"] == ["/bin/sh", "-c", llamacpp.SCRIPT, "llama-server"]
        direct = engine_container(children({**GGUF, "cache": {"enabled": False}}))
        assert direct["args"][:2] == ["--hf-repo", "bartowski/Llama-3.2-3B-GGUF:Q4_K_M"]
        assert "LLMSERVE_GGUF_PATH" not in {e["name"] for e in direct["env"]}

    @pytest.mark.parametrize(
        ("files", "link", "opened"),
        [
            (["model-00001-of-00002.gguf", "model-00002-of-00002.gguf"],
             "model-00001-of-00002.gguf", "model-00001-of-00002.gguf"),
            (["hf/snap/x-Q4_K_M.gguf"], "hf/snap/x-Q4_K_M.gguf", "hf/snap/x-Q4_K_M.gguf"),
        ],
    )  # fmt: skip
    def test_the_llamacpp_wrapper_opens_what_the_link_names(
        self, tmp_path: Path, files: list[str], link: str, opened: str
    ) -> None:
        for name in files:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("gguf")
        (tmp_path / "model.gguf").symlink_to(link)
        fake = tmp_path / "llama-server"
        fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
        fake.chmod(0o755)
        script = llamacpp.SCRIPT.replace("/app/llama-server", str(fake))
        done = subprocess.run(  # noqa: S603 - /bin/sh with our own script
            ["/bin/sh", "-c", script, "llama-server", "--port", "8081"],
            env={"LLMSERVE_GGUF_PATH": str(tmp_path / "model.gguf"), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.split() == ["--model", str(tmp_path / opened), "--port", "8081"]

    def test_llamacpp_gives_each_slot_the_whole_context(self) -> None:
        args = engine_container(children({**GGUF, "maxModelLen": 4096}))["args"]
        assert args[args.index("--ctx-size") + 1] == str(4096 * FACTS["llamacpp"].batch_size)

    def test_the_download_job_links_the_gguf_file(self) -> None:
        args = by_kind(children(GGUF), "Job")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--include") + 1] == "*-Q4_K_M.gguf"
        assert args[args.index("--link") + 1] == "/models/model.gguf"

    @pytest.mark.parametrize(
        ("served", "repo"),
        # The repo id's pattern refuses shell syntax; a served name may still hold some.
        [("svc-7f3a", "org9/Llama-3B-GGUF"), ('x";$(touch${IFS}pwned)#', "org/Llama-3B-GGUF")],
    )
    @pytest.mark.parametrize("cached", [True, False])
    def test_ollamas_script_takes_every_value_from_the_environment(
        self, served: str, repo: str, *, cached: bool
    ) -> None:
        spec = {
            "engine": "ollama",
            "cache": {"enabled": cached},
            "maxModelLen": 2048,
            "model": {"name": repo, "file": "*-Q4_K_M.gguf", "servedName": served},
        }
        engine = engine_container(children(spec))
        assert engine["command"] == ["/bin/sh", "-c"]
        assert engine["args"] == [ollama.SCRIPT]
        for value in (served, repo, "Q4_K_M", "2048"):
            assert value not in ollama.SCRIPT
        env = env_of(engine)
        assert env["LLMSERVE_SERVED_NAME"]["value"] == served
        used = set(re.findall(r"\$\{?(LLMSERVE_\w+)", ollama.SCRIPT))
        branch = "LLMSERVE_GGUF_PATH" if cached else "LLMSERVE_HF_MODEL"
        assert used >= {"LLMSERVE_SERVED_NAME", branch}
        assert branch in env
        other = "LLMSERVE_HF_MODEL" if cached else "LLMSERVE_GGUF_PATH"
        assert other not in env, "the script picks its branch by which variable is set"
        assert env["OLLAMA_HOST"]["value"] == f"127.0.0.1:{ollama.PORT}"
        assert env["OLLAMA_CONTEXT_LENGTH"]["value"] == "2048"

    def test_every_engine_is_probed_by_exec_on_loopback(self) -> None:
        for profile in PROFILES.values():
            text = " ".join(profile.probe)
            assert "127.0.0.1" in text or profile.engine == "ollama", profile.engine

    @pytest.mark.parametrize(
        ("spec", "token"),
        [
            ({}, "--tensor-parallel-size"),
            ({}, "-tp"),
            ({}, "--tensor_parallel_size=2"),
            ({}, "--port=9000"),
            ({"engine": "tgi"}, "--num-shard"),
            ({"engine": "sglang"}, "--tensor-parallel-size"),
            (GGUF, "-ngl"),
            # Owned even when this spec does not render them: they would dodge the checks.
            ({}, "--quantization"),
            ({}, "--max-model-len"),
            ({"engine": "tgi"}, "--max-total-tokens"),
        ],
    )
    def test_engine_args_may_not_set_a_rendered_flag(
        self, spec: dict[str, Any], token: str
    ) -> None:
        value = [] if "=" in token else ["1"]  # after `--flag=value` a "1" is a positional
        svc = service({**spec, "engineArgs": ["--foo", token, *value]})
        problems = render.validate_engine_args(svc)
        assert [p.path for p in problems] == ["spec.engineArgs[1]"]
        with pytest.raises(InvalidSpec, match=r"spec\.engineArgs\[1\]"):
            render.render(svc, CONFIG)


def test_ollama_refuses_engine_args_and_points_at_env() -> None:
    svc = service({**GGUF, "engine": "ollama", "engineArgs": ["--verbose"]})
    problems = render.validate_engine_args(svc)
    assert [p.path for p in problems] == ["spec.engineArgs"]
    assert "spec.env" in problems[0].message
    assert "OLLAMA_" in problems[0].message
