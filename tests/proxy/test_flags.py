"""Every proxy flag can come from LLMSERVE_PROXY_<FLAG>; a flag on the command line wins."""

from __future__ import annotations

import argparse

import pytest

from llmserve.proxy.flags import add_arguments


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_come_from_the_environment_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMSERVE_PROXY_UPSTREAM", "http://127.0.0.1:9000")
    monkeypatch.setenv("LLMSERVE_PROXY_MAX_QUEUE", "7")
    monkeypatch.setenv("LLMSERVE_PROXY_API_KEYS_FILE", "/etc/keys")
    args = parse(["--max-queue", "9"])
    assert args.upstream == "http://127.0.0.1:9000"
    assert args.max_queue == 9
    assert args.api_keys_file == "/etc/keys"
    monkeypatch.delenv("LLMSERVE_PROXY_MAX_QUEUE")
    assert parse([]).max_queue == 256


def test_the_upstream_is_required_from_one_or_the_other(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LLMSERVE_PROXY_UPSTREAM", raising=False)
    with pytest.raises(SystemExit):
        parse([])
    assert "--upstream" in capsys.readouterr().err
