"""Meta's rate limits as pure logic: per-ad-account scores per use case, the hourly BUC quota,
and the app-wide, mutation-rate and per-object limits.

Time comes from an injected clock, so window decay and blocks are unit-testable. A read costs 1
point, a write 3. The score is the sum of points charged within the last ``decay_s`` seconds. A
call that would push the score over ``max_points`` blocks that scope of the account for
``block_s`` seconds; that call and every call during the block are rejected. The block wipes the
score, so access is fully regained when it ends (otherwise, with a 300 s window and a short test
block, the first call after the block would block again).
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
HOUR = 3600.0
# Business-use-case scopes kept apart per ad account: insights calls never spend the ads_management score.
SCOPES = ("ads_management", "ads_insights")


@dataclass(frozen=True)
class TierParams:
    max_points: int
    decay_s: float
    block_s: float
    # Hourly Business Use Case quota in calls: hourly_base + per_active_ad x active ads.
    hourly_base: int
    per_active_ad: int = 40

    def hourly_quota(self, active_ads: int) -> int:
        return self.hourly_base + self.per_active_ad * active_ads


DEFAULT_TIERS: dict[str, TierParams] = {
    "development": TierParams(max_points=60, decay_s=300, block_s=300, hourly_base=300),
    "standard": TierParams(max_points=9000, decay_s=300, block_s=60, hourly_base=100_000),
}
DEFAULT_TIER = "standard"
# The names Meta uses in usage headers.
ACCESS_TIER_NAMES = {"development": "development_access", "standard": "standard_access"}
_PARAM_KEYS = {
    "max": "max_points",
    "decay_s": "decay_s",
    "block_s": "block_s",
    "hourly_base": "hourly_base",
    "per_active_ad": "per_active_ad",
}
_INT_PARAMS = {"max", "hourly_base", "per_active_ad"}


@dataclass(frozen=True)
class Usage:
    """What the usage headers report for one account and scope at one instant."""

    tier: str
    util_pct: float  # the point score's utilisation
    reset_time_duration: int  # seconds until unblocked, else until the score decays to 0
    blocked_for: float  # seconds left in the block, 0 when not blocked
    call_count_pct: float = 0.0  # share of the hourly quota used

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
    started_block: bool  # this call pushed the score or the hourly count over the limit
    usage: Usage


class Window:
    """Calls counted over a sliding window of ``span`` seconds, in one-second buckets."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.count = 0
        self._buckets: deque[list[int]] = deque()

    def prune(self, now: float) -> int:
        horizon = now - self.span
        while self._buckets and self._buckets[0][0] <= horizon:
            self.count -= self._buckets.popleft()[1]
        return self.count

    def add(self, now: float, n: int = 1) -> None:
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([second, n])
        self.count += n

    def frees_at(self) -> float:
        """When the oldest counted call leaves the window."""
        return self._buckets[0][0] + self.span if self._buckets else 0.0


@dataclass
class _Account:
    events: deque[tuple[float, int]] = field(default_factory=deque)
    score: int = 0
    blocked_until: float = 0.0
    rejected_while_blocked: int = 0
    hourly: Window = field(default_factory=lambda: Window(HOUR))


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
                raise ValueError(f"unknown tier parameter {key!r}; expected {', '.join(_PARAM_KEYS)}")
            low = 0 if key == "per_active_ad" else 1e-9
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
                raise ValueError(f"tier_params.{tier}.{key} must be a positive number")
            changes[_PARAM_KEYS[key]] = int(value) if key in _INT_PARAMS else float(value)
        tiers[tier] = replace(tiers[tier], **changes)
    return tiers


