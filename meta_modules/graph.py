"""The Meta Graph API client: a thin layer over the official facebook-business SDK.

What it adds to the SDK (Meta's behaviour and its sources: docs/meta-sandbox.md):
- never the SDK's crash reporter, always a timeout, one API object per thread, the API version
  sent explicitly, an optional CA bundle for proxies that inspect TLS;
- every answer checked: a body that is not a JSON object (an HTML 5xx page from Meta's edge, which
  the SDK passes on as a success) or an HTTP status of 500 or more is a transient error, in plain
  calls, pages and every batch item;
- errors classified as Meta marks them (meta_modules.errors): transient → retried with jittered
  backoff; a rate limit → no call in its scope (an account, its insights, the app, its writes)
  until it lifts; a per-object limit → that item fails with when to retry; too much data → a
  smaller request; auth, permission, a deprecated version and invalid calls fail at once;
- per-ad-account budgets learnt from the usage headers Meta sends (meta_modules.throttle), with
  blocks shared by every process, so batches are sized to what an account may still take and
  nothing is sent while it is blocked;
- batches (≤ 50) with a verdict for every item: none is dropped silently;
- large insights reads as async report runs;
- a deadline, when a caller has one, that bounds the client's own waits and retries;
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from config.logging_filters import mask_secrets
from meta_modules import backoff
from meta_modules.cache import ModuleCache
from meta_modules.errors import ErrorKind, MetaError, Scope, answer_error, decode, original_response
from meta_modules.gate import operations_halted
from meta_modules.runs import current_run
from meta_modules.throttle import READ_POINTS, WRITE_POINTS, AccountThrottle, Usage, block_seconds, parse_usage

logger = logging.getLogger(__name__)

__all__ = [
    "BatchCall",
    "BatchResult",
    "ErrorKind",
    "GraphClient",
    "MetaError",
    "Scope",
    "WriteRefused",
    "client",
    "reset_clients",
]

BATCH_LIMIT = 50
MAX_RATE_LIMIT_ROUNDS = 20
INSIGHTS_PAGE_SIZE = 500
MIN_INSIGHTS_PAGE_SIZE = 25
ASYNC_RUN_ATTEMPTS = 2  # a failed or skipped report run is started once more, then given up
SYNC_DATE_PRESETS = ("today", "yesterday")


def batch_limit_after_timeout(timed_out_size: int) -> int:
    """A batch request of this many calls got no answer in time: the size to try next (half, at least 1)."""
    return max(1, timed_out_size // 2)


def wants_async(params: Mapping[str, Any]) -> bool:
    """Whether an insights read is large enough for an async report run (Meta's advice for large
    reads): ad level over more than one day. Account- and campaign-level days and today's figures
    stay synchronous."""
    if params.get("level") != "ad":
        return False
    time_range = decode(params.get("time_range"))
    if isinstance(time_range, Mapping):
        return time_range.get("since") != time_range.get("until")
    return params.get("date_preset", "last_30d") not in SYNC_DATE_PRESETS


def smaller_requests(params: Mapping[str, Any], limit: int) -> list[tuple[dict[str, Any], int]] | None:
    """Meta asked for less data: the next requests to try, or None to give up.

    First halve the page size (what Meta's own advice and the connectors do), then split a
    multi-day range in two halves, each starting again at the usual page size.
    """
    if limit > MIN_INSIGHTS_PAGE_SIZE:
        return [(dict(params), max(MIN_INSIGHTS_PAGE_SIZE, limit // 2))]
    time_range = decode(params.get("time_range"))
    if not isinstance(time_range, Mapping):
        return None
    try:
        since, until = date.fromisoformat(time_range["since"]), date.fromisoformat(time_range["until"])
    except (KeyError, TypeError, ValueError):
        return None
    if since >= until:
        return None
    middle = since + timedelta(days=(until - since).days // 2)
    halves = ((since, middle), (middle + timedelta(days=1), until))
    return [
        ({**params, "time_range": json.dumps({"since": a.isoformat(), "until": b.isoformat()})}, INSIGHTS_PAGE_SIZE)
        for a, b in halves
    ]


def transport_error(exc: requests.RequestException) -> MetaError:
    """A connection failure or timeout, as a transient error. requests puts the request URL, with
    its access_token, into the exception text: masked here, since errors are recorded and shown."""
    return MetaError(ErrorKind.TRANSIENT, mask_secrets(f"{type(exc).__name__}: {exc}"))


class WriteRefused(Exception):
    """A Meta write attempted while the tower is halted."""


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


@dataclass(frozen=True)
class _Answer:
    status: int | None
    body: Any
    headers: Any


def _count(failed: bool, calls: int = 1) -> None:
    run = current_run()
    if run is not None:
        for _ in range(calls):
            run.count_api_call(failed=failed)


def _path(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/")) + (("",) if path.endswith("/") else ())


def _encoded(params: Mapping[str, Any]) -> str:
    """Batch item parameters as the SDK encodes them: JSON for anything but a string."""
    return "&".join(
        f"{key}={quote(value if isinstance(value, str) else json.dumps(value), safe='')}"
        for key, value in params.items()
    )


def _batch_item(call: BatchCall) -> dict[str, str]:
    item = {"method": call.method, "relative_url": call.path}
    if call.params:
        if call.method == "GET":
            item["relative_url"] += "?" + _encoded(call.params)
        else:
            item["body"] = _encoded(call.params)
    return item


def _value(body: Mapping[str, Any]) -> Any:
    """What an answer without an error means: itself, or a read-after-write's own write answer."""
    return (original_response(body) or body) if "error" in body else body


class GraphClient:
    """One client per thread (the SDK is not thread-safe): use `client()` to get this thread's."""

    def __init__(
        self,
        graph_url: str | None = None,
        access_token: str | None = None,
        api_version: str | None = None,
        app_secret: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_wait: float | None = None,
        throttle: AccountThrottle | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = FacebookSession(
            app_id=settings.META_APP_ID or None,
            app_secret=(app_secret if app_secret is not None else settings.META_APP_SECRET) or None,
            access_token=access_token or settings.META_ACCESS_TOKEN,
            timeout=timeout or settings.META_TIMEOUT_SECONDS,
        )
        self.session.GRAPH = (graph_url or settings.META_GRAPH_URL).rstrip("/")
        if settings.META_CA_BUNDLE:  # the SDK pins its own bundle, which a TLS-inspecting proxy fails
            self.session.requests.verify = settings.META_CA_BUNDLE
        # Constructed directly, not through FacebookAdsApi.init: no crash reporter, no global default API.
        self.api = FacebookAdsApi(self.session, api_version=api_version or settings.META_API_VERSION)
        self.timeout = self.session.timeout
        self.max_retries = settings.META_MAX_RETRIES if max_retries is None else max_retries
        self.max_wait = settings.META_MAX_RATE_LIMIT_WAIT_SECONDS if max_wait is None else max_wait
        self.throttle = throttle or _THROTTLE
        self.deadline: float | None = None  # time.monotonic() by which every call must have ended
        self._sleep = sleep

    @contextmanager
    def bounded(self, deadline: float) -> Iterator[GraphClient]:
        """Within the block, no wait, retry or request outlasts `deadline` (a monotonic time)."""
        previous, self.deadline = self.deadline, deadline
        try:
            yield self
        finally:
            self.deadline = previous

    def _time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _wait_limit(self, max_wait: float | None = None) -> float:
        limit = self.max_wait if max_wait is None else max_wait
        left = self._time_left()
        return limit if left is None else max(0.0, min(limit, left))

    def _pause(self, seconds: float) -> bool:
        """Sleep before a retry, unless that would pass the deadline (then False: give up now)."""
        left = self._time_left()
        if left is not None and seconds >= left:
            return False
        self._sleep(seconds)
        return True

    def _retry_pause(self, failures: int) -> bool:
        """`_pause` before retrying what failed transiently: full-jitter backoff from 0.5 s, capped at 8 s."""
        return self._pause(backoff.delay(failures, 0.5, 8.0, jitter=random.random()))

    # --- one HTTP request -------------------------------------------------------------------
    def _send(self, method: str, path: tuple[str, ...] | str, params: Mapping[str, Any]) -> _Answer:
        """One request through the SDK. Whatever came back is returned as it came, decoded when
        it is JSON; only transport failures raise (requests' exceptions)."""
        left = self._time_left()
        if left is not None and left <= 0.05:
            raise MetaError(
                ErrorKind.TRANSIENT, "Not sent: the deadline of this work came before its turn.", deadline_only=True
            )
        self.session.timeout = self.timeout if left is None else min(self.timeout, left)
        path = _path(path) if isinstance(path, str) else path
        try:
            response = self.api.call(method, path, params=dict(params))
            return _Answer(response.status(), response.json(), response.headers())
        except FacebookRequestError as exc:
            return _Answer(exc.http_status(), decode(exc.body()), exc.http_headers())
        except requests.RequestException:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # The SDK chokes on some non-JSON error pages (it indexes the text as if it were JSON).
            logger.warning("The SDK could not read Meta's answer: %s", exc)
            return _Answer(None, f"(unreadable answer: {type(exc).__name__})", {})

    # --- single calls -------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        account: str | None,
        scope: Scope = Scope.ACCOUNT,
        write: bool = False,
        max_wait: float | None = None,
    ) -> dict[str, Any]:
        points = WRITE_POINTS if write else READ_POINTS
        attempt = rounds = 0
        error: MetaError | None = None
        while True:
            self.throttle.reserve(account, scope, points, write, self._wait_limit(max_wait))
            usage: Usage | None = None
            try:
                answer = self._send(method, path, params or {})
            except MetaError as not_sent:
                if error is not None:
                    raise error from not_sent  # the deadline came mid-retry: what Meta last said is the reason
                raise
            except requests.RequestException as exc:
                _count(failed=True)
                error = transport_error(exc)
            else:
                usage = parse_usage(answer.headers, account, scope)
                error = answer_error(answer.body, answer.status, usage)
                _count(failed=error is not None)
                if error is None:
                    return _value(answer.body)
            finally:
                self.throttle.settle(account, scope, points, [usage])
            if error.kind == ErrorKind.RATE_LIMITED and rounds < MAX_RATE_LIMIT_ROUNDS:
                rounds += 1
                self._block(account, error)
                continue
            if error.kind == ErrorKind.TRANSIENT and attempt < self.max_retries and self._retry_pause(attempt + 1):
                attempt += 1
                continue
            raise error

    def _block(self, account: str | None, error: MetaError) -> None:
        scope = error.scope or Scope.ACCOUNT
        seconds = error.retry_after if scope == Scope.MUTATIONS and error.retry_after else block_seconds(error.usage)
        logger.info(
            "Meta rate limit (%s) on %s: no call in that scope for %.0fs", scope.value, account or "the app", seconds
        )
        self.throttle.block(account, scope, seconds)

    def get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        account: str | None = None,
        scope: Scope = Scope.ACCOUNT,
    ) -> dict[str, Any]:
        return self._call("GET", path, params, account, scope)

    def post(
        self, path: str, params: Mapping[str, Any], account: str | None = None, allow_while_halted: bool = False
    ) -> dict[str, Any]:
        self._guard(allow_while_halted)
        return self._call("POST", path, params, account, write=True)

    def _guard(self, allow_while_halted: bool) -> None:
        if not allow_while_halted and operations_halted():
            raise WriteRefused("Meta write refused: the tower is halted (emergency stop).")

    # --- edges --------------------------------------------------------------------------
    def paginate(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        account: str | None = None,
        page_size: int = 100,
        scope: Scope = Scope.ACCOUNT,
    ) -> Iterator[dict[str, Any]]:
        """Every object of an edge, following `paging.cursors.after` while `next` is present."""
        query = {"limit": page_size, **(params or {})}
        while True:
            page = self.get(path, query, account, scope)
            data, paging = page.get("data"), page.get("paging") or {}
            if not isinstance(data, list) or not isinstance(paging, Mapping):
                raise MetaError.not_json(page, 200)
            yield from data
            if not paging.get("next"):
                return
            after = (paging.get("cursors") or {}).get("after")
            if not after:
                raise MetaError(ErrorKind.TRANSIENT, f"A page of {path} has a next link but no cursor to follow.")
            query = {**query, "after": after}

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

    def campaigns(
        self, account: str, fields: Iterable[str], effective_status: Iterable[str] | None = None
    ) -> list[dict]:
        params: dict[str, Any] = {"fields": ",".join(fields)}
        if effective_status is not None:
            params["effective_status"] = json.dumps(list(effective_status))
        return list(self.paginate(f"{account}/campaigns", params, account))

    # --- writes -------------------------------------------------------------------------
    def update(self, object_id: str, account: str | None, allow_while_halted: bool = False, **fields: Any) -> None:
        self.post(f"{object_id}/", {k: str(v) for k, v in fields.items()}, account, allow_while_halted)

    def create(self, account: str, edge: str, params: Mapping[str, Any]) -> str:
        return self.post(
            f"{account}/{edge}", {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}, account
        )["id"]

    # --- batches ------------------------------------------------------------------------
    def batch(
        self,
        account: str | None,
        calls: list[BatchCall],
        allow_while_halted: bool = False,
        max_wait: float | None = None,
    ) -> BatchResult:
        """Run calls in batches of ≤ 50 sized to the account's budget; every item gets a verdict.

        Transient failures and timed-out (null) items are retried up to max_retries times;
        rate-limited items wait for the block to lift. Whatever cannot be done lands in `failed`.
        """
        result = BatchResult()
        attempts: dict[str, int] = {}
        last: dict[str, MetaError] = {}  # each call's latest failure, said instead of "not sent" at the deadline
        pending = list(calls)
        rounds = 0
        limit = BATCH_LIMIT  # halved each time a whole batch request times out
        while pending:
            write = any(call.method != "GET" for call in pending)
            if write:
                self._guard(allow_while_halted)
            points = WRITE_POINTS if write else READ_POINTS
            try:
                room = self.throttle.capacity(account, Scope.ACCOUNT, points, write, self._wait_limit(max_wait))
                size = min(limit, len(pending), limit if room is None else room)
                self.throttle.reserve(account, Scope.ACCOUNT, points * size, write, self._wait_limit(max_wait), size)
            except MetaError as error:
                result.failed.update({call.key: last.get(call.key, error) for call in pending})
                return result
            chunk, pending = pending[:size], pending[size:]
            try:
                retry, rate_limited, split = self._run_chunk(account, chunk, points, result, attempts, last)
            except MetaError as error:  # not sent: the deadline passed
                result.failed.update({call.key: last.get(call.key, error) for call in chunk + pending})
                return result
            if rate_limited is not None:
                rounds += 1
                self._block(account, rate_limited)
                if rounds > MAX_RATE_LIMIT_ROUNDS:
                    result.failed.update({call.key: rate_limited for call in retry + pending})
                    return result
            elif split:
                limit = batch_limit_after_timeout(len(chunk))
            elif retry and not self._retry_pause(max(attempts.get(c.key, 1) for c in retry)):
                result.failed.update({call.key: last[call.key] for call in retry})  # no time for another try
                result.failed.update(
                    {
                        call.key: last.get(
                            call.key,
                            MetaError(
                                ErrorKind.TRANSIENT,
                                "Not sent: the deadline of this work came before its turn.",
                                deadline_only=True,
                            ),
                        )
                        for call in pending
                    }
                )
                return result
            pending = retry + pending
        return result

    def _run_chunk(
        self,
        account: str | None,
        chunk: list[BatchCall],
        points: int,
        result: BatchResult,
        attempts: dict[str, int],
        last: dict[str, MetaError],
    ) -> tuple[list[BatchCall], MetaError | None, bool]:
        """One HTTP batch request. Returns (calls to retry, a rate-limit error if one was seen,
        whether the whole request timed out and its calls go again in smaller batches)."""
        retry: list[BatchCall] = []
        rate_limited: MetaError | None = None

        def give_up_or_retry(call: BatchCall, error: MetaError) -> None:
            nonlocal rate_limited
            last[call.key] = error
            if error.kind == ErrorKind.RATE_LIMITED:
                rate_limited = error if rate_limited is None or error.scope == Scope.APP else rate_limited
                retry.append(call)
            elif error.kind == ErrorKind.TRANSIENT and attempts.get(call.key, 0) < self.max_retries:
                attempts[call.key] = attempts.get(call.key, 0) + 1
                retry.append(call)
            else:
                result.failed[call.key] = error

        usages: list[Usage | None] = []
        result.requests += 1
        try:
            answer = self._send("POST", (), {"batch": [_batch_item(call) for call in chunk]})
        except requests.RequestException as exc:
            self.throttle.settle(account, Scope.ACCOUNT, points * len(chunk), [])
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
        except MetaError:
            self.throttle.settle(account, Scope.ACCOUNT, points * len(chunk), [])
            raise
        items = answer.body
        if not isinstance(items, list) or len(items) != len(chunk) or (answer.status or 0) >= 500:
            # The whole request failed: a Graph error for it, or no Graph answer at all.
            usage = parse_usage(answer.headers, account)
            error = answer_error(items, answer.status, usage) or MetaError.not_json(items, answer.status, usage)
            self.throttle.settle(account, Scope.ACCOUNT, points * len(chunk), [usage])
            _count(failed=True, calls=len(chunk))
            for call in chunk:
                give_up_or_retry(call, error)
            return retry, rate_limited, False
        for call, item in zip(chunk, items):
            if not item:  # Meta answered null: the item was not done in time (and not applied)
                _count(failed=True)
                give_up_or_retry(call, MetaError(ErrorKind.TRANSIENT, "Batch item timed out (null response)."))
                continue
            if not isinstance(item, Mapping):
                _count(failed=True)
                give_up_or_retry(call, MetaError.not_json(item, None))
                continue
            status, body = item.get("code"), decode(item.get("body"))
            usage = parse_usage(item.get("headers"), account)
            usages.append(usage)
            error = answer_error(body, status if isinstance(status, int) else None, usage)
            _count(failed=error is not None)
            if error is None:
                result.succeeded[call.key] = _value(body)
            else:
                give_up_or_retry(call, error)
        self.throttle.settle(account, Scope.ACCOUNT, points * len(chunk), usages)
        return retry, rate_limited, False

    # --- insights -------------------------------------------------------------------------
    def insights(self, object_id: str, params: Mapping[str, Any], account: str | None = None) -> list[dict]:
        """Insights rows: an async report run for large reads, else pages; asked again in smaller
        pieces when Meta says the answer would be too large."""
        if wants_async(params):
            return self._report_run(object_id, params, account)
        return self._insights_pages(object_id, dict(params), account, INSIGHTS_PAGE_SIZE)

    def _insights_pages(self, object_id: str, params: dict[str, Any], account: str | None, limit: int) -> list[dict]:
        try:
            return list(self.paginate(f"{object_id}/insights", params, account, limit, Scope.INSIGHTS))
        except MetaError as error:
            if error.kind != ErrorKind.TOO_MUCH_DATA:
                raise
            smaller = smaller_requests(params, limit)
            if smaller is None:
                raise
            logger.info("Meta asked for less insights data of %s; trying %d smaller requests", object_id, len(smaller))
            return [row for part, size in smaller for row in self._insights_pages(object_id, part, account, size)]

    def _report_run(self, object_id: str, params: Mapping[str, Any], account: str | None) -> list[dict]:
        """POST …/insights → report_run_id; poll its async_status; read its rows (Meta's async insights)."""
        for attempt in range(1, ASYNC_RUN_ATTEMPTS + 1):
            started = self._call("POST", f"{object_id}/insights", params, account, Scope.INSIGHTS)
            run_id = str(started.get("report_run_id") or "")
            if not run_id:
                raise MetaError.not_json(started, 200)
            status = self._await_report(run_id, account)
            if status.get("async_status") == "Job Completed":
                return list(self.paginate(f"{run_id}/insights", {}, account, INSIGHTS_PAGE_SIZE, Scope.INSIGHTS))
            why = status.get("error_message") or status.get("async_status")
            logger.warning("Insights report run %s of %s ended %s (attempt %d)", run_id, object_id, why, attempt)
        raise MetaError(
            ErrorKind.TRANSIENT,
            f"Insights report runs of {object_id} did not complete ({ASYNC_RUN_ATTEMPTS} attempts; last: {why}).",
        )

    def _await_report(self, run_id: str, account: str | None) -> dict[str, Any]:
        give_up = time.monotonic() + settings.META_INSIGHTS_ASYNC_TIMEOUT_SECONDS
        polls = 0
        while True:
            status = self.get(
                run_id,
                {"fields": "id,async_status,async_percent_completion,error_code,error_message"},
                account,
                Scope.INSIGHTS,
            )
            if status.get("async_status") in ("Job Completed", "Job Failed", "Job Skipped"):
                return status
            delay = min(5.0, 0.25 * 2**polls)
            polls += 1
            if time.monotonic() + delay > give_up or not self._pause(delay):
                raise MetaError(
                    ErrorKind.TRANSIENT,
                    f"Insights report run {run_id} still "
                    f"{status.get('async_status')} "
                    f"({status.get('async_percent_completion', 0)}%) when given up.",
                )


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
