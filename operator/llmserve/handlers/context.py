"""What the handlers share through kopf's memo: the API client, settings, caches and the queue."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from llmserve.api.config import OperatorConfig
from llmserve.handlers.queue import WorkQueue
from llmserve.kube.client import Client
from llmserve.reconcile.seen import Seen

Key = tuple[str, str]
"""An LLMService by (namespace, name)."""


@dataclass
class Context:
    """Created at startup, closed at cleanup."""

    client: Client
    config: OperatorConfig
    queue: WorkQueue[Key]
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while this process may act: it holds a freshly renewed Lease (or elects no leader)."""
    bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """The latest body of every watched LLMService, without managedFields."""
    statuses: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """The newest status known per LLMService: written by this process or seen in the watch."""
    phases: dict[Key, str] = field(default_factory=dict)
    """The last phase written per LLMService: bodies from events can be older than that."""
    children: Seen = field(default_factory=Seen)
    """Every child we made, from the watches and our own writes."""

    def forget(self, key: Key) -> None:
        """Drop what is kept about a deleted LLMService."""
        self.bodies.pop(key, None)
        self.statuses.pop(key, None)
        self.phases.pop(key, None)
        self.queue.forget(key)