class RateLimiter:
    """Thread-safe score keeper per ad account (keys like ``"act_123"``) and use-case scope.

    Each (account, scope) has a point score (blocks for ``block_s`` when exceeded, wiping the
    score) and an hourly call count against the BUC quota (blocks until a call leaves the hour)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[tuple[str, str], _Account] = {}
        self._tier_of: dict[str, str] = {}
        self._tiers: dict[str, dict[str, TierParams]] = {scope: dict(DEFAULT_TIERS) for scope in SCOPES}

    def configure(
        self,
        tier_of: Mapping[str, str],
        tiers: Mapping[str, TierParams],
        insights_tiers: Mapping[str, TierParams] | None = None,
    ) -> None:
        """Replace the tier assignments and parameters; scores and blocks are kept."""
        with self._lock:
            self._tier_of = dict(tier_of)
            self._tiers = {
                "ads_management": {**DEFAULT_TIERS, **tiers},
                "ads_insights": {**DEFAULT_TIERS, **(tiers if insights_tiers is None else insights_tiers)},
            }

    def clear(self) -> None:
        """Forget all scores, blocks and counters (tier configuration is kept)."""
        with self._lock:
            self._accounts.clear()

    def tier_of(self, account: str) -> str:
        return self._tier_of.get(account, DEFAULT_TIER)

    def params(self, account: str, scope: str = "ads_management") -> TierParams:
        return self._tiers[scope][self.tier_of(account)]

    def charge(
        self,
        account: str,
        points: int,
        scope: str = "ads_management",
        active_ads: int = 0,
    ) -> Decision:
        """Charge one call; reject it if the scope is blocked, or the call would exceed the
        score's max or the hourly quota."""
        with self._lock:
            now = self._clock()
            state = self._state(account, scope, now)
            params = self.params(account, scope)
            quota = params.hourly_quota(active_ads)
            if now < state.blocked_until:
                state.rejected_while_blocked += 1
                return Decision(False, False, self._usage(account, scope, state, now, quota))
            if state.score + points > params.max_points:
                state.blocked_until = now + params.block_s
                state.events.clear()
                state.score = 0
                return Decision(False, True, self._usage(account, scope, state, now, quota))
            if state.hourly.count >= quota:
                state.blocked_until = state.hourly.frees_at()
                return Decision(False, True, self._usage(account, scope, state, now, quota))
            state.events.append((now, points))
            state.score += points
            state.hourly.add(now)
            return Decision(True, False, self._usage(account, scope, state, now, quota))

    def usage(self, account: str, scope: str = "ads_management", active_ads: int = 0) -> Usage:
        with self._lock:
            now = self._clock()
            quota = self.params(account, scope).hourly_quota(active_ads)
            return self._usage(account, scope, self._state(account, scope, now), now, quota)

    def snapshot(self, account: str, scope: str = "ads_management", active_ads: int = 0) -> dict[str, object]:
        """Score, hourly calls, block end (clock time or None) and rejections, for /_sandbox/state."""
        with self._lock:
            now = self._clock()
            state = self._state(account, scope, now)
            blocked = now < state.blocked_until
            return {
                "tier": self.tier_of(account),
                "score": state.score,
                "calls_this_hour": state.hourly.count,
                "hourly_quota": self.params(account, scope).hourly_quota(active_ads),
                "blocked_until": state.blocked_until if blocked else None,
                "rejected_while_blocked": state.rejected_while_blocked,
            }

    def _state(self, account: str, scope: str, now: float) -> _Account:
        state = self._accounts.setdefault((account, scope), _Account())
        horizon = now - self.params(account, scope).decay_s
        while state.events and state.events[0][0] <= horizon:
            state.score -= state.events.popleft()[1]
        state.hourly.prune(now)
        return state

    def _usage(self, account: str, scope: str, state: _Account, now: float, quota: int) -> Usage:
        params = self.params(account, scope)
        tier = self.tier_of(account)
        calls_pct = round(min(100.0, state.hourly.count / quota * 100), 2) if quota else 100.0
        blocked_for = max(0.0, state.blocked_until - now)
        if blocked_for > 0:
            return Usage(tier, 100.0, math.ceil(blocked_for), blocked_for, calls_pct)
        decays_in = state.events[-1][0] + params.decay_s - now if state.events else 0.0
        util = round(state.score / params.max_points * 100, 2)
        return Usage(tier, util, max(0, math.ceil(decays_in)), 0.0, calls_pct)


@dataclass(frozen=True)
class AppLimit:
    """App-wide limit (code 4): beyond ``calls`` Graph calls in ``window_s``, every account's
    calls are rejected for ``block_s``."""

    calls: int
    window_s: float
    block_s: float


