"""How much an ad account may still take, learnt from what Meta reports, shared by every process.

Sources (docs/meta-sandbox.md, "Rate limits"; Marketing API rate-limiting page):
- a read costs 1 point, a write 3; the score decays over 300 s; the development tier allows 60
  points, the standard tier 9,000;
- `X-Business-Use-Case-Usage` is the Marketing API's own header (percentages; the time to regain
  access in minutes); `X-Ad-Account-Usage` may be absent; insights answers carry
  `X-FB-Ads-Insights-Throttle`;
- calling during a block lengthens it.

The estimate follows what Meta reports, down as well as up: a budget is Meta's last reported
utilisation plus what this process has sent since and not yet heard back about (its in-flight
reservations). Blocks (an account's, its insights', the app's, a brief pause of its writes) live in
the shared cache, so a block one web worker learnt stops every Celery worker calling that account.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache

from meta_modules.errors import ErrorKind, MetaError, Scope

logger = logging.getLogger(__name__)

READ_POINTS, WRITE_POINTS = 1, 3
TIER_MAX_POINTS = {"development_access": 60, "standard_access": 9000}
UNKNOWN_TIER_MAX_POINTS = 60  # the strictest tier until Meta says otherwise
DECAY_SECONDS = 300.0  # a reported score no longer holds this long after it was reported
WRITE_CEILING = 0.9  # writes stop at 90 % of the score, leaving room for the reads that confirm them
INSIGHTS_CEILING = 0.9
MUTATIONS_PER_SECOND = 100  # Meta's mutation rate per app and ad account
DEFAULT_BLOCK_SECONDS = 60.0
SHARED_CACHE_RETRY_SECONDS = 30.0  # after the shared cache failed, work on local state this long


# --- what the headers say (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """One scope's rate-limit figures from one answer's headers."""

    util_pct: float | None = None  # the highest percentage Meta reported for the scope
    reset_seconds: float | None = None  # until the score decays (X-Ad-Account-Usage)
    regain_seconds: float | None = None  # estimated_time_to_regain_access, converted from minutes
    tier: str | None = None
    app_util_pct: float | None = None  # X-App-Usage / the insights throttle's app figure


def header_map(headers: Any) -> dict[str, Any]:
    """Headers as a lower-cased dict: the SDK gives a mapping, batch items a [{name, value}] list."""
    if not headers:
        return {}
    if isinstance(headers, Mapping):
        return {str(k).lower(): v for k, v in headers.items()}
    if isinstance(headers, list):
        return {str(h.get("name", "")).lower(): h.get("value") for h in headers if isinstance(h, Mapping)}
    return {}


def _json_header(found: Mapping[str, Any], name: str) -> Any:
    raw = found.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError:
        logger.warning("Unreadable Meta header %s: %r", name, raw)
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _highest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def parse_usage(headers: Any, account: str | None, scope: Scope = Scope.ACCOUNT) -> Usage:
    """What an answer's headers say about one ad account's scope (ads_management or ads_insights).

    Utilisation is the highest of what is reported for it: `X-Ad-Account-Usage` (ads_management
    only) and the BUC entries of the scope's type (the highest of call_count, total_cputime and
    total_time), preferring the entries keyed by the account's own id.
    """
    found = header_map(headers)
    util = reset = regain = app_util = None
    tier = None
    account_usage = _json_header(found, "x-ad-account-usage")
    if scope == Scope.ACCOUNT and isinstance(account_usage, Mapping):
        util = _number(account_usage.get("acc_id_util_pct"))
        reset = _number(account_usage.get("reset_time_duration"))
        tier = account_usage.get("ads_api_access_tier") or None
    buc = _json_header(found, "x-business-use-case-usage")
    if isinstance(buc, Mapping):
        digits = (account or "").removeprefix("act_")
        lists = [buc[digits]] if digits in buc else list(buc.values())
        for entries in lists:
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, Mapping) or entry.get("type") != scope.value:
                    continue
                util = _highest(
                    util,
                    _number(entry.get("call_count")),
                    _number(entry.get("total_cputime")),
                    _number(entry.get("total_time")),
                )
                minutes = _number(entry.get("estimated_time_to_regain_access"))
                if minutes:
                    regain = _highest(regain, minutes * 60.0)
                tier = tier or entry.get("ads_api_access_tier") or None
    app_usage = _json_header(found, "x-app-usage")
    if isinstance(app_usage, Mapping):
        app_util = _highest(*(_number(app_usage.get(k)) for k in ("call_count", "total_cputime", "total_time")))
    insights = _json_header(found, "x-fb-ads-insights-throttle")
    if scope == Scope.INSIGHTS and isinstance(insights, Mapping):
        util = _highest(util, _number(insights.get("acc_id_util_pct")))
        app_util = _highest(app_util, _number(insights.get("app_id_util_pct")))
        tier = tier or insights.get("ads_api_access_tier") or None
    return Usage(util, reset, regain, tier if isinstance(tier, str) else None, app_util)


def block_seconds(usage: Usage | None, default: float = DEFAULT_BLOCK_SECONDS) -> float:
    """How long a block lasts: the longer of Meta's two figures (calling sooner lengthens it)."""
    if usage is None:
        return default
    return max(usage.reset_seconds or 0.0, usage.regain_seconds or 0.0) or default


