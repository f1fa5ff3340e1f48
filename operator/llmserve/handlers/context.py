"""What the handlers share through kopf's memo: the API client, settings, caches and the queue."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from llmserve.api.config import OperatorConfig
from llmserve.autoscale.policy import Decision
from llmserve.autoscale.sources import Source
from llmserve.handlers.queue import WorkQueue
from llmserve.kube.client import Client
from llmserve.reconcile.autoscale import Pod
from llmserve.reconcile.seen import Seen
from llmserve.reconcile.state import Scaling

Key = tuple[str, str]
"""An LLMService by (namespace, name)."""


@dataclass
class Context:
    """Created at startup, closed at cleanup."""

    client: Client
    config: OperatorConfig
    queue: WorkQueue[Key]
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while this process may act: it holds a Lease renewed within the renew deadline (or
    elects no leader). The passes and the autoscaler run only meanwhile: `lifecycle` starts them
    when it is set and cancels them, mid-work, when it is cleared."""
    bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """The latest body of every watched LLMService, without managedFields."""
    statuses: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """The newest status known per LLMService: written by this process or seen in the watch."""
    phases: dict[Key, str] = field(default_factory=dict)
    """The last phase written per LLMService: bodies from events can be older than that."""
    children: Seen = field(default_factory=Seen)
    """Every child we made, from the watches and our own writes."""
    source: Source | None = None
    """Where the autoscaler reads load (set at startup from the operator config)."""
    pods: dict[Key, dict[str, Pod]] = field(default_factory=dict)
    """Engine pods per LLMService, by pod name, from the pod watch."""
    decisions: dict[Key, Decision] = field(default_factory=dict)
    """The autoscaler's latest decision per LLMService (its state feeds the next one)."""
    scaling: dict[Key, Scaling] = field(default_factory=dict)
    """The latest decision as status shows it; a pass writes it."""

    def forget(self, key: Key) -> None:
        """Drop what is kept about a deleted LLMService."""
        self.bodies.pop(key, None)
        self.statuses.pop(key, None)
        self.phases.pop(key, None)
        self.decisions.pop(key, None)
        self.scaling.pop(key, None)
        self.queue.forget(key)
