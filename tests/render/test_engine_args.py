"""The engineArgs guard against the engines' real parsers (review L11).

vLLM and SGLang parse with argparse and its `allow_abbrev` on, so `--hos` is `--host` wherever no
other flag starts with `--hos`. These tests build an argparse parser from each engine's real flag
list (tests/data/engines/) and check, both ways, that the guard refuses exactly what that parser
would take for a flag llmserve renders: every abbreviation of one, and no other real flag.
"""

from __future__ import annotations

import argparse
from functools import cache
from typing import NoReturn

import pytest
from tests.support import ENGINE_LISTS, service

from llmserve.api import LLMService
from llmserve.render import validate_engine_args, workload
from llmserve.render.engines import PROFILES

ARGPARSE_ENGINES = {"vllm": "vllm-flags.txt", "sglang": "sglang-flags.txt"}


@cache
def flags(engine: str) -> tuple[str, ...]:
    return tuple((ENGINE_LISTS / ARGPARSE_ENGINES[engine]).read_text().split())


class ParserError(Exception):
    """The parser's error (an ambiguous prefix, say), raised instead of exiting."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ParserError(message)


@cache
def parser(engine: str) -> argparse.ArgumentParser:
    """An argparse parser with the engine's flags, as the engine builds it (allow_abbrev on)."""
    built = Parser(add_help=False)
    for flag in flags(engine):
        built.add_argument(flag, dest=flag, nargs="?", const=True)
    return built


def taken_as(engine: str, token: str) -> str | None:
    """The flag the engine's parser takes `token` for; None if none or if ambiguous."""
    try:
        namespace, _ = parser(engine).parse_known_args([token])
    except ParserError:
        return None
    set_ = [flag for flag, value in vars(namespace).items() if value is not None]
    return set_[0] if set_ else None


def owned(engine: str) -> set[str]:
    """Every spelling of every flag llmserve renders or reserves for the engine."""
    profile = PROFILES[engine]
    rendered = profile.args(workload.engine_inputs(service({"engine": engine})))
    names = {token for token in rendered if token.startswith("-")} | set(profile.fields)
    return names | {alias for alias, flag in profile.aliases.items() if flag in names}


GGUF = {"name": "org/model-3B-GGUF", "file": "*-Q4_K_M.gguf"}


def spec(engine: str, args: list[str]) -> dict[str, object]:
    model = {"model": GGUF} if engine == "llamacpp" else {}
    return {"engine": engine, "engineArgs": args, **model}


@cache
def base(engine: str) -> LLMService:
    return service(spec(engine, []))


def refused(engine: str, token: str) -> bool:
    """Whether the guard refuses `token` as a reserved flag (parsed once per engine: fast)."""
    parsed = base(engine)
    with_token = parsed.model_copy(
        update={"spec": parsed.spec.model_copy(update={"engine_args": [token]})}
    )
    problems = validate_engine_args(with_token)
    return any("reserved by llmserve" in p.message for p in problems)


@pytest.mark.parametrize("engine", sorted(ARGPARSE_ENGINES))
def test_every_abbreviation_the_parser_takes_for_an_owned_flag_is_refused(engine: str) -> None:
    mine = owned(engine)
    tried = 0
    for name in sorted(mine):
        for end in range(2, len(name)):
            prefix = name[:end]
            if prefix.strip("-") and taken_as(engine, prefix) in mine:
                tried += 1
                assert refused(engine, prefix), f"{prefix} sets {taken_as(engine, prefix)}"
    assert tried > 20  # e.g. --hos, --por, --tp (sglang), -t (vllm)


@pytest.mark.parametrize("engine", sorted(ARGPARSE_ENGINES))
def test_no_other_real_flag_is_refused(engine: str) -> None:
    mine = owned(engine)
    wrongly = [flag for flag in flags(engine) if flag not in mine and refused(engine, flag)]
    assert wrongly == []


@pytest.mark.parametrize("engine", sorted(ARGPARSE_ENGINES))
def test_a_one_letter_owned_flag_with_its_value_glued_on_is_refused(engine: str) -> None:
    for name in sorted(owned(engine)):
        if len(name) == 2 and name[1] != "-":
            assert taken_as(engine, f"{name}fp8") == name  # what argparse does with it
            assert refused(engine, f"{name}fp8")


def test_the_review_bypass_is_refused_on_sglang() -> None:
    args = ["--hos", "0.0.0.0", "--tp", "8", "--por", "9999"]  # noqa: S104 - a value under test
    problems = validate_engine_args(service(spec("sglang", args)))
    assert [p.path for p in problems] == [f"spec.engineArgs[{i}]" for i in (0, 2, 4)]
    assert [taken_as("sglang", args[i]) for i in (0, 2, 4)] == ["--host", "--tp-size", "--port"]


def test_tgi_does_not_abbreviate_but_takes_glued_short_values() -> None:
    assert not refused("tgi", "--hostnam")  # clap: an unknown flag, the launcher refuses it
    assert refused("tgi", "-p9000")
    assert refused("tgi", "--port=9000")


def test_llamacpp_takes_flags_as_written() -> None:
    assert refused("llamacpp", "--port")
    assert not refused("llamacpp", "-cb")  # not -c (the context size) with a value "b"
    assert not refused("llamacpp", "--por")
