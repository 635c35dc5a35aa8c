"""Per-ad-account rate-limit score, modelled on Meta's Ads Management business-use-case limit.

Pure logic: time comes from an injected clock, so window decay and blocks are unit-testable.
A read costs 1 point, a write 3. The score is the sum of points charged within the last
``decay_s`` seconds. A call that would push the score over ``max_points`` blocks the account
for ``block_s`` seconds; that call and every call during the block are rejected. The block
wipes the score, so access is fully regained when it ends (otherwise, with a 300 s window and
a short test block, the first call after the block would block again).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

READ_POINTS = 1
WRITE_POINTS = 3


@dataclass(frozen=True)
class TierParams:
    max_points: int
    decay_s: float
    block_s: float


DEFAULT_TIERS: dict[str, TierParams] = {
    "development": TierParams(max_points=60, decay_s=300, block_s=300),
    "standard": TierParams(max_points=9000, decay_s=300, block_s=60),
}
DEFAULT_TIER = "standard"
# The names Meta uses in usage headers.
ACCESS_TIER_NAMES = {"development": "development_access", "standard": "standard_access"}
_PARAM_KEYS = {"max": "max_points", "decay_s": "decay_s", "block_s": "block_s"}


@dataclass(frozen=True)
class Usage:
    """What the usage headers report for one account at one instant."""

    tier: str
    util_pct: float
    reset_time_duration: int  # seconds until unblocked, else until the score decays to 0
    blocked_for: float  # seconds left in the block, 0 when not blocked

    @property
    def blocked(self) -> bool:
        return self.blocked_for > 0

    @property
    def regain_minutes(self) -> int:
        return math.ceil(self.blocked_for / 60)

    @property
    def access_tier(self) -> str:
        return ACCESS_TIER_NAMES[self.tier]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    started_block: bool  # this call pushed the score over the limit
    usage: Usage


@dataclass
class _Account:
    events: deque[tuple[float, int]] = field(default_factory=deque)
    score: int = 0
    blocked_until: float = 0.0
    rejected_while_blocked: int = 0


def parse_tier_params(overrides: Mapping[str, Mapping[str, float]]) -> dict[str, TierParams]:
    """Merge ``{"development": {"max": 60, "decay_s": 300, "block_s": 2}}`` into the defaults."""
    tiers = dict(DEFAULT_TIERS)
    for tier, params in overrides.items():
        if tier not in DEFAULT_TIERS:
            raise ValueError(f"unknown tier {tier!r}; expected one of {sorted(DEFAULT_TIERS)}")
        if not isinstance(params, Mapping):
            raise ValueError(f"tier_params.{tier} must be an object")
        changes = {}
        for key, value in params.items():
            if key not in _PARAM_KEYS:
                raise ValueError(f"unknown tier parameter {key!r}; expected max, decay_s, block_s")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"tier_params.{tier}.{key} must be a positive number")
            changes[_PARAM_KEYS[key]] = int(value) if key == "max" else float(value)
        tiers[tier] = replace(tiers[tier], **changes)
    return tiers


class RateLimiter:
    """Thread-safe score keeper for many ad accounts (keys like ``"act_123"``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self._tier_of: dict[str, str] = {}
        self._tiers: dict[str, TierParams] = dict(DEFAULT_TIERS)

    def configure(self, tier_of: Mapping[str, str], tiers: Mapping[str, TierParams]) -> None:
        """Replace the tier assignments and parameters; scores and blocks are kept."""
        with self._lock:
            self._tier_of = dict(tier_of)
            self._tiers = {**DEFAULT_TIERS, **tiers}

    def clear(self) -> None:
        """Forget all scores, blocks and counters (tier configuration is kept)."""
        with self._lock:
            self._accounts.clear()

    def tier_of(self, account: str) -> str:
        return self._tier_of.get(account, DEFAULT_TIER)

    def charge(self, account: str, points: int) -> Decision:
        """Charge one call; reject it if the account is blocked or the call would exceed the max."""
        with self._lock:
            now = self._clock()
            state = self._state(account, now)
            params = self._params(account)
            if now < state.blocked_until:
                state.rejected_while_blocked += 1
                return Decision(False, False, self._usage(account, state, now))
            if state.score + points > params.max_points:
                state.blocked_until = now + params.block_s
                state.events.clear()
                state.score = 0
                return Decision(False, True, self._usage(account, state, now))
            state.events.append((now, points))
            state.score += points
            return Decision(True, False, self._usage(account, state, now))

    def usage(self, account: str) -> Usage:
        with self._lock:
            now = self._clock()
            return self._usage(account, self._state(account, now), now)

    def snapshot(self, account: str) -> dict[str, object]:
        """Score, block end (clock time or None) and rejected-while-blocked count, for /_sandbox/state."""
        with self._lock:
            now = self._clock()
            state = self._state(account, now)
            blocked = now < state.blocked_until
            return {
                "tier": self.tier_of(account),
                "score": state.score,
                "blocked_until": state.blocked_until if blocked else None,
                "rejected_while_blocked": state.rejected_while_blocked,
            }

    def _params(self, account: str) -> TierParams:
        return self._tiers[self.tier_of(account)]

    def _state(self, account: str, now: float) -> _Account:
        state = self._accounts.setdefault(account, _Account())
        horizon = now - self._params(account).decay_s
        while state.events and state.events[0][0] <= horizon:
            state.score -= state.events.popleft()[1]
        return state

    def _usage(self, account: str, state: _Account, now: float) -> Usage:
        params = self._params(account)
        tier = self.tier_of(account)
        blocked_for = max(0.0, state.blocked_until - now)
        if blocked_for > 0:
            return Usage(tier, 100.0, math.ceil(blocked_for), blocked_for)
        decays_in = state.events[-1][0] + params.decay_s - now if state.events else 0.0
        util = round(state.score / params.max_points * 100, 2)
        return Usage(tier, util, max(0, math.ceil(decays_in)), 0.0)
