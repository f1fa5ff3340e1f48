"""Pydantic models of the LLMService resource (`llmserve.io/v1alpha1`), ARCHITECTURE.md §3.

Field names are snake_case in Python and camelCase in YAML. Attribute docstrings become the field
descriptions of the CRD, so they are written for users. Unknown fields are errors
(`extra="forbid"`);
`llmserve.api.parse` turns pydantic's errors into messages that name the field and suggest the fix.
Rules that involve several fields and that the API server can check alone are CEL rules, attached
here as `CEL_RULES` next to the fields they read; `llmserve.api.cel` gathers them for the CRD and
evaluates them offline, so the API server and `llmserve render` give the same message.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from llmserve.api import shapes

GROUP: Final = "llmserve.io"
VERSION: Final = "v1alpha1"
KIND: Final = "LLMService"
PLURAL: Final = "llmservices"
SINGULAR: Final = "llmservice"
SHORT_NAMES: Final = ("llms",)
API_VERSION: Final = "llmserve.io/v1alpha1"

Engine = Literal["vllm", "tgi", "sglang", "llamacpp", "ollama"]
Quantization = Literal["none", "awq", "gptq", "fp8", "bitsandbytes", "gguf"]
Phase = Literal["Pending", "Downloading", "Starting", "Ready", "Scaling", "Degraded", "Failed"]
AccessMode = Literal["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany", "ReadOnlyMany"]

ENGINES: Final[tuple[Engine, ...]] = get_args(Engine)
QUANTIZATIONS: Final[tuple[Quantization, ...]] = get_args(Quantization)
GGUF_ENGINES: Final[frozenset[Engine]] = frozenset({"llamacpp", "ollama"})
"""Engines that load GGUF files, and only GGUF files (ENGINES.md §7)."""

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
RepoId = Annotated[str, shapes.REPO_ID.constraints]
Revision = Annotated[str, shapes.REVISION.constraints]
RepoFile = Annotated[str, shapes.REPO_FILE.constraints]
ServedName = Annotated[str, shapes.SERVED_NAME.constraints]
EnvName = Annotated[str, shapes.ENV_NAME.constraints]
QualifiedName = Annotated[str, shapes.QUALIFIED_NAME.constraints]
LabelValue = Annotated[str, shapes.LABEL_VALUE.constraints]
"""A Kubernetes label value: empty, or up to 63 letters, digits, `-`, `_` and `.`."""
DnsSubdomain = Annotated[str, shapes.DNS_SUBDOMAIN.constraints]
SecretKey = Annotated[str, shapes.SECRET_KEY.constraints]
Image = Annotated[str, shapes.IMAGE.constraints]
Quantity = Annotated[int, Field(ge=0)] | Annotated[str, shapes.QUANTITY.constraints]
"""A Kubernetes resource quantity such as `16Gi`, `500m` or `2`."""

INT32_MAX: Final = 2**31 - 1
"""The most replicas a Deployment (and the scale subresource) can hold."""
ENGINE_ARG_MAX_LENGTH: Final = 16384
"""Room for an inline chat template or a JSON config value."""
ENV_VALUE_MAX_LENGTH: Final = 32768
MAX_GPUS: Final = 16
"""Most GPUs per replica: a replica runs on one node until multi-node replicas exist, and the
largest GPU nodes have 16 (the operator's `maxGpusPerReplica` says what this cluster's have)."""
MAX_MODEL_LEN: Final = 10 * 2**20
"""Longest context accepted (10 Mi tokens), above every model's today."""


class CelRule(BaseModel):
    """A CEL validation rule rendered into the CRD as `x-kubernetes-validations`."""

    model_config = ConfigDict(frozen=True)

    rule: str
    message: str
    field_path: str | None = None
    """Relative path (`.quantization`) of the field the message is about; the API server reports
    it."""


class _Model(BaseModel):
    """Base of every spec model: camelCase aliases, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=True,  # as the API server: "2" is not an integer
        use_attribute_docstrings=True,
    )
    CEL_RULES: ClassVar[tuple[CelRule, ...]] = ()


class TokenSecretRef(_Model):
    """A key of a Secret in the LLMService's namespace that holds a Hugging Face token."""

    name: DnsSubdomain
    """Name of the Secret."""
    key: SecretKey = "token"
    """Key inside the Secret whose value is the token."""


