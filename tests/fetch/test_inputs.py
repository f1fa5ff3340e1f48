"""fetch-model writes only inside its cache (review L8), whatever its arguments and the Hub say.

The arguments are held to the formats the LLMService API enforces before any request; the Hub's
listing may not name a path outside the repo; and `refs/<revision>`, the one path built from an
argument alone, is checked again before it is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fetch.fakehub import FakeRepo
from tests.fetch.runner import WEIGHTS, fetch

from llmserve.fetch import download
from llmserve.fetch.errors import FetchError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ESCAPE = "../../../../escaped-ref"
"""The review's revision: from refs/, four steps up leave HF_HOME."""


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() or p.is_symlink()}


def test_a_revision_that_climbs_out_of_the_cache_is_refused_before_any_request(hub, tmp_path):
    # A Hub (a fake one; the real Hub's ref rules forbid it) that resolves the revision.
    hub.add(FakeRepo("org/tiny", hub.repos["org/tiny"].files, branches=("main", ESCAPE)))
    home = tmp_path / "a" / "b" / "hf"
    code, _, err = fetch("--repo", "org/tiny", "--revision", ESCAPE, "--hf-home", str(home))
    assert code == 1
    assert err.startswith(f"error: --revision {ESCAPE!r} is not a branch, tag or commit")
    assert err.rstrip().endswith("check spec.model.revision")
    assert hub.log == []
    assert files_under(tmp_path) == set()


def test_the_ref_is_never_written_outside_refs(tmp_path):
    storage = tmp_path / "hf" / "hub" / "models--org--tiny"
    with pytest.raises(FetchError, match="outside"):
        download._write_ref(storage, ESCAPE, COMMIT)
    assert files_under(tmp_path) == set()
    download._write_ref(storage, "refs/pr/1", COMMIT)  # a ref with a folder stays inside
    assert (storage / "refs" / "refs" / "pr" / "1").read_text() == COMMIT


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--repo=--trust-remote-code"], "spec.model.name"),
        (["--repo", "../../etc"], "spec.model.name"),
        (["--repo", "org/tiny", "--revision=--include=*"], "spec.model.revision"),
        (["--repo", "org/tiny", "--include=--link=/tmp/x"], "spec.model.file"),
        (["--repo", "org/tiny", "--include", "../*.gguf"], "spec.model.file"),
        (["--repo", "org/tiny", "--include", "a/../../*.gguf"], "spec.model.file"),
    ],
    ids=["repo flag", "repo path", "revision flag", "include flag", "include up", "include up 2"],
)
def test_arguments_the_api_would_refuse_are_refused_naming_the_field(hub, tmp_path, args, field):
    code, out, err = fetch(*args, "--hf-home", str(tmp_path / "hf"))
    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert f"check {field}" in err
    assert hub.log == []


def test_a_listing_that_names_a_path_outside_the_repo_is_refused(hub, tmp_path):
    hub.add(FakeRepo("org/evil-GGUF", {"../../evil.gguf": b"GGUF", "model.safetensors": WEIGHTS}))
    home = tmp_path / "hf"
    args = ("--repo", "org/evil-GGUF", "--include", "*.gguf", "--link", str(tmp_path / "m.gguf"))
    code, _, err = fetch(*args, "--hf-home", str(home))
    assert code == 1
    assert "listed '../../evil.gguf' in org/evil-GGUF, a path outside the repo" in err
    assert hub.requests("GET") == []  # only the two API calls
    assert files_under(tmp_path) == set()
