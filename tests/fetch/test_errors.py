"""Each foreseen failure: one line on stderr naming the field to fix, exit 1, no traceback."""

from __future__ import annotations

import dataclasses
import errno
import io
import shutil
import socket
from pathlib import Path

import pytest
from tests.fetch.fakehub import FakeRepo
from tests.fetch.runner import TOKEN, WEIGHTS, fetch
from tests.support import run_llmserve

from llmserve.fetch import download
from llmserve.fetch.errors import FetchError

FILES = {"config.json": b"{}", "model.safetensors": WEIGHTS}
OTHER_TOKEN = "hf_KnownButNotGrantedToken0000000"  # noqa: S105 - a test token


@pytest.fixture
def gated(hub):
    hub.tokens.add(OTHER_TOKEN)
    return hub.add(FakeRepo("org/gated", FILES, gated=True, granted=frozenset({TOKEN})))


CASES = {
    "repo-not-found": (
        ["--repo", "org/missing"],
        None,
        (
            "model repo org/missing not found on {url}; check spec.model.name "
            "(a private repo also needs spec.model.tokenSecretRef)"
        ),
    ),
    "gated-no-token": (
        ["--repo", "org/gated"],
        None,
        (
            "org/gated is a gated repo: set spec.model.tokenSecretRef to a Secret with a Hugging "
            "Face token of an account that has accepted its terms"
        ),
    ),
    "gated-not-granted": (
        ["--repo", "org/gated"],
        OTHER_TOKEN,
        (
            "org/gated is a gated repo and the token in HF_TOKEN has not been granted access; "
            "accept its terms on the model page with the token's account, see "
            "spec.model.tokenSecretRef"
        ),
    ),
    "bad-token": (
        ["--repo", "org/tiny"],
        "hf_UnknownToken",
        (
            "the Hub refused the token in HF_TOKEN for org/tiny (invalid or expired); check the "
            "Secret named by spec.model.tokenSecretRef"
        ),
    ),
    "revision": (
        ["--repo", "org/tiny", "--revision", "v9"],
        None,
        (
            "revision 'v9' not found in org/tiny; check spec.model.revision (a branch, tag or "
            "commit of the repo)"
        ),
    ),
    "glob": (
        ["--repo", "org/tiny-GGUF", "--include", "*-Q5_K_M.gguf"],
        None,
        (
            "no file in org/tiny-GGUF at main (commit fedcba987654) matches *-Q5_K_M.gguf; check "
            "spec.model.file (GGUF files there: Q6_K/tiny-Q6_K-00001-of-00003.gguf, "
            "Q6_K/tiny-Q6_K-00002-of-00003.gguf, Q6_K/tiny-Q6_K-00003-of-00003.gguf, "
            "tiny-Q4_K_M.gguf, tiny-Q8_0.gguf)"
        ),
    ),
}


@pytest.mark.usefixtures("gated", "gguf_repo")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_console_script_explains_in_one_line(hub, monkeypatch, tmp_path, case):
    args, token, expected = CASES[case]
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    done = run_llmserve("fetch-model", "--hf-home", str(tmp_path / "hf"), *args)
    assert (done.returncode, done.stderr) == (1, f"error: {expected.format(url=hub.url)}\n")
    assert hub.requests("GET", "/resolve/") == []
    if token:
        assert token not in done.stdout + done.stderr


def test_the_glob_message_shortens_a_long_list(hub, tmp_path):
    hub.add(FakeRepo("org/many", {f"m-{i:02d}.gguf": b"GGUF" for i in range(12)}))
    code, _, err = fetch("--repo", "org/many", "--hf-home", str(tmp_path), "--include", "*.bin")
    assert code == 1
    assert (
        "GGUF files there: m-00.gguf, m-01.gguf, m-02.gguf, m-03.gguf, m-04.gguf ... (12 in all)"
        in err
    )


def test_a_repo_without_gguf_files_says_so(tmp_path):
    code, _, err = fetch("--repo", "org/tiny", "--hf-home", str(tmp_path), "--include", "*.gguf")
    assert code == 1
    assert "check spec.model.file (the repo has no GGUF files)" in err


def run(hub, home: Path, **changes) -> tuple[str, str]:
    """download.run without waits between retries; stdout and the FetchError message."""
    request = download.Request("org/tiny", "main", home, endpoint=hub.url, retry_delays=(0, 0))
    out = io.StringIO()
    try:
        download.run(dataclasses.replace(request, **changes), out)
    except FetchError as error:
        return out.getvalue(), str(error)
    return out.getvalue(), ""


def test_network_errors_are_retried_then_explained(hub, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    _, message = run(hub, tmp_path, endpoint=closed)
    assert message.startswith(
        f"cannot download org/tiny from {closed}: network error after retries ("
    )
    assert message.endswith("); check the cluster's egress or HF_ENDPOINT")


def test_an_overloaded_hub_is_retried(hub, tmp_path):
    hub.unavailable = 2
    assert run(hub, tmp_path)[1] == ""
    hub.unavailable = 3
    assert run(hub, tmp_path / "again")[1] == (
        f"{hub.url} answered 503 for org/tiny after retries; the Job will try again"
    )


def test_a_cache_without_room_fails_before_downloading(hub, monkeypatch, tmp_path):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=1000))
    _, message = run(hub, tmp_path)
    assert message == (
        f"disk full: org/tiny needs 64.0 KiB more but {tmp_path} has 1000 B free; "
        "increase spec.cache.size"
    )
    assert hub.requests("GET") == []


def test_a_full_disk_during_the_download_is_explained(hub, monkeypatch, tmp_path):
    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "hf_hub_download", full)
    assert run(hub, tmp_path)[1] == (
        f"disk full: no space left in {tmp_path} for org/tiny; increase spec.cache.size"
    )


def test_offline_mode_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done = run_llmserve("fetch-model", "--repo", "org/tiny", "--hf-home", str(tmp_path))
    assert (done.returncode, done.stderr) == (
        1,
        "error: HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it for fetch-model\n",
    )
