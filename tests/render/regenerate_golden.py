"""Regenerate the golden files: tests/data/llmservices/NAME.yaml -> tests/data/expected/NAME.yaml.

Run it as `make golden` (that is `.venv/bin/python tests/render/regenerate_golden.py`), then
review the diff with `git diff tests/data/expected` before committing: every change in there is a
change in what llmserve applies to users' clusters. Each expected file is exactly what
`llmserve render -f NAME.yaml` prints on stdout; expected files whose input is gone are removed.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Final, TextIO

from llmserve import cli

ROOT: Final = Path(__file__).resolve().parents[2]
INPUTS: Final = ROOT / "tests" / "data" / "llmservices"
EXPECTED: Final = ROOT / "tests" / "data" / "expected"


def inputs() -> list[Path]:
    """Every golden input, in a stable order."""
    return sorted(INPUTS.glob("*.yaml"))


def expected_path(source: Path) -> Path:
    """Where the expected output of one input lives."""
    return EXPECTED / source.name


def render_file(source: Path) -> str:
    """What `llmserve render -f SOURCE` prints on stdout; raises when it exits non-zero."""
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["render", "-f", str(source)], out, err)
    if code != 0:
        raise RuntimeError(f"llmserve render -f {source} exited {code}:\n{err.getvalue()}")
    return out.getvalue()


def _shown(path: Path) -> str:
    """A path for messages: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _say(text: str, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(text + "\n")


def main() -> int:
    """Write every expected file; report what changed; return the exit status."""
    EXPECTED.mkdir(parents=True, exist_ok=True)
    failed = 0
    wanted = set()
    for source in inputs():
        target = expected_path(source)
        wanted.add(target.name)
        try:
            text = render_file(source)
        except RuntimeError as error:
            _say(f"FAILED  {_shown(source)}: {error}", sys.stderr)
            failed += 1
            continue
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if old != text:
            target.write_text(text, encoding="utf-8")
            verb = "created" if old is None else "updated"
            _say(f"{verb} {_shown(target)}")
    for stale in sorted(EXPECTED.glob("*.yaml")):
        if stale.name not in wanted:
            stale.unlink()
            _say(f"removed {_shown(stale)} (its input is gone)")
    _say(f"{len(wanted) - failed} golden files up to date; review them with: git diff tests/data")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
