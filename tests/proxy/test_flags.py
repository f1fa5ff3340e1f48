"""The proxy's flags (each also from LLMSERVE_PROXY_<FLAG>; the command line wins) and its ports."""

from __future__ import annotations

import argparse
import contextlib
import socket

import pytest

from llmserve.proxy import main
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


def test_the_hardening_flags_have_safe_defaults_and_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMSERVE_PROXY_UPSTREAM", "http://127.0.0.1:9000")
    defaults = parse([])
    assert defaults.auth == "keys"  # keys unless told otherwise
    assert defaults.metrics_port == 9090
    assert defaults.max_body_bytes == 16 * 2**20
    assert (defaults.body_timeout, defaults.header_timeout) == (30, 10)
    assert (defaults.max_header_bytes, defaults.max_connections) == (65536, 4096)
    monkeypatch.setenv("LLMSERVE_PROXY_AUTH", "none")
    monkeypatch.setenv("LLMSERVE_PROXY_METRICS_PORT", "9191")
    monkeypatch.setenv("LLMSERVE_PROXY_MAX_BODY_BYTES", "1024")
    configured = parse([])
    assert (configured.auth, configured.metrics_port, configured.max_body_bytes) == (
        "none",
        9191,
        1024,
    )


def test_the_ports_are_tcp_sockets_and_a_taken_port_names_its_flag() -> None:
    with contextlib.closing(main.listen("127.0.0.1", 0, "--port")) as taken:
        # asyncio sets TCP_NODELAY only on sockets made with IPPROTO_TCP; without it, an answer
        # written in two parts waits for a delayed ACK (about 40 ms a request).
        assert taken.proto == socket.IPPROTO_TCP
        port = taken.getsockname()[1]
        with pytest.raises(
            main.Unusable, match=f"--metrics-port: cannot listen on 127.0.0.1:{port}"
        ):
            main.listen("127.0.0.1", port, "--metrics-port")