class ApiKeySecretRef(_Model):
    """A key of a Secret in the LLMService's namespace that holds the proxy's API keys file."""

    name: DnsSubdomain
    """Name of the Secret."""
    key: SecretKey = "api-keys"
    """Key inside the Secret: one `name:key` per line (the name, `[A-Za-z0-9_.-]{1,64}`, labels
    the key's metrics); `#` starts a comment."""


class ModelSource(_Model):
    """Which model to serve and where it comes from."""

    CEL_RULES: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            # shapes.climbs in CEL: the file becomes a path under the repo's snapshot.
            rule="!has(self.file) || !(self.file == '..' || self.file.startsWith('../') "
            "|| self.file.endsWith('/..') || self.file.contains('/../'))",
            message="must not climb out of the repo with '..'; name a file inside the repo, "
            "e.g. '*-Q4_K_M.gguf'",
            field_path=".file",
        ),
    )

    name: RepoId
    """Hugging Face repo id, e.g. `Qwen/Qwen2.5-7B-Instruct-AWQ`."""
    revision: Revision = "main"
    """Branch, tag or commit of the repo; part of the cache key."""
    file: RepoFile | None = None
    """GGUF file (or glob) inside the repo, e.g. `*-Q4_K_M.gguf`; required for llamacpp and
    ollama."""
    served_name: ServedName | None = None
    """The `model` value clients send; defaults to the LLMService's name."""
    parameters_billions: Annotated[float, Field(gt=0, le=100_000)] | None = None
    """Parameter count in billions, for the VRAM fit check; inferred from the repo id when
    absent."""
    token_secret_ref: TokenSecretRef | None = None
    """Secret with a Hugging Face token, for gated or private repos."""


class Autoscaling(_Model):
    """Replica autoscaling on queue depth, with GPU utilization as a guard."""

    CEL_RULES: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!self.enabled || has(self.maxReplicas)",
            message="required when autoscaling is enabled; set it to the most replicas you allow",
            field_path=".maxReplicas",
        ),
        CelRule(
            rule="!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            message="must not exceed maxReplicas; lower minReplicas or raise maxReplicas",
            field_path=".minReplicas",
        ),
    )

    enabled: bool = False
    """When true the operator owns `spec.replicas` and moves it between minReplicas and
    maxReplicas."""
    min_replicas: Annotated[int, Field(ge=1, le=INT32_MAX)] = 1
    """Fewest replicas (at least 1: scale to zero needs the gateway, not built yet)."""
    max_replicas: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = None
    """Most replicas; required when enabled."""
    target_queue_per_replica: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Requests (running + waiting) one replica should carry; defaults from the engine's batch
    size."""
    scale_up_stabilization_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    """How long a higher recommendation must hold before scaling up; the policy's default when
    unset."""
    scale_down_delay_seconds: Annotated[int, Field(ge=0, le=86400)] = 300
    """How long load must stay low before removing a replica."""
    gpu_utilization_guard: Annotated[int, Field(ge=1, le=100)] | None = None
    """GPU utilization percent above which replicas are never removed."""


class Cache(_Model):
    """The model-cache volume that the download Job fills and the engine reads."""

    enabled: bool = True
    """Download once into a PersistentVolumeClaim; when false each engine pod downloads at start."""
    size: Quantity | None = None
    """Size of the PersistentVolumeClaim; estimated from the model size when unset."""
    storage_class_name: DnsSubdomain | None = None
    """StorageClass of the PersistentVolumeClaim; the cluster default when unset."""
    access_mode: AccessMode = "ReadWriteOnce"
    """Access mode of the PersistentVolumeClaim; ReadWriteMany lets replicas on many nodes share
    it."""


LabelKey = QualifiedName
"""A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name of 1-63
characters."""
Cidr = Annotated[
    str,
    StringConstraints(
        max_length=43,
        pattern=r"^((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}"
        r"/(3[0-2]|[12]?[0-9])|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$",
    ),
]
"""An IPv4 or IPv6 network in CIDR notation, e.g. `10.0.0.0/8`."""


class LabelSelectorRequirement(_Model):
    """One expression of a label selector, as in Kubernetes."""

    key: LabelKey
    """The label key the expression is about."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """In and NotIn need values; Exists and DoesNotExist take none."""
    values: Annotated[list[LabelValue], Field(max_length=64)] = Field(default_factory=list)
    """The label values for In and NotIn."""


class LabelSelector(_Model):
    """A Kubernetes label selector; `{}` selects everything."""

    match_labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=16)] = Field(
        default_factory=dict
    )
    """Labels that must all match, e.g. `kubernetes.io/metadata.name: web`."""
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=16)] = Field(
        default_factory=list
    )
    """Expressions that must all hold."""


class IpBlock(_Model):
    """Addresses outside the cluster's pod network, as in a NetworkPolicy's `ipBlock`."""

    cidr: Cidr
    """The network allowed, e.g. `10.20.0.0/16`."""
    except_: Annotated[list[Cidr], Field(max_length=16)] = Field(
        default_factory=list, alias="except"
    )
    """Networks inside `cidr` that are not allowed."""


class NetworkPeer(_Model):
    """Who may connect, as one entry of a NetworkPolicy rule's `from`.

    Pods chosen by namespace and pod labels, or addresses (`ipBlock`).
    """

    namespace_selector: LabelSelector | None = None
    """Namespaces whose pods may connect (with podSelector: only those pods); `{}` is every
    namespace."""
    pod_selector: LabelSelector | None = None
    """Pods that may connect, in the LLMService's namespace unless namespaceSelector is set."""
    ip_block: IpBlock | None = None
    """Addresses that may connect; not together with the selectors."""


