"""The batching model: slots, chunked prefill, KV capacity and preemption, and the step time."""

from __future__ import annotations

import pytest

from llmserve.sim.engine import Engine, Performance, Sequence


def run_to_end(engine: Engine, limit: int = 10_000) -> list[float]:
    """Step until idle; the duration of each step."""
    seconds = []
    while engine.busy and len(seconds) < limit:
        seconds.append(engine.step().seconds)
    return seconds


def test_one_sequence_gets_its_first_token_with_its_prefill_then_one_per_step() -> None:
    engine = Engine()
    seq = Sequence(1, prompt_tokens=100, max_tokens=5)
    engine.submit(seq)
    first = engine.step()
    assert first.tokens == [seq]
    assert first.prefill_tokens == 100
    assert first.seconds == pytest.approx(0.0095 + 0.00005 + 0.000065 * 0.101 + 0.0001 * 100)
    steps = run_to_end(engine)
    assert len(steps) == 4
    assert seq.generated == 5
    assert not engine.running


def test_a_long_prompt_is_prefilled_in_chunks_before_its_first_token() -> None:
    engine = Engine(Performance(max_batched_tokens=1000))
    seq = Sequence(1, prompt_tokens=2500, max_tokens=1)
    engine.submit(seq)
    assert [len(engine.step().tokens) for _ in range(3)] == [0, 0, 1]


def test_no_more_than_max_num_seqs_run_and_the_rest_wait_in_order() -> None:
    engine = Engine(Performance(max_num_seqs=4))
    for key in range(10):
        engine.submit(Sequence(key, prompt_tokens=10, max_tokens=3))
    step = engine.step()
    assert [s.key for s in step.admitted] == [0, 1, 2, 3]
    assert len(engine.waiting) == 6
    run_to_end(engine)
    assert not engine.busy


def test_a_full_kv_cache_holds_the_queue_and_growth_preempts_the_newest() -> None:
    engine = Engine(Performance(kv_capacity=300))
    a, b = (
        Sequence(1, prompt_tokens=140, max_tokens=50),
        Sequence(2, prompt_tokens=140, max_tokens=50),
    )
    c = Sequence(3, prompt_tokens=140, max_tokens=1)
    for seq in (a, b, c):
        engine.submit(seq)
    step = engine.step()
    assert step.admitted == [a, b]  # c's prompt does not fit beside them
    preempted = sum(engine.step().preempted for _ in range(30))
    assert preempted >= 1
    assert b.preemptions >= 1  # the newest went back to the queue
    assert a.preemptions == 0
    run_to_end(engine)
    assert (a.generated, b.generated, c.generated) == (50, 50, 1)


def test_a_bigger_batch_is_slower_per_sequence_and_faster_in_total() -> None:
    def tokens_per_second(batch: int) -> tuple[float, float]:
        engine = Engine()
        for key in range(batch):
            engine.submit(Sequence(key, prompt_tokens=100, max_tokens=200))
        seconds = sum(run_to_end(engine))
        return 200 / seconds, batch * 200 / seconds

    single, single_total = tokens_per_second(1)
    each, total = tokens_per_second(64)
    assert 80 < single < 110  # ~100 tok/s for one sequence of an 8B model on an A100
    assert each < single
    assert total > 20 * single_total


def test_a_cancelled_sequence_leaves_the_batch_and_frees_its_cache() -> None:
    engine = Engine()
    seq = Sequence(1, prompt_tokens=1000, max_tokens=100)
    engine.submit(seq)
    engine.step()
    assert engine.kv_used > 0
    engine.cancel(seq)
    assert engine.kv_used == 0
    assert not engine.busy
