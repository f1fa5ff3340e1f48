"""Request traces for the autoscaling benchmark: five generators and a CSV replay.

A trace is a list of requests `(arrival seconds, prompt tokens, output tokens)` sorted by arrival.
The generators draw a non-homogeneous Poisson process by thinning (AUTOSCALING.md §12.3): each
trace is a rate function λ(t), drawn once from the seed where it is random itself (bursts), and
arrivals are kept with probability λ(t)/λ_max. Sizes are lognormal (prompt median 600, sigma 1.0,
clipped to [16, 8192]; output median 200, sigma 0.8, clipped to [1, 2048]).

- `steady`: constant rate.
- `diurnal`: one compressed day over the trace, λ = base·(1 - 0.6·cos(2πt/T)): night, noon, night.
- `step`: a low rate, five times that for the middle third of the trace, then low again.
- `spiky`: a base rate with flash crowds at Poisson times; their height is Pareto-distributed
  (heavy tail, capped), their length exponential, with 10 s ramps.
- `azure`: **derived** from the published shape of the Azure LLM inference trace 2023
  (Splitwise; its "conversation" and "code" hours are bursty at the minute scale), not the real
  file, which this repository does not ship: a two-state Markov-modulated Poisson process (normal
  rate, and bursts of 3.5x for about 90 s every 10 min on average, §12.3 "Bursty") with the
  lognormal sizes above. Replay the real trace with `--trace-file` after converting its
  `TIMESTAMP, ContextTokens, GeneratedTokens` columns to the CSV below.

Every generator is deterministic for a seed and a trace name (the name is mixed into the seed, so
asking for one trace or all five gives the same requests). Rates are in requests per second and
sized so the peaks need most of a 20-replica fleet of the default A100 model.

`load_csv` replays a file with the header `time_s,prompt_tokens,output_tokens`, one request per
row, and rejects a bad file with a message naming the file, the line and the fix.
"""

from __future__ import annotations

import bisect
import csv
import math
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

NAMES: Final = ("steady", "diurnal", "step", "spiky", "azure")
"""The generated traces, in the order they are reported."""

HEADER: Final = ("time_s", "prompt_tokens", "output_tokens")

PROMPT_MEDIAN: Final = 600.0
PROMPT_SIGMA: Final = 1.0
PROMPT_CLIP: Final = (16, 8192)
OUTPUT_MEDIAN: Final = 200.0
OUTPUT_SIGMA: Final = 0.8
OUTPUT_CLIP: Final = (1, 2048)

Rate = Callable[[float], float]


