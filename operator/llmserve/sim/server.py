"""`llmserve sim`: an engine's HTTP surface over the batching model, for tests without GPUs.

Flavour `vllm` serves vLLM's OpenAI routes, its error body (`code` is the HTTP status as an
integer), `/health` and `/v1/models`; flavour `tgi` serves TGI's `/generate`, `/generate_stream`,
`/info`, its OpenAI routes, its native errors (`{"error", "error_type"}`) and its overload 429
(ENGINES.md §2, §3). One task drives the engine model (`sim.engine`): it runs a step, sleeps the
step's modelled duration and hands each sequence its token; request handlers wait for their tokens
and relay them, streamed (SSE, ending `data: [DONE]`) or whole. A client that goes away cancels
its handler, which takes its sequence out of the batch (counted as finish reason `abort`).

Faults for the proxy and autoscaler tests: a share of requests that fail (500), hang (never
answer) or run slowly; an engine that dies after N requests (`/health` 503 and every request 500,
as vLLM's EngineDeadError); a start-up delay during which `/health` answers 503. Random choices
come from one generator seeded by `--seed`.

With `--dcgm-port`, a fake NVIDIA DCGM exporter serves `DCGM_FI_DEV_GPU_UTIL` on its own port, as
the real one does beside the engine (AUTOSCALING.md §7.3), so the autoscaler's GPU guard can be
tested against Prometheus without a GPU.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from llmserve.sim.engine import Engine, Performance, Sequence, Step
from llmserve.sim.metrics import EngineCollector, Tally

Flavor = Literal["vllm", "tgi"]
CHARS_PER_TOKEN: Final = 4
"""Prompt tokens are estimated from characters: the simulator has no tokenizer."""
WORDS: Final = ("the", "model", "says", "hello", "to", "every", "token", "in", "its", "batch")
SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
GPU_MODEL: Final = "NVIDIA A100-SXM4-80GB"
"""The `modelName` the fake DCGM exporter reports: the GPU the performance defaults model."""


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often (shares of requests, 0 to 1)."""

    fail_rate: float = 0.0
    hang_rate: float = 0.0
    slow_rate: float = 0.0
    slow_factor: float = 10.0
    """A step holding a slow request's token lasts this many times longer."""
    die_after: int | None = None
    """Requests answered before the engine dies; None: never."""


@dataclass(frozen=True)
class Dcgm:
    """The fake DCGM exporter: where it listens, how often it samples, whose pod it labels."""

    port: int
    host: str = "127.0.0.1"
    interval: float = 1.0
    """Sampling period, seconds. The real exporter's `--collect-interval` is 30 s."""
    pod: str = ""
    namespace: str = ""
    container: str = "engine"
    """The engine's container in the pods the operator renders."""


@dataclass
class BusyMeter:
    """Seconds the modelled GPU has been running steps, as NVML counts `utilization.gpu`.

    NVML reports the share of a sample period during which one or more kernels ran: the engine
    runs kernels while it holds a sequence, however few, so a single request reads ~100 %.
    """

    busy: float = 0.0
    """Seconds busy before `since`."""
    since: float | None = None
    """When the current busy spell began; None while idle."""

    def start(self, now: float) -> None:
        """The engine is stepping (again, or still)."""
        if self.since is None:
            self.since = now

    def stop(self, now: float) -> None:
        """The engine has nothing left to step."""
        if self.since is not None:
            self.busy += now - self.since
            self.since = None

    def seconds(self, now: float) -> float:
        """Busy seconds so far, the current spell included."""
        return self.busy + (now - self.since if self.since is not None else 0.0)


def utilization(busy: float, period: float) -> int:
    """`DCGM_FI_DEV_GPU_UTIL`: whole percent of `period` spent busy, as NVML rounds it."""
    return round(100 * min(1.0, max(0.0, busy / period))) if period > 0 else 0


@dataclass(frozen=True)
class Settings:
    """One simulator process."""

    flavor: Flavor
    model: str
    performance: Performance
    faults: Faults
    seed: int = 0
    startup_seconds: float = 0.0
    loading_until: Path | None = None
    """Loading also lasts until this file exists: tests end the load when they choose, whatever
    the machine's speed."""
    default_max_tokens: int = 64
    max_model_len: int = 8192
    max_concurrent_requests: int = 128
    """TGI only: more requests than this at once get its 429 `overloaded`."""
    dcgm: Dcgm | None = None
    """The fake DCGM exporter; None serves none."""