MAX_BODY_BYTES: Final = 256 * 1024 * 1024
"""Largest `maxBodyBytes`: the proxy holds one body in a container limited to 512Mi."""


class Proxy(_Model):
    """The OpenAI-compatible sidecar in front of the engine."""

    CEL_RULES: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!(self.auth == 'none' && has(self.apiKeySecretRef))",
            message="is not used with auth: none; remove apiKeySecretRef to run open, "
            "or set auth: apiKeys to require the keys in it",
            field_path=".apiKeySecretRef",
        ),
        CelRule(  # the API server would refuse the NetworkPolicy: say so at apply time
            rule="!has(self.allowedFrom) || self.allowedFrom.all(p, has(p.ipBlock) "
            "? !has(p.namespaceSelector) && !has(p.podSelector) "
            ": has(p.namespaceSelector) || has(p.podSelector))",
            message="each entry sets either ipBlock or namespaceSelector/podSelector, not both "
            "and not neither; split such an entry in two",
            field_path=".allowedFrom",
        ),
    )

    auth: Literal["apiKeys", "none"] = "apiKeys"
    """apiKeys: clients must send a key (`Authorization: Bearer`) from apiKeySecretRef, or, when
    that is unset, from the Secret `<name>-api-keys` that the operator creates with one random
    key; none: no key is asked for, and any client the NetworkPolicy admits may call the model."""
    api_key_secret_ref: ApiKeySecretRef | None = None
    """Your own Secret with the API keys; when unset (and auth is apiKeys) the operator creates
    `<name>-api-keys`."""
    allowed_from: Annotated[list[NetworkPeer], Field(max_length=32)] | None = None
    """Who else may connect to the proxy, besides pods of the LLMService's own namespace: entries
    of a NetworkPolicy `from` (namespaceSelector, podSelector, ipBlock)."""
    max_body_bytes: Annotated[int, Field(ge=1024, le=MAX_BODY_BYTES)] = 16 * 1024 * 1024
    """Largest request body the proxy accepts (413 beyond it); 16 MiB fits long-context chats."""
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    """Requests in flight to the engine at once; defaults to the engine's batch size."""
    max_queue: Annotated[int, Field(ge=0)] = 128
    """Requests that may wait for a slot; beyond it clients get 429 with Retry-After."""
    queue_timeout_seconds: Annotated[int, Field(ge=1)] = 30
    """Longest wait for a slot before 503 with Retry-After."""
    request_timeout_seconds: Annotated[int, Field(ge=1)] = 600
    """Longest time for one request to the engine, sized for long generations, before 504."""


