"""The Meta Graph API client: a thin layer over the official facebook-business SDK.

What it adds to the SDK (reference: shared/reference/meta-graph-api.md):
- never the SDK's crash reporter, always a timeout, one API object per thread;
- error classification: transient → retried with jittered exponential backoff;
  rate-limited → no call to that ad account until its block lifts (usage headers);
  auth (190) → fails at once; permission / invalid → fails, no retry;
- a per-ad-account point budget (read 1, write 3) learnt from the usage headers, so
  batches are sized to what the account may still take and nothing is sent while blocked;
- batches (≤ 50) with a verdict for every item: none is dropped silently;
- every call counted into the current module run;
- the write guard: while the tower is halted, writes are refused unless made by the
  emergency-stop / resume procedures (`allow_while_halted=True`).
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import requests
from django.conf import settings
from facebook_business.api import FacebookAdsApi, FacebookResponse
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from config.logging_filters import mask_secrets
from meta_modules.cache import ModuleCache
from meta_modules.gate import operations_halted
from meta_modules.runs import current_run

logger = logging.getLogger(__name__)

BATCH_LIMIT = 50
READ_POINTS, WRITE_POINTS = 1, 3
# Maximum score per ad account by access tier (Marketing API rate limiting).
TIER_MAX_POINTS = {"development_access": 60, "standard_access": 9000}
UNKNOWN_TIER_MAX_POINTS = 60  # assume the strictest tier until the headers say otherwise
MAX_RATE_LIMIT_ROUNDS = 20


class ErrorKind(StrEnum):
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    PERMISSION = "permission"
    INVALID = "invalid"


RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80000, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009, 80014})
TRANSIENT_CODES = frozenset({1, 2, 341, 368})
AUTH_CODES = frozenset({102, 104, 190})


def classify(code: int | None, subcode: int | None, http_status: int | None, is_transient: bool = False) -> ErrorKind:
    """What to do about a Graph API error, from its code (Meta's error-handling guide)."""
    if code in AUTH_CODES:
        return ErrorKind.AUTH
    if code in RATE_LIMIT_CODES or subcode == 2446079:
        return ErrorKind.RATE_LIMITED
    if code in TRANSIENT_CODES or is_transient or (http_status is not None and http_status >= 500):
        return ErrorKind.TRANSIENT
    if code == 10 or (code is not None and 200 <= code <= 299):
        return ErrorKind.PERMISSION
    return ErrorKind.INVALID


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base·2^attempt)]."""
    return rand() * min(cap, base * 2**attempt)


def batch_limit_after_timeout(timed_out_size: int) -> int:
    """A batch request of this many calls got no answer in time: the size to try next (half, at least 1)."""
    return max(1, timed_out_size // 2)


@dataclass(frozen=True)
class Usage:
    """An ad account's rate-limit figures from one response's headers."""

    util_pct: float | None = None
    reset_seconds: float | None = None  # until the score decays (or the block lifts)
    regain_seconds: float | None = None  # estimated_time_to_regain_access, converted
    tier: str | None = None


def _header_map(headers: Any) -> dict[str, str]:
    """Headers as a lower-cased dict: the SDK gives a mapping, batch items a [{name, value}] list."""
    if not headers:
        return {}
    if isinstance(headers, Mapping):
        return {str(k).lower(): v for k, v in headers.items()}
    return {str(h.get("name", "")).lower(): h.get("value") for h in headers if isinstance(h, Mapping)}


def parse_usage(headers: Any) -> Usage:
    found = _header_map(headers)
    util = reset = regain = None
    tier = None
    try:
        account = json.loads(found.get("x-ad-account-usage") or "{}")
        util = account.get("acc_id_util_pct")
        reset = account.get("reset_time_duration")
        tier = account.get("ads_api_access_tier")
        for entries in json.loads(found.get("x-business-use-case-usage") or "{}").values():
            for entry in entries:
                minutes = entry.get("estimated_time_to_regain_access") or 0
                regain = max(regain or 0.0, minutes * 60.0)
                tier = tier or entry.get("ads_api_access_tier")
    except (ValueError, AttributeError, TypeError):
        logger.warning("Unreadable Meta usage headers: %r", found)
    return Usage(
        util_pct=float(util) if util is not None else None,
        reset_seconds=float(reset) if reset is not None else None,
        regain_seconds=regain,
        tier=tier,
    )


def block_seconds(usage: Usage, default: float = 60.0) -> float:
    """How long to leave a rate-limited account alone: the precise reset when given, else the estimate."""
    if usage.reset_seconds:
        return usage.reset_seconds
    if usage.regain_seconds:
        return usage.regain_seconds
    return default


class MetaError(Exception):
    def __init__(self, kind: ErrorKind, message: str, code: int | None = None, subcode: int | None = None,
                 http_status: int | None = None, fbtrace_id: str = "", usage: Usage | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.code, self.subcode = kind, message, code, subcode
        self.http_status, self.fbtrace_id, self.usage = http_status, fbtrace_id, usage or Usage()
        self.retry_after = retry_after  # seconds until the call can go, when known (an account's block)

    def __str__(self) -> str:
        code = f"{self.code}/{self.subcode}" if self.subcode else str(self.code)
        trace = f" [fbtrace_id {self.fbtrace_id}]" if self.fbtrace_id else ""
        return f"Meta {self.kind} error {code}: {self.message}{trace}"

    @classmethod
    def from_body(cls, body: Any, http_status: int | None, headers: Any = None) -> MetaError:
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except ValueError:
                body = {}
        error = body.get("error", {}) if isinstance(body, Mapping) else {}
        code, subcode = error.get("code"), error.get("error_subcode")
        return cls(
            classify(code, subcode, http_status, bool(error.get("is_transient"))),
            error.get("message") or f"HTTP {http_status}",
            code, subcode, http_status, error.get("fbtrace_id", ""), parse_usage(headers),
        )

    @classmethod
    def from_sdk(cls, exc: FacebookRequestError) -> MetaError:
        return cls.from_body(exc.body(), exc.http_status(), exc.http_headers())


def transport_error(exc: requests.RequestException) -> MetaError:
    """A connection failure or timeout, as a transient error. requests puts the request URL, with
    its access_token, into the exception text: masked here, since errors are recorded and shown."""
    return MetaError(ErrorKind.TRANSIENT, mask_secrets(f"{type(exc).__name__}: {exc}"))


class WriteRefused(Exception):
    """A Meta write attempted while the tower is halted."""


@dataclass
class _Budget:
    max_points: int = UNKNOWN_TIER_MAX_POINTS
    used: float = 0.0
    reset_at: float = 0.0  # monotonic time when `used` decays to 0
    blocked_until: float = 0.0


class AccountThrottle:
    """Per-ad-account point budget shared by every client in the process.

    Learnt from the usage headers of each response; spent optimistically before each call
    so concurrent threads do not overshoot; waits (bounded) instead of calling while blocked.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._budgets: dict[str, _Budget] = {}

    def _budget(self, account: str) -> _Budget:
        return self._budgets.setdefault(account, _Budget())

    def _wait_for(self, budget: _Budget, points: float, now: float) -> float:
        if budget.blocked_until > now:
            return budget.blocked_until - now
        if budget.reset_at <= now:
            budget.used = 0.0
        if budget.used + points <= budget.max_points:
            return 0.0
        return budget.reset_at - now

    def capacity(self, account: str | None, points_each: float, max_wait: float) -> int | None:
        """How many calls of this cost the account takes now, after waiting for room if there is none.

        None for calls not tied to an ad account (not scored). Raises if the wait is too long.
        """
        if account is None:
            return None
        while True:
            with self._lock:
                budget, now = self._budget(account), self._clock()
                wait = self._wait_for(budget, points_each, now)
                if wait <= 0:
                    return int((budget.max_points - budget.used) // points_each)
            self._wait(account, wait, max_wait)

    def _wait(self, account: str, wait: float, max_wait: float) -> None:
        if wait > max_wait:
            raise MetaError(ErrorKind.RATE_LIMITED,
                            f"Ad account {account} is rate-limited for another {wait:.0f}s (longer than {max_wait:.0f}s).",
                            retry_after=wait)
        logger.info("Ad account %s has no rate budget left; waiting %.1fs before calling", account, wait)
        self._sleep(wait)

    def reserve(self, account: str | None, points: float, max_wait: float) -> None:
        """Wait until the account can take `points`, then spend them. Raises if the wait is too long."""
        if account is None:
            return
        while True:
            with self._lock:
                budget, now = self._budget(account), self._clock()
                wait = self._wait_for(budget, points, now)
                if wait <= 0:
                    budget.used += points
                    return
            self._wait(account, wait, max_wait)

    def observe(self, account: str | None, usage: Usage) -> None:
        if account is None or usage.util_pct is None:
            return
        with self._lock:
            budget, now = self._budget(account), self._clock()
            budget.max_points = TIER_MAX_POINTS.get(usage.tier or "", budget.max_points)
            budget.used = max(budget.used, budget.max_points * usage.util_pct / 100.0)
            if usage.reset_seconds is not None:
                budget.reset_at = now + usage.reset_seconds

    def block(self, account: str | None, seconds: float) -> None:
        if account is None:
            return
        with self._lock:
            budget, now = self._budget(account), self._clock()
            budget.blocked_until = max(budget.blocked_until, now + seconds)
            budget.reset_at = max(budget.reset_at, budget.blocked_until)
            budget.used = 0.0  # the decay window restarts when the block lifts


_THROTTLE = AccountThrottle()


@dataclass
class BatchCall:
    key: str  # the caller's id for this item (e.g. the campaign id)
    method: str
    path: str  # relative to the version, e.g. "1202.../"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchResult:
    succeeded: dict[str, Any] = field(default_factory=dict)  # key → decoded body
    failed: dict[str, MetaError] = field(default_factory=dict)  # key → final error
    requests: int = 0  # HTTP requests made


def _count(failed: bool, calls: int = 1) -> None:
    run = current_run()
    if run is not None:
        for _ in range(calls):
            run.count_api_call(failed=failed)


def _path(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/")) + (("",) if path.endswith("/") else ())


class GraphClient:
    """One client per thread (the SDK is not thread-safe): use `client()` to get this thread's."""

    def __init__(self, graph_url: str | None = None, access_token: str | None = None,
                 api_version: str | None = None, app_secret: str | None = None, timeout: float | None = None,
                 max_retries: int | None = None, max_wait: float | None = None,
                 throttle: AccountThrottle | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        session = FacebookSession(
            app_id=settings.META_APP_ID or None,
            app_secret=(app_secret if app_secret is not None else settings.META_APP_SECRET) or None,
            access_token=access_token or settings.META_ACCESS_TOKEN,
            timeout=timeout or settings.META_TIMEOUT_SECONDS,
        )
        session.GRAPH = (graph_url or settings.META_GRAPH_URL).rstrip("/")
        # Constructed directly, not through FacebookAdsApi.init: no crash reporter, no global default API.
        self.api = FacebookAdsApi(session, api_version=api_version or settings.META_API_VERSION or None)
        self.max_retries = settings.META_MAX_RETRIES if max_retries is None else max_retries
        self.max_wait = settings.META_MAX_RATE_LIMIT_WAIT_SECONDS if max_wait is None else max_wait
        self.throttle = throttle or _THROTTLE
        self._sleep = sleep

    # --- single calls -------------------------------------------------------------------
    def _call(self, method: str, path: str, params: Mapping[str, Any] | None, account: str | None,
              points: int, max_wait: float | None = None) -> Any:
        max_wait = self.max_wait if max_wait is None else max_wait
        attempt = rounds = 0
        while True:
            self.throttle.reserve(account, points, max_wait)
            try:
                response: FacebookResponse = self.api.call(method, _path(path), params=dict(params or {}))
            except FacebookRequestError as exc:
                _count(failed=True)
                error = MetaError.from_sdk(exc)
            except requests.RequestException as exc:
                _count(failed=True)
                error = transport_error(exc)
            else:
                _count(failed=False)
                self.throttle.observe(account, parse_usage(response.headers()))
                return response.json()
            self.throttle.observe(account, error.usage)
            if error.kind == ErrorKind.RATE_LIMITED and rounds < MAX_RATE_LIMIT_ROUNDS:
                rounds += 1
                self.throttle.block(account, block_seconds(error.usage))
                continue
            if error.kind == ErrorKind.TRANSIENT and attempt < self.max_retries:
                self._sleep(backoff_delay(attempt, 0.5, 8.0))
                attempt += 1
                continue
            raise error

    def get(self, path: str, params: Mapping[str, Any] | None = None, account: str | None = None) -> Any:
        return self._call("GET", path, params, account, READ_POINTS)

    def post(self, path: str, params: Mapping[str, Any], account: str | None = None,
             allow_while_halted: bool = False) -> Any:
        self._guard(allow_while_halted)
        return self._call("POST", path, params, account, WRITE_POINTS)

    def _guard(self, allow_while_halted: bool) -> None:
        if not allow_while_halted and operations_halted():
            raise WriteRefused("Meta write refused: the tower is halted (emergency stop).")

    # --- edges --------------------------------------------------------------------------
    def paginate(self, path: str, params: Mapping[str, Any] | None = None, account: str | None = None,
                 page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every object of an edge, following `paging.cursors.after` while `next` is present."""
        query = {"limit": page_size, **(params or {})}
        while True:
            page = self.get(path, query, account)
            yield from page.get("data", [])
            paging = page.get("paging", {})
            if not paging.get("next"):
                return
            query = {**query, "after": paging["cursors"]["after"]}

    def ad_accounts(self) -> list[str]:
        """The ad accounts to work on: META_AD_ACCOUNT_IDS, or every account the token sees.

        Inside a module job the discovered list is kept in the module's cache namespace for
        META_ACCOUNTS_CACHE_SECONDS (the tower's CLEAR_CACHE recovery empties it).
        """
        if settings.META_AD_ACCOUNT_IDS:
            return [a if a.startswith("act_") else f"act_{a}" for a in settings.META_AD_ACCOUNT_IDS]

        def discover() -> list[str]:
            return [account["id"] for account in self.paginate("me/adaccounts", {"fields": "id"})]

        run = current_run()
        if run is None:
            return discover()
        return ModuleCache(run.module_code).get_or_set("ad_accounts", discover, settings.META_ACCOUNTS_CACHE_SECONDS)

    def campaigns(self, account: str, fields: Iterable[str], effective_status: Iterable[str] | None = None) -> list[dict]:
        params: dict[str, Any] = {"fields": ",".join(fields)}
        if effective_status is not None:
            params["effective_status"] = json.dumps(list(effective_status))
        return list(self.paginate(f"{account}/campaigns", params, account))

    # --- writes -------------------------------------------------------------------------
    def update(self, object_id: str, account: str | None, allow_while_halted: bool = False, **fields: Any) -> None:
        self.post(f"{object_id}/", {k: str(v) for k, v in fields.items()}, account, allow_while_halted)

    def batch(self, account: str | None, calls: list[BatchCall], allow_while_halted: bool = False,
              max_wait: float | None = None) -> BatchResult:
        """Run calls in batches of ≤ 50 sized to the account's budget; every item gets a verdict.

        Transient failures and timed-out (null) items are retried up to max_retries times;
        rate-limited items wait for the block to lift. Whatever cannot be done lands in `failed`.
        """
        max_wait = self.max_wait if max_wait is None else max_wait
        result = BatchResult()
        attempts: dict[str, int] = {}
        pending = list(calls)
        rounds = 0
        limit = BATCH_LIMIT  # halved each time a whole batch request times out
        while pending:
            if any(call.method != "GET" for call in pending):
                self._guard(allow_while_halted)
            points = WRITE_POINTS if pending[0].method != "GET" else READ_POINTS
            try:
                room = self.throttle.capacity(account, points, max_wait)
                size = min(limit, len(pending), limit if room is None else room)
                self.throttle.reserve(account, points * size, max_wait)
            except MetaError as error:
                result.failed.update({call.key: error for call in pending})
                return result
            chunk, pending = pending[:size], pending[size:]
            retry, rate_limited, split = self._run_chunk(account, chunk, result, attempts)
            if rate_limited is not None:
                rounds += 1
                self.throttle.block(account, block_seconds(rate_limited.usage))
                if rounds > MAX_RATE_LIMIT_ROUNDS:
                    result.failed.update({call.key: rate_limited for call in retry + pending})
                    return result
            elif split:
                limit = batch_limit_after_timeout(len(chunk))
            elif retry:
                self._sleep(backoff_delay(max(attempts.get(c.key, 1) for c in retry) - 1, 0.5, 8.0))
            pending = retry + pending
        return result

    def _run_chunk(self, account: str | None, chunk: list[BatchCall], result: BatchResult,
                   attempts: dict[str, int]) -> tuple[list[BatchCall], MetaError | None, bool]:
        """One HTTP batch request. Returns (calls to retry, a rate-limit error if one was seen,
        whether the whole request timed out and its calls go again in smaller batches)."""
        retry: list[BatchCall] = []
        rate_limited: MetaError | None = None
        answered: set[str] = set()

        def give_up_or_retry(call: BatchCall, error: MetaError) -> None:
            nonlocal rate_limited
            if error.kind == ErrorKind.RATE_LIMITED:
                rate_limited = error
                retry.append(call)
            elif error.kind == ErrorKind.TRANSIENT and attempts.get(call.key, 0) < self.max_retries:
                attempts[call.key] = attempts.get(call.key, 0) + 1
                retry.append(call)
            else:
                result.failed[call.key] = error

        batch = self.api.new_batch()
        for call in chunk:
            def on_success(response: FacebookResponse, call: BatchCall = call) -> None:
                answered.add(call.key)
                _count(failed=False)
                self.throttle.observe(account, parse_usage(response.headers()))
                result.succeeded[call.key] = response.json()

            def on_failure(response: FacebookResponse, call: BatchCall = call) -> None:
                answered.add(call.key)
                _count(failed=True)
                error = MetaError.from_body(response.body(), response.status(), response.headers())
                self.throttle.observe(account, error.usage)
                give_up_or_retry(call, error)

            batch.add(call.method, _path(call.path), params=call.params, success=on_success, failure=on_failure)
        result.requests += 1
        try:
            batch.execute()
        except FacebookRequestError as exc:  # the whole batch request failed
            _count(failed=True, calls=len(chunk))
            error = MetaError.from_sdk(exc)
            self.throttle.observe(account, error.usage)
            for call in chunk:
                give_up_or_retry(call, error)
            return retry, rate_limited, False
        except requests.RequestException as exc:
            _count(failed=True, calls=len(chunk))
            if isinstance(exc, requests.Timeout) and len(chunk) > 1:
                # No answer in time, though Meta may still apply every item: send them again in
                # smaller batches (without spending their retries) so the answers come back.
                logger.info("A batch of %d calls timed out; retrying them in smaller batches", len(chunk))
                return list(chunk), None, True
            error = transport_error(exc)
            for call in chunk:
                give_up_or_retry(call, error)
            return retry, rate_limited, False
        for call in chunk:  # items Meta answered with null were not done: retry them
            if call.key not in answered:
                _count(failed=True)
                give_up_or_retry(call, MetaError(ErrorKind.TRANSIENT, "Batch item timed out (null response)."))
        return retry, rate_limited, False

    def create(self, account: str, edge: str, params: Mapping[str, Any]) -> str:
        return self.post(f"{account}/{edge}", {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}, account)["id"]

    def insights(self, object_id: str, params: Mapping[str, Any], account: str | None = None) -> list[dict]:
        return list(self.paginate(f"{object_id}/insights", params, account, page_size=500))


_local = threading.local()


def client() -> GraphClient:
    """This thread's client, configured from settings."""
    if getattr(_local, "client", None) is None:
        _local.client = GraphClient()
    return _local.client


def reset_clients() -> None:
    """Forget this thread's client and what was learnt of rate limits (settings changed, new sandbox)."""
    global _THROTTLE
    _local.client = None
    _THROTTLE = AccountThrottle()