class ApiError(Exception):
    """An error answer in the flavour's own body."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


class Simulator:
    """The engine model, its clock, the requests waiting for tokens, and the tally."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.flavor = settings.flavor
        self.model = settings.model
        self.engine = Engine(settings.performance)
        self.tally = Tally()
        self.random = random.Random(settings.seed)  # noqa: S311 - a simulation, not security
        self.started = time.monotonic()
        self.loaded = False
        self.answered = 0
        self.in_flight = 0
        self.dead = False
        self.gpu = BusyMeter()
        self._wake = asyncio.Event()
        self._streams: dict[int, asyncio.Queue[bool]] = {}
        self._arrived: dict[int, float] = {}
        self._slow: set[int] = set()
        self._keys = iter(range(1, 1 << 62))

    def gauges(self) -> tuple[int, int, float, int, int]:
        """Running, waiting, KV usage, KV tokens used and KV capacity, for the metrics."""
        engine = self.engine
        used = engine.kv_used
        return (len(engine.running), len(engine.waiting), engine.kv_usage, used,
                engine.performance.kv_capacity)  # fmt: skip

    @property
    def ready(self) -> bool:
        """Loaded and alive."""
        return not self.dead and self._loaded()

    def _loaded(self) -> bool:
        if self.loaded:
            return True
        until = self.settings.loading_until
        self.loaded = time.monotonic() - self.started >= self.settings.startup_seconds and (
            until is None or until.exists()
        )
        return self.loaded

    def check(self) -> None:
        """Raise the error this request meets before it reaches the engine, if any."""
        if not self.ready:
            raise ApiError(503, "the engine is not ready" if not self.dead else "engine dead",
                           "ServiceUnavailableError")  # fmt: skip
        self.answered += 1
        limit = self.settings.faults.die_after
        if limit is not None and self.answered > limit:
            self.dead = True
            raise ApiError(500, "EngineCore encountered an issue", "InternalServerError")
        if self.flavor == "tgi" and self.in_flight >= self.settings.max_concurrent_requests:
            self.tally.failures["overloaded"] += 1
            raise ApiError(429, "Model is overloaded", "overloaded")
        if self.random.random() < self.settings.faults.fail_rate:
            self.tally.failures["incomplete"] += 1
            raise ApiError(500, "injected failure", "InternalServerError")

    async def tokens(self, prompt_tokens: int, max_tokens: int) -> AsyncIterator[int]:
        """Generate: the index of each output token as the engine produces it."""
        faults = self.settings.faults
        if self.random.random() < faults.hang_rate:
            await asyncio.Event().wait()  # hangs until the client goes away
        seq = Sequence(next(self._keys), prompt_tokens, max_tokens)
        queue: asyncio.Queue[bool] = asyncio.Queue()
        self._streams[seq.key] = queue
        self._arrived[seq.key] = time.monotonic()
        if self.random.random() < faults.slow_rate:
            self._slow.add(seq.key)
        self.tally.requests += 1
        self.tally.input_length.observe(prompt_tokens)
        self.engine.submit(seq)
        self._wake.set()
        self.in_flight += 1
        finished = False
        try:
            for index in range(max_tokens):
                finished = await queue.get()
                yield index
        finally:
            self.in_flight -= 1
            self._done(seq, finished=finished)

    def _done(self, seq: Sequence, *, finished: bool) -> None:
        arrived = self._arrived.pop(seq.key, time.monotonic())
        self._streams.pop(seq.key, None)
        self._slow.discard(seq.key)
        if not finished:
            self.engine.cancel(seq)
            self.tally.finished["abort"] += 1
            return
        self.tally.finished["length"] += 1
        self.tally.e2e.observe(time.monotonic() - arrived)
        self.tally.generated.observe(seq.generated)

    def _stepped(self, step: Step) -> None:
        now = time.monotonic()
        self.tally.prompt_tokens += step.prefill_tokens
        self.tally.generation_tokens += len(step.tokens)
        self.tally.preemptions += step.preempted
        for seq in step.admitted:
            if seq.preemptions == 0:
                self.tally.queue.observe(now - self._arrived.get(seq.key, now))
        for seq in step.tokens:
            if seq.generated == 1:
                self.tally.ttft.observe(now - self._arrived.get(seq.key, now))
            queue = self._streams.get(seq.key)
            if queue is not None:
                queue.put_nowait(seq.done)

    async def run(self) -> None:
        """The engine's clock: step, sleep the step's duration, deliver tokens; forever."""
        while True:
            if not self.engine.busy:
                self.gpu.stop(time.monotonic())
                self._wake.clear()
                await self._wake.wait()
                continue
            self.gpu.start(time.monotonic())
            step = self.engine.step()
            slow = any(seq.key in self._slow for seq in step.tokens)
            await asyncio.sleep(step.seconds * (self.settings.faults.slow_factor if slow else 1))
            self._stepped(step)


