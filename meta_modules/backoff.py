"""The one backoff formula: how long to wait after a number of failed tries.

Used by the Graph client's retries, the kill switch's deadline-bound rounds (rules.retry_delay)
and its background passes' countdowns, and recovery's restarts; each caller chooses its base, cap
and jitter, and whether a known block (a rate-limit block) or a deadline bounds the wait. Alert
delivery over HTTP leaves its retries to urllib3's `Retry` (controltower.channels).

Pure: the caller supplies the random draw (or a fixed spread) and the time left, so the formula is
tested without clocks or randomness. It lives in meta_modules because controltower imports
meta_modules, never the other way round.
"""

from __future__ import annotations

import math
from typing import overload


@overload
def delay(failures: int, base: float, cap: float = ..., *, jitter: float = ..., not_before: float = ...) -> float: ...


@overload
def delay(
    failures: int, base: float, cap: float = ..., *, jitter: float = ..., not_before: float = ..., seconds_left: float
) -> float | None: ...


def delay(
    failures: int,
    base: float,
    cap: float = math.inf,
    *,
    jitter: float = 1.0,
    not_before: float = 0.0,
    seconds_left: float = math.inf,
) -> float | None:
    """Seconds to wait after `failures` failed tries (none yet: 0): `base` doubling per failure, at
    most `cap`, times `jitter` (a draw in [0, 1) for full jitter, 1 + a fixed fraction to spread
    callers apart, 1 for none), and no sooner than `not_before`. With `seconds_left`: None when the
    wait would not end before the time left runs out, so there is no time for another try."""
    wait = min(cap, base * 2 ** (failures - 1)) * jitter if failures > 0 else 0.0
    wait = max(not_before, wait)
    return wait if wait < seconds_left else None
