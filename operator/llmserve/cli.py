"""The `llmserve` command: render, crd, fit, operator, proxy, sim, fetch-model and bench.

Every sub-command prints its result on stdout and one clear message on stderr when something is
wrong, with exit status 1 and never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from llmserve import __version__, render
from llmserve.api import (
    ENGINES,
    QUANTIZATIONS,
    InvalidSpec,
    LLMService,
    parse_llmservice,
    parse_many,
)
from llmserve.api import crd as crd_module
from llmserve.api import fit as fit_module
from llmserve.api.config import OperatorConfig

EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
EXIT_DOES_NOT_FIT: Final = 1
EXIT_FETCH_FAILED: Final = 1


class UsageError(Exception):
    """Bad command-line input that is not an LLMService problem (a missing file, say)."""


class _BlockDumper(yaml.SafeDumper):
    """YAML with multi-line strings as `|` blocks, so scripts in manifests stay readable."""


# kubectl reads YAML 1.1 with go-yaml, which takes `y`, `on` or `4385e12` (a short commit) for a
# boolean or a number where PyYAML sees a string; such strings are quoted.
_AMBIGUOUS = re.compile(
    r"(?i:y|yes|n|no|on|off|true|false|null|~)|[-+]?[0-9_.]*[0-9][0-9_.]*(?:[eE][-+]?[0-9]+)?"
)


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    style = "'" if _AMBIGUOUS.fullmatch(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump_yaml(documents: Sequence[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in the order the builders chose, no line folding."""
    return yaml.dump_all(
        documents, Dumper=_BlockDumper, sort_keys=False, explicit_start=True, width=1_000_000
    )


def _read(path: str) -> tuple[str, str]:
    """The text of FILE (or stdin for `-`) and a name for messages."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except FileNotFoundError:
        raise UsageError(f"cannot read {path}: no such file; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory; give a YAML file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None


def _config(path: str | None) -> OperatorConfig:
    if path is None:
        return OperatorConfig()
    text, name = _read(path)
    try:
        return OperatorConfig.model_validate(yaml.safe_load(text) or {})
    except (yaml.YAMLError, ValueError) as error:
        raise UsageError(f"operator config {name} is invalid: {error}") from None


def _note(report: fit_module.FitReport, service: LLMService, err: TextIO) -> None:
    if report.verdict == "skipped":
        print(f"note: {service.ref}: {report.reason}", file=err)


def cmd_render(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the children of every LLMService in the file."""
    text, source = _read(args.filename)
    config = _config(args.config)
    documents: list[dict[str, Any]] = []
    for service in parse_many(text, source=source):
        children = render.render(service, config)
        _note(render.check(service, config), service, err)
        documents.extend(children)
    out.write(dump_yaml(documents))
    return EXIT_OK


def cmd_crd(_: argparse.Namespace, out: TextIO, __: TextIO) -> int:
    """Print the CustomResourceDefinition."""
    out.write(dump_yaml([crd_module.build()]))
    return EXIT_OK


def _fit_service(args: argparse.Namespace) -> LLMService:
    """The LLMService the fit command talks about: from -f, or built from the flags."""
    if args.filename:
        text, source = _read(args.filename)
        services = list(parse_many(text, source=source))
        if len(services) != 1:
            raise UsageError(f"{source} holds {len(services)} LLMServices; give a file with one")
        return services[0]
    if not args.model:
        raise UsageError("give -f FILE or --model REPO (e.g. --model meta-llama/Llama-3.1-8B)")
    spec: dict[str, Any] = {"model": {"name": args.model}, "engine": args.engine, "gpus": args.gpus}
    optional = {
        "quantization": args.quantization,
        "gpuMemoryGiB": args.gpu_memory_gib,
        "maxModelLen": args.max_model_len,
    }
    spec |= {k: v for k, v in optional.items() if v is not None}
    if args.parameters_billions is not None:
        spec["model"]["parametersBillions"] = args.parameters_billions
    if args.file:
        spec["model"]["file"] = args.file
    document = {"apiVersion": "llmserve.io/v1alpha1", "kind": "LLMService"}
    return parse_llmservice(
        {**document, "metadata": {"name": "fit"}, "spec": spec}, source="the command line"
    )


def _available(report: fit_module.FitReport) -> str:
    return (
        f"{report.per_gpu_available_gib:.1f} GiB per GPU "
        f"({report.gpu_memory_gib:g} GiB x {report.memory_fraction:g})"
    )


