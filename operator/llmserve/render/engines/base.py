"""What every engine module provides: an `EngineProfile` of plain data and an args function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from llmserve.api.models import Engine, Quantization

LOOPBACK: Final = "127.0.0.1"
"""Engines listen on loopback only: the proxy is the pod's one door (ENGINES.md §2.6)."""
CACHE_MOUNT: Final = "/models"
HF_HOME: Final = f"{CACHE_MOUNT}/hf"
HUB_CACHE: Final = f"{HF_HOME}/hub"
GGUF_PATH: Final = f"{CACHE_MOUNT}/model.gguf"
"""Where the download Job links the GGUF file it fetched (the first part of a split file)."""
HOME: Final = "/home/llmserve"
"""A writable home (an emptyDir): images run as a UID that may have no home of its own."""


@dataclass(frozen=True)
class EngineInputs:
    """Everything an engine's args and env depend on, resolved from the spec and operator config."""

    repo: str
    revision: str
    served_name: str
    gpus: int
    quantization: Quantization
    max_model_len: int | None
    cached: bool
    """True when the download Job fills a cache volume first (the engine then runs offline)."""
    gguf_file: str | None
    gguf_tag: str | None
    slots: int
    """Requests the engine runs at once (rendered where the engine needs to be told)."""


def opt(flag: str, value: object) -> list[str]:
    """`[flag, value]`, or nothing when the value is None."""
    return [] if value is None else [flag, str(value)]


def no_env(_: EngineInputs) -> dict[str, str]:
    """For engines configured by flags only."""
    return {}


@dataclass(frozen=True)
class EngineProfile:
    """One engine's row in the render table."""

    engine: Engine
    port: int
    """Loopback port the engine listens on (never 8080: the proxy has it)."""
    health_path: str
    """Route that answers 200 when the engine can serve; the proxy's readiness follows it."""
    metrics_path: str | None
    """Prometheus route of the engine, or None (Ollama has none)."""
    args: Callable[[EngineInputs], list[str]]
    """The engine's arguments, before the user's engineArgs."""
    probe: tuple[str, ...]
    """Exec probe: kubelet cannot reach a loopback-bound engine over HTTP (ENGINES.md §9)."""
    command: tuple[str, ...] = ()
    """Container command; empty keeps the image's entrypoint."""
    env: Callable[[EngineInputs], dict[str, str]] = no_env
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Other spellings of flags we render (`-tp` for `--tensor-parallel-size`)."""
    fields: Mapping[str, str] = field(default_factory=dict)
    """The spec field to set instead of passing a rendered flag in engineArgs."""
    underscore_flags: bool = False
    """The engine's parser accepts `--foo_bar` for `--foo-bar` (vLLM's FlexibleArgumentParser)."""
    abbreviations: bool = False
    """The engine's parser takes a prefix of a flag for the flag (`--hos` for `--host`): argparse's
    `allow_abbrev`, on unless a parser turns it off. It also takes `-t` for a `-tp` when no other
    one-dash flag starts with `-t`, whatever allow_abbrev says (Python 3.11)."""
    attached_values: bool = False
    """The engine's parser takes a one-letter flag's value attached to it (`-qfp8`, `-p9000`), as
    argparse and clap do."""
    startup_budget_seconds: int = 3600
    """How long model loading may take before the pod is restarted."""
    takes_args: bool = True
    """False for engines configured by environment only (Ollama): engineArgs are refused."""
    env_example: str = ""
    """An environment setting to show users whose engineArgs are refused."""

    def canonical(self, token: str) -> str:
        """The flag a user's engineArgs token sets, in the spelling we render."""
        flag = self._spelling(token)
        return self.aliases.get(flag, flag)

    def _spelling(self, token: str) -> str:
        """The flag as the engine's parser reads it, before aliases.

        Without `=value`, and for vLLM with `-` for `_` and without a dotted config key.
        """
        flag = token.split("=", 1)[0]
        if self.underscore_flags:
            flag = flag.replace("_", "-").split(".", 1)[0]
        return flag

    def sets(self, token: str, owned: frozenset[str]) -> str | None:
        """Which of the `owned` flags (in the spelling we render) `token` sets, if any.

        Besides the flag itself, an alias or `--flag=value`: with `abbreviations`, any prefix of an
        owned flag or alias. argparse takes a prefix that fits one flag only and fails on one that
        fits several, so every prefix of an owned flag is refused, not only the unique ones. With
        `attached_values`, a one-letter owned flag with its value glued on.
        """
        flag = self.canonical(token)
        if flag in owned:
            return flag
        spelled = self._spelling(token)
        spellings = sorted(owned | {a for a, f in self.aliases.items() if f in owned})
        for name in spellings:
            abbreviated = self.abbreviations and name.startswith(spelled) and spelled.strip("-")
            one_letter = len(name) == 2 and name[1] != "-"  # `-q`
            glued = self.attached_values and one_letter and spelled.startswith(name)
            if abbreviated or glued:
                return self.aliases.get(name, name)
        return None


def python_health_probe(port: int, path: str) -> tuple[str, ...]:
    """Exec probe for images that ship python3 but maybe not curl."""
    script = f"import urllib.request as r; r.urlopen('http://{LOOPBACK}:{port}{path}', timeout=5)"
    return ("python3", "-c", script)


def curl_health_probe(port: int, path: str) -> tuple[str, ...]:
    """Exec probe for images that ship curl."""
    return ("curl", "-fsS", "-o", "/dev/null", "--max-time", "5", f"http://{LOOPBACK}:{port}{path}")


COMMON_FIELDS: Final = {
    "--port": "nothing: the port is part of the pod layout",
    "--host": "nothing: the engine listens on loopback behind the proxy",
}
CONFIG_FILE: Final = {
    "--config": "nothing: a config file could set the flags llmserve owns; give each setting "
    "as a flag of its own",
}
"""vLLM's and SGLang's `--config FILE.yaml`, which reads flags from a file."""
