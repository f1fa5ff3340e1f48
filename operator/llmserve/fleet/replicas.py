"""The simulated fleet: replica lifecycle, a fluid continuous-batching model, and the router.

Time advances in ticks of `dt` seconds (AUTOSCALING.md §12.4). A replica is PENDING (scheduled,
image from the node's cache), LOADING (weights, compile, CUDA graphs; a quarter and three quarters
of the cold start), READY, then DRAINING when removed: it takes no new requests, finishes what it
runs for up to `grace` seconds and fails the rest. A replica that is not ready yet is removed at
once. GPU time is billed from creation to termination, whatever the phase.

Per tick a ready replica admits its queue in order while it has a free slot (`max_num_seqs`) and
KV room for the prompt and the whole output (reserved at admission, so nothing is preempted), then
runs the tick's engine steps, timed by the HTTP simulator's own model,
`llmserve.sim.engine.Performance.step_seconds(running, context, prefill)`: prompts are prefilled in
order, `max_batched_tokens` per step, and every running sequence whose prompt is in gets one token
per step. Instead of stepping each sequence, a replica keeps one decode clock (`progress`, the
tokens a sequence decoding since time 0 would have) and a heap of the clock values at which its
sequences finish, so a tick costs O(1) plus O(log n) per request that starts or ends in it. Within a
tick the prefill backlog goes first (chunked prefill steps), the rest of the tick is plain decode
steps; first-token and finish times are interpolated inside the tick.

The router sends each arrival to the ready replica holding the fewest requests (running and
waiting); while no replica is ready a gateway queue holds them. A request stays where it was sent
(as behind a per-pod proxy), so a backlog built up during a cold start drains at the pace of the
replicas that held it, not of those that start later; a removed replica's queue is routed anew.
A request still waiting for a slot `timeout` seconds after it arrived is failed (its client gave
up).
"""

from __future__ import annotations

import enum
import heapq
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from llmserve.sim.engine import Performance

PENDING_SHARE: Final = 0.25
"""Share of the cold start spent PENDING (scheduling, image); the rest is LOADING."""
NOT_YET: Final = math.inf
"""A time that has not come: a request's first token or end before it happens."""


class Phase(enum.Enum):
    """Where a replica is in its life."""

    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"


@dataclass
class Ledger:
    """The trace's requests and what happened to each, as parallel columns indexed by request."""

    arrival: tuple[float, ...]
    prompt: tuple[int, ...]
    output: tuple[int, ...]
    admitted: list[float] = field(init=False)
    first: list[float] = field(init=False)
    """First token, NOT_YET until then."""
    done: list[float] = field(init=False)
    """Last token, NOT_YET until then (and for failed requests)."""
    failed: list[bool] = field(init=False)

    def __post_init__(self) -> None:
        count = len(self.arrival)
        self.admitted = [NOT_YET] * count
        self.first = [NOT_YET] * count
        self.done = [NOT_YET] * count
        self.failed = [False] * count

    def fail(self, request: int) -> None:
        """The request got no answer (timeout, or cut off by a drain)."""
        self.failed[request] = True


@dataclass(frozen=True)
class Lifecycle:
    """How long replicas take to start and to stop, and how long clients wait."""

    cold_start: float = 120.0
    """Creation to READY, seconds."""
    grace: float = 30.0
    """A draining replica's time to finish what it runs (terminationGracePeriodSeconds)."""
    timeout: float = 120.0
    """A request waiting this long for a slot is failed."""


