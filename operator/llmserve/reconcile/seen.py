"""The children as this operator last saw them: from its watches, and from its own writes.

A pass reads children here instead of asking the API server, so a settled LLMService costs no
requests at all. A copy can be stale for a moment, which is safe: a missing entry makes the pass
try to create (the API server answers 409 when the object exists after all), and a stale one at
worst makes it apply once more than needed; every real change arrives as a watch event and runs
the pass again.

Objects are kept as compact JSON text and decoded when a pass reads them: a Deployment as Python
dicts takes about six times the memory of its JSON, and an operator of 1,000 LLMServices keeps
4,000 children, each read a few times in its life.

Two races need care when the pass deletes and recreates a child (the download Job): events of the
old object can arrive after the new one was written. Objects deleted by the pass are remembered by
uid, and their late events are ignored.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Final

Key = tuple[str, str, str]
"""(kind, namespace, name)."""

_TOMBSTONES: Final = 4096
"""How many deleted uids to remember: far more than deletions in flight at once."""


def key_of(obj: dict[str, Any]) -> Key:
    """Where an object is kept."""
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace") or "", meta["name"]


def trim(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without managedFields, which no pass reads and which dominate its size."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def _pack(obj: dict[str, Any]) -> str:
    return json.dumps(trim(obj), separators=(",", ":"))


class Seen:
    """Children by (kind, namespace, name)."""

    def __init__(self) -> None:
        self._objects: dict[Key, tuple[str, str]] = {}
        """(uid, JSON text) by key."""
        self._deleted: OrderedDict[str, None] = OrderedDict()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The last known state (a copy of its own), or None when none is known."""
        known = self._objects.get((kind, namespace, name))
        return None if known is None else dict(json.loads(known[1]))

    def __len__(self) -> int:
        return len(self._objects)

    def observe(self, obj: dict[str, Any]) -> None:
        """A watch event (added or modified); late news of an object the pass deleted is dropped."""
        uid = obj["metadata"].get("uid") or ""
        if uid not in self._deleted:
            self._objects[key_of(obj)] = (uid, _pack(obj))

    def vanished(self, obj: dict[str, Any]) -> None:
        """A watch event of deletion: forget the object, unless a newer one took its name."""
        uid = obj["metadata"].get("uid")
        self._deleted.pop(uid or "", None)
        key = key_of(obj)
        known = self._objects.get(key)
        if known is not None and known[0] == uid:
            del self._objects[key]

    def wrote(self, obj: dict[str, Any]) -> None:
        """The API server's answer to our own create or apply: newer than any event so far."""
        if obj:
            self._objects[key_of(obj)] = (obj["metadata"].get("uid") or "", _pack(obj))

    def deleting(self, obj: dict[str, Any]) -> None:
        """The pass deleted this object: forget it, and ignore its late events."""
        self._objects.pop(key_of(obj), None)
        uid = obj["metadata"].get("uid")
        if uid:
            self._deleted[uid] = None
            while len(self._deleted) > _TOMBSTONES:
                self._deleted.popitem(last=False)
