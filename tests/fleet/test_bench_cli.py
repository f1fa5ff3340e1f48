"""`llmserve bench autoscale` as a user runs it: JSON rows, the table, plots, bad input."""

from __future__ import annotations

import io
import json
import sys

import pytest

from llmserve import cli
from llmserve.fleet import plot
from llmserve.fleet.policies import POLICIES

SHORT = ("bench", "autoscale", "--duration", "120", "--cold-start", "30")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_json_has_one_row_per_trace_and_policy_and_the_oracle_is_the_unit() -> None:
    code, out, err = run(*SHORT, "--traces", "steady,spiky", "-o", "json", "--no-plots")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["trace"], r["policy"]) for r in rows] == [
        (trace, policy) for trace in ("steady", "spiky") for policy in POLICIES
    ]
    for row in rows:
        assert {"trace", "policy", "slo_attainment", "gpu_minutes", "oracle_ratio"} <= set(row)
        assert 0 <= row["slo_attainment"] <= 1
        assert row["gpu_minutes"] > 0
    assert all(r["oracle_ratio"] == 1 for r in rows if r["policy"] == "oracle")
    assert all(isinstance(r["goal_met"], bool) for r in rows if r["policy"] == "llmserve")
    assert err.count("bench autoscale: steady/") == len(POLICIES)  # progress, one line per run


def test_the_table_says_whether_the_goal_held_and_the_plots_are_drawn(tmp_path) -> None:
    code, out, err = run(
        *SHORT, "--traces", "step", "--policies", "llmserve,oracle", "--plots", str(tmp_path)
    )
    assert code == 0, err
    assert out.splitlines()[0].split()[:3] == ["trace", "policy", "SLO"]
    assert "step      oracle" in out
    assert "goal step: " in out
    assert (tmp_path / "step.png").read_bytes()[:4] == b"\x89PNG"


def test_without_matplotlib_the_table_is_printed_and_stderr_says_how_to_get_plots(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    err = io.StringIO()
    assert plot.draw({"step": {}}, tmp_path, err) == []
    assert "pip install 'llmserve[bench]'" in err.getvalue()


def test_a_trace_file_is_replayed_under_its_own_name(tmp_path) -> None:
    path = tmp_path / "mine.csv"
    rows = "".join(f"{t / 10},500,100\n" for t in range(600))
    path.write_text("time_s,prompt_tokens,output_tokens\n" + rows)
    code, out, err = run(*SHORT, "--trace-file", str(path), "-o", "json", "--no-plots")
    assert code == 0, err
    assert {json.loads(line)["trace"] for line in out.splitlines()} == {"mine"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--traces", "steady,nope"), "--traces: unknown nope; choose among steady,diurnal"),
        (("--policies", "hpa"), "--policies: unknown hpa; choose among llmserve,hpa-gpu"),
        (("--duration", "0"), "--duration is 0; give a number of seconds above 0"),
        (("--cold-start", "-1"), "--cold-start is -1"),
        (("--trace-file", "/nonexistent.csv"), "cannot read the trace file /nonexistent.csv"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_1(argv, message) -> None:
    code, out, err = run("bench", "autoscale", "--no-plots", *argv)
    assert code == 1
    assert out == ""
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