class AppLimiter:
    """Thread-safe app-wide call counter; without a configured limit every call passes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.limit: AppLimit | None = None
        self._window = Window(1.0)
        self._blocked_until = 0.0
        self._rejected = 0

    def configure(self, limit: AppLimit | None) -> None:
        """A new limit starts a new count (an app-wide block lasts as configured before)."""
        with self._lock:
            self.limit = limit
            self._window = Window(limit.window_s if limit else 1.0)

    def clear(self) -> None:
        with self._lock:
            self._window = Window(self.limit.window_s if self.limit else 1.0)
            self._blocked_until = 0.0
            self._rejected = 0

    def charge(self) -> bool:
        """Count one call; False if the app is blocked or this call starts a block."""
        with self._lock:
            if self.limit is None:
                return True
            now = self._clock()
            if now < self._blocked_until:
                self._rejected += 1
                return False
            if self._window.prune(now) >= self.limit.calls:
                self._blocked_until = now + self.limit.block_s
                self._window = Window(self.limit.window_s)  # the block wipes the count, as with the score
                return False
            self._window.add(now)
            return True

    def util_pct(self) -> float:
        """Share of the app limit used (100 while blocked, 0 without a limit)."""
        with self._lock:
            if self.limit is None:
                return 0.0
            now = self._clock()
            if now < self._blocked_until:
                return 100.0
            return round(min(100.0, self._window.prune(now) / self.limit.calls * 100), 2)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            now = self._clock()
            return {
                "limit": None
                if self.limit is None
                else {
                    "calls": self.limit.calls,
                    "window_s": self.limit.window_s,
                    "block_s": self.limit.block_s,
                },
                "calls_in_window": self._window.prune(now),
                "blocked_until": self._blocked_until if now < self._blocked_until else None,
                "rejected_while_blocked": self._rejected,
            }


@dataclass(frozen=True)
class ObjectLimitParams:
    """Meta's per-object limits (Marketing API rate-limiting page)."""

    adset_budget_changes: int = 4  # an ad set's budget may change 4 times per hour ...
    adset_budget_window_s: float = 3600
    adset_budget_block_s: float = 3600  # ... then changes are blocked for an hour
    spend_cap_changes: int = 10  # an ad account's spend_cap: 10 changes per day
    spend_cap_window_s: float = 86_400


def parse_object_limits(raw: Mapping[str, float]) -> ObjectLimitParams:
    known = ObjectLimitParams.__dataclass_fields__
    changes: dict[str, float] = {}
    for key, value in raw.items():
        if key not in known:
            raise ValueError(f"unknown object_limits key {key!r}; expected one of {sorted(known)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"object_limits.{key} must be a positive number")
        changes[key] = int(value) if key.endswith("_changes") else float(value)
    return replace(ObjectLimitParams(), **changes)


class ObjectLimiter:
    """Per-object change limits: they fail that change only and never block the account."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.params = ObjectLimitParams()
        self._budgets: dict[int, Window] = {}
        self._budget_blocked: dict[int, float] = {}
        self._spend_caps: dict[int, Window] = {}

    def configure(self, params: ObjectLimitParams) -> None:
        with self._lock:
            self.params = params

    def clear(self) -> None:
        with self._lock:
            self._budgets.clear()
            self._budget_blocked.clear()
            self._spend_caps.clear()

    def adset_budget_change(self, adset_id: int) -> bool:
        """Record a budget change of an ad set; False (not counted) while over its limit."""
        with self._lock:
            now, p = self._clock(), self.params
            if now < self._budget_blocked.get(adset_id, 0.0):
                return False
            window = self._budgets.setdefault(adset_id, Window(p.adset_budget_window_s))
            if window.prune(now) >= p.adset_budget_changes:
                # As with the score, the block wipes the count: when it ends, changes are allowed again.
                self._budget_blocked[adset_id] = now + p.adset_budget_block_s
                del self._budgets[adset_id]
                return False
            window.add(now)
            return True

    def spend_cap_change(self, account_id: int) -> bool:
        """Record a spend_cap change of an ad account; False while the day's changes are used."""
        with self._lock:
            now, p = self._clock(), self.params
            window = self._spend_caps.setdefault(account_id, Window(p.spend_cap_window_s))
            if window.prune(now) >= p.spend_cap_changes:
                return False
            window.add(now)
            return True


class MutationLimiter:
    """Writes per app and ad account within the current second (Meta's ~100/s mutation rate);
    a write beyond it is refused, with no longer block. 0 turns it off."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.per_s = 0
        self._seconds: dict[int, tuple[int, int]] = {}

    def configure(self, per_s: int) -> None:
        with self._lock:
            self.per_s = per_s

    def charge(self, account_id: int) -> bool:
        with self._lock:
            if self.per_s <= 0:
                return True
            second = int(self._clock())
            last, count = self._seconds.get(account_id, (second, 0))
            count = count if last == second else 0
            if count >= self.per_s:
                return False
            self._seconds[account_id] = (second, count + 1)
            return True
