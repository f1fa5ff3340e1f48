"""Trace generators (deterministic, sized as specified) and the CSV replay with its messages."""

from __future__ import annotations

import statistics

import pytest

from llmserve.fleet.trace import NAMES, TraceError, generate, load_csv

HEADER = "time_s,prompt_tokens,output_tokens\n"


@pytest.mark.parametrize("name", NAMES)
def test_a_trace_is_the_same_for_the_same_seed_and_differs_for_another(name) -> None:
    first, again, other = generate(name, 300, 7), generate(name, 300, 7), generate(name, 300, 8)
    assert first == again
    assert first.times != other.times
    assert list(first.times) == sorted(first.times)
    assert 0 <= first.times[0] <= first.times[-1] < 300


def test_sizes_are_clipped_lognormals_with_the_specified_medians() -> None:
    trace = generate("steady", 600, 1)
    assert 16 <= min(trace.prompts) <= max(trace.prompts) <= 8192
    assert 1 <= min(trace.outputs) <= max(trace.outputs) <= 2048
    assert statistics.median(trace.prompts) == pytest.approx(600, rel=0.05)
    assert statistics.median(trace.outputs) == pytest.approx(200, rel=0.05)


def test_rates_follow_each_shape() -> None:
    traces = {name: generate(name, 1200, 0).times for name in ("steady", "step", "diurnal")}

    def rate(name: str, start: float, end: float) -> float:
        return sum(1 for t in traces[name] if start <= t < end) / (end - start)

    assert rate("steady", 0, 1200) == pytest.approx(40, rel=0.05)
    assert rate("step", 400, 800) == pytest.approx(5 * rate("step", 0, 400), rel=0.1)
    assert rate("diurnal", 500, 700) > 2.5 * rate("diurnal", 0, 100)  # noon against night


def test_a_csv_trace_is_replayed_row_by_row(tmp_path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(HEADER + "0,100,20\n0.5,2000,1\n\n12.25,16,300\n")
    trace = load_csv(path, max_tokens=400_000)
    assert trace.name == "mine"
    assert trace.times == (0.0, 0.5, 12.25)
    assert trace.prompts == (100, 2000, 16)
    assert trace.outputs == (20, 1, 300)
    assert trace.duration == 13.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "line 1: the header is 'nothing'; it must be time_s,prompt_tokens,output_tokens"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "convert TIMESTAMP to seconds"),
        (HEADER, "has a header but no requests; add one row per request"),
        (HEADER + "1,2\n", "line 2: 2 fields; give three, time_s,prompt_tokens,output_tokens"),
        (HEADER + "0,1,1\nsoon,1,1\n", "line 3: time_s is 'soon'; give the arrival in seconds"),
        (HEADER + "-1,1,1\n", "line 2: time_s is '-1'"),
        (HEADER + "nan,1,1\n", "line 2: time_s is 'nan'"),
        (HEADER + "0,0,1\n", "line 2: prompt_tokens is '0'; give a whole number of tokens ≥ 1"),
        (HEADER + "0,1,2.5\n", "line 2: output_tokens is '2.5'"),
        (HEADER + "5,1,1\n4,1,1\n", "line 3: time_s 4 is before the previous row's 5; sort"),
        (HEADER + "0,300000,200000\n", "line 2: 500000 tokens do not fit the KV cache of 400000"),
    ],
)
def test_a_bad_csv_is_rejected_naming_the_file_the_line_and_the_fix(
    tmp_path, text, expected
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as raised:
        load_csv(path, max_tokens=400_000)
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_a_missing_trace_file_says_so(tmp_path) -> None:
    with pytest.raises(TraceError, match=r"cannot read the trace file .*nowhere\.csv"):
        load_csv(tmp_path / "nowhere.csv", max_tokens=400_000)
