"""Large files continue where a cut connection or a killed run stopped, with a Range request."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from tests.fetch.fakehub import FakeHub, FakeRepo
from tests.fetch.runner import fetch, spawn

MIB = 1024 * 1024
BIG = os.urandom(12 * MIB)  # above huggingface_hub's 10 MiB write chunk, so a partial reaches disk
SHA = hashlib.sha256(BIG).hexdigest()
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def big(hub: FakeHub) -> FakeRepo:
    return hub.add(FakeRepo("org/big", {"config.json": b"{}", "model.safetensors": BIG}))


def ranges(hub: FakeHub, name: str) -> list[str | None]:
    return [r.headers.get("range") for r in hub.requests("GET") if r.path.endswith(name)]


@pytest.mark.usefixtures("big")
def test_a_cut_connection_is_resumed_in_the_same_run(hub, tmp_path):
    hub.cut["model.safetensors"] = 1
    home = tmp_path / "hf"
    code, _, err = fetch("--repo", "org/big", "--hf-home", str(home))
    assert code == 0, err
    assert ranges(hub, "model.safetensors") == [None, f"bytes={10 * MIB}-"]
    snapshot = home / "hub" / "models--org--big" / "snapshots" / COMMIT
    assert (snapshot / "model.safetensors").read_bytes() == BIG


@pytest.mark.usefixtures("big")
def test_a_killed_run_is_continued_by_the_next_with_a_range_request(hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "60")  # no in-run retry before the kill
    hub.stall["model.safetensors"] = 1
    home = tmp_path / "hf"
    blobs = home / "hub" / "models--org--big" / "blobs"
    partial = blobs / f"{SHA}.partial"
    process = spawn("--repo", "org/big", "--hf-home", str(home))
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size >= 10 * MIB):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no partial file appeared"
            time.sleep(0.05)
    finally:
        process.kill()  # as a node losing the pod would
        process.communicate(timeout=30)
    have = partial.stat().st_size

    code, out, err = fetch("--repo", "org/big", "--hf-home", str(home))
    assert code == 0, err
    assert ranges(hub, "model.safetensors") == [None, f"bytes={have}-"]
    snapshot = home / "hub" / "models--org--big" / "snapshots" / COMMIT
    assert (snapshot / "model.safetensors").read_bytes() == BIG
    assert not partial.exists()
    assert f"downloaded {(len(BIG) - have + 2) / MIB:.1f} MiB" in out  # the rest and config.json


@pytest.mark.usefixtures("big")
def test_a_partial_file_that_does_not_match_is_downloaded_again(hub, tmp_path):
    blobs = tmp_path / "hf" / "hub" / "models--org--big" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{SHA}.partial").write_bytes(b"x" * MIB)  # e.g. the file changed on the Hub
    code, _, err = fetch("--repo", "org/big", "--hf-home", str(tmp_path / "hf"))
    assert code == 0, err
    assert ranges(hub, "model.safetensors") == [f"bytes={MIB}-", None]
    assert (blobs / SHA).read_bytes() == BIG
    assert list(blobs.glob("*.partial")) == []


@pytest.mark.usefixtures("big")
def test_temporary_files_of_a_killed_run_are_removed(tmp_path):
    blobs = tmp_path / "hf" / "hub" / "models--org--big" / "blobs"
    blobs.mkdir(parents=True)
    orphan = blobs / "9eddb62b076f586b2186445e7872e5a05f0dfe06.1a2b3c4d.incomplete"
    orphan.write_bytes(b"half")
    assert fetch("--repo", "org/big", "--hf-home", str(tmp_path / "hf"))[0] == 0
    assert not orphan.exists()
