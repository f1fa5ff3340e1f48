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
Quantity = int | str
"""A Kubernetes resource quantity such as `16Gi`, `500m` or `2`."""


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

    name: NonEmpty
    """Name of the Secret."""
    key: NonEmpty = "token"
    """Key inside the Secret whose value is the token."""


class ApiKeySecretRef(_Model):
    """A key of a Secret in the LLMService's namespace that holds the proxy's API keys file."""

    name: NonEmpty
    """Name of the Secret."""
    key: NonEmpty = "api-keys"
    """Key inside the Secret: one API key per line, optionally `name:key`; `#` starts a comment."""


class ModelSource(_Model):
    """Which model to serve and where it comes from."""

    name: NonEmpty
    """Hugging Face repo id, e.g. `Qwen/Qwen2.5-7B-Instruct-AWQ`."""
    revision: NonEmpty = "main"
    """Branch, tag or commit of the repo; part of the cache key."""
    file: NonEmpty | None = None
    """GGUF file (or glob) inside the repo, e.g. `*-Q4_K_M.gguf`; required for llamacpp and
    ollama."""
    served_name: NonEmpty | None = None
    """The `model` value clients send; defaults to the LLMService's name."""
    parameters_billions: Annotated[float, Field(gt=0)] | None = None
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
    min_replicas: Annotated[int, Field(ge=1)] = 1
    """Fewest replicas (at least 1: scale to zero needs the gateway, not built yet)."""
    max_replicas: Annotated[int, Field(ge=1)] | None = None
    """Most replicas; required when enabled."""
    target_queue_per_replica: Annotated[int, Field(ge=1)] | None = None
    """Requests (running + waiting) one replica should carry; defaults from the engine's batch
    size."""
    scale_up_stabilization_seconds: Annotated[int, Field(ge=0)] | None = None
    """How long a higher recommendation must hold before scaling up; the policy's default when
    unset."""
    scale_down_delay_seconds: Annotated[int, Field(ge=0)] = 300
    """How long load must stay low before removing a replica."""
    gpu_utilization_guard: Annotated[int, Field(ge=1, le=100)] | None = None
    """GPU utilization percent above which replicas are never removed."""


class Cache(_Model):
    """The model-cache volume that the download Job fills and the engine reads."""

    enabled: bool = True
    """Download once into a PersistentVolumeClaim; when false each engine pod downloads at start."""
    size: Quantity | None = None
    """Size of the PersistentVolumeClaim; estimated from the model size when unset."""
    storage_class_name: NonEmpty | None = None
    """StorageClass of the PersistentVolumeClaim; the cluster default when unset."""
    access_mode: AccessMode = "ReadWriteOnce"
    """Access mode of the PersistentVolumeClaim; ReadWriteMany lets replicas on many nodes share
    it."""


class Proxy(_Model):
    """The OpenAI-compatible sidecar in front of the engine."""

    api_key_secret_ref: ApiKeySecretRef | None = None
    """Secret with the API keys clients must send as `Authorization: Bearer`; open when unset."""
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    """Requests in flight to the engine at once; defaults to the engine's batch size."""
    max_queue: Annotated[int, Field(ge=0)] = 128
    """Requests that may wait for a slot; beyond it clients get 429 with Retry-After."""
    queue_timeout_seconds: Annotated[int, Field(ge=1)] = 30
    """Longest wait for a slot before 503 with Retry-After."""
    request_timeout_seconds: Annotated[int, Field(ge=1)] = 600
    """Longest time for one request to the engine, sized for long generations, before 504."""


class Resources(_Model):
    """Compute resources of the engine container; `nvidia.com/gpu` always comes from spec.gpus."""

    limits: dict[str, Quantity] = Field(default_factory=dict)
    """Limits, e.g. `memory: 64Gi`."""
    requests: dict[str, Quantity] = Field(default_factory=dict)
    """Requests, e.g. `cpu: "8"`."""


class Toleration(_Model):
    """A Kubernetes toleration, as in a pod spec."""

    key: str | None = None
    """Taint key the toleration applies to."""
    operator: Literal["Exists", "Equal"] | None = None
    """`Exists` or `Equal` (the default)."""
    value: str | None = None
    """Taint value to match with `Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; all effects when unset."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated."""


class EnvVar(_Model):
    """An environment variable of the engine container, as in a pod spec."""

    name: NonEmpty
    """Variable name."""
    value: str | None = None
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
    )

    model: ModelSource
    """The model to serve."""
    engine: Engine = "vllm"
    """Serving engine: vllm (default), tgi (maintenance mode upstream), sglang, llamacpp or
    ollama."""
    quantization: Quantization | None = None
    """Weight format: none, awq, gptq, fp8, bitsandbytes or gguf; gguf for llamacpp/ollama, else
    none."""
    gpus: Annotated[int, Field(ge=0)] = 1
    """GPUs per replica: the nvidia.com/gpu request and limit, and the tensor-parallel size; 0 (CPU)
    only for llamacpp and ollama."""
    gpu_memory_gib: Annotated[int, Field(ge=1)] | None = Field(default=None, alias="gpuMemoryGiB")
    """Memory of one GPU in GiB, for the fit check; else from node labels or the operator
    default."""
    max_model_len: Annotated[int, Field(ge=1)] | None = None
    """Context length passed to the engine; the model's own when unset."""
    replicas: Annotated[int, Field(ge=0)] = 1
    """Desired replicas; the scale subresource points here, and the autoscaler writes it when on."""
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    """Autoscaling on queue depth."""
    cache: Cache = Field(default_factory=Cache)
    """The model cache volume."""
    proxy: Proxy = Field(default_factory=Proxy)
    """The sidecar proxy: API keys, admission queue and timeouts."""
    engine_args: list[str] = Field(default_factory=list)
    """Extra engine arguments, appended after the rendered ones."""
    image: NonEmpty | None = None
    """Engine image; the operator's default for the engine when unset."""
    resources: Resources | None = None
    """CPU and memory of the engine container."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the pods must match, e.g. `nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3`."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Tolerations of the pods, e.g. for tainted GPU nodes."""
    env: list[EnvVar] = Field(default_factory=list)
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
    """Valid, ModelCached, Available or Scaling."""
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
    """Valid, ModelCached, Available and Scaling, each with a reason and message."""
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