def keys_rule(field: str, shape: shapes.Shape, what: str) -> CelRule:
    """A CEL rule holding the keys of the map `field` to `shape`.

    OpenAPI cannot constrain map keys, so the API server checks them in CEL; pydantic checks the
    same regex offline (the key type of the field), so offline this rule never decides.
    """
    return CelRule(
        rule=f"!has(self.{field}) || self.{field}.all(k, k.size() <= {shape.max_length} "
        f"&& k.matches(r'{shape.pattern}'))",
        message=f"every key must be {what}; rename the key",
        field_path=f".{field}",
    )


MAX_RESOURCES: Final = 32


class Resources(_Model):
    """Compute resources of the engine container; `nvidia.com/gpu` always comes from spec.gpus."""

    CEL_RULES: ClassVar[tuple[CelRule, ...]] = tuple(
        keys_rule(field, shapes.QUALIFIED_NAME, "a resource name such as memory or nvidia.com/gpu")
        for field in ("limits", "requests")
    )

    limits: dict[QualifiedName, Quantity] = Field(default_factory=dict, max_length=MAX_RESOURCES)
    """Limits, e.g. `memory: 64Gi`."""
    requests: dict[QualifiedName, Quantity] = Field(default_factory=dict, max_length=MAX_RESOURCES)
    """Requests, e.g. `cpu: "8"`."""


class Toleration(_Model):
    """A Kubernetes toleration, as in a pod spec."""

    key: QualifiedName | None = None
    """Taint key the toleration applies to."""
    operator: Literal["Exists", "Equal"] | None = None
    """`Exists` or `Equal` (the default)."""
    value: LabelValue | None = None
    """Taint value to match with `Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; all effects when unset."""
    toleration_seconds: Annotated[int, Field(ge=0, le=INT32_MAX)] | None = None
    """How long a NoExecute taint is tolerated."""


class EnvVar(_Model):
    """An environment variable of the engine container, as in a pod spec."""

    name: EnvName
    """Variable name."""
    value: Annotated[str, StringConstraints(max_length=ENV_VALUE_MAX_LENGTH)] | None = None
    """Literal value."""
    value_from: dict[str, Any] | None = None
    """Source of the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."""


