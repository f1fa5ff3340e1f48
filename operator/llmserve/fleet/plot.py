"""PNG plots of the autoscaling benchmark: per trace, replicas and queue over time per policy.

matplotlib is an optional dependency (`pip install 'llmserve[bench]'`): without it the report is
printed all the same and one line on stderr says how to get the plots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

INSTALL_HINT = "pip install 'llmserve[bench]'"


@dataclass
class Series:
    """The fleet every few seconds of one run."""

    times: list[float] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    """spec.replicas: ready and starting."""
    waiting: list[int] = field(default_factory=list)
    """Requests waiting for a slot (gateway and engine queues)."""
    span: float = 0.0
    """Simulated seconds, the tail after the trace included (the points stop at its end)."""


def draw(runs: Mapping[str, Mapping[str, Series]], directory: Path, err: TextIO) -> list[Path]:
    """One PNG per trace in `directory` (made if needed); the files written."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional: only the plots need it

        mpl.use("Agg")  # files only: no display, no GUI toolkit
        from matplotlib import pyplot as plt  # noqa: PLC0415 - after choosing the backend
    except ImportError:
        print(f"bench autoscale: no plots: matplotlib is not installed ({INSTALL_HINT})", file=err)
        return []
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for trace, by_policy in runs.items():
        figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 7))
        for policy, series in by_policy.items():
            minutes = [t / 60 for t in series.times]
            top.step(minutes, series.replicas, where="post", label=policy, linewidth=1.2)
            bottom.plot(minutes, series.waiting, label=policy, linewidth=1.0)
        top.set_ylabel("replicas (ready + starting)")
        top.set_title(f"trace {trace}")
        top.legend(loc="upper left", fontsize="small", ncols=3)
        bottom.set_ylabel("requests waiting for a slot")
        bottom.set_xlabel("minutes")
        bottom.set_yscale("symlog", linthresh=10)
        for axes in (top, bottom):
            axes.grid(visible=True, alpha=0.3)
        figure.tight_layout()
        path = directory / f"{trace}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    print(f"bench autoscale: plots in {directory}/", file=err)
    return written
