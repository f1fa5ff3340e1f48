"""Every flag and quantization value rendered for vLLM, TGI and SGLang exists in the target engine.

The lists are tests/data/engines/*.txt (one entry a line; the README there says where each comes
from and how to refresh it). vLLM's names are normalised as its parser does: `_` to `-`, dotted
config sub-keys cut. llama.cpp and Ollama have no list.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any, Final

import pytest
from tests.render.cases import engine_container, golden_children, golden_service, goldens_of, stem
from tests.support import ENGINE_LISTS, service

from llmserve import render
from llmserve.api.config import OperatorConfig
from llmserve.api.engines import FACTS
from llmserve.render import workload
from llmserve.render.engines import PROFILES, sglang, tgi, vllm

FLAG_LISTS: Final = {"vllm": "vllm-flags.txt", "tgi": "tgi-flags.txt", "sglang": "sglang-flags.txt"}
QUANTIZATION_LISTS: Final = {"vllm": "vllm-quantization.txt", "tgi": "tgi-quantize.txt"}
QUANTIZATION_FLAGS: Final = {
    "vllm": "--quantization",
    "tgi": "--quantize",
    "sglang": "--quantization",
}
QUANTIZATION_TABLES: Final = {
    "vllm": vllm.QUANTIZATION,
    "tgi": tgi.QUANTIZATION,
    "sglang": sglang.QUANTIZATION,
}
SGLANG_QUANTIZATION_CHOICES: Final = frozenset(
    # SGLang 0.5.23 enforces these with argparse choices; no reference file has them (ENGINES.md §4)
    [
        "awq",
        "fp8",
        "mxfp8",
        "gptq",
        "gptq_marlin",
        "awq_marlin",
        "bitsandbytes",
        "gguf",
        "modelopt",
        "modelopt_fp8",
        "modelopt_fp4",
        "nvfp4_online",
        "modelopt_mixed",
        "petit_nvfp4",
        "w8a8_int8",
        "w8a8_fp8",
        "moe_wna16",
        "w4afp8",
        "mxfp4",
        "auto-round",
        "auto-round-int8",
        "compressed-tensors",
        "modelslim",
        "mxfp_w4a8",
        "quark",
        "quark_int4fp8_moe",
        "quark_mxfp4",
        "mlx_q4",
        "mlx_q8",
        "unquant",
        "humming",
    ]
)
LAUNCHERS: Final = {
    # What runs before the engine's own arguments; `-m` here is python's, not SGLang's.
    "vllm": ["vllm", "serve"],
    "tgi": [],  # the image's entrypoint runs text-generation-launcher with the container args
    "sglang": ["python3", "-m", "sglang.launch_server"],
}
REMOVED_VLLM_FLAGS: Final = (
    "--swap-space",
    "--task",
    "--device",
    "--max-seq-len-to-capture",
    "--disable-frontend-multiprocessing",
    "--guided-decoding-backend",
    "--speculative-model",
    "--num-speculative-tokens",
    "--use-v2-block-manager",
)
CHECKED: Final = goldens_of(*FLAG_LISTS)


def load(name: str) -> frozenset[str]:
    """One reference list; a missing file fails the test (never skips it)."""
    path = ENGINE_LISTS / name
    if not path.is_file():
        pytest.fail(
            f"engine list {path} is missing: the engine flag checks need tests/data/engines/ "
            "(see its README); restore it rather than skipping these tests"
        )
    return frozenset(path.read_text(encoding="ascii").splitlines())


def flag_names(argv: list[str], *, vllm_style: bool = False) -> set[str]:
    """Option names in argv; values such as "-1" (`--max-model-len -1`) are skipped."""
    names = set()
    for token in argv:
        if not token.startswith("-") or token.lstrip("-").replace(".", "", 1).isdigit():
            continue
        name = token.split("=", 1)[0]
        if vllm_style:  # vLLM accepts --foo_bar and dotted config keys (--compilation-config.mode)
            name = name.replace("_", "-").split(".", 1)[0]
        names.add(name)
    return names


def engine_argv(engine: str, container: dict[str, Any]) -> list[str]:
    """The engine's own arguments: command + args after the launcher."""
    argv = [*container.get("command", []), *container["args"]]
    launcher = LAUNCHERS[engine]
    assert argv[: len(launcher)] == launcher, f"{engine} no longer starts with {launcher}: {argv}"
    return argv[len(launcher) :]


def values_of(flag: str, argv: list[str]) -> list[str]:
    """Every value given to `flag`, as `flag value` or `flag=value`."""
    values = [after for before, after in itertools.pairwise(argv) if before == flag]
    return values + [t.split("=", 1)[1] for t in argv if t.startswith(f"{flag}=")]


def test_the_goldens_include_every_checked_engine() -> None:
    assert {golden_service(p).spec.engine for p in CHECKED} == set(FLAG_LISTS)