@dataclass(frozen=True)
class Component:
    """A Poisson process of intensity `rate` over [start, end), never above `peak`.

    A trace is the superposition of its components (the sum of Poisson processes is the Poisson
    process of the summed rates), so a burst only costs draws over its own span.
    """

    rate: Rate
    peak: float
    start: float
    end: float


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival, as three parallel columns."""

    name: str
    duration: float
    """Seconds the trace spans; arrivals are in [0, duration)."""
    times: tuple[float, ...]
    prompts: tuple[int, ...]
    outputs: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.times)


def _lognormal(rng: random.Random, median: float, sigma: float, clip: tuple[int, int]) -> int:
    low, high = clip
    return max(low, min(high, round(rng.lognormvariate(math.log(median), sigma))))


def _arrivals(rng: random.Random, part: Component) -> list[float]:
    """The arrivals of one component, by thinning."""
    times: list[float] = []
    now = part.start + rng.expovariate(part.peak)
    while now < part.end:
        if rng.random() * part.peak < part.rate(now):
            times.append(now)
        now += rng.expovariate(part.peak)
    return times


def _piecewise(edges: Sequence[float], values: Sequence[float]) -> Rate:
    """The rate `values[i]` from `edges[i]` on (edges ascending, starting at 0)."""
    return lambda t: values[bisect.bisect_right(edges, t) - 1]


def _steady(_: random.Random, duration: float) -> list[Component]:
    return [Component(lambda _t: 40.0, 40.0, 0.0, duration)]


def _diurnal(_: random.Random, duration: float) -> list[Component]:
    base, swing = 45.0, 0.6

    def rate(t: float) -> float:
        return base * (1 - swing * math.cos(2 * math.pi * t / duration))

    return [Component(rate, base * (1 + swing), 0.0, duration)]


def _step(_: random.Random, duration: float) -> list[Component]:
    low, high = 12.0, 60.0
    return [Component(_piecewise((0.0, duration / 3, 2 * duration / 3), (low, high, low)), high,
                      0.0, duration)]  # fmt: skip


def _trapezoid(begin: float, length: float, ramp: float, height: float) -> Rate:
    """`height` from `begin` to `begin + length`, with linear ramps of `ramp` seconds each side."""
    return lambda t: height * min(1.0, (t - begin) / ramp, (begin + length + ramp - t) / ramp)


def _spiky(rng: random.Random, duration: float) -> list[Component]:
    base, cap, ramp = 20.0, 4.0, 10.0
    parts = [Component(lambda _t: base, base, 0.0, duration)]
    start = rng.expovariate(1 / 300)
    while start < duration:
        length = min(180.0, max(20.0, rng.expovariate(1 / 60)))
        extra = base * (min(cap, 1 + rng.paretovariate(1.5)) - 1)
        end = min(duration, start + length + ramp)
        parts.append(Component(_trapezoid(start, length, ramp, extra), extra, start, end))
        start += length + rng.expovariate(1 / 300)
    return parts


def _azure(rng: random.Random, duration: float) -> list[Component]:
    normal, burst = 25.0, 25.0 * 3.5
    edges, values = [0.0], [normal]
    now, bursting = 0.0, False
    while now < duration:
        now += rng.expovariate(1 / 90 if bursting else 1 / 600)
        bursting = not bursting
        edges.append(now)
        values.append(burst if bursting else normal)
    return [Component(_piecewise(edges, values), burst, 0.0, duration)]


GENERATORS: Final[dict[str, Callable[[random.Random, float], list[Component]]]] = {
    "steady": _steady,
    "diurnal": _diurnal,
    "step": _step,
    "spiky": _spiky,
    "azure": _azure,
}


def generate(name: str, duration: float, seed: int) -> Trace:
    """The trace `name` over `duration` seconds, the same for the same seed."""
    rng = random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))  # noqa: S311 - a simulation
    times = sorted(t for part in GENERATORS[name](rng, duration) for t in _arrivals(rng, part))
    prompts = tuple(_lognormal(rng, PROMPT_MEDIAN, PROMPT_SIGMA, PROMPT_CLIP) for _ in times)
    outputs = tuple(_lognormal(rng, OUTPUT_MEDIAN, OUTPUT_SIGMA, OUTPUT_CLIP) for _ in times)
    return Trace(name, duration, tuple(times), prompts, outputs)


def _field(path: Path, line: int, column: str, text: str, *, seconds: bool) -> float:
    """One cell as a number, or a TraceError saying what the cell must be."""
    try:
        value = float(text) if seconds else int(text)
    except ValueError:
        value = math.nan
    if seconds and (not math.isfinite(value) or value < 0):
        raise TraceError(
            f"{path}, line {line}: {column} is {text!r}; give the arrival in seconds (a number "
            "≥ 0, e.g. 12.5) counted from the start of the trace"
        )
    if not seconds and not value >= 1:
        raise TraceError(
            f"{path}, line {line}: {column} is {text!r}; give a whole number of tokens ≥ 1"
        )
    return value


def load_csv(path: Path, max_tokens: int) -> Trace:
    """The trace in `path`: header `time_s,prompt_tokens,output_tokens`, one request per row.

    A request whose prompt and output exceed `max_tokens` (the KV cache) could never be served,
    so it is rejected rather than left to block its replica's queue.
    """
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise TraceError(f"cannot read the trace file {path}: {error}; check the path") from None
    expected = ",".join(HEADER)
    if not rows or [cell.strip() for cell in rows[0]] != list(HEADER):
        found = ",".join(rows[0]) if rows else "nothing"
        raise TraceError(
            f"{path}, line 1: the header is {found!r}; it must be {expected} (for the Azure LLM "
            "trace, convert TIMESTAMP to seconds since its first request and rename "
            "ContextTokens and GeneratedTokens)"
        )
    times: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(HEADER):
            raise TraceError(f"{path}, line {line}: {len(row)} fields; give three, {expected}")
        time = _field(path, line, "time_s", row[0].strip(), seconds=True)
        prompt = int(_field(path, line, "prompt_tokens", row[1].strip(), seconds=False))
        output = int(_field(path, line, "output_tokens", row[2].strip(), seconds=False))
        if times and time < times[-1]:
            raise TraceError(
                f"{path}, line {line}: time_s {time:g} is before the previous row's "
                f"{times[-1]:g}; sort the rows by time_s"
            )
        if prompt + output > max_tokens:
            raise TraceError(
                f"{path}, line {line}: {prompt + output} tokens do not fit the KV cache of "
                f"{max_tokens}; shorten the request or drop the row"
            )
        times.append(time)
        prompts.append(prompt)
        outputs.append(output)
    if not times:
        raise TraceError(f"{path} has a header but no requests; add one row per request")
    duration = math.floor(times[-1]) + 1.0
    return Trace(path.stem, duration, tuple(times), tuple(prompts), tuple(outputs))
