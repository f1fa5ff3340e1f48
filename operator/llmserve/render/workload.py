"""The engine Deployment: one pod template with the `engine` and `proxy` containers.

The engine listens on loopback only; the proxy is the pod's one door: port `http` (8080) for
clients, which asks for an API key unless `spec.proxy.auth` is none, and port `metrics` (9090) for
the operator's autoscaler and Prometheus, which the Service does not expose. Pods run as a non-root
UID with no privilege escalation, all capabilities dropped and the RuntimeDefault seccomp profile,
no service links (ENGINES.md §9, the VLLM_PORT trap) and no API token.
"""

from __future__ import annotations

from typing import Any, Final

from llmserve.api.config import OperatorConfig
from llmserve.api.engines import FACTS
from llmserve.api.fit import gguf_tag
from llmserve.api.models import ApiKeySecretRef, LLMService
from llmserve.render import meta
from llmserve.render.engines import PROFILES, EngineInputs, EngineProfile
from llmserve.render.engines.base import CACHE_MOUNT, HF_HOME, HOME

PROXY_PORT: Final = 8080
METRICS_PORT: Final = 9090
"""The proxy's `/metrics` and `/metrics/engine`: off the Service, open only to `metricsFrom`."""
RUN_AS_USER: Final = 2000
"""vLLM's image runs as UID 2000 (GID 0, OpenShift style); the other engine images run as any UID
given a writable HOME, so every pod uses the one UID and files on the cache volume stay readable."""
PROXY_DRAIN_SECONDS: Final = 120
"""How long the proxy lets in-flight streams finish after SIGTERM."""
PRE_STOP_SECONDS: Final = 5
"""Endpoint removal reaches the Service's clients a few seconds after the pod starts terminating."""
SHM_VOLUME: Final = "dshm"
CACHE_VOLUME: Final = "model-cache"
HOME_VOLUME: Final = "home"
API_KEYS_VOLUME: Final = "api-keys"
API_KEYS_DIR: Final = "/etc/llmserve/api-keys"
API_KEYS_FILE: Final = "keys"
GENERATED_KEY: Final = "api-keys"
"""The key of the Secret `<name>-api-keys` that holds the generated keys file."""
SECRET_MODE: Final = 0o440
"""The keys file is readable by its owner (root) and group, which kubelet sets to the pod's
fsGroup, so the proxy's UID 2000 reads it through its group; the default 0644 lets anyone read."""
SHM_SIZE: Final = "8Gi"
"""Shared memory for NCCL between tensor-parallel workers: its buffers take far less, and a
memory volume with no limit could take the node's memory."""
HOME_SIZE: Final = "10Gi"
"""The engines' own caches under HOME (compiled kernels, torch.compile): a few GiB at most."""


def engine_inputs(service: LLMService) -> EngineInputs:
    """Resolve what the engine's args and env need from the spec."""
    spec = service.spec
    return EngineInputs(
        repo=spec.model.name,
        revision=spec.model.revision,
        served_name=spec.model.served_name or service.name,
        gpus=spec.gpus,
        quantization=spec.quant,
        max_model_len=spec.max_model_len,
        cached=spec.cache.enabled,
        gguf_file=spec.model.file,
        gguf_tag=gguf_tag(spec.model.file),
        slots=max_concurrency(service),
    )


def max_concurrency(service: LLMService) -> int:
    """Requests in flight to the engine at once: the spec's, or the engine's batch size."""
    return service.spec.proxy.max_concurrency or FACTS[service.spec.engine].batch_size


def engine_args(service: LLMService) -> list[str]:
    """The engine's full argument list: rendered flags, then the user's engineArgs."""
    profile = PROFILES[service.spec.engine]
    return [*profile.args(engine_inputs(service)), *service.spec.engine_args]


def _env(service: LLMService, profile: EngineProfile, inputs: EngineInputs) -> list[dict[str, Any]]:
    """Engine environment, sorted by name; a name in spec.env replaces ours."""
    env: dict[str, dict[str, Any]] = {
        name: {"name": name, "value": value}
        for name, value in {"HF_HOME": HF_HOME, "HOME": HOME, **profile.env(inputs)}.items()
    }
    if inputs.cached:
        env["HF_HUB_OFFLINE"] = {"name": "HF_HUB_OFFLINE", "value": "1"}  # the Job downloaded it
    token = service.spec.model.token_secret_ref
    if token and not inputs.cached:  # with a cache only the download Job needs the token
        env["HF_TOKEN"] = {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}},
        }
    for var in service.spec.env:
        env[var.name] = var.model_dump(by_alias=True, exclude_none=True)
    return [env[name] for name in sorted(env)]