@pytest.mark.parametrize("source", CHECKED, ids=stem)
def test_every_rendered_flag_is_accepted_by_the_engine(source: Path) -> None:
    engine = golden_service(source).spec.engine
    argv = engine_argv(engine, engine_container(golden_children(source)))
    names = flag_names(argv, vllm_style=engine == "vllm")
    assert names, "no flags found: the argv extraction is broken"
    unknown = names - load(FLAG_LISTS[engine])
    assert not unknown, f"flags not accepted by {engine}: {sorted(unknown)}"


@pytest.mark.parametrize("source", goldens_of(*QUANTIZATION_LISTS), ids=stem)
def test_every_rendered_quantization_value_is_accepted(source: Path) -> None:
    engine = golden_service(source).spec.engine
    argv = engine_argv(engine, engine_container(golden_children(source)))
    rendered = set(values_of(QUANTIZATION_FLAGS[engine], argv))
    unknown = rendered - load(QUANTIZATION_LISTS[engine])
    assert not unknown, f"{engine} does not accept quantization {sorted(unknown)}"


@pytest.mark.parametrize("engine", sorted(QUANTIZATION_TABLES))
def test_every_supported_neutral_quantization_maps_to_an_accepted_value(engine: str) -> None:
    table = QUANTIZATION_TABLES[engine]
    supported = FACTS[engine].quantizations
    assert supported <= table.keys(), f"{engine}: no mapping for {sorted(supported - table.keys())}"
    accepted = (
        load(QUANTIZATION_LISTS[engine])
        if engine in QUANTIZATION_LISTS
        else SGLANG_QUANTIZATION_CHOICES
    )
    for neutral in sorted(supported):
        value = table[neutral]
        assert value is None or value in accepted, f"{engine}: {neutral} -> {value} is not accepted"


@pytest.mark.parametrize("engine", sorted(QUANTIZATION_TABLES))
def test_no_mapping_for_a_quantization_the_engine_rejects(engine: str) -> None:
    # A row for an unsupported value would be dead code at best; at worst validation and rendering
    # disagree about what the engine can load.
    assert set(QUANTIZATION_TABLES[engine]) <= FACTS[engine].quantizations


@pytest.mark.parametrize(
    ("engine", "quantization", "cached", "max_model_len"),
    [
        (engine, quantization, cached, max_model_len)
        for engine in sorted(QUANTIZATION_TABLES)
        for quantization in sorted(FACTS[engine].quantizations)
        for cached in (True, False)
        for max_model_len in (None, 4096)
    ],
)
def test_every_combination_renders_accepted_flags_and_values(
    engine: str, quantization: str, *, cached: bool, max_model_len: int | None
) -> None:
    spec: dict[str, Any] = {
        "engine": engine,
        "quantization": quantization,
        "gpus": 2,
        "cache": {"enabled": cached},
        "model": {
            "name": "org/model-8B",
            "tokenSecretRef": {"name": "hf"},
            "servedName": "m",
        },
    }
    if max_model_len:
        spec["maxModelLen"] = max_model_len
    children = render.render(service(spec), OperatorConfig())
    argv = engine_argv(engine, engine_container(children))
    unknown = flag_names(argv, vllm_style=engine == "vllm") - load(FLAG_LISTS[engine])
    assert not unknown, f"flags not accepted by {engine}: {sorted(unknown)}"
    expected = QUANTIZATION_TABLES[engine][quantization]
    assert values_of(QUANTIZATION_FLAGS[engine], argv) == ([] if expected is None else [expected])


def test_removed_vllm_flags_are_not_in_the_reference_list() -> None:
    assert not set(REMOVED_VLLM_FLAGS) & load("vllm-flags.txt")


@pytest.mark.parametrize("source", goldens_of("vllm"), ids=stem)
def test_removed_vllm_flags_are_never_rendered(source: Path) -> None:
    argv = engine_argv("vllm", engine_container(golden_children(source)))
    assert not flag_names(argv, vllm_style=True) & set(REMOVED_VLLM_FLAGS)


def test_the_profiles_render_no_removed_vllm_flag_for_any_input() -> None:
    # The profile's own args, for the broadest input: every optional value set.
    spec = {"gpus": 8, "maxModelLen": 131072, "quantization": "fp8", "cache": {"enabled": False}}
    argv = PROFILES["vllm"].args(workload.engine_inputs(service(spec)))
    assert not flag_names(argv, vllm_style=True) & set(REMOVED_VLLM_FLAGS)


def test_the_flag_extraction_follows_the_reference_method() -> None:
    argv = [
        "--max-model-len",
        "-1",
        "--max_num_seqs=8",
        "--compilation-config.mode",
        "3",
        "-tp",
        "2",
    ]
    assert flag_names(argv, vllm_style=True) == {
        "--max-model-len",
        "--max-num-seqs",
        "--compilation-config",
        "-tp",
    }
    assert flag_names(["--num-shard", "2", "--max-input-tokens=10"]) == {
        "--num-shard",
        "--max-input-tokens",
    }


def test_a_missing_reference_list_fails_with_a_clear_message(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ENGINE_LISTS", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        load("vllm-flags.txt")
