"""What the handlers share through kopf's memo: the API client, settings and per-object locks."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient

from llmserve.api.config import OperatorConfig


@dataclass
class Context:
    """Created at startup, closed at cleanup."""

    client: ApiClient
    config: OperatorConfig
    locks: defaultdict[tuple[str, str], asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    """One pass at a time per LLMService: its own events and its children's events race."""
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while this process may act: it holds a freshly renewed Lease (or elects no leader)."""
    phases: dict[tuple[str, str], str] = field(default_factory=dict)
    """The last phase written per LLMService: bodies from events can be older than that."""
    bodies: dict[tuple[str, str], Any] = field(default_factory=dict)
    """The latest body of every watched LLMService (kopf.Body), by (namespace, name)."""
    children: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    """The latest state of every child we made, by (kind, namespace, name), from watch events."""

    def forget(self, key: tuple[str, str]) -> None:
        """Drop what is kept about a deleted LLMService."""
        self.bodies.pop(key, None)
        self.phases.pop(key, None)
        self.locks.pop(key, None)