def _resources(service: LLMService) -> dict[str, Any]:
    """The user's resources with `nvidia.com/gpu` request and limit set to `spec.gpus`."""
    user = service.spec.resources
    requests = {k: str(v) for k, v in (user.requests if user else {}).items()}
    limits = {k: str(v) for k, v in (user.limits if user else {}).items()}
    if service.spec.gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(service.spec.gpus)
    else:  # a CPU replica must not hold a GPU because the user copied a GPU example
        requests.pop("nvidia.com/gpu", None)
        limits.pop("nvidia.com/gpu", None)
    resources = {}
    if requests:
        resources["requests"] = dict(sorted(requests.items()))
    if limits:
        resources["limits"] = dict(sorted(limits.items()))
    return resources


def _exec_probe(profile: EngineProfile, period: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": list(profile.probe)},
        "periodSeconds": period,
        "timeoutSeconds": 10,
        "failureThreshold": failures,
    }


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def engine_container(service: LLMService, config: OperatorConfig) -> dict[str, Any]:
    """The `engine` container: image, command, args, env, GPUs, probes with a loading budget."""
    profile = PROFILES[service.spec.engine]
    inputs = engine_inputs(service)
    mounts = [
        {"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT},
        {"name": HOME_VOLUME, "mountPath": HOME},
    ]
    if service.spec.gpus > 1:
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})  # noqa: S108 - a mount point
    container: dict[str, Any] = {
        "name": "engine",
        "image": service.spec.image or config.image_for(service.spec.engine, service.spec.gpus),
    }
    if profile.command:
        container["command"] = list(profile.command)
    container["args"] = engine_args(service)
    container["env"] = _env(service, profile, inputs)
    resources = _resources(service)
    if resources:
        container["resources"] = resources
    container["volumeMounts"] = mounts
    # Loading weights (and compiling) can take many minutes: the startup probe's budget covers it,
    # then liveness restarts a hung engine and readiness takes it out of the Service.
    container["startupProbe"] = _exec_probe(profile, 10, profile.startup_budget_seconds // 10)
    container["livenessProbe"] = _exec_probe(profile, 30, 3)
    container["readinessProbe"] = _exec_probe(profile, 10, 3)
    container["securityContext"] = _container_security()
    return container


def api_keys_source(service: LLMService) -> ApiKeySecretRef | None:
    """The Secret key the proxy reads its keys file from; None when `spec.proxy.auth` is none.

    The user's `apiKeySecretRef`, else the Secret `<name>-api-keys` the operator creates.
    """
    proxy = service.spec.proxy
    if proxy.auth == "none":
        return None
    return proxy.api_key_secret_ref or ApiKeySecretRef(
        name=meta.api_keys_secret_name(service), key=GENERATED_KEY
    )


def generates_api_keys(service: LLMService) -> bool:
    """Whether the operator must create the Secret `<name>-api-keys` for this LLMService."""
    return service.spec.proxy.auth == "apiKeys" and service.spec.proxy.api_key_secret_ref is None


def api_keys_secret(service: LLMService, key: str) -> dict[str, Any]:
    """The Secret `<name>-api-keys`: a keys file with one key, `default:<key>`.

    The caller draws `key` at random (rendering stays pure). The operator creates this Secret
    once and never reads or changes it, so `llmserve render` leaves it out: it would have to
    print a key.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta.metadata(
            service, meta.api_keys_secret_name(service), meta.COMPONENT_API_KEYS
        ),
        "type": "Opaque",
        "stringData": {GENERATED_KEY: f"default:{key}\n"},
    }


def proxy_container(service: LLMService, config: OperatorConfig) -> dict[str, Any]:
    """The `proxy` sidecar: `llmserve proxy` from the operator's image, the pod's only open port."""
    profile = PROFILES[service.spec.engine]
    proxy = service.spec.proxy
    args = [
        "proxy",
        "--engine", service.spec.engine,
        "--upstream", f"http://127.0.0.1:{profile.port}",
        "--host", "0.0.0.0",  # noqa: S104 - the proxy is the pod's door; the engine stays on loopback
        "--port", str(PROXY_PORT),
        "--max-concurrency", str(max_concurrency(service)),
        "--max-queue", str(proxy.max_queue),
        "--queue-timeout", str(proxy.queue_timeout_seconds),
        "--request-timeout", str(proxy.request_timeout_seconds),
        "--drain-seconds", str(PROXY_DRAIN_SECONDS),
    ]  # fmt: skip
    args += ["--max-body-bytes", str(proxy.max_body_bytes), "--metrics-port", str(METRICS_PORT)]
    container: dict[str, Any] = {"name": "proxy", "image": config.operator_image}
    if api_keys_source(service):
        args += ["--api-keys-file", f"{API_KEYS_DIR}/{API_KEYS_FILE}"]
        container["volumeMounts"] = [
            {"name": API_KEYS_VOLUME, "mountPath": API_KEYS_DIR, "readOnly": True}
        ]
    else:
        args += ["--auth", "none"]
    container |= {
        "args": args,
        "ports": [
            {"name": "http", "containerPort": PROXY_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        # Probes go to the metrics port: it has its own connection limit, so a flood of clients
        # on `http` (answered 503 past --max-connections) neither restarts nor unreadies the pod.
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "metrics"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "metrics"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "resources": {
            "requests": {"cpu": "250m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": {**_container_security(), "readOnlyRootFilesystem": True},
    }
    return container


def pod_security() -> dict[str, Any]:
    """Pod-level security context meeting Pod Security `restricted`."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def placement(service: LLMService) -> dict[str, Any]:
    """The nodeSelector and tolerations from the spec (shared with the download Job)."""
    placed: dict[str, Any] = {}
    if service.spec.node_selector:
        placed["nodeSelector"] = dict(sorted(service.spec.node_selector.items()))
    if service.spec.tolerations:
        placed["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in service.spec.tolerations
        ]
    return placed


def cache_volume(service: LLMService) -> dict[str, Any]:
    """The model cache: the PVC the Job filled, or an emptyDir when the cache is disabled."""
    if service.spec.cache.enabled:
        claim = {"claimName": meta.cache_claim_name(service)}
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": claim}
    return {"name": CACHE_VOLUME, "emptyDir": {}}


def _volumes(service: LLMService) -> list[dict[str, Any]]:
    volumes = [cache_volume(service), {"name": HOME_VOLUME, "emptyDir": {"sizeLimit": HOME_SIZE}}]
    if service.spec.gpus > 1:  # NCCL between tensor-parallel workers needs more than 64 MiB
        volumes.append(
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}
        )
    secret = api_keys_source(service)
    if secret:
        items = [{"key": secret.key, "path": API_KEYS_FILE}]
        source = {"secretName": secret.name, "items": items, "defaultMode": SECRET_MODE}
        volumes.append({"name": API_KEYS_VOLUME, "secret": source})
    return volumes


def deployment(service: LLMService, config: OperatorConfig) -> dict[str, Any]:
    """The Deployment `<name>` running the engine and proxy."""
    profile = PROFILES[service.spec.engine]
    selector = meta.selector_labels(service, meta.COMPONENT_SERVER)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": PRE_STOP_SECONDS + PROXY_DRAIN_SECONDS,
        **placement(service),
        "containers": [engine_container(service, config), proxy_container(service, config)],
        "volumes": _volumes(service),
    }
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta.metadata(service, meta.deployment_name(service), meta.COMPONENT_SERVER),
        "spec": {
            "replicas": service.spec.replicas,
            "selector": {"matchLabels": selector},
            # Surge, never drop below the current count: a new replica on a spare GPU first. Without
            # a spare GPU the rollout waits, and the old pods keep serving.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "revisionHistoryLimit": 3,
            # Slow model loading is not a failed rollout: allow the startup budget and some.
            "progressDeadlineSeconds": profile.startup_budget_seconds + 600,
            "template": {
                "metadata": {"labels": meta.labels(service, meta.COMPONENT_SERVER)},
                "spec": pod_spec,
            },
        },
    }
    return meta.stamp(manifest, ignore=("spec.replicas",))
