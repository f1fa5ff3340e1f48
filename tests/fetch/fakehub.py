"""A fake Hugging Face Hub on 127.0.0.1: the endpoints huggingface_hub calls to download a repo.

- `GET /api/models/ORG/NAME/revision/REV`: model info (`sha` resolves the revision);
- `GET /api/models/ORG/NAME/tree/REV?recursive=...`: the file listing (size, git oid, LFS sha256);
- `HEAD|GET /ORG/NAME/resolve/REV/PATH`: the file, with the headers `get_hf_file_metadata` reads
  (X-Repo-Commit, ETag or, for LFS files, X-Linked-Etag and X-Linked-Size; Content-Length) and
  byte ranges (`Range: bytes=N-` gives 206 and Content-Range).

Errors use the Hub's X-Error-Code header, which huggingface_hub turns into its exceptions: an
unknown or private repo is 401 RepoNotFound, a gated file without access 401/403 GatedRepo, an
unknown revision 404 RevisionNotFound, an unknown token 401 "Invalid credentials". No Xet headers
are sent, so huggingface_hub downloads over plain HTTP (the tests also set HF_HUB_DISABLE_XET=1).

Every request is logged (method, path, headers) for the tests to assert on. Faults: `unavailable`
answers the next API requests with 503; per file, `cut` sends part of the body and closes the
connection, `stall` sends part and then waits until `release`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

API = re.compile(r"/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+))?")
RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)")
INVALID_TOKEN = "Invalid credentials in Authorization header"  # noqa: S105 - an error message


@dataclass
class FakeRepo:
    """A repo at one commit; files whose names end in `.gguf` or `.safetensors` are LFS files."""

    repo_id: str
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branches: tuple[str, ...] = ("main",)
    private: bool = False
    gated: bool = False
    granted: frozenset[str] = frozenset()
    """Tokens with access (to a private or gated repo)."""

    def is_lfs(self, path: str) -> bool:
        return path.endswith((".gguf", ".safetensors", ".bin"))

    def oid(self, path: str) -> str:
        content = self.files[path]
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # noqa: S324 - git

    def sha256(self, path: str) -> str:
        return hashlib.sha256(self.files[path]).hexdigest()

    def tree(self) -> list[dict[str, Any]]:
        folders = {p.rsplit("/", 1)[0] for p in self.files if "/" in p}
        entries: list[dict[str, Any]] = [
            {"type": "directory", "oid": "f" * 40, "size": 0, "path": f} for f in sorted(folders)
        ]
        for path, content in sorted(self.files.items()):
            entry: dict[str, Any] = {"type": "file", "oid": self.oid(path), "size": len(content)}
            entry["path"] = path
            if self.is_lfs(path):
                entry["lfs"] = {"oid": self.sha256(path), "size": len(content), "pointerSize": 134}
            entries.append(entry)
        return entries


@dataclass
class Logged:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    """Tokens the hub knows; any other token is refused with 401."""
    log: list[Logged] = field(default_factory=list)
    cut: dict[str, int] = field(default_factory=dict)
    """File path -> how many GETs to cut after `fault_at` bytes."""
    stall: dict[str, int] = field(default_factory=dict)
    """File path -> how many GETs to stall after `fault_at` bytes."""
    fault_at: int = 11 * 1024 * 1024
    unavailable: int = 0
    """How many of the next API requests get 503 (the Hub's overload answer)."""
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, repo: FakeRepo) -> FakeRepo:
        self.repos[repo.repo_id] = repo
        return repo

    def requests(self, method: str, kind: str = "/resolve/") -> list[Logged]:
        return [r for r in self.log if r.method == method and kind in r.path]


class Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:
        return None

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None = None, message: str = "error") -> None:
        headers = {"X-Error-Message": message, "Content-Type": "application/json"}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, headers, json.dumps({"error": message}).encode())

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

    def _repo(self, repo_id: str, rev: str | None) -> tuple[FakeRepo | None, bool]:
        """The repo, if visible; False when an error was sent."""
        token = self._token()
        if token is not None and token not in self.hub.tokens:
            self._error(401, None, INVALID_TOKEN)
            return None, False
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and token not in repo.granted):
            self._error(401, "RepoNotFound", "Repository not found")
            return None, False
        if rev is not None and rev not in (*repo.branches, repo.commit):
            self._error(404, "RevisionNotFound", "Invalid rev id")
            return None, False
        return repo, True

    def do_GET(self) -> None:
        # Matched before unquoting, as the Hub does: a revision is one quoted path segment, so a
        # branch may hold '/' (`refs/pr/1`), and a test can offer one holding '..' (see L8).
        raw = urlsplit(self.path).path
        path = unquote(raw)
        with self.hub.lock:
            self.hub.log.append(
                Logged(self.command, path, {k.lower(): v for k, v in self.headers.items()})
            )
        if match := API.fullmatch(raw):
            with self.hub.lock:
                overloaded = self.hub.unavailable > 0
                self.hub.unavailable -= overloaded
            if overloaded:
                self._error(503, None, "Service Unavailable")
                return
            rev = unquote(match["rev"]) if match["rev"] else None
            repo, ok = self._repo(unquote(match["repo"]), rev)
            if not ok or repo is None:
                return
            if match["kind"] == "tree":
                body = json.dumps(repo.tree()).encode()
            else:
                siblings = [{"rfilename": p} for p in sorted(repo.files)]
                info = {"id": repo.repo_id, "sha": repo.commit, "private": repo.private}
                info |= {"gated": "auto" if repo.gated else False, "siblings": siblings}
                body = json.dumps(info).encode()
            self._send(200, {"Content-Type": "application/json"}, body)
        elif match := RESOLVE.fullmatch(raw):
            self._resolve(unquote(match["repo"]), unquote(match["rev"]), unquote(match["path"]))
        else:
            self._error(404, None, "Not found")

    do_HEAD = do_GET  # noqa: N815

    def _resolve(self, repo_id: str, rev: str, path: str) -> None:
        repo, ok = self._repo(repo_id, rev)
        if not ok or repo is None:
            return
        token = self._token()
        if repo.gated and token not in repo.granted:
            status = 403 if token else 401
            self._error(status, "GatedRepo", "Access to this model is restricted")
            return
        if path not in repo.files:
            self._error(404, "EntryNotFound", "Entry not found")
            return
        content = repo.files[path]
        headers = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
        if repo.is_lfs(path):
            headers |= {
                "X-Linked-Etag": f'"{repo.sha256(path)}"',
                "X-Linked-Size": str(len(content)),
            }
            headers["ETag"] = f'"{repo.sha256(path)}"'
        else:
            headers["ETag"] = f'"{repo.oid(path)}"'
        start, status = 0, 200
        if ranged := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
            start, status = int(ranged[1]), 206
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        body = content[start:]
        if self.command == "GET" and self._fault(
            path, headers | {"Content-Length": str(len(body))}, body, status
        ):
            return
        self._send(status, headers, body)

    def _fault(self, path: str, headers: dict[str, str], body: bytes, status: int) -> bool:
        """Send part of `body` and cut or stall, if a fault is due for `path`."""
        with self.hub.lock:
            kind = next(
                (k for k in ("cut", "stall") if getattr(self.hub, k).get(path, 0) > 0), None
            )
            if kind is None:
                return False
            getattr(self.hub, kind)[path] -= 1
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body[: self.hub.fault_at])
        self.wfile.flush()
        if kind == "stall":
            self.hub.release.wait(timeout=60)
        self.close_connection = True
        return True


def serve(hub: FakeHub) -> ThreadingHTTPServer:
    """Start `hub` on a free port of 127.0.0.1 (sets `hub.url`); the caller must shut it down."""
    handler = type("BoundHandler", (Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), name="fakehub", daemon=True).start()
    return server