def _fit_text(service: LLMService, report: fit_module.FitReport) -> str:
    spec = service.spec
    rows = [("model", spec.model.name), ("engine", f"{spec.engine}, quantization {spec.quant}")]
    if report.verdict != "skipped":
        rows += [
            (
                "parameters",
                f"{report.parameters_billions:g}B x {report.bytes_per_parameter:g} bytes",
            ),
            ("weights", f"{report.weights_gib:.1f} GiB"),
            ("KV cache", f"{report.kv_cache_gib:.1f} GiB ({report.context_tokens} tokens)"),
            ("overhead", f"{report.overhead_gib:.1f} GiB (activations, CUDA context)"),
            ("per-GPU need", f"{report.per_gpu_need_gib:.1f} GiB on {report.gpus} GPU(s)"),
            ("available", _available(report)),
        ]
    rows.append(("verdict", f"{report.verdict.replace('-', ' ')}: {report.reason}"))
    rows += [("note", note) for note in report.notes]
    return "".join(f"{key:<14}{value}\n" for key, value in rows)


def cmd_fit(args: argparse.Namespace, out: TextIO, _: TextIO) -> int:
    """Print the VRAM estimate and verdict; exit 1 when the model does not fit."""
    service = _fit_service(args)
    config = _config(args.config)
    report = fit_module.check(fit_module.input_for(service.spec, config.default_gpu_memory_gib))
    if args.output == "json":
        out.write(
            json.dumps({"model": service.spec.model.name, **report.as_dict()}, indent=2) + "\n"
        )
    else:
        out.write(_fit_text(service, report))
    return EXIT_DOES_NOT_FIT if report.verdict == "does-not-fit" else EXIT_OK


def cmd_operator(args: argparse.Namespace, _: TextIO, __: TextIO) -> int:
    """Run the operator until SIGTERM or Ctrl-C."""
    import kopf  # noqa: PLC0415 - only this command needs kopf and the Kubernetes client

    from llmserve import handlers  # noqa: PLC0415, F401 - registers the handlers
    from llmserve.kube.lease import Election  # noqa: PLC0415 - same

    memo = kopf.Memo()
    if not args.no_leader_election:
        namespace = os.environ.get("POD_NAMESPACE") or (args.namespace or ["default"])[0]
        identity = f"{socket.gethostname()}-{os.getpid()}"
        memo.election = Election(namespace, args.lease_name, identity)
    if args.metrics_port:
        from prometheus_client import start_http_server  # noqa: PLC0415 - only this command

        start_http_server(args.metrics_port, addr=args.metrics_address)
    kopf.configure(verbose=args.verbose)
    if not args.verbose:  # not a line per watch event: our own lines say what each pass did
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=args.all_namespaces,
        namespaces=args.namespace or (),
        standalone=True,  # one actor at a time comes from our Lease, not kopf's peering CRDs
        liveness_endpoint=args.liveness,
        memo=memo,
    )
    return EXIT_OK


def cmd_sim(args: argparse.Namespace, _: TextIO, __: TextIO) -> int:
    """Serve a simulated engine until SIGTERM."""
    from llmserve.sim import engine, server  # noqa: PLC0415 - only this command needs aiohttp

    performance = engine.Performance(
        t0=args.step_seconds,
        per_sequence=args.per_sequence_seconds,
        per_kilo_context=args.per_kilo_context_seconds,
        per_prefill_token=args.per_prefill_token_seconds,
        max_num_seqs=args.max_num_seqs,
        max_batched_tokens=args.max_batched_tokens,
        kv_capacity=args.kv_tokens,
    )
    faults = server.Faults(
        fail_rate=args.fail_rate,
        hang_rate=args.hang_rate,
        slow_rate=args.slow_rate,
        die_after=args.die_after,
    )
    dcgm: server.Dcgm | None = None
    if args.dcgm_port is not None:
        if args.dcgm_interval <= 0:
            raise UsageError(f"--dcgm-interval is {args.dcgm_interval:g}; give a period above 0 s")
        dcgm = server.Dcgm(port=args.dcgm_port, host=args.host, interval=args.dcgm_interval,
                           pod=args.dcgm_pod, namespace=args.dcgm_namespace)  # fmt: skip
    settings = server.Settings(
        flavor=args.flavor,
        model=args.model,
        performance=performance,
        faults=faults,
        seed=args.seed,
        startup_seconds=args.startup_seconds,
        loading_until=args.loading_until,
        default_max_tokens=args.default_max_tokens,
        dcgm=dcgm,
    )
    server.serve(settings, args.host, args.port)
    return EXIT_OK


def cmd_proxy(args: argparse.Namespace, _: TextIO, __: TextIO) -> int:
    """Serve the proxy until SIGTERM."""
    from llmserve.proxy import main  # noqa: PLC0415 - only this command needs uvicorn

    return main.run(args)


