"""The flags of `llmserve bench autoscale`, and the options they resolve to.

Pure argparse, so `llmserve --help` builds its parser without running anything; the command
itself imports the simulator (`llmserve.fleet.run`) only when it runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from llmserve.fleet.policies import POLICIES
from llmserve.fleet.trace import NAMES


class BenchError(ValueError):
    """A flag value the benchmark cannot run with; the message names the flag and the fix."""


@dataclass(frozen=True)
class Options:
    """What to run."""

    traces: tuple[str, ...] = NAMES
    policies: tuple[str, ...] = tuple(POLICIES)
    trace_file: Path | None = None
    seed: int = 0
    duration: float = 3600.0
    """Seconds of each generated trace."""
    cold_start: float = 120.0
    slo_ttft: float = 2.0
    tpot_slo: float = 0.05
    """Seconds per output token at which C* is sized (AUTOSCALING.md §12.6)."""
    min_replicas: int = 1
    max_replicas: int = 20
    dt: float = 0.25
    """Seconds per simulation tick."""
    output: str = "table"
    plots: Path | None = None


DEFAULTS = Options()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument(
        "--traces",
        metavar="LIST",
        help=f"comma-separated traces among {','.join(NAMES)} (default: all, or none when "
        "--trace-file is given)",
    )
    parser.add_argument(
        "--policies",
        default=",".join(DEFAULTS.policies),
        metavar="LIST",
        help="comma-separated policies (default: %(default)s)",
    )
    parser.add_argument(
        "--trace-file",
        type=Path,
        metavar="FILE",
        help="also replay FILE: a CSV with the header time_s,prompt_tokens,output_tokens, one "
        "request per row, sorted by time_s",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS.seed, help="seed of the traces (default: %(default)s)"
    )
    for flag, default, text in (
        ("--duration", DEFAULTS.duration, "seconds of each generated trace"),
        ("--cold-start", DEFAULTS.cold_start, "seconds from creating a replica to READY"),
        ("--slo-ttft", DEFAULTS.slo_ttft, "time-to-first-token SLO in seconds"),
    ):
        parser.add_argument(
            flag, type=float, default=default, metavar="S", help=f"{text} (default: %(default)g)"
        )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=DEFAULTS.output,
        help="a text table, or one JSON object per trace and policy",
    )
    plots = parser.add_mutually_exclusive_group()
    plots.add_argument(
        "--plots",
        type=Path,
        default=Path("bench-autoscale"),
        metavar="DIR",
        help="write a PNG per trace into DIR (default: %(default)s)",
    )
    plots.add_argument(
        "--no-plots", dest="plots", action="store_const", const=None, help="draw no plots"
    )


def _names(text: str, known: tuple[str, ...], flag: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BenchError(f"{flag}: unknown {', '.join(unknown)}; choose among {','.join(known)}")
    return names


def options(args: argparse.Namespace) -> Options:
    """The options the parsed flags ask for."""
    traces: tuple[str, ...]
    if args.traces is None:
        traces = () if args.trace_file else NAMES
    else:
        traces = _names(args.traces, NAMES, "--traces")
    if not traces and args.trace_file is None:
        raise BenchError("--traces is empty; name a trace or give --trace-file")
    policies = _names(args.policies, tuple(POLICIES), "--policies")
    if not policies:
        raise BenchError(f"--policies is empty; choose among {','.join(POLICIES)}")
    for flag, value in (("--duration", args.duration), ("--slo-ttft", args.slo_ttft)):
        if not value > 0:
            raise BenchError(f"{flag} is {value:g}; give a number of seconds above 0")
    if not args.cold_start >= 0:
        raise BenchError(f"--cold-start is {args.cold_start:g}; give a number of seconds ≥ 0")
    return Options(
        traces=traces,
        policies=policies,
        trace_file=args.trace_file,
        seed=args.seed,
        duration=args.duration,
        cold_start=args.cold_start,
        slo_ttft=args.slo_ttft,
        output=args.output,
        plots=args.plots,
    )
