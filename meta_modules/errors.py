"""What a Graph API error means and what to do about it: pure rules, facts in, verdicts out.

Sources (each named in docs/meta-sandbox.md, "Errors"): Meta's error-handling guide, the Marketing
API rate-limiting page (updated 2026-05-05) for the scope of each limit, recorded live bodies
(Airbyte's source-facebook-marketing) for `is_transient: false` and "reduce the amount of data".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # try again after a backoff
    RATE_LIMITED = "rate_limited"  # a scope is blocked: no call in it until the block lifts
    OBJECT_LIMITED = "object_limited"  # one object's own limit: that item fails, retry after a while
    TOO_MUCH_DATA = "too_much_data"  # ask for less (a smaller page, a shorter range), not again
    AUTH = "auth"
    PERMISSION = "permission"
    DEPRECATED_VERSION = "deprecated_version"
    INVALID = "invalid"


class Scope(StrEnum):
    """What a rate limit blocks."""

    ACCOUNT = "ads_management"  # every call about one ad account
    INSIGHTS = "ads_insights"  # the insights calls of one ad account (a quota of its own)
    APP = "app"  # every call of the app, whatever the account
    MUTATIONS = "mutations"  # one ad account's writes, for about a second


RETRYABLE = frozenset({ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED})
AUTH_CODES = frozenset({102, 104, 190})
TRANSIENT_CODES = frozenset({1, 2, 341, 368})
DEPRECATED_VERSION_CODE = 2635
# (code or None for any code, subcode) → seconds until the object may change again (None: unknown).
OBJECT_LIMITS: dict[tuple[int | None, int], float | None] = {
    (None, 1487632): 3600.0,  # an ad set's budget: 4 changes an hour, then blocked 1 h (17 or 613)
    (17, 1885172): 86400.0,  # an ad account's spend cap: 10 changes a day
    (613, 1487225): None,  # the ad account's limit on ad creation
}
MUTATION_RATE = (613, 5044001)  # about 100 writes a second per app and ad account
MUTATION_PAUSE_SECONDS = 1.0
# Insights' "the answer would be too large" subcodes.
DATA_SIZE = frozenset({(100, 1487534), (100, 1504018), (2, 1504038), (-3, 1504045)})
REDUCE_DATA = "reduce the amount of data"


@dataclass(frozen=True)
class Verdict:
    kind: ErrorKind
    scope: Scope | None = None  # for RATE_LIMITED
    retry_after: float | None = None  # seconds, when the rule knows them


def classify(
    code: int | None,
    subcode: int | None,
    http_status: int | None,
    is_transient: bool | None = None,
    user_title: str = "",
    message: str = "",
) -> Verdict:
    """What to do about one error, from what Meta put in it (first rule that matches wins)."""
    if code in AUTH_CODES:
        return Verdict(ErrorKind.AUTH)
    if code == DEPRECATED_VERSION_CODE:
        return Verdict(ErrorKind.DEPRECATED_VERSION)
    if subcode is not None:
        for (limit_code, limit_subcode), retry_after in OBJECT_LIMITS.items():
            if subcode == limit_subcode and limit_code in (None, code):
                return Verdict(ErrorKind.OBJECT_LIMITED, retry_after=retry_after)
    if (code, subcode) == MUTATION_RATE:
        return Verdict(ErrorKind.RATE_LIMITED, Scope.MUTATIONS, MUTATION_PAUSE_SECONDS)
    if code == 4:
        return Verdict(ErrorKind.RATE_LIMITED, Scope.APP)
    if code == 80000:
        return Verdict(ErrorKind.RATE_LIMITED, Scope.INSIGHTS)
    if code in (17, 32, 613) or (code is not None and 80001 <= code <= 80014) or subcode == 2446079:
        return Verdict(ErrorKind.RATE_LIMITED, Scope.ACCOUNT)
    if (code, subcode) in DATA_SIZE or REDUCE_DATA in message.lower():
        return Verdict(ErrorKind.TOO_MUCH_DATA)
    if is_transient is False and (user_title or subcode):
        return Verdict(ErrorKind.INVALID)  # Meta says it will fail again: a problem for a person
    if is_transient or code in TRANSIENT_CODES or (http_status is not None and http_status >= 500):
        return Verdict(ErrorKind.TRANSIENT)
    if code == 10 or (code is not None and 200 <= code <= 299):
        return Verdict(ErrorKind.PERMISSION)
    return Verdict(ErrorKind.INVALID)


def not_json_snippet(body: Any, limit: int = 120) -> str:
    """The start of an answer that is not a JSON object (an HTML error page), on one line."""
    text = body if isinstance(body, str) else json.dumps(body)
    return " ".join(text.split())[:limit]


class MetaError(Exception):
    """A Graph API call that did not do what was asked, with Meta's explanation when it gave one."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        code: int | None = None,
        subcode: int | None = None,
        http_status: int | None = None,
        fbtrace_id: str = "",
        usage: Any = None,
        retry_after: float | None = None,
        scope: Scope | None = None,
        user_title: str = "",
        user_msg: str = "",
        deadline_only: bool = False,
    ) -> None:
        super().__init__(message)
        # True: not sent because a deadline came; an earlier error of the same call says more.
        self.deadline_only = deadline_only
        self.kind, self.message, self.code, self.subcode = kind, message, code, subcode
        self.http_status, self.fbtrace_id, self.usage = http_status, fbtrace_id, usage
        self.retry_after = retry_after  # seconds until the call can go, when known
        self.scope = scope
        self.user_title, self.user_msg = user_title, user_msg

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, so a Celery task's failure keeps its detail
        return (
            self.__class__,
            (
                self.kind,
                self.message,
                self.code,
                self.subcode,
                self.http_status,
                self.fbtrace_id,
                None,
                self.retry_after,
                self.scope,
                self.user_title,
                self.user_msg,
                self.deadline_only,
            ),
        )

    def __str__(self) -> str:
        code = f" {self.code}/{self.subcode}" if self.subcode else f" {self.code}" if self.code is not None else ""
        explained = f" — {self.user_title}: {self.user_msg}" if self.user_title or self.user_msg else ""
        if self.kind == ErrorKind.OBJECT_LIMITED:
            when = f"in {self.retry_after / 3600:g} h" if self.retry_after else "later"
            explained += f" (this object's own limit: retry {when}; the account is not blocked)"
        trace = f" [fbtrace_id {self.fbtrace_id}]" if self.fbtrace_id else ""
        return f"Meta {self.kind} error{code}: {self.message}{explained}{trace}"

    @classmethod
    def from_error(cls, error: Mapping[str, Any], http_status: int | None, usage: Any = None) -> MetaError:
        """From the `error` object of a Graph answer."""
        code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        transient = error.get("is_transient")
        user_title, message = str(error.get("error_user_title") or ""), str(error.get("message") or "")
        verdict = classify(
            code, subcode, http_status, transient if isinstance(transient, bool) else None, user_title, message
        )
        return cls(
            verdict.kind,
            message or f"HTTP {http_status}",
            code,
            subcode,
            http_status,
            str(error.get("fbtrace_id") or ""),
            usage,
            verdict.retry_after,
            verdict.scope,
            user_title,
            str(error.get("error_user_msg") or ""),
        )

    @classmethod
    def not_json(cls, body: Any, http_status: int | None, usage: Any = None) -> MetaError:
        """An answer that is no Graph answer at all (an HTML page from Meta's edge or a proxy)."""
        return cls(
            ErrorKind.TRANSIENT,
            f"HTTP {http_status} with an answer that is not a Graph API object: {not_json_snippet(body)!r}",
            http_status=http_status,
            usage=usage,
        )


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def decode(body: Any) -> Any:
    """A body as JSON when it is JSON, else as it came (the SDK does the same)."""
    if isinstance(body, (str, bytes)):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


def answer_error(body: Any, http_status: int | None, usage: Any = None) -> MetaError | None:
    """The error an answer carries, or None when it is a usable Graph object.

    Anything but a JSON object, and any HTTP status of 500 or more, is a transient failure: the SDK
    would hand such a body on as a success. A read-after-write whose read failed carries the write's
    own answer (`original_response`): the write happened, so it is no error.
    """
    if not isinstance(body, Mapping):
        return MetaError.not_json(body, http_status, usage)
    error = body.get("error")
    if isinstance(error, Mapping):
        if original_response(body) is not None:
            return None
        return MetaError.from_error(error, http_status, usage)
    if http_status is not None and http_status >= 500:
        return MetaError.not_json(body, http_status, usage)
    if body.get("success") is False:
        return MetaError(ErrorKind.TRANSIENT, "Meta answered success: false.", http_status=http_status, usage=usage)
    return None


def original_response(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The write's own answer inside a read-after-write error (Graph API, "Read-After-Write")."""
    error = body.get("error")
    for holder in (body, error if isinstance(error, Mapping) else {}):
        found = decode(holder.get("original_response"))
        if isinstance(found, Mapping):
            return found
    return None
