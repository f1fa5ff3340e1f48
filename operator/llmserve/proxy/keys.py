"""API keys from a mounted Secret file: parsing, constant-time lookup, reload when the file changes.

The file holds one key per line, optionally `name:key`; blank lines and `#` comments are ignored.
A key's name (else `key-N`, its line's rank) may appear in logs and metrics; a key never does.
"""

from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

RELOAD_CHECK_SECONDS: Final = 1.0
"""How often the file's modification time is looked at (Secret volumes change by symlink swap)."""


class KeysFileError(ValueError):
    """The keys file cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Key:
    """One accepted key and the name it is known by."""

    name: str
    secret: bytes


def parse(text: str, source: str) -> tuple[Key, ...]:
    """The keys of a keys file's text; `KeysFileError` naming the line on a malformed one."""
    keys: list[Key] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = line.partition(":")
        if not sep:
            name, secret = f"key-{len(keys) + 1}", line
        name, secret = name.strip(), secret.strip()
        if not secret or not name:
            msg = f"{source}:{number}: expected `key` or `name:key`, got an empty name or key"
            raise KeysFileError(msg)
        if any(k.name == name for k in keys):
            msg = f"{source}:{number}: the name {name!r} is used twice; give each key its own name"
            raise KeysFileError(msg)
        keys.append(Key(name, secret.encode()))
    if not keys:
        msg = f"{source}: no key in the file; add one key per line (`name:key` or `key`)"
        raise KeysFileError(msg)
    return tuple(keys)


def match(keys: tuple[Key, ...], presented: bytes) -> str | None:
    """The name of the key presented, or None; every key is compared, in constant time each."""
    found = None
    for key in keys:
        if hmac.compare_digest(key.secret, presented):
            found = key.name
    return found


class Keys:
    """The keys of one file, reloaded when it changes; a bad new file keeps the old keys."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._mtime()
        self.keys = parse(path.read_text(), str(path))
        self._checked = time.monotonic()
        self.error: str | None = None
        """Why the latest version of the file was not taken, if it was not."""

    def _mtime(self) -> float:
        return os.stat(self.path).st_mtime  # noqa: PTH116 - follows the Secret's symlinks

    def current(self) -> tuple[Key, ...]:
        """The keys in force, after a reload if the file changed (checked once a second)."""
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_SECONDS:
            return self.keys
        self._checked = now
        try:
            stamp = self._mtime()
            if stamp != self._stamp:
                self.keys = parse(self.path.read_text(), str(self.path))
                self._stamp, self.error = stamp, None
        except (OSError, KeysFileError) as error:
            self.error = str(error)  # keep serving with the keys we have
        return self.keys