class Replica:
    """One engine pod: its phase, queue, batch and the fluid state of its steps."""

    def __init__(self, name: str, created: float, lifecycle: Lifecycle) -> None:
        self.name = name
        self.created = created
        self.loading_at = created + lifecycle.cold_start * PENDING_SHARE
        self.ready_at = created + lifecycle.cold_start
        self.phase = Phase.PENDING
        self.drain_deadline = NOT_YET
        self.waiting: deque[int] = deque()
        self.prefilling: deque[tuple[float, int]] = deque()
        """Admitted requests whose prompt is not in yet, with the value of `prefilled` then."""
        self.decoding: list[tuple[float, int, float]] = []
        """Heap of (progress at which it ends, request, progress it started from)."""
        self.admitted_tokens = 0.0
        """Prompt tokens admitted so far (a running total, like `prefilled`)."""
        self.prefilled = 0.0
        self.progress = 0.0
        self.reserved = 0
        """KV tokens held by running requests (prompt and whole output, reserved at admission)."""
        self.prompts_held = 0
        self.started_sum = 0.0
        """Sum of the decode clock at which each decoding request started: with the clock, the
        output tokens they hold, so context is O(1) to know."""
        self.busy_seconds = 0.0
        """Time with work in the batch: DCGM_FI_DEV_GPU_UTIL integrates this (NVML: share of
        time a kernel ran)."""

    @property
    def running(self) -> int:
        """Requests in the batch (vllm:num_requests_running)."""
        return len(self.prefilling) + len(self.decoding)

    @property
    def load(self) -> int:
        """Requests it holds, as the router and the concurrency metrics count them."""
        return len(self.waiting) + self.running

    def context(self) -> float:
        """KV tokens the batch reads per step: prompts admitted, and output decoded so far."""
        decoded = len(self.decoding) * self.progress - self.started_sum
        return self.prompts_held + max(0.0, decoded)

    def expire(self, now: float, ledger: Ledger, timeout: float) -> None:
        """Fail the queued requests whose clients gave up (the queue is in arrival order)."""
        while self.waiting and now - ledger.arrival[self.waiting[0]] >= timeout:
            ledger.fail(self.waiting.popleft())

    def admit(self, now: float, ledger: Ledger, performance: Performance) -> None:
        """Move queued requests into the batch while a slot and their KV are free, in order."""
        while self.waiting and self.running < performance.max_num_seqs:
            request = self.waiting[0]
            need = ledger.prompt[request] + ledger.output[request]
            if self.reserved + need > performance.kv_capacity:
                return  # the head waits for KV; the queue keeps its order behind it
            self.waiting.popleft()
            self.reserved += need
            self.prompts_held += ledger.prompt[request]
            self.admitted_tokens += ledger.prompt[request]
            self.prefilling.append((self.admitted_tokens, request))
            ledger.admitted[request] = max(now, ledger.arrival[request])

    def step(self, now: float, dt: float, ledger: Ledger, performance: Performance) -> None:
        """Run the engine steps of the tick [now, now + dt)."""
        if not self.running:
            return
        self.busy_seconds += dt
        base = performance.step_seconds(self.running, round(self.context()), 0)
        budget = performance.max_batched_tokens
        per_token = performance.per_prefill_token
        backlog = self.admitted_tokens - self.prefilled
        prefill_steps = math.ceil(backlog / budget)
        prefill_time = prefill_steps * base + per_token * backlog
        if prefill_time <= dt:
            done, steps = backlog, prefill_steps + (dt - prefill_time) / base
        else:
            steps = dt / (base + per_token * budget)
            done = min(backlog, steps * budget)
        before, start = self.prefilled, self.progress
        self.prefilled += done
        self.progress += steps
        while self.prefilling and self.prefilling[0][0] <= self.prefilled + 1e-6:
            end, request = self.prefilling.popleft()
            offset = end - before
            own = ledger.prompt[request]
            first = max(
                now + math.ceil(offset / budget) * base + per_token * offset,
                ledger.arrival[request] + math.ceil(own / budget) * base + per_token * own,
            )
            self._start_decoding(request, first, now + dt, base, ledger)
        self._finish(now, dt, start, steps, ledger)

    def _start_decoding(
        self, request: int, first: float, tick_end: float, base: float, ledger: Ledger
    ) -> None:
        ledger.first[request] = first
        # The first token came with the prefill; the clock counts the decode steps after it.
        started = self.progress - (tick_end - first) / base - 1
        self.started_sum += started
        heapq.heappush(self.decoding, (started + ledger.output[request], request, started))

    def _finish(self, now: float, dt: float, start: float, steps: float, ledger: Ledger) -> None:
        while self.decoding and self.decoding[0][0] <= self.progress:
            end, request, started = heapq.heappop(self.decoding)
            at = now + dt * max(0.0, end - start) / steps
            ledger.done[request] = max(at, ledger.first[request])
            self._release(request, started, ledger)

    def _release(self, request: int, started: float, ledger: Ledger) -> None:
        self.started_sum -= started
        self.prompts_held -= ledger.prompt[request]
        self.reserved -= ledger.prompt[request] + ledger.output[request]

    def cut_off(self, ledger: Ledger) -> None:
        """The grace period is over: what still runs gets no answer."""
        for _, request in self.prefilling:
            ledger.fail(request)
        for _, request, _ in self.decoding:
            ledger.fail(request)
        self.prefilling.clear()
        self.decoding.clear()


@dataclass
class Counters:
    """What the fleet did, for the report."""

    gpu_seconds: float = 0.0
    """Replica-seconds billed inside the trace's span."""
    scale_ups: int = 0
    scale_downs: int = 0
    in_flight_seconds: float = 0.0
    """Integral of the requests held (gateway, queues, batches): Little's law's L·T."""


