"""`--link PATH`: the GGUF engines' fixed path to the file fetched, one file or every split part."""

from __future__ import annotations

import pytest
from tests.fetch.runner import fetch

from llmserve.fetch import link
from llmserve.fetch.errors import FetchError

SPLIT = [f"Q6_K/tiny-Q6_K-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]


def test_a_single_gguf_file_is_linked_relatively(gguf_repo, tmp_path):
    models = tmp_path / "models"
    path = models / "model.gguf"
    args = (
        "--repo",
        "org/tiny-GGUF",
        "--hf-home",
        str(models / "hf"),
        "--include",
        "*-Q4_K_M.gguf",
    )
    code, out, err = fetch(*args, "--link", str(path))
    assert code == 0, err
    target = f"hf/hub/models--org--tiny-GGUF/snapshots/{gguf_repo.commit}/tiny-Q4_K_M.gguf"
    assert path.readlink().as_posix() == target  # relative: the volume may be mounted elsewhere
    assert path.read_bytes() == b"GGUF q4_k_m"
    assert out.splitlines()[-1] == f"linked {path} -> tiny-Q4_K_M.gguf"
    assert sorted(p.name for p in models.iterdir()) == ["hf", "model.gguf"]


def test_every_part_of_a_split_gguf_is_linked_next_to_the_path(gguf_repo, tmp_path):
    models = tmp_path / "models"
    path = models / "model.gguf"
    args = ("--repo", "org/tiny-GGUF", "--hf-home", str(models / "hf"), "--include", "*Q6_K-*.gguf")
    code, out, err = fetch(*args, "--link", str(path))
    assert code == 0, err
    # llama.cpp derives part k's name from the path it opens: it must be given the first part.
    first = models / "model-00001-of-00003.gguf"
    assert str(path.readlink()) == first.name
    for index, part in enumerate(SPLIT, start=1):
        linked = models / f"model-{index:05d}-of-00003.gguf"
        assert linked.read_bytes() == gguf_repo.files[part]
        assert linked.readlink().as_posix().endswith(part)
    assert f"3 parts: open {first}" in out


@pytest.mark.usefixtures("gguf_repo")
def test_linking_again_replaces_the_links(tmp_path):
    path = tmp_path / "models" / "model.gguf"
    base = (
        "--repo",
        "org/tiny-GGUF",
        "--hf-home",
        str(tmp_path / "models" / "hf"),
        "--link",
        str(path),
    )
    assert fetch(*base, "--include", "*-Q4_K_M.gguf")[0] == 0
    assert fetch(*base, "--include", "*-Q8_0.gguf")[0] == 0
    assert path.read_bytes() == b"GGUF q8_0"


@pytest.mark.usefixtures("gguf_repo")
def test_a_glob_that_misses_split_parts_is_refused_before_downloading(hub, tmp_path):
    path = tmp_path / "model.gguf"
    args = ("--repo", "org/tiny-GGUF", "--hf-home", str(tmp_path / "hf"), "--link", str(path))
    code, _, err = fetch(*args, "--include", "*-00001-of-00003.gguf")
    assert code == 1
    assert err == (
        "error: Q6_K/tiny-Q6_K-00001-of-00003.gguf is a split GGUF of 3 parts but "
        "Q6_K/tiny-Q6_K-00002-of-00003.gguf does not match spec.model.file; match every part, "
        "e.g. 'tiny-Q6_K-*-of-00003.gguf'\n"
    )
    assert hub.requests("GET") == []
    assert not path.exists()


@pytest.mark.parametrize(
    ("files", "chosen"),
    [
        (["b.gguf", "a.gguf", "README.md"], ["a.gguf"]),
        ([*reversed(SPLIT), "z.gguf"], SPLIT),
        (["x/Model.GGUF"], ["x/Model.GGUF"]),
    ],
)
def test_choose_takes_the_first_gguf_file_or_all_its_parts(files, chosen):
    assert link.choose(files, ["*"]) == chosen


def test_choose_needs_a_gguf_file():
    with pytest.raises(FetchError, match=r"none of the files matching config\.json is one"):
        link.choose(["config.json"], ["config.json"])


def test_a_directory_in_the_way_is_reported(tmp_path):
    (tmp_path / "model.gguf").mkdir()
    (tmp_path / "model.gguf" / "keep").write_text("")
    with pytest.raises(FetchError, match=r"cannot create the link .*model\.gguf"):
        link.make(tmp_path / "snapshot", ["a.gguf"], tmp_path / "model.gguf")
