"""Validation problems and the one exception that carries them.

A `Problem` names the field (as a YAML path such as `spec.autoscaling.minReplicas`) and says how to
fix
it. `InvalidSpec` collects every problem of one document so a user fixes them in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an LLMService, tied to the field that has to change."""

    path: str
    """Dotted YAML path of the field, e.g. `spec.gpus` or `spec.autoscaling.maxReplicas`."""
    message: str
    """What is wrong and what to do, in one sentence (no trailing period needed)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidSpec(ValueError):  # noqa: N818 - the name reads as the condition reason `InvalidSpec`
    """An LLMService document that llmserve cannot run, with every problem found."""

    def __init__(self, resource: str, problems: list[Problem]) -> None:
        self.resource = resource
        self.problems = tuple(problems)
        super().__init__(self.render())

    def render(self) -> str:
        """One line per problem, prefixed by the resource name, for stderr, events and status."""
        if len(self.problems) == 1:
            return f"{self.resource} is invalid: {self.problems[0]}"
        lines = [f"{self.resource} is invalid ({len(self.problems)} problems):"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)