class LLMServiceSpec(_Model):
    """What to serve and how: model, engine, quantization, GPUs, replicas and the proxy."""

    CEL_RULES: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!has(self.quantization) || self.quantization != 'gguf' "
            "|| self.engine in ['llamacpp', 'ollama']",
            message="gguf runs only on engine llamacpp or ollama; "
            "set spec.engine: llamacpp, or pick another quantization",
            field_path=".quantization",
        ),
        CelRule(
            rule="!(self.engine in ['llamacpp', 'ollama']) || !has(self.quantization) "
            "|| self.quantization == 'gguf'",
            message="engines llamacpp and ollama load only GGUF files; "
            "set spec.quantization: gguf, or use engine vllm for other quantizations",
            field_path=".quantization",
        ),
        CelRule(
            rule="self.engine in ['llamacpp', 'ollama'] || self.gpus >= 1",
            message="must be at least 1 for engines vllm, tgi and sglang; "
            "set gpus: 1 or more, or use engine llamacpp or ollama to run on CPU",
            field_path=".gpus",
        ),
        CelRule(
            rule="!(self.engine in ['llamacpp', 'ollama']) || has(self.model.file)",
            message="required for engines llamacpp and ollama; "
            "name the GGUF file in the repo, e.g. file: '*-Q4_K_M.gguf'",
            field_path=".model.file",
        ),
        CelRule(
            rule="self.engine in ['llamacpp', 'ollama'] || !has(self.model.file)",
            message="used only by engines llamacpp and ollama; "
            "remove it, or set spec.engine: llamacpp to serve a GGUF file",
            field_path=".model.file",
        ),
        keys_rule(
            "nodeSelector",
            shapes.QUALIFIED_NAME,
            "a label key such as pool or nvidia.com/gpu.product",
        ),
    )

    model: ModelSource
    """The model to serve."""
    engine: Engine = "vllm"
    """Serving engine: vllm (default), tgi (maintenance mode upstream), sglang, llamacpp or
    ollama."""
    quantization: Quantization | None = None
    """Weight format: none, awq, gptq, fp8, bitsandbytes or gguf; gguf for llamacpp/ollama, else
    none."""
    gpus: Annotated[int, Field(ge=0, le=MAX_GPUS)] = 1
    """GPUs per replica: the nvidia.com/gpu request and limit, and the tensor-parallel size; 0 (CPU)
    only for llamacpp and ollama."""
    gpu_memory_gib: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        default=None, alias="gpuMemoryGiB"
    )
    """Memory of one GPU in GiB, for the fit check; else from node labels or the operator
    default."""
    max_model_len: Annotated[int, Field(ge=1, le=MAX_MODEL_LEN)] | None = None
    """Context length passed to the engine; the model's own when unset."""
    replicas: Annotated[int, Field(ge=0, le=INT32_MAX)] = 1
    """Desired replicas; the scale subresource points here, and the autoscaler writes it when on."""
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    """Autoscaling on queue depth."""
    cache: Cache = Field(default_factory=Cache)
    """The model cache volume."""
    proxy: Proxy = Field(default_factory=Proxy)
    """The sidecar proxy: API keys, admission queue and timeouts."""
    engine_args: list[Annotated[str, StringConstraints(max_length=ENGINE_ARG_MAX_LENGTH)]] = Field(
        default_factory=list, max_length=128
    )
    """Extra engine arguments, appended after the rendered ones."""
    image: Image | None = None
    """Engine image; the operator's default for the engine when unset."""
    resources: Resources | None = None
    """CPU and memory of the engine container."""
    node_selector: dict[QualifiedName, LabelValue] = Field(default_factory=dict, max_length=64)
    """Node labels the pods must match, e.g. `nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3`."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    """Tolerations of the pods, e.g. for tainted GPU nodes."""
    env: list[EnvVar] = Field(default_factory=list, max_length=128)
    """Extra environment of the engine container; a name set here wins over llmserve's."""

    @model_validator(mode="before")
    @classmethod
    def _default_quantization(cls, data: Any) -> Any:  # noqa: ANN401 - pydantic hands raw input
        """Default `quantization` by engine: gguf for llamacpp/ollama, none otherwise.

        The CRD cannot express an engine-dependent default, so it leaves the field unset and the
        operator fills it here.
        """
        if isinstance(data, dict) and data.get("quantization") is None:
            engine = data.get("engine", "vllm")
            return {**data, "quantization": "gguf" if engine in GGUF_ENGINES else "none"}
        return data

    @property
    def quant(self) -> Quantization:
        """The effective quantization (always set after validation)."""
        return self.quantization or ("gguf" if self.engine in GGUF_ENGINES else "none")


class Condition(_Model):
    """A status condition in the Kubernetes convention."""

    model_config = ConfigDict(extra="ignore")
    type: NonEmpty
    """Valid, ModelCached, Available, Secure or Scaling."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = ""
    """One CamelCase word a program can match."""
    message: str = ""
    """What is happening and what to do, for people."""
    last_transition_time: str | None = None
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The metadata.generation this condition was computed from."""


class WindowBucket(_Model):
    """One bucket of the autoscaler's scale-down window."""

    model_config = ConfigDict(extra="ignore")
    start: str
    """When the bucket begins (RFC 3339)."""
    replicas: int
    """The highest recommendation in it."""


