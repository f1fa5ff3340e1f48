"""Drift: a live child that lost a field we rendered (fields others added do not count)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Final

_SUFFIXES: Final[dict[str, Decimal | int]] = {
    "": 1, "m": Decimal("0.001"), "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5,
}  # fmt: skip
_QUANTITY: Final = re.compile(r"^([+-]?[0-9.]+)([a-zA-Z]{0,2})$")


def _quantity(value: object) -> Decimal | None:
    """A Kubernetes quantity as a number (`0.5` and `500m` are equal), or None."""
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _SUFFIXES:
        return None
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]


def _same_scalar(desired: object, live: object) -> bool:
    if desired == live:
        return True
    # The API server normalises quantities (cpu "0.5" comes back as "500m").
    a, b = _quantity(desired), _quantity(live)
    return a is not None and a == b


def contains(live: Any, desired: Any) -> bool:  # noqa: ANN401 - JSON values
    """Whether `live` holds every field of `desired` with the same value.

    Maps may have more keys in `live` (defaults, other managers' fields); lists must match
    element by element.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            k in live and contains(live[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return _same_scalar(desired, live)


def drifted(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """True when the child is missing or lost a field we set (e.g. a hand-edited image)."""
    if live is None:
        return True
    mine = {"metadata": {k: desired["metadata"][k] for k in ("labels", "annotations")}}
    return not contains(live, mine) or not contains(live.get("spec"), desired.get("spec"))