def word(index: int) -> str:
    """Output token `index` as text: a word and a space, the same every run."""
    return WORDS[index % len(WORDS)] + " "


def prompt_tokens(prompt: object) -> int:
    """Estimated tokens of a prompt (a string, or chat messages)."""
    if isinstance(prompt, list):
        text = "".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in prompt)
    else:
        text = str(prompt)
    return max(1, len(text) // CHARS_PER_TOKEN)


def error_response(flavor: Flavor, error: ApiError) -> web.Response:
    """The error in the engine's own body."""
    if flavor == "tgi":
        body: dict[str, Any] = {"error": error.message, "error_type": error.kind}
    else:
        body = {"error": {"message": error.message, "type": error.kind, "param": None,
                          "code": error.status}}  # fmt: skip
    return web.json_response(body, status=error.status)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, LookupError) as error:
        # ValueError: not JSON, or (UnicodeDecodeError) not text in its charset; LookupError:
        # a Content-Type charset Python does not know. Each is the client's fault: 400.
        raise ApiError(400, f"request body is not JSON text: {error}", "BadRequestError") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", "BadRequestError")
    return body


def _max_tokens(body: dict[str, Any], settings: Settings, key: str = "max_tokens") -> int:
    value = body.get("max_completion_tokens") or body.get(key) or settings.default_max_tokens
    if not isinstance(value, int) or value < 1:
        raise ApiError(400, f"{key} must be a positive integer", "BadRequestError")
    return value


class OpenAI:
    """The OpenAI-compatible routes both flavours serve."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def models(self, _: web.Request) -> web.Response:
        """GET /v1/models."""
        card = {"id": self.sim.model, "object": "model", "created": int(self.sim.started),
                "owned_by": self.sim.flavor, "root": self.sim.model, "parent": None,
                "max_model_len": self.sim.settings.max_model_len}  # fmt: skip
        return web.json_response({"object": "list", "data": [card]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions."""
        return await self._complete(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/completions."""
        return await self._complete(request, chat=False)

    async def _complete(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        body = await _json(request)
        model = body.get("model")
        if model != self.sim.model:
            msg = f"The model `{model}` does not exist."
            raise ApiError(404, msg, "NotFoundError")
        prompt = body.get("messages") if chat else body.get("prompt")
        if prompt is None:
            raise ApiError(400, "messages is required" if chat else "prompt is required",
                           "BadRequestError")  # fmt: skip
        self.sim.check()
        count, limit = prompt_tokens(prompt), _max_tokens(body, self.sim.settings)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, ident, count, limit, chat=chat, usage=usage)
        text = "".join([word(i) async for i in self.sim.tokens(count, limit)])
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return web.json_response({
            "id": ident, "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": self.sim.model, "choices": [choice],
            "usage": _usage(count, limit),
        })  # fmt: skip

    async def _stream(  # noqa: PLR0913 - one stream's facts
        self, request: web.Request, ident: str, count: int, limit: int, *, chat: bool, usage: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        kind = "chat.completion.chunk" if chat else "text_completion"
        created = int(time.time())

        def chunk(delta: str, finish: str | None, *, first: bool = False) -> bytes:
            choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
            if chat:
                choice["delta"] = {"role": "assistant", "content": delta} if first else {
                    "content": delta}  # fmt: skip
            else:
                choice["text"] = delta
            data = {"id": ident, "object": kind, "created": created, "model": self.sim.model,
                    "choices": [choice]}  # fmt: skip
            return f"data: {json.dumps(data)}\n\n".encode()

        if chat:
            await response.write(chunk("", None, first=True))
        async for index in self.sim.tokens(count, limit):
            await response.write(chunk(word(index), "length" if index == limit - 1 else None))
        if usage:
            data = {"id": ident, "object": kind, "created": created, "model": self.sim.model,
                    "choices": [], "usage": _usage(count, limit)}  # fmt: skip
            await response.write(f"data: {json.dumps(data)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


class Tgi:
    """TGI's own routes."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def info(self, _: web.Request) -> web.Response:
        """GET /info."""
        settings = self.sim.settings
        return web.json_response({
            "model_id": settings.model, "model_sha": None, "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": settings.max_concurrent_requests,
            "max_input_tokens": settings.max_model_len - 1,
            "max_total_tokens": settings.max_model_len,
            "max_batch_total_tokens": settings.performance.kv_capacity, "version": "3.3.6-sim",
        })  # fmt: skip

    async def generate(self, request: web.Request) -> web.Response:
        """POST /generate (and POST /)."""
        count, limit = self._read(await _json(request))
        text = "".join([word(i) async for i in self.sim.tokens(count, limit)])
        return web.json_response({"generated_text": text})

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        """POST /generate_stream."""
        count, limit = self._read(await _json(request))
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        text = ""
        async for index in self.sim.tokens(count, limit):
            text += word(index)
            last = index == limit - 1
            event = {"index": index + 1,
                     "token": {"id": index, "text": word(index), "logprob": -0.1, "special": False},
                     "generated_text": text if last else None,
                     "details": {"finish_reason": "length", "generated_tokens": limit,
                                 "seed": None} if last else None}  # fmt: skip
            await response.write(f"data:{json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response

    def _read(self, body: dict[str, Any]) -> tuple[int, int]:
        inputs = body.get("inputs")
        if not isinstance(inputs, str) or not inputs:
            raise ApiError(422, "`inputs` must be a non-empty string", "validation")
        self.sim.check()
        parameters = body.get("parameters") or {}
        return prompt_tokens(inputs), _max_tokens(parameters, self.sim.settings, "max_new_tokens")


def dcgm_application(sim: Simulator, dcgm: Dcgm) -> web.Application:
    """The fake DCGM exporter: `/metrics` with the GPU's utilization over the last period.

    Like the real exporter it samples on its own clock and serves the last sample, so what
    Prometheus sees lags the engine by up to one period plus one scrape interval (§12.5).
    """
    registry = CollectorRegistry()
    # The real exporter's labels in Kubernetes mode (`--kubernetes`), for one GPU.
    labels = {"gpu": "0", "UUID": f"GPU-{uuid.UUID(int=sim.settings.seed)}", "device": "nvidia0",
              "modelName": GPU_MODEL, "container": dcgm.container, "namespace": dcgm.namespace,
              "pod": dcgm.pod}  # fmt: skip
    gauge = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", list(labels),
                  registry=registry).labels(**labels)  # fmt: skip

    async def sample() -> None:
        last, busy = time.monotonic(), sim.gpu.seconds(time.monotonic())
        while True:
            await asyncio.sleep(dcgm.interval)
            now = time.monotonic()
            spent = sim.gpu.seconds(now)
            gauge.set(utilization(spent - busy, now - last))
            last, busy = now, spent

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            content_type="text/plain", charset="utf-8")  # fmt: skip

    async def sampler(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sample())
        yield
        task.cancel()

    app = web.Application()
    app.cleanup_ctx.append(sampler)
    app.router.add_get("/metrics", metrics)
    return app


