"""Golden files: `llmserve render -f` of every tests/data/llmservices/*.yaml, byte for byte.

A failure here means rendering changed. If the change is intended, run `make golden` and review the
diff of tests/data/expected/ like any other code change: it is what users' clusters will receive.
"""

from __future__ import annotations

import difflib
import re
import shutil
from pathlib import Path

import pytest
import yaml
from tests.render import regenerate_golden
from tests.render.cases import GOLDEN, golden_service, stem
from tests.support import run_llmserve, service

from llmserve import cli, render
from llmserve.api import ENGINES
from llmserve.api.config import OperatorConfig

HOW_TO_FIX = "run `make golden` and review the diff (git diff tests/data/expected)"
CASES = (str.lower, str.capitalize, str.upper)
# kubectl reads YAML with go-yaml v2 (YAML 1.1): these plain scalars are booleans and nulls there.
GO_YAML_WORDS = frozenset(
    {
        f(word)
        for word in ("y", "yes", "n", "no", "true", "false", "on", "off", "null")
        for f in CASES
    }
    | {"~"}
    | {f"{sign}.{f(word)}" for sign in ("", "+", "-") for word in ("inf", "nan") for f in CASES}
)
GO_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
STRING_TAG = "tag:yaml.org,2002:str"


def _diff(expected: str, actual: str, name: str) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(keepends=True),
        actual.splitlines(keepends=True),
        fromfile=f"expected/{name}",
        tofile="rendered",
    )
    return "".join(list(lines)[:80])


def _go_reads_as_number(plain: str) -> bool:
    digits = plain.replace("_", "")  # go-yaml drops underscores before parsing numbers
    if GO_YAML_FLOAT.fullmatch(digits):
        return True
    try:
        int(digits, 0)  # strconv.ParseInt(s, 0, 64) takes the same 0x, 0o and 0b prefixes
    except ValueError:
        return bool(re.fullmatch(r"[-+]?0[0-7]+", digits))  # Go's base 0 reads 0755 as octal
    return True


def go_yaml_misreads(text: str) -> list[str]:
    """Unquoted strings in `text` that kubectl would read as a boolean, null or number."""
    resolver = yaml.resolver.Resolver()
    found = []
    for event in yaml.parse(text):
        if not isinstance(event, yaml.ScalarEvent) or event.style is not None:
            continue  # quoted or block scalars are strings everywhere
        if resolver.resolve(yaml.ScalarNode, event.value, (True, False)) != STRING_TAG:
            continue  # a real number or boolean in the manifest
        value = event.value
        if value in GO_YAML_WORDS or (value[:1] in "0123456789+-." and _go_reads_as_number(value)):
            found.append(value)
    return found


def test_there_are_golden_files() -> None:
    assert len(GOLDEN) >= 15, f"golden inputs missing from {regenerate_golden.INPUTS}"


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_render_output_equals_the_expected_file(source: Path) -> None:
    expected_file = regenerate_golden.expected_path(source)
    assert expected_file.exists(), f"{expected_file.name} is missing: {HOW_TO_FIX}"
    expected = expected_file.read_text(encoding="utf-8")
    actual = regenerate_golden.render_file(source)
    assert actual == expected, (
        f"rendering {source.name} changed: {HOW_TO_FIX}\n{_diff(expected, actual, source.name)}"
    )


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_kubectl_reads_every_string_as_a_string(source: Path) -> None:
    text = regenerate_golden.expected_path(source).read_text(encoding="utf-8")
    assert not go_yaml_misreads(text)


def test_the_misread_check_finds_unquoted_yaml_1_1_scalars() -> None:
    text = "a: [y, 'n', 4385e12, '1e3', 0o17, 12, true, 8Gi, 0.9x, v1.0]\n"
    assert go_yaml_misreads(text) == ["y", "4385e12", "0o17"]


def test_ambiguous_user_strings_are_quoted_for_kubectl() -> None:
    spec = {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "revision": "4385e12"}}
    children = render.render(
        service({**spec, "model": {**spec["model"], "servedName": "y"}}), OperatorConfig()
    )
    assert not go_yaml_misreads(cli.dump_yaml(children))


def test_every_input_has_an_expected_file_and_every_expected_file_an_input() -> None:
    inputs = {p.name for p in regenerate_golden.INPUTS.glob("*")}
    expected = {p.name for p in regenerate_golden.EXPECTED.glob("*")}
    assert not inputs - expected, f"inputs without expected output: {sorted(inputs - expected)}"
    assert not expected - inputs, f"expected files without input: {sorted(expected - inputs)}"
    assert all(name.endswith(".yaml") for name in inputs | expected)


def test_the_goldens_cover_every_engine() -> None:
    engines = {golden_service(p).spec.engine for p in GOLDEN}
    assert engines == set(ENGINES)


@pytest.mark.parametrize("source", GOLDEN, ids=stem)
def test_the_fit_check_runs_on_every_gpu_golden(source: Path) -> None:
    service = golden_service(source)
    report = render.check(service, OperatorConfig())
    if service.spec.gpus == 0:
        assert report.verdict == "skipped"
    else:
        assert report.verdict == "fits", f"{source.name}: {report.reason}"


def test_the_console_script_prints_the_same_bytes() -> None:
    stdin = "\n---\n".join(p.read_text(encoding="utf-8") for p in GOLDEN)
    done = run_llmserve("render", "-f", "-", stdin=stdin)
    assert done.returncode == 0, done.stderr
    expected = "".join(
        regenerate_golden.expected_path(p).read_text(encoding="utf-8") for p in GOLDEN
    )
    assert done.stdout == expected, HOW_TO_FIX


def test_regenerating_writes_missing_files_and_removes_stale_ones(tmp_path, monkeypatch) -> None:
    inputs, expected = tmp_path / "llmservices", tmp_path / "expected"
    inputs.mkdir()
    expected.mkdir()
    shutil.copy(GOLDEN[0], inputs / GOLDEN[0].name)
    (expected / "gone.yaml").write_text("stale\n")
    monkeypatch.setattr(regenerate_golden, "INPUTS", inputs)
    monkeypatch.setattr(regenerate_golden, "EXPECTED", expected)

    assert regenerate_golden.main() == 0

    assert sorted(p.name for p in expected.iterdir()) == [GOLDEN[0].name]
    written = (expected / GOLDEN[0].name).read_text(encoding="utf-8")
    assert written == regenerate_golden.expected_path(GOLDEN[0]).read_text(encoding="utf-8")


def test_regenerating_fails_on_an_input_that_does_not_render(tmp_path, monkeypatch, capsys) -> None:
    inputs, expected = tmp_path / "llmservices", tmp_path / "expected"
    inputs.mkdir()
    (inputs / "broken.yaml").write_text("apiVersion: llmserve.io/v1alpha1\nkind: LLMService\n")
    monkeypatch.setattr(regenerate_golden, "INPUTS", inputs)
    monkeypatch.setattr(regenerate_golden, "EXPECTED", expected)

    assert regenerate_golden.main() == 1
    assert "broken.yaml" in capsys.readouterr().err
    assert not list(expected.iterdir())