class AutoscalerStatus(_Model):
    """The autoscaler's last decision and what it remembers (kept here so a restart resumes it)."""

    model_config = ConfigDict(extra="ignore")
    reason: str | None = None
    """Why the last decision is what it is: ScaledUp, ScaledDown, Steady, ScaleDownPending, ..."""
    message: str | None = None
    """The last decision in words: the load counted, the target, the change."""
    load: float | None = None
    """Requests (running + waiting + queued) counted over the ready pods at the last decision."""
    decided_at: str | None = None
    """When that decision was made (RFC 3339): the status is written when the decision or what
    the autoscaler remembers changes, at least once per tenth of scaleDownDelaySeconds."""
    last_scale_time: str | None = None
    """When the autoscaler last changed spec.replicas (RFC 3339)."""
    window: list[WindowBucket] = Field(default_factory=list)
    """Recommendations of the last scaleDownDelaySeconds, highest per bucket: replicas are
    removed only when all are lower, and never below the highest."""
    observed_since: str | None = None
    """When the window began (RFC 3339): nothing is removed before it spans the whole delay."""
    high_since: str | None = None
    """Since when load has asked for more replicas (for scaleUpStabilizationSeconds)."""
    high_floor: int | None = None
    """The fewest replicas load has asked for since highSince."""
    last_scale_down: str | None = None
    """When a replica was last removed: one at a time, a minute apart."""


class LLMServiceStatus(_Model):
    """What the operator observed and did; written only by the operator."""

    model_config = ConfigDict(extra="ignore")
    phase: Phase | None = None
    """Pending, Downloading, Starting, Ready, Scaling (autoscaled replicas loading), Degraded or
    Failed."""
    conditions: list[Condition] = Field(default_factory=list)
    """Valid, ModelCached, Available, Secure and Scaling, each with a reason and message."""
    replicas: int | None = None
    """Pods that exist (the scale subresource reads it)."""
    ready_replicas: int | None = None
    """Pods that are ready to serve."""
    desired_replicas: int | None = None
    """Replicas the autoscaler asked for last."""
    autoscaler: AutoscalerStatus | None = None
    """The autoscaler's last decision and state, when spec.autoscaling is enabled."""
    selector: str | None = None
    """Label selector of the pods, for the scale subresource."""
    endpoint: str | None = None
    """OpenAI base URL inside the cluster, e.g. `http://llama-8b.default.svc/v1`."""
    observed_generation: int | None = None
    """The metadata.generation the status describes."""
    engine_args: list[str] = Field(default_factory=list)
    """The engine arguments rendered, after defaults and engineArgs."""
    image: str | None = None
    """The engine image rendered."""


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata that llmserve reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow", frozen=True, alias_generator=to_camel)
    name: NonEmpty
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


NAME_MAX_LENGTH: Final = 48
"""Longest metadata.name: the download Job is `<name>-model-download` and Job names feed a
63-character
label (`job-name`)."""

NAME_RULES: Final = (
    CelRule(
        rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        message="must start with a letter and hold only lowercase letters, digits and '-' "
        "(it names a Service); rename the LLMService, e.g. llama-8b",
        field_path=".metadata.name",
    ),
    CelRule(
        rule=f"self.metadata.name.size() <= {NAME_MAX_LENGTH}",
        message=f"must be at most {NAME_MAX_LENGTH} characters (children such as "
        "<name>-model-download must fit Kubernetes name limits); use a shorter name",
        field_path=".metadata.name",
    ),
    CelRule(
        rule="self.metadata.name != 'vllm'",
        message="must not be 'vllm': a Service of that name makes Kubernetes inject "
        "VLLM_PORT into other pods of the namespace, which stops vLLM from starting; "
        "use another name such as vllm-0",
        field_path=".metadata.name",
    ),
)
"""Rules on the name, checked by the API server at the root of the CRD schema and offline by
rules."""


class LLMService(BaseModel):
    """A whole LLMService document."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True
    )
    api_version: Literal["llmserve.io/v1alpha1"] = "llmserve.io/v1alpha1"
    kind: Literal["LLMService"] = "LLMService"
    metadata: ObjectMeta
    spec: LLMServiceSpec
    status: LLMServiceStatus | None = None

    @property
    def name(self) -> str:
        """metadata.name."""
        return self.metadata.name

    @property
    def ref(self) -> str:
        """`LLMService <namespace>/<name>` (namespace omitted when unknown), for messages."""
        ns = f"{self.metadata.namespace}/" if self.metadata.namespace else ""
        return f"LLMService {ns}{self.metadata.name}"