class Fleet:
    """The replicas of one simulated deployment and the router in front of them."""

    def __init__(
        self, ledger: Ledger, performance: Performance, lifecycle: Lifecycle, ready: int
    ) -> None:
        self.ledger = ledger
        self.performance = performance
        self.lifecycle = lifecycle
        self.replicas: list[Replica] = []
        self.gateway: deque[int] = deque()
        self.counters = Counters()
        self._made = 0
        for _ in range(ready):
            replica = self._create(-lifecycle.cold_start)
            replica.phase = Phase.READY

    def _create(self, now: float) -> Replica:
        self._made += 1
        replica = Replica(f"replica-{self._made}", now, self.lifecycle)
        self.replicas.append(replica)
        return replica

    @property
    def spec(self) -> int:
        """`spec.replicas`: every replica not being removed."""
        return sum(1 for r in self.replicas if r.phase is not Phase.DRAINING)

    def ready(self) -> list[Replica]:
        """The replicas that take requests."""
        return [r for r in self.replicas if r.phase is Phase.READY]

    def waiting(self) -> int:
        """Requests waiting for a slot: the gateway's and every engine queue."""
        return len(self.gateway) + sum(len(r.waiting) for r in self.replicas)

    def in_flight(self) -> int:
        """Requests held anywhere: waiting, or in a batch."""
        return len(self.gateway) + sum(r.load for r in self.replicas)

    def scale_to(self, now: float, desired: int) -> None:
        """Create or remove replicas until `desired` are not being removed."""
        change = desired - self.spec
        if change > 0:
            self.counters.scale_ups += 1
            for _ in range(change):
                self._create(now)
        elif change < 0:
            self.counters.scale_downs += 1
            for replica in self._victims(-change):
                self._remove(now, replica)

    def _victims(self, count: int) -> list[Replica]:
        """Which replicas go, as a ReplicaSet picks: not ready before ready, newest first."""
        order = {Phase.PENDING: 0, Phase.LOADING: 1, Phase.READY: 2}
        alive = [r for r in self.replicas if r.phase is not Phase.DRAINING]
        alive.sort(key=lambda r: (order[r.phase], -r.ready_at))
        return alive[:count]

    def _remove(self, now: float, replica: Replica) -> None:
        if replica.phase is not Phase.READY:
            self.replicas.remove(replica)  # nothing to drain: it never took a request
            return
        replica.phase = Phase.DRAINING
        replica.drain_deadline = now + self.lifecycle.grace
        requeued, replica.waiting = replica.waiting, deque()
        self.dispatch(requeued)  # its endpoint is gone: the proxy sends its queue elsewhere

    def dispatch(self, requests: Iterable[int]) -> None:
        """Route each request to the least-loaded ready replica, or hold it in the gateway."""
        ready = self.ready()
        if not ready:
            self.gateway.extend(requests)
            return
        loads = [r.load for r in ready]
        for request in requests:
            best = loads.index(min(loads))
            ready[best].waiting.append(request)
            loads[best] += 1

    def tick(self, now: float, dt: float, arrivals: Iterable[int], billed_until: float) -> None:
        """Advance [now, now + dt): lifecycles, arrivals, every replica's steps, billing."""
        self._advance_lifecycles(now)
        self.dispatch(arrivals)
        ledger, performance, timeout = self.ledger, self.performance, self.lifecycle.timeout
        while self.gateway and now - ledger.arrival[self.gateway[0]] >= timeout:
            ledger.fail(self.gateway.popleft())
        for replica in self.replicas:
            replica.expire(now, ledger, timeout)
            if replica.phase is Phase.READY:
                replica.admit(now, ledger, performance)
            replica.step(now, dt, ledger, performance)
        if now < billed_until:
            self.counters.gpu_seconds += len(self.replicas) * min(dt, billed_until - now)
        self.counters.in_flight_seconds += self.in_flight() * dt

    def _advance_lifecycles(self, now: float) -> None:
        became_ready = False
        for replica in list(self.replicas):
            if replica.phase is Phase.PENDING and now >= replica.loading_at:
                replica.phase = Phase.LOADING
            if replica.phase is Phase.LOADING and now >= replica.ready_at:
                replica.phase = Phase.READY
                became_ready = True
            if replica.phase is Phase.DRAINING and (
                not replica.running or now >= replica.drain_deadline
            ):
                replica.cut_off(self.ledger)
                self.replicas.remove(replica)
        if became_ready and self.gateway:
            held, self.gateway = self.gateway, deque()
            self.dispatch(held)