# --- the budget of one scope (pure state, clock given) ---------------------------------------


@dataclass
class Budget:
    """One ad account scope's score as this process knows it."""

    max_points: int = UNKNOWN_TIER_MAX_POINTS
    reported_pct: float = 0.0
    reported_until: float = 0.0  # when the last report has decayed
    inflight: float = 0.0  # points sent and not yet answered
    tier: str | None = None

    def used(self, now: float) -> float:
        reported = self.max_points * self.reported_pct / 100.0 if now < self.reported_until else 0.0
        return reported + self.inflight

    def room(self, now: float, ceiling: float) -> float:
        return self.max_points * ceiling - self.used(now)

    def wait_for(self, points: float, now: float, ceiling: float) -> float:
        """Seconds until `points` fit (0 = now). When even the decay of the report cannot make room,
        what is in flight must come back first: a short wait that the next answer settles."""
        if points <= self.room(now, ceiling):
            return 0.0
        if self.inflight + points <= self.max_points * ceiling and self.reported_until > now:
            return self.reported_until - now
        return 0.5

    def observe(self, usage: Usage, now: float) -> None:
        """Take what Meta reported as the truth about the score (down as well as up)."""
        if usage.tier in TIER_MAX_POINTS:
            # A percentage rescales by itself when the tier changes; what is in flight is in points.
            self.max_points, self.tier = TIER_MAX_POINTS[usage.tier], usage.tier
        if usage.util_pct is not None:
            self.reported_pct = max(0.0, min(100.0, usage.util_pct))
            self.reported_until = now + (usage.reset_seconds if usage.reset_seconds is not None else DECAY_SECONDS)

    def fresh_window(self) -> None:
        """A block ended: Meta starts counting again from nothing."""
        self.reported_pct, self.reported_until = 0.0, 0.0


# --- blocks shared by every process ------------------------------------------------------------


class SharedBlocks:
    """Blocks in the shared cache (Redis in production, the file cache on the embedded defaults),
    as wall-clock deadlines. If the cache fails, blocks are kept in this process only for a while:
    a stop must never wait on a broken cache."""

    PREFIX = "meta:block"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._local: dict[str, float] = {}
        self._cache_down_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def key(cls, scope: Scope, account: str | None) -> str:
        return f"{cls.PREFIX}:{scope.value}" if scope == Scope.APP else f"{cls.PREFIX}:{scope.value}:{account}"

    def until(self, keys: Iterable[str]) -> dict[str, float]:
        """When each of the blocks named by `keys` ends (0 when it is not in force)."""
        keys = list(keys)
        now = self._clock()
        with self._lock:
            ends = {k: self._local.get(k, 0.0) for k in keys}
            use_cache = now >= self._cache_down_until
        if use_cache:
            try:
                for key, value in cache.get_many(keys).items():
                    ends[key] = max(ends[key], float(value))
            except Exception as exc:  # noqa: BLE001 - any cache failure: carry on with what this process knows
                self._cache_failed(exc)
        return ends

    def block(self, key: str, seconds: float) -> None:
        now = self._clock()
        until = now + seconds
        with self._lock:
            self._local[key] = max(self._local.get(key, 0.0), until)
            use_cache = now >= self._cache_down_until
        if use_cache:
            try:
                current = cache.get(key)
                if current is None or float(current) < until:
                    cache.set(key, until, timeout=math.ceil(seconds) + 5)
            except Exception as exc:  # noqa: BLE001
                self._cache_failed(exc)

    def _cache_failed(self, exc: Exception) -> None:
        logger.warning(
            "Shared cache unavailable for Meta rate-limit blocks (%s); using this process's own for %.0fs",
            exc,
            SHARED_CACHE_RETRY_SECONDS,
        )
        with self._lock:
            self._cache_down_until = self._clock() + SHARED_CACHE_RETRY_SECONDS


