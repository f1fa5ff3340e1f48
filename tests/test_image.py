"""The image: the lock it installs, its Dockerfile, and its install step run outside a container.

There is no container engine on the CI machines, so the Dockerfile is checked by reading it (and by
hadolint in `make lint`), and its install step runs here: the wheel built from the same sources,
installed with the lock into a clean virtualenv by `testbin.locked_venv`, the function that also
makes the benchmarks' runtime environment.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Final

import pytest
from packaging.requirements import Requirement
from tests.support import ROOT
from tools import lock, testbin

from llmserve import __version__, cli

DOCKERFILE: Final = ROOT / "Dockerfile"
PYPROJECT: Final = tomllib.loads((ROOT / "pyproject.toml").read_text())
UID: Final = 10001
"""The image's user; the Helm chart's runAsUser names the same number."""


def locked() -> dict[str, tuple[str, list[str]]]:
    return lock.read(testbin.LOCK.read_text())


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (instruction, arguments), continuation lines joined, comments dropped."""
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order."""
    split: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            split.append([])
        if split:
            split[-1].append(instruction)
    return split


def test_the_lock_pins_every_runtime_dependency_at_a_version_pyproject_allows() -> None:
    pins = locked()
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        name = lock.canonical(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, pyproject.toml wants {requirement}: "
            "run `make lock`"
        )


def test_every_locked_package_has_an_exact_version_and_sha256_hashes() -> None:
    pins = locked()
    assert len(pins) >= len(PYPROJECT["project"]["dependencies"])
    for name, (version, hashes) in pins.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), name
        assert hashes, f"{name} has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_the_lock_holds_no_development_tool() -> None:
    dev = {
        lock.canonical(Requirement(r).name)
        for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
    }
    assert not dev & set(locked()), "development tools must not reach the image"


def test_the_lock_reader_reads_continuation_lines_and_skips_comments() -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    text = (
        f"# a header\nPyYAML==6.0.3 \\\n    --hash=sha256:{a} \\\n    --hash=sha256:{b}\n"
        f"kopf==1.45.2 \\\n    --hash=sha256:{c}\n"
    )
    assert lock.read(text) == {"pyyaml": ("6.0.3", [a, b]), "kopf": ("1.45.2", [c])}


def test_the_dockerfile_installs_the_lock_the_way_the_tests_do() -> None:
    build = stages()[0]
    runs = [args for word, args in build if word == "RUN"]
    installs = [r for r in runs if "-r /tmp/requirements.lock" in r]
    assert len(installs) == 1, runs
    assert " ".join(testbin.LOCKED_INSTALL) in installs[0]
    assert ("COPY", "requirements.lock /tmp/requirements.lock") in build
    wheel = next(r for r in runs if "pip wheel" in r)
    assert "--no-deps" in wheel
    assert re.search(r"install --no-deps /dist/llmserve-\*\.whl", wheel)
    assert "pip --python /opt/llmserve/bin/python check" in wheel


def test_the_image_runs_llmserve_as_a_fixed_non_root_user() -> None:
    build, runtime = stages()
    bases = {args.split()[0] for word, args in build + runtime if word == "FROM"}
    assert len(bases) == 1
    (base,) = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    final = dict(runtime[-3:])
    assert final == {"USER": f"{UID}:{UID}", "ENTRYPOINT": '["llmserve"]', "CMD": '["--help"]'}
    env = " ".join(args for word, args in runtime if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "PATH=/opt/llmserve/bin:$PATH" in env
    assert ("ARG", f"VERSION={__version__}") in runtime, "the version label is pyproject's"
    labels = " ".join(args for word, args in runtime if word == "LABEL")
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert ("COPY", "--from=build /opt/llmserve /opt/llmserve") in runtime


def test_the_runtime_stage_installs_nothing_and_drops_the_build_tools() -> None:
    runtime = stages()[1]
    runs = " && ".join(args for word, args in runtime if word == "RUN")
    assert "pip install" not in runs
    assert "apt-get" not in runs
    assert "pip uninstall --yes --no-cache-dir pip setuptools wheel" in runs
    assert f"--uid {UID} --gid {UID}" in runs


def test_the_runtime_environment_is_made_once_per_lock(tmp_path, monkeypatch) -> None:
    made: list[Path] = []

    def make(venv: Path) -> Path:
        venv.mkdir(parents=True)
        made.append(venv)
        return venv / "bin" / "python"

    monkeypatch.setattr(testbin, "CACHE", tmp_path)
    monkeypatch.setattr(testbin, "locked_venv", make)
    python = testbin.runtime_python()
    digest = hashlib.sha256(testbin.LOCK.read_bytes()).hexdigest()[:16]
    assert made == [tmp_path / "runtime" / digest]
    assert python == made[0] / "bin" / "python"
    assert testbin.runtime_python() == python
    assert len(made) == 1, "made again although the lock did not change"


def copy_sources(dest: Path) -> Path:
    """What the Dockerfile copies to build the wheel (.dockerignore leaves the rest out)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "operator", dest / "operator", ignore=ignore)
    return dest


def build_constraints(dest: Path) -> Path:
    """The Dockerfile's pinned build backend, as pip build constraints."""
    pins = re.findall(r"\b(?:setuptools|wheel)==[0-9.]+", DOCKERFILE.read_text())
    assert sorted(p.split("==")[0] for p in pins) == ["setuptools", "wheel"], pins
    dest.write_text("\n".join(pins) + "\n")
    return dest


@pytest.mark.slow
def test_the_images_install_step_gives_a_working_llmserve_without_dev_tools(tmp_path) -> None:
    source = copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    constraints = build_constraints(tmp_path / "build.txt")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(  # noqa: S603 - pip of this interpreter, fixed arguments
        [*pip, "wheel", "--no-deps", "--build-constraint", str(constraints),
         "--wheel-dir", str(dist), str(source)],
        check=True,
    )  # fmt: skip
    (wheel,) = dist.glob("llmserve-*.whl")
    assert wheel.name == f"llmserve-{__version__}-py3-none-any.whl"
    python = testbin.locked_venv(tmp_path / "venv", wheel)
    bin_dir = python.parent
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LC_ALL": "C.UTF-8",
    }

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - the venv's own console script and Python
            argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
        )

    script = bin_dir / "llmserve"
    assert script.read_text().splitlines()[0] == f"#!{python}", "the command runs another Python"
    helped = run(str(script), "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("render", "crd", "fit", "operator", "proxy", "sim", "fetch-model"):
        assert command in helped.stdout
    assert run(str(script), "--version").stdout.strip() == f"llmserve {__version__}"

    example = ROOT / "examples" / "vllm.yaml"
    rendered = run(str(script), "render", "-f", str(example))
    assert rendered.returncode == 0, rendered.stderr
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["render", "-f", str(example)], out, err) == 0
    assert rendered.stdout == out.getvalue(), "the installed llmserve renders differently"

    probe = (
        "import importlib.util as u, llmserve; print(llmserve.__file__); "
        "print([m for m in ('pip', 'pytest', 'kubernetes', 'mypy', 'ruff') if u.find_spec(m)])"
    )
    where = run(str(python), "-c", probe)
    module, tools = where.stdout.splitlines()
    assert Path(module).is_relative_to(tmp_path / "venv"), "llmserve came from the checkout"
    assert tools == "[]", f"development tools in the image's environment: {tools}"