def cmd_fetch_model(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Download a model repo into the Hugging Face cache under --hf-home; progress on stdout."""
    hf_home = Path(args.hf_home).absolute()
    # huggingface_hub reads HF_HOME once, when first imported: set it before, so what it keeps
    # besides the hub cache (the Xet cache) lands on the cache volume, not in a read-only $HOME.
    os.environ["HF_HOME"] = str(hf_home)
    from llmserve.fetch import download  # noqa: PLC0415 - needs HF_HOME set; imports huggingface_hub
    from llmserve.fetch.errors import FetchError, terminate  # noqa: PLC0415 - same

    request = download.Request(
        repo=args.repo,
        revision=args.revision,
        hf_home=hf_home,
        include=tuple(args.include or ()),
        link=Path(args.link).absolute() if args.link else None,
        token=os.environ.get("HF_TOKEN") or None,
        endpoint=os.environ.get("HF_ENDPOINT", "").rstrip("/") or None,
        quantization=args.quantization,
    )
    try:
        download.run(request, out)
    except FetchError as error:
        print(f"error: {error}", file=err, flush=True)
        if args.termination_log:
            terminate(Path(args.termination_log), f"error: {error}")
        return EXIT_FETCH_FAILED
    return EXIT_OK


def cmd_bench_autoscale(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Replay request traces against llmserve's autoscaling policy and its peers."""
    from llmserve.fleet import flags, run, trace  # noqa: PLC0415 - only this command simulates

    try:
        return run.main(flags.options(args), out, err)
    except (flags.BenchError, trace.TraceError) as error:
        raise UsageError(str(error)) from None


def _parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - a statement per flag
    parser = argparse.ArgumentParser(
        prog="llmserve",
        description="Run open LLMs on Kubernetes GPU clusters from one LLMService resource.",
        epilog="Start with: llmserve render -f examples/vllm.yaml  (see README.md)",
    )
    parser.add_argument("--version", action="version", version=f"llmserve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config_help = (
        "operator settings file (YAML: images, defaultGpuMemoryGiB, ...); defaults if unset"
    )

    p = sub.add_parser(
        "render",
        help="print the Kubernetes objects an LLMService becomes",
        description="Validate LLMService YAML offline and print its children (model-cache PVC, "
        "download Job, Deployment, Service) as multi-document YAML. Exits 1 with a message that "
        "names the field when the input is invalid.",
        epilog="Example: llmserve render -f llama.yaml | kubectl apply --dry-run=server -f -",
    )
    p.add_argument("-f", "--filename", required=True, metavar="FILE", help="YAML file, - for stdin")
    p.add_argument("--config", metavar="FILE", help=config_help)
    p.set_defaults(handler=cmd_render)

    p = sub.add_parser(
        "crd",
        help="print the LLMService CustomResourceDefinition",
        description="Print the CRD that defines LLMService, generated from llmserve's own models.",
        epilog="Example: llmserve crd | kubectl apply --server-side -f -",
    )
    p.set_defaults(handler=cmd_crd)

    p = sub.add_parser(
        "fit",
        help="estimate whether a model fits its GPUs",
        description="Estimate GPU memory per replica (weights, KV cache, overhead) and compare it "
        "with what the GPUs offer. Reads an LLMService with -f, or the flags below. Exits 0 "
        "when it fits or cannot tell, 1 when it does not fit.",
        epilog="Example: llmserve fit --model meta-llama/Llama-3.1-70B-Instruct --gpus 1 "
        "--gpu-memory-gib 80",
    )
    p.add_argument("-f", "--filename", metavar="FILE", help="an LLMService YAML file")
    p.add_argument("--model", metavar="REPO", help="Hugging Face repo id")
    p.add_argument("--parameters-billions", type=float, metavar="N", help="size; else from REPO")
    p.add_argument("--engine", choices=ENGINES, default="vllm")
    p.add_argument("--quantization", choices=QUANTIZATIONS)
    p.add_argument("--file", metavar="GGUF", help="GGUF file name, for its quant tag")
    p.add_argument("--gpus", type=int, default=1, metavar="N")
    p.add_argument("--gpu-memory-gib", type=int, metavar="N", help="memory of one GPU")
    p.add_argument("--max-model-len", type=int, metavar="N", help="context length")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("--config", metavar="FILE", help=config_help)
    p.set_defaults(handler=cmd_fit)

    p = sub.add_parser(
        "operator",
        help="run the operator (kopf) against the current kubeconfig or in-cluster account",
        description="Watch LLMServices and keep their children and status true. Settings come from "
        "the YAML file named by $LLMSERVE_CONFIG (see OperatorConfig), else defaults.",
        epilog="Example: llmserve operator --namespace ml --liveness http://0.0.0.0:8080/healthz",
    )
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", metavar="NS",
                       help="watch this namespace (repeat for several; globs allowed)")  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--liveness", metavar="URL", help="serve kopf's liveness probe at URL")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="N",
        help="serve the operator's metrics (llmserve_autoscaler_desired_replicas, for KEDA) on "
        "port N; 0 (the default) serves none",
    )
    p.add_argument("--metrics-address", default="0.0.0.0", help="address for --metrics-port")  # noqa: S104 - a pod's port
    p.add_argument("-v", "--verbose", action="store_true", help="log every event")
    p.add_argument(
        "--lease-name",
        default="llmserve-operator",
        help="Lease that elects the one acting operator, in $POD_NAMESPACE (else the first -n "
        "namespace, else default)",
    )
    p.add_argument(
        "--no-leader-election",
        action="store_true",
        help="act without holding the Lease (only when exactly one operator runs)",
    )
    p.set_defaults(handler=cmd_operator)

    p = sub.add_parser(
        "fetch-model",
        help="download a Hugging Face model repo into the model cache (the download Job)",
        description="Download the repo at REV into DIR in the Hugging Face cache layout "
        "(DIR/hub/models--ORG--NAME), where engines run with HF_HOME=DIR and HF_HUB_OFFLINE=1 "
        "find it. The token comes from $HF_TOKEN, the Hub from $HF_ENDPOINT (default "
        "huggingface.co). Large files continue where an earlier run stopped; a complete cache "
        "downloads nothing. Exits 1 with one line naming the field to fix.",
        epilog="Example: llmserve fetch-model --repo Qwen/Qwen2.5-0.5B-Instruct-GGUF "
        "--hf-home /models/hf --include '*q4_k_m.gguf' --link /models/model.gguf",
    )
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="Hugging Face model repo id")
    p.add_argument("--revision", default="main", metavar="REV", help="branch, tag or commit")
    p.add_argument("--hf-home", required=True, metavar="DIR", help="HF_HOME of the engines")
    p.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="fetch only files matching GLOB (repeatable), e.g. '*-Q4_K_M.gguf'",
    )
    p.add_argument("--link", metavar="PATH", help="make PATH a symlink to the GGUF file fetched")
    p.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        help="fail, before the weights are downloaded, unless config.json says they are in this "
        "format (spec.quantization; none and gguf are not checked)",
    )
    p.add_argument(
        "--termination-log",
        metavar="FILE",
        help="also write the failure's line to FILE (the container's terminationMessagePath)",
    )
    p.set_defaults(handler=cmd_fetch_model)

    p = sub.add_parser(
        "sim",
        help="serve a simulated vLLM or TGI engine (routes, metrics, batching, faults)",
        description="Serve an engine's HTTP API over a continuous-batching model: responses come "
        "at the speed the model computes (step = STEP + per-sequence, context and prefill costs; "
        "defaults: Llama-3.1-8B on an A100), with the engine's real routes, error bodies and "
        "Prometheus metric names. Deterministic with --seed. Serves until SIGTERM.",
        epilog="Example: llmserve sim --flavor vllm --host 127.0.0.1 --port 8000 "
        "--model meta-llama/Llama-3.1-8B-Instruct --fail-rate 0.1",
    )
    from llmserve.sim.engine import Performance  # noqa: PLC0415 - pure: its defaults, no server

    model = Performance()
    p.add_argument("--flavor", choices=("vllm", "tgi"), default="vllm")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", required=True, metavar="NAME", help="the served model name")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument(
        "--max-num-seqs", type=int, default=model.max_num_seqs, metavar="N", help="batch slots"
    )
    p.add_argument("--max-batched-tokens", type=int, default=model.max_batched_tokens, metavar="N",
                   help="prefill tokens per step")  # fmt: skip
    p.add_argument("--kv-tokens", type=int, default=model.kv_capacity, metavar="N",
                   help="KV-cache capacity in tokens")  # fmt: skip
    p.add_argument("--step-seconds", type=float, default=model.t0, metavar="S",
                   help="fixed cost of one engine step")  # fmt: skip
    p.add_argument("--per-sequence-seconds", type=float, default=model.per_sequence,
                   metavar="S",
                   help="added to a step per running sequence")  # fmt: skip
    p.add_argument("--per-kilo-context-seconds", type=float, default=model.per_kilo_context,
                   metavar="S",
                   help="added to a step per 1000 tokens of context in the batch")  # fmt: skip
    p.add_argument("--per-prefill-token-seconds", type=float, default=model.per_prefill_token,
                   metavar="S",
                   help="added to a step per prompt token prefilled")  # fmt: skip
    p.add_argument("--default-max-tokens", type=int, default=64, metavar="N",
                   help="output tokens when a request sets no limit")  # fmt: skip
    p.add_argument("--startup-seconds", type=float, default=0.0, metavar="S",
                   help="/health answers 503 this long after start (loading weights)")  # fmt: skip
    p.add_argument("--loading-until", type=Path, metavar="FILE",
                   help="also loading until FILE exists (tests end it at will)")  # fmt: skip
    p.add_argument("--fail-rate", type=float, default=0.0, metavar="R",
                   help="share of requests answered 500")  # fmt: skip
    p.add_argument("--hang-rate", type=float, default=0.0, metavar="R",
                   help="share of requests never answered")  # fmt: skip
    p.add_argument("--slow-rate", type=float, default=0.0, metavar="R",
                   help="share of requests generated 10x slower")  # fmt: skip
    p.add_argument("--die-after", type=int, metavar="N",
                   help="die after N requests (/health 503, requests 500)")  # fmt: skip
    p.add_argument("--dcgm-port", type=int, metavar="N",
                   help="also serve a fake DCGM exporter's /metrics (DCGM_FI_DEV_GPU_UTIL) on "
                   "port N")  # fmt: skip
    p.add_argument("--dcgm-interval", type=float, default=1.0, metavar="S",
                   help="its sampling period (the real exporter's default is 30 s)")  # fmt: skip
    p.add_argument("--dcgm-pod", default="", metavar="NAME", help="its `pod` label")
    p.add_argument("--dcgm-namespace", default="", metavar="NS", help="its `namespace` label")
    p.set_defaults(handler=cmd_sim)

    p = sub.add_parser(
        "proxy",
        help="the OpenAI front door beside an engine: API keys, bounded input and queue, SSE "
        "relay, metrics",
        description="Relay the OpenAI routes of the engine at --upstream (each with its one "
        "method): a bearer key from --api-keys-file (`name:key` lines, reloaded when it changes; "
        "an empty file accepts no key) is required unless --auth none; bodies up to "
        "--max-body-bytes read whole within --body-timeout before they queue; request heads up "
        "to --max-header-bytes within --header-timeout; at most --max-concurrency requests at "
        "the engine and --max-queue waiting (429 or 503 with Retry-After beyond); streams relayed "
        "chunk by chunk; /health and /ready. /metrics and /metrics/engine are served on "
        "--metrics-port only (keep it out of the Service). Every flag can also be set as "
        "LLMSERVE_PROXY_<FLAG> (e.g. LLMSERVE_PROXY_MAX_QUEUE=64). SIGTERM drains.",
        epilog="Example: llmserve proxy --upstream http://127.0.0.1:8000 --port 8080 "
        "--metrics-port 9090 --api-keys-file /etc/llmserve/keys/api-keys --max-concurrency 256",
    )
    from llmserve.proxy.flags import add_arguments  # noqa: PLC0415 - argparse only, no uvicorn

    add_arguments(p)
    p.set_defaults(handler=cmd_proxy)

    p = sub.add_parser(
        "bench",
        help="offline benchmarks (autoscale: compare autoscaling policies on request traces)",
        description="Benchmarks that need no cluster.",
    )
    benchmarks = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    p = benchmarks.add_parser(
        "autoscale",
        help="replay request traces against llmserve's autoscaling policy, HPA, KEDA, Knative, "
        "KubeAI and an oracle",
        description="Simulate a fleet of vLLM replicas (cold starts, continuous batching timed "
        "by the same model as `llmserve sim`) under each policy and trace, in simulated time "
        "(about 45 s for the default run). Prints per trace and policy: TTFT SLO attainment, "
        "p99 TTFT, failed requests, GPU-minutes, their ratio to the oracle's and the scale "
        "events; then whether llmserve met its goal (>= 99 % of requests within the SLO at "
        "<= 1.15x the oracle's GPU-minutes, no baseline better on both). Progress on stderr.",
        epilog="Example: llmserve bench autoscale --traces step,azure --plots bench-autoscale",
    )
    from llmserve.fleet.flags import add_arguments as add_bench_arguments  # noqa: PLC0415 - argparse only

    add_bench_arguments(p)
    p.set_defaults(handler=cmd_bench_autoscale)
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command; return its exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.handler
    try:
        return handler(args, out, err)
    except (InvalidSpec, UsageError) as error:
        print(f"error: {error}", file=err)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