# --- the throttle: budgets + blocks + the mutation rate -----------------------------------------


@dataclass
class _Account:
    budgets: dict[Scope, Budget] = field(default_factory=lambda: {Scope.ACCOUNT: Budget(), Scope.INSIGHTS: Budget()})
    writes: deque[float] = field(default_factory=deque)  # times of the last second's writes


class AccountThrottle:
    """Per-ad-account budgets of this process plus the deployment's shared blocks.

    `reserve` waits (bounded) until a call fits and counts it in flight; `settle` hands back the
    reservation with what Meta reported; `block` records a block for every process.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        blocks: SharedBlocks | None = None,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self.blocks = blocks or SharedBlocks(clock)

    def _account(self, account: str) -> _Account:
        return self._accounts.setdefault(account, _Account())

    @staticmethod
    def _ceiling(scope: Scope, write: bool) -> float:
        if scope == Scope.INSIGHTS:
            return INSIGHTS_CEILING
        return WRITE_CEILING if write else 1.0

    def _blocking(self, account: str | None, scope: Scope, write: bool) -> tuple[float, Scope]:
        """The longest block that stops this call: seconds left (0 = none) and its scope."""
        scopes = [Scope.APP] + ([scope] + ([Scope.MUTATIONS] if write else []) if account is not None else [])
        ends = self.blocks.until(SharedBlocks.key(s, account) for s in scopes)
        now = self._clock()
        left, binding = max((ends[SharedBlocks.key(s, account)] - now, s) for s in scopes)
        return max(0.0, left), binding

    def blocked_for(self, account: str | None, scope: Scope = Scope.ACCOUNT, write: bool = False) -> float:
        """Seconds left of any block that stops this call (0 = none)."""
        return self._blocking(account, scope, write)[0]

    def capacity(
        self, account: str | None, scope: Scope, points_each: float, write: bool, max_wait: float
    ) -> int | None:
        """How many calls of this cost fit now, after waiting (bounded) for room. None for calls not
        tied to an ad account (not scored). Raises when the wait would be too long."""
        while True:
            wait, binding = self._blocking(account, scope, write)
            if account is None:
                if wait <= 0:
                    return None
            elif wait <= 0:
                binding = scope
                with self._lock:
                    state, now = self._account(account), self._clock()
                    budget = state.budgets[scope]
                    ceiling = self._ceiling(scope, write)
                    wait = budget.wait_for(points_each, now, ceiling)
                    if wait <= 0:
                        fits = int(budget.room(now, ceiling) // points_each)
                        if write:
                            fits = min(fits, self._writes_left(state, now))
                        if fits > 0:
                            return fits
                        wait, binding = self._next_write_slot(state, now), Scope.MUTATIONS
            self._wait(account, binding, wait, max_wait)

    def reserve(
        self, account: str | None, scope: Scope, points: float, write: bool, max_wait: float, calls: int = 1
    ) -> None:
        """Wait until the account can take `points` (for `calls` calls), then count them in flight."""
        while True:
            wait, binding = self._blocking(account, scope, write)
            if account is None:
                if wait <= 0:
                    return
            elif wait <= 0:
                binding = scope
                with self._lock:
                    state, now = self._account(account), self._clock()
                    budget = state.budgets[scope]
                    wait = budget.wait_for(points, now, self._ceiling(scope, write))
                    if write and wait <= 0 and self._writes_left(state, now) < calls:
                        wait, binding = self._next_write_slot(state, now), Scope.MUTATIONS
                    if wait <= 0:
                        budget.inflight += points
                        if write:
                            state.writes.extend([now] * calls)
                        return
            self._wait(account, binding, wait, max_wait)

    def settle(self, account: str | None, scope: Scope, points: float, usages: Iterable[Usage | None]) -> None:
        """The answer to a reservation came (or it failed): release it and learn what Meta reported
        (a batch reports once per item: the highest figure stands)."""
        if account is None:
            return
        reported = [u for u in usages if u is not None]
        with self._lock:
            budget, now = self._account(account).budgets[scope], self._clock()
            budget.inflight = max(0.0, budget.inflight - points)
            tiers = [u.tier for u in reported if u.tier in TIER_MAX_POINTS]
            utils = [u.util_pct for u in reported if u.util_pct is not None]
            resets = [u.reset_seconds for u in reported if u.reset_seconds is not None]
            learnt = tiers[-1] if tiers and tiers[-1] != budget.tier else None
            if tiers or utils:
                budget.observe(
                    Usage(
                        max(utils) if utils else None,
                        max(resets) if resets else None,
                        tier=tiers[-1] if tiers else None,
                    ),
                    now,
                )
        if learnt:
            remember_tier(account, learnt)

    def block(self, account: str | None, scope: Scope, seconds: float) -> None:
        if scope != Scope.APP and account is None:
            return
        self.blocks.block(SharedBlocks.key(scope, account), seconds)
        if account is not None and scope in (Scope.ACCOUNT, Scope.INSIGHTS):
            with self._lock:
                self._account(account).budgets[scope].fresh_window()

    def tier(self, account: str) -> str | None:
        with self._lock:
            state = self._accounts.get(account)
            return state.budgets[Scope.ACCOUNT].tier if state else None

    def reported(self, account: str) -> tuple[float, float | None]:
        """The share of the account's window Meta last reported used (0 once that report decayed),
        and the seconds until it decays (None when nothing counts)."""
        with self._lock:
            state, now = self._accounts.get(account), self._clock()
            budget = state.budgets[Scope.ACCOUNT] if state else None
            if budget is None or now >= budget.reported_until:
                return 0.0, None
            return budget.reported_pct, budget.reported_until - now

    @staticmethod
    def _writes_left(state: _Account, now: float) -> int:
        while state.writes and state.writes[0] <= now - 1.0:
            state.writes.popleft()
        return MUTATIONS_PER_SECOND - len(state.writes)

    @staticmethod
    def _next_write_slot(state: _Account, now: float) -> float:
        return max(0.01, state.writes[0] + 1.0 - now) if state.writes else 0.01

    def _wait(self, account: str | None, scope: Scope, wait: float, max_wait: float) -> None:
        if wait > max_wait:
            if scope == Scope.MUTATIONS:
                why = (
                    f"Ad account {account}'s writes are paced to Meta's mutation rate (about "
                    f"{MUTATIONS_PER_SECOND} a second): the next one may go in {wait:.1f}s"
                )
            else:
                what = "The app" if scope == Scope.APP or account is None else f"Ad account {account}"
                why = f"{what} is rate-limited ({scope.value}) for another {wait:.0f}s"
            raise MetaError(
                ErrorKind.RATE_LIMITED,
                f"{why}, later than this call may wait ({max_wait:.0f}s); not sent.",
                retry_after=wait,
                scope=scope,
            )
        logger.info(
            "Ad account %s (%s) has no rate budget left; waiting %.1fs before calling", account, scope.value, wait
        )
        self._sleep(wait)


TIER_KEY = "meta:tier:{account}"
TIER_SECONDS = 7 * 24 * 3600


def remember_tier(account: str, tier: str) -> None:
    """The access tier learnt for an account, for the console and GET status (every process)."""
    try:
        cache.set(TIER_KEY.format(account=account), tier, timeout=TIER_SECONDS)
    except Exception as exc:  # noqa: BLE001 - a display figure is never worth failing a call
        logger.warning("Could not record the access tier of %s: %s", account, exc)


def learnt_tiers(accounts: list[str] | None = None) -> dict[str, str]:
    """The Marketing API access tier learnt (by any process) for each of `accounts`, by default the
    ad accounts the tower works on: META_AD_ACCOUNT_IDS, else the mirror's; '' while Meta has not said."""
    from meta_modules.models import AdAccount

    if accounts is None:
        accounts = [a if a.startswith("act_") else f"act_{a}" for a in settings.META_AD_ACCOUNT_IDS] or list(
            AdAccount.objects.order_by("pk").values_list("pk", flat=True)
        )
    try:
        found = cache.get_many([TIER_KEY.format(account=a) for a in accounts])
    except Exception:  # noqa: BLE001 - a display figure
        found = {}
    return {a: found.get(TIER_KEY.format(account=a), "") for a in accounts}
