"""`llmserve fetch-model` fills the Hugging Face cache the way the engines read it, once."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fetch.fakehub import FakeRepo
from tests.fetch.runner import TOKEN, WEIGHTS, fetch
from tests.support import run_llmserve

from llmserve.fetch import download

COMMIT = "0123456789abcdef0123456789abcdef01234567"

# What an engine does at start with HF_HOME=DIR and HF_HUB_OFFLINE=1 (vLLM, SGLang and TGI all go
# through huggingface_hub): find the snapshot of a revision, and single files in it.
OFFLINE = """
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download
repo, revision = sys.argv[1:3]
print(json.dumps({
    "snapshot": snapshot_download(repo, revision=revision),
    "config": hf_hub_download(repo, "config.json", revision=revision),
}))
"""


def offline(home: Path, repo: str, revision: str) -> dict[str, str]:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", OFFLINE, repo, revision],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_the_repo_lands_in_the_cache_layout_and_engines_find_it_offline(hub, tmp_path):
    home = tmp_path / "hf"
    code, out, err = fetch("--repo", "org/tiny", "--revision", "main", "--hf-home", str(home))
    assert (code, err) == (0, "")
    storage = home / "hub" / "models--org--tiny"
    assert (storage / "refs" / "main").read_text() == COMMIT
    snapshot = storage / "snapshots" / COMMIT
    assert tree(snapshot) == hub.repos["org/tiny"].files
    assert all(p.is_symlink() for p in snapshot.iterdir())  # into blobs/, as huggingface_hub does
    assert {p.name for p in (storage / "blobs").iterdir()} >= {
        hub.repos["org/tiny"].sha256("model.safetensors")
    }
    assert "fetching org/tiny at main (commit 0123456789ab)" in out
    assert out.splitlines()[-1].startswith("done: org/tiny at main: 4 files")

    requests = len(hub.log)
    found = offline(home, "org/tiny", "main")
    assert Path(found["snapshot"]) == snapshot
    assert Path(found["config"]).read_bytes() == hub.repos["org/tiny"].files["config.json"]
    assert len(hub.log) == requests  # offline: not one request


def test_a_second_run_on_a_complete_cache_downloads_nothing(hub, tmp_path):
    args = ("--repo", "org/tiny", "--hf-home", str(tmp_path / "hf"))
    assert fetch(*args)[0] == 0
    hub.log.clear()
    code, out, _ = fetch(*args)
    assert code == 0
    assert hub.requests("GET") == hub.requests("HEAD") == []
    assert [r.path for r in hub.log] == [
        "/api/models/org/tiny/revision/main",
        f"/api/models/org/tiny/tree/{COMMIT}",
    ]
    assert "all already in the cache; nothing downloaded" in out


def test_include_fetches_only_matching_files(hub, gguf_repo, tmp_path):
    home = tmp_path / "hf"
    args = ("--repo", "org/tiny-GGUF", "--hf-home", str(home), "--include", "*-Q4_K_M.gguf")
    code, _, err = fetch(*args, "--include", "README.md")
    assert code == 0, err
    snapshot = home / "hub" / "models--org--tiny-GGUF" / "snapshots" / gguf_repo.commit
    assert set(tree(snapshot)) == {"tiny-Q4_K_M.gguf", "README.md"}
    assert {r.path.rsplit("/", 1)[-1] for r in hub.requests("GET")} == {
        "tiny-Q4_K_M.gguf",
        "README.md",
    }


def test_a_commit_revision_needs_no_ref_and_is_found_offline(tmp_path):
    home = tmp_path / "hf"
    assert fetch("--repo", "org/tiny", "--revision", COMMIT, "--hf-home", str(home))[0] == 0
    assert not (home / "hub" / "models--org--tiny" / "refs").exists()
    assert Path(offline(home, "org/tiny", COMMIT)["config"]).is_file()


def test_a_moved_branch_gets_the_new_commit_and_its_ref_last(hub, tmp_path):
    home = tmp_path / "hf"
    assert fetch("--repo", "org/tiny", "--hf-home", str(home))[0] == 0
    repo = hub.repos["org/tiny"]
    hub.add(FakeRepo("org/tiny", {**repo.files, "config.json": b"{}"}, commit="9" * 40))
    assert fetch("--repo", "org/tiny", "--hf-home", str(home))[0] == 0
    storage = home / "hub" / "models--org--tiny"
    assert (storage / "refs" / "main").read_text() == "9" * 40
    assert (storage / "snapshots" / ("9" * 40) / "config.json").read_bytes() == b"{}"
    # the unchanged weights are one blob shared by both snapshots
    assert len([p for p in (storage / "blobs").iterdir() if p.stat().st_size == len(WEIGHTS)]) == 1


def test_the_token_is_sent_as_bearer_and_never_printed(hub, monkeypatch, tmp_path):
    files = {"config.json": b"{}", "model.safetensors": WEIGHTS}
    hub.add(FakeRepo("org/private", files, private=True, granted=frozenset({TOKEN})))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    done = run_llmserve("fetch-model", "--repo", "org/private", "--hf-home", str(tmp_path / "hf"))
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert hub.log
    assert {r.headers.get("authorization") for r in hub.log} == {f"Bearer {TOKEN}"}
    assert all("llmserve/" in r.headers["user-agent"] for r in hub.log)


def test_help_names_the_contract():
    done = run_llmserve("fetch-model", "--help")
    assert done.returncode == 0
    for flag in (
        "--repo",
        "--revision",
        "--hf-home",
        "--include",
        "--link",
        "--quantization",
        "--termination-log",
        "HF_TOKEN",
        "HF_ENDPOINT",
    ):
        assert flag in done.stdout


def test_progress_lines_report_files_bytes_and_rate(hub, tmp_path):
    out = io.StringIO()
    download.run(
        download.Request("org/tiny", "main", tmp_path, endpoint=hub.url, progress_seconds=0), out
    )
    lines = [line for line in out.getvalue().splitlines() if line.startswith("progress: ")]
    assert lines
    assert all(
        re.fullmatch(r"progress: [0-3]/4 files, .+ of 64\.0 KiB \(\d+%\), .+/s.*", x) for x in lines
    )
