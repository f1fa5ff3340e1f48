"""A continuous-batching engine model, in the way vLLM schedules: pure, and driven by any clock.

Each `step()` admits waiting sequences while there is a free slot (`max_num_seqs`) and KV cache
for their prompt, spends up to `max_batched_tokens` on prefill (chunked prefill, vLLM V1's
default), decodes one token for every sequence whose prompt is in, and when the KV cache overflows
preempts the newest sequence back to the head of the queue (recompute: its prefill starts over).
It returns how long that step takes on the modelled GPU and which sequences got tokens, so the
HTTP simulator (`llmserve sim`) sleeps that long in real time, and the autoscaling benchmark can
advance simulated time instead.

Step time follows AUTOSCALING.md §8.2: t = t0 + a·B + b·K + c·P, with B the running sequences, K
their context in thousands of tokens and P the prefill tokens of the step. The defaults are the
A100-80GB column for Llama-3.1-8B in BF16 (≈ 100 tok/s for one sequence, a knee in the tens).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

DEFAULT_MAX_NUM_SEQS: Final = 256
"""vLLM's default for an A100 (`get_batch_defaults`)."""


@dataclass(frozen=True)
class Performance:
    """The modelled GPU and engine limits (seconds, tokens)."""

    t0: float = 0.0095
    """Fixed cost of a step: reading the weights once."""
    per_sequence: float = 0.00005
    """Added per running sequence."""
    per_kilo_context: float = 0.000065
    """Added per thousand tokens of context held by running sequences (KV reads)."""
    per_prefill_token: float = 0.0001
    """Added per prompt token processed in the step."""
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_batched_tokens: int = 8192
    """Prefill budget of one step."""
    kv_capacity: int = 400_000
    """Tokens the KV cache holds (prompt and output of every running sequence)."""

    def step_seconds(self, running: int, context: int, prefill: int) -> float:
        """How long one step takes."""
        return (
            self.t0
            + self.per_sequence * running
            + self.per_kilo_context * context / 1000
            + self.per_prefill_token * prefill
        )


@dataclass
class Sequence:
    """One request inside the engine."""

    key: int
    prompt_tokens: int
    max_tokens: int
    computed: int = 0
    """Tokens whose KV is in the cache: the prompt as it is prefilled, then each output token."""
    generated: int = 0
    preemptions: int = 0

    @property
    def done(self) -> bool:
        """Whether it has all its tokens."""
        return self.generated >= self.max_tokens


@dataclass
class Step:
    """What one step did and how long it took."""

    seconds: float
    tokens: list[Sequence] = field(default_factory=list)
    """Sequences that got one new token in this step (their first, when their prefill ended)."""
    admitted: list[Sequence] = field(default_factory=list)
    """Sequences that left the queue for the batch in this step."""
    finished: list[Sequence] = field(default_factory=list)
    preempted: int = 0
    prefill_tokens: int = 0


class Engine:
    """Waiting and running sequences, and the step that moves them on."""

    def __init__(self, performance: Performance | None = None) -> None:
        self.performance = performance or Performance()
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    @property
    def kv_used(self) -> int:
        """Tokens held in the KV cache."""
        return sum(seq.computed for seq in self.running)

    @property
    def kv_usage(self) -> float:
        """Share of the KV cache in use, 0 to 1 (vllm:kv_cache_usage_perc)."""
        return min(1.0, self.kv_used / self.performance.kv_capacity)

    @property
    def busy(self) -> bool:
        """Whether a step would do anything."""
        return bool(self.running or self.waiting)

    def submit(self, seq: Sequence) -> None:
        """Queue a new sequence."""
        self.waiting.append(seq)

    def cancel(self, seq: Sequence) -> None:
        """Drop a sequence wherever it is (its client went away): its KV is freed at once."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def _admit(self) -> list[Sequence]:
        limits = self.performance
        free = limits.kv_capacity - self.kv_used
        admitted: list[Sequence] = []
        while self.waiting and len(self.running) + len(admitted) < limits.max_num_seqs:
            head = self.waiting[0]
            need = head.prompt_tokens + head.generated + 1
            if need > free:
                break  # KV is full: the queue waits, in order
            admitted.append(self.waiting.popleft())
            free -= need
        self.running += admitted
        return admitted

    def _preempt(self) -> int:
        """Free KV by sending the newest sequences back to the head of the queue."""
        count = 0
        while self.kv_used > self.performance.kv_capacity and len(self.running) > 1:
            victim = self.running.pop()
            victim.computed = 0  # recompute: prompt and output so far are prefilled again
            victim.preemptions += 1
            self.waiting.appendleft(victim)
            count += 1
        return count

    def step(self) -> Step:
        """Admit, prefill, decode, preempt; the step's duration and its tokens."""
        step = Step(seconds=0.0, admitted=self._admit())
        budget = self.performance.max_batched_tokens
        prefill = 0
        for seq in self.running:
            target = seq.prompt_tokens + seq.generated  # after a preemption, output is re-read too
            if seq.computed < target:
                chunk = min(target - seq.computed, budget - prefill)
                seq.computed += chunk
                prefill += chunk
                if seq.computed < target:
                    continue  # the rest of the prompt in a later step
            seq.generated += 1
            seq.computed += 1
            step.tokens.append(seq)
        context = self.kv_used
        step.seconds = self.performance.step_seconds(len(self.running), context, prefill)
        step.prefill_tokens = prefill
        step.finished = [seq for seq in self.running if seq.done]
        self.running = [seq for seq in self.running if not seq.done]
        step.preempted = self._preempt()
        return step
