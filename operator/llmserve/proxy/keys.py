"""API keys from a mounted Secret file: strict parsing, hashed lookup, reload when the file changes.

The file holds one `name:key` line per key; blank lines and `#` comments are ignored. The name
(1-64 of letters, digits, `_`, `.`, `-`) is what logs and metrics show. A key is visible ASCII
without `:` or spaces, is never logged, and is held only as its sha256 digest: a lookup is one
hash and one dict probe, whatever the number of keys, and takes no time that depends on how much
of a wrong key matched (review M3, L7). A line without a valid name is refused with its line
number rather than guessed at, so no name is ever taken from a key's own characters.

Fail closed (review M2): an empty or comment-only file accepts no key, which is how an operator
revokes every key at once. Only a file that cannot be read or has a malformed line keeps the keys
in force (a Secret mid-rotation, or a typo that must not lock everyone out); each such reload is
logged at ERROR with the file and line, and counted. Write the file by atomic replacement (as the
kubelet does for Secret volumes); a file truncated in place is read as it is at that moment.
"""

from __future__ import annotations

import hashlib
import logging
import re
import stat
import time
from pathlib import Path
from typing import Final

RELOAD_CHECK_SECONDS: Final = 1.0
"""How often the file's identity is looked at (Secret volumes change by symlink swap)."""
NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
KEY: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")
"""Visible ASCII but `:`: what an HTTP header carries unchanged, and no second separator."""

log = logging.getLogger(__name__)


class KeysFileError(ValueError):
    """The keys file cannot be used; the message names the file, the line and the fix."""


def digest(key: bytes) -> bytes:
    """The form a key is held and looked up in."""
    return hashlib.sha256(key).digest()


def parse(data: bytes, source: str) -> dict[bytes, str]:
    """Key digest -> name for a keys file's bytes; `KeysFileError` naming the line on a bad one.

    No message quotes a line: a malformed line may well be a key.
    """
    try:
        text = data.decode()
    except UnicodeDecodeError:
        msg = f"{source}: not UTF-8 text; write one `name:key` line per key"
        raise KeysFileError(msg) from None
    keys: dict[bytes, str] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        name, sep, key = line.partition(":")
        if not sep or not NAME.fullmatch(name):
            msg = (f"{where}: expected `name:key`, a name of 1-64 letters, digits, `_`, `.` "
                   "or `-` before the first `:`; a line without one is refused")  # fmt: skip
            raise KeysFileError(msg)
        if not KEY.fullmatch(key):
            msg = (f"{where}: the key of {name!r} is empty or has a character other than visible "
                   "ASCII (no spaces, no second `:`); write `name:key`")  # fmt: skip
            raise KeysFileError(msg)
        if name in lines:
            msg = f"{where}: the name {name!r} is also on line {lines[name]}; give each key its own"
            raise KeysFileError(msg)
        hashed = digest(key.encode())
        if hashed in keys:
            msg = f"{where}: the key of {name!r} is also the key of {keys[hashed]!r}; list it once"
            raise KeysFileError(msg)
        keys[hashed], lines[name] = name, number
    return keys


def _identity(path: Path) -> tuple[int, int, int]:
    """What changes when the file is replaced or rewritten (stat follows the Secret's symlinks)."""
    found = path.stat()
    return found.st_ino, found.st_mtime_ns, found.st_size


class Keys:
    """The keys of one file, reloaded when it changes; see the module docstring for the rules."""

    def __init__(self, path: Path) -> None:
        """Load the file; `OSError` or `KeysFileError` when it cannot be used at start-up."""
        self.path = path
        self._identity: tuple[int, int, int] | None = _identity(path)
        self._keys = parse(path.read_bytes(), str(path))
        self._checked = time.monotonic()
        self.reload_errors = 0
        """Reloads that failed (the file unreadable or malformed) since start."""
        self.loaded_at = time.time()
        """When the keys in force were read (Unix time)."""
        mode = path.stat().st_mode
        if mode & stat.S_IROTH:
            log.warning("%s is readable by every user of the node (mode %o): mount the Secret "
                        "with defaultMode 0440, or chmod o-r", path,
                        stat.S_IMODE(mode))  # fmt: skip
        if not self._keys:
            log.warning("%s has no key: every request is refused (401) until keys are added",
                        path)  # fmt: skip

    def name_of(self, presented: bytes) -> str | None:
        """The name of the key presented, or None when it is not one of the keys in force."""
        return self.current().get(digest(presented))

    def current(self) -> dict[bytes, str]:
        """Digest -> name of the keys in force, reloaded first if the file changed.

        The file is looked at once a second at most.
        """
        now = time.monotonic()
        if now - self._checked >= RELOAD_CHECK_SECONDS:
            self._checked = now
            self._reload()
        return self._keys

    def _reload(self) -> None:
        try:
            identity: tuple[int, int, int] | None = _identity(self.path)
        except OSError:
            identity = None  # gone or unreadable: tried (and logged) once until it changes again
        if identity == self._identity:
            return
        self._identity = identity
        try:
            keys = parse(self.path.read_bytes(), str(self.path))
        except OSError as error:
            self._failed(f"{self.path}: cannot be read ({error.strerror})")
            return
        except KeysFileError as error:
            self._failed(str(error))
            return
        self._keys, self.loaded_at = keys, time.time()
        if keys:
            log.info("reloaded %s: %d keys (%s)", self.path, len(keys), ", ".join(keys.values()))
        else:
            log.warning("reloaded %s: no key in it, every request is refused (401) from now on",
                        self.path)  # fmt: skip

    def _failed(self, reason: str) -> None:
        self.reload_errors += 1
        log.error("keys not reloaded, the %d keys in force stay until the file is fixed: %s",
                  len(self._keys), reason)  # fmt: skip