def dcgm_exporter(sim: Simulator, dcgm: Dcgm) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that serves the fake exporter while the simulator's app runs.

    On a port of its own, as the real exporter's DaemonSet has (9400): the engine's `/metrics`
    stays the engine's.
    """

    async def exporter(_: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(dcgm_application(sim, dcgm), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, dcgm.host, dcgm.port).start()
        yield
        await runner.cleanup()

    return exporter


def application(settings: Settings) -> web.Application:
    """The simulator's aiohttp application; its engine clock runs while the app does."""
    sim = Simulator(settings)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(EngineCollector(sim))

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:  # noqa: ANN401
        try:
            response: web.StreamResponse = await handler(request)
        except ApiError as error:
            return error_response(settings.flavor, error)
        return response

    async def health(_: web.Request) -> web.Response:
        if sim.ready:
            return web.Response(status=200)
        if settings.flavor == "tgi":
            unhealthy = {"error": "unhealthy", "error_type": "healthcheck"}
            return web.json_response(unhealthy, status=503)
        return web.Response(status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            content_type="text/plain", charset="utf-8")  # fmt: skip

    async def clock(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sim.run())
        app["simulator"] = sim
        yield
        task.cancel()

    app = web.Application(middlewares=[errors])
    app.cleanup_ctx.append(clock)
    if settings.dcgm is not None:
        app.cleanup_ctx.append(dcgm_exporter(sim, settings.dcgm))
    openai = OpenAI(sim)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", openai.models)
    app.router.add_post("/v1/chat/completions", openai.chat)
    app.router.add_post("/v1/completions", openai.completions)
    if settings.flavor == "tgi":
        tgi = Tgi(sim)
        app.router.add_get("/info", tgi.info)
        app.router.add_post("/generate", tgi.generate)
        app.router.add_post("/", tgi.generate)
        app.router.add_post("/generate_stream", tgi.generate_stream)
    return app


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGTERM or Ctrl-C; a client that disconnects cancels its request."""
    web.run_app(application(settings), host=host, port=port, handler_cancellation=True,
                access_log=None)  # fmt: skip
