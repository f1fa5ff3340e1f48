"""Settings for every test: hypothesis runs the same examples on every machine unless asked not to.

`make test` (and CI) use the `ci` profile: derandomized, so a red run is red for everyone and a
green one stays green; the examples still come from hypothesis' search, only seeded the same way.
`make fuzz` uses the `fuzz` profile (LLMSERVE_HYPOTHESIS_PROFILE=fuzz): random and many times
longer, to find what `ci` never draws (a random run found the simulator's 500 on a body of
b"\\x80"). Tests say how many examples they need with `examples(n)`, so the fuzz profile scales
every property test at once.
"""

from __future__ import annotations

import os
from typing import Final

from hypothesis import HealthCheck, settings

FUZZ_FACTOR: Final = 20
"""How many times more examples the `fuzz` profile draws than `ci`."""

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,  # a shared 2-core machine: per-example time says nothing
    database=None,  # derandomized runs replay nothing from a previous run
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE: Final = os.environ.get("LLMSERVE_HYPOTHESIS_PROFILE", "ci")
"""`ci` unless `make fuzz` (or you) set LLMSERVE_HYPOTHESIS_PROFILE=fuzz."""
settings.load_profile(PROFILE)


def examples(count: int) -> int:
    """`count` examples under the `ci` profile; FUZZ_FACTOR times as many under `fuzz`."""
    return count * FUZZ_FACTOR if PROFILE == "fuzz" else count
