"""HTTP server that speaks the Graph API wire format over store.py.

``Sandbox`` is the transport-free core (routing, fields, paging, insights, batch, rate limits,
faults, control API); ``SandboxHTTPServer`` puts it behind http.server. See docs/meta-sandbox.md.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import random
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from .access import (
    USER_ID,
    Access,
    AccountAccess,
    debug_token_refusal,
    is_app_token,
    issued_token,
    must_provide_app_token,
    read_refusal,
    write_refusal,
)
from .presets import (
    DEFAULT_MIN_VERSION,
    CallKind,
    ErrorPlan,
    ErrorRule,
    deprecated_version,
    preset_error,
    version_key,
)
from .ratelimit import (
    DEFAULT_TIERS,
    READ_POINTS,
    SCOPES,
    WRITE_POINTS,
    AppLimit,
    AppLimiter,
    MutationLimiter,
    ObjectLimiter,
    RateLimiter,
    Usage,
    parse_object_limits,
    parse_tier_params,
)
from .reports import REPORT_FIELDS, ReportRun, ReportRuns, report_json
from .store import (
    DELIVERY_STATES,
    EFFECTIVE_STATUSES,
    NODE_TYPES,
    OBJECTIVES,
    STATUSES,
    DateRange,
    GraphError,
    LocalDays,
    Node,
    SeedConfig,
    Store,
    fb_time,
    insight_rows,
    local_day,
    major,
    money,
    object_not_found,
    offset_hours,
    parse_issues_info,
    resolve_dates,
)

MAX_BATCH = 50
MAX_LIMIT = 5000
DEFAULT_LIMIT = 25
USER = {"id": USER_ID, "name": "Sandbox User"}
_VERSIONED = re.compile(r"^/(v\d+\.\d+)(?:/(.*))?$")
_NESTED_FIELDS = re.compile(r"\{[^{}]*\}")
_AUTH_PARAMS = {"access_token", "appsecret_proof"}
_JSON = "application/json; charset=UTF-8"
_HTML = 'text/html; charset="utf-8"'
USAGE_HEADER_MODES = ("all", "buc_only", "none")
LATENCY_FIELDS = ("latency_ms", "per_item_ms", "per_object_ms")
# Named latency profiles (docs/meta-sandbox.md, "Latency profiles", says where the figures come from):
# "live" is what connectors observe of Meta, "harsh" its slow side; explicit latency fields win.
LATENCY_PROFILES: dict[str, dict[str, float]] = {
    "none": {"latency_ms": 0.0, "per_item_ms": 0.0, "per_object_ms": 0.0},
    "live": {"latency_ms": 100.0, "per_item_ms": 20.0, "per_object_ms": 1.0},
    "harsh": {"latency_ms": 250.0, "per_item_ms": 40.0, "per_object_ms": 3.0},
}


def _html_page(title: str, heading: str, text: str) -> str:
    """An error page of Meta's edge, shaped like the one quoted in SDK issue #421."""
    return (
        '<!DOCTYPE html>\n<html lang="en" id="facebook">\n  <head>\n'
        f"    <title>{title}</title>\n"
        '    <meta charset="utf-8">\n    <meta http-equiv="cache-control" content="no-cache">\n'
        '    <meta http-equiv="cache-control" content="no-store">\n'
        '    <meta http-equiv="expires" content="-1">\n    <meta http-equiv="pragma" content="no-cache">\n'
        f"  </head>\n  <body>\n    <h1>{heading}</h1>\n    <p>{text}</p>\n  </body>\n</html>\n"
    )


_SORRY = "We're working on it and we'll get it fixed as soon as we can."
# 503 is the one variant the SDK catches: its is_success() looks for "Service Unavailable".
HTML_PAGES = {
    500: _html_page("Facebook | Error", "Sorry, something went wrong.", _SORRY),
    502: _html_page("Facebook | Error", "Sorry, something went wrong.", _SORRY),
    503: _html_page("Service Unavailable", "Service Unavailable", "The server is temporarily busy, try again later."),
    504: _html_page("Facebook | Error", "Sorry, something went wrong.", _SORRY),
}
# The gateway lost Meta's answer: the call was applied before the page was served.
HTML_APPLIED = {502, 504}

# --------------------------------------------------------------------------- faults


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}]")
    return float(value)


def _account_key(raw: str) -> str:
    digits = raw[4:] if raw.startswith("act_") else raw
    if not digits.isdigit():
        raise ValueError(f"{raw!r} is not an ad account id like act_1000000001")
    return f"act_{digits}"


@dataclass(frozen=True)
class Faults:
    """The fault configuration; every POST /_sandbox/faults replaces it whole."""

    latency_profile: str = "none"  # presets the three latency fields below
    latency_ms: float = 0.0
    per_item_ms: float = 0.0
    per_object_ms: float = 0.0  # per object a read returns in "data": a list page, insights rows
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_ms: float = 30_000.0
    tier: Mapping[str, str] = field(default_factory=dict)
    tier_params: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    rate_limit_code: int = 80004
    expire_token: bool = False
    spend_multiplier: Mapping[str, float] = field(default_factory=dict)
    fault_seed: int = 1
    html_error_rate: float = 0.0
    html_item_rate: float = 0.0
    html_statuses: tuple[int, ...] = (500, 502, 503)
    usage_headers: str = "all"
    insights_tier_params: Mapping[str, Mapping[str, float]] | None = None  # None: as tier_params
    app_limit: Mapping[str, float] | None = None
    mutation_rate_per_s: int = 0
    object_limits: Mapping[str, float] = field(default_factory=dict)
    ad_creation_limit: Mapping[str, int] = field(default_factory=dict)
    errors: tuple[ErrorRule, ...] = ()
    min_version: str = DEFAULT_MIN_VERSION
    async_job_seconds: float = 2.0
    async_fail_rate: float = 0.0
    async_skip_rate: float = 0.0
    sync_insights_max_rows: int = 0  # 0: no limit

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Faults:
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        values: dict[str, Any] = {}
        if "latency_profile" in body:
            if body["latency_profile"] not in LATENCY_PROFILES:
                raise ValueError(f"latency_profile must be one of {list(LATENCY_PROFILES)}")
            values["latency_profile"] = body["latency_profile"]
            values.update(LATENCY_PROFILES[body["latency_profile"]])
        for name in (*LATENCY_FIELDS, "timeout_ms"):
            if name in body:
                values[name] = _number(name, body[name], 0, 600_000)
        if "async_job_seconds" in body:
            values["async_job_seconds"] = _number("async_job_seconds", body["async_job_seconds"], 0, 3600)
        if "sync_insights_max_rows" in body:
            values["sync_insights_max_rows"] = int(
                _number("sync_insights_max_rows", body["sync_insights_max_rows"], 0, 10_000_000)
            )
        for name in (
            "error_rate",
            "timeout_rate",
            "html_error_rate",
            "html_item_rate",
            "async_fail_rate",
            "async_skip_rate",
        ):
            if name in body:
                values[name] = _number(name, body[name], 0, 1)
        if "usage_headers" in body:
            if body["usage_headers"] not in USAGE_HEADER_MODES:
                raise ValueError(f"usage_headers must be one of {list(USAGE_HEADER_MODES)}")
            values["usage_headers"] = body["usage_headers"]
        if "html_statuses" in body:
            statuses = body["html_statuses"]
            if not isinstance(statuses, list) or not statuses or not set(statuses) <= set(HTML_PAGES):
                raise ValueError(f"html_statuses must be a non-empty list of some of {sorted(HTML_PAGES)}")
            values["html_statuses"] = tuple(statuses)
        if "tier" in body:
            values["tier"] = cls._tiers(body["tier"])
        if "tier_params" in body:
            if not isinstance(body["tier_params"], Mapping):
                raise ValueError("tier_params must be an object")
            parse_tier_params(body["tier_params"])
            values["tier_params"] = dict(body["tier_params"])
        if "rate_limit_code" in body:
            if body["rate_limit_code"] not in (80004, 17, 613):
                raise ValueError("rate_limit_code must be 80004, 17 or 613")
            values["rate_limit_code"] = body["rate_limit_code"]
        if body.get("insights_tier_params") is not None:
            if not isinstance(body["insights_tier_params"], Mapping):
                raise ValueError("insights_tier_params must be an object")
            parse_tier_params(body["insights_tier_params"])
            values["insights_tier_params"] = dict(body["insights_tier_params"])
        if body.get("app_limit") is not None:
            values["app_limit"] = asdict(cls._app_limit(body["app_limit"]))
        if "mutation_rate_per_s" in body:
            values["mutation_rate_per_s"] = int(_number("mutation_rate_per_s", body["mutation_rate_per_s"], 0, 100_000))
        if "object_limits" in body:
            if not isinstance(body["object_limits"], Mapping):
                raise ValueError("object_limits must be an object")
            parse_object_limits(body["object_limits"])
            values["object_limits"] = dict(body["object_limits"])
        if "errors" in body:
            if not isinstance(body["errors"], list):
                raise ValueError("errors must be a list of preset rules")
            values["errors"] = tuple(ErrorRule.from_json(rule) for rule in body["errors"])
        if "min_version" in body:
            version_key(str(body["min_version"]))
            values["min_version"] = body["min_version"]
        if "ad_creation_limit" in body:
            raw = body["ad_creation_limit"]
            if not isinstance(raw, Mapping):
                raise ValueError('ad_creation_limit must map ad accounts to counts, e.g. {"act_1000000001": 2}')
            values["ad_creation_limit"] = {
                _account_key(str(k)): int(_number(f"ad_creation_limit.{k}", v, 0, 1_000_000)) for k, v in raw.items()
            }
        if "expire_token" in body:
            if not isinstance(body["expire_token"], bool):
                raise ValueError("expire_token must be true or false")
            values["expire_token"] = body["expire_token"]
        if "spend_multiplier" in body:
            values["spend_multiplier"] = cls._multipliers(body["spend_multiplier"])
        if "fault_seed" in body:
            if isinstance(body["fault_seed"], bool) or not isinstance(body["fault_seed"], int):
                raise ValueError("fault_seed must be an integer")
            values["fault_seed"] = body["fault_seed"]
        return cls(**values)

    @staticmethod
    def _app_limit(raw: Any) -> AppLimit:
        form = 'app_limit is {"calls": N, "window_s": W, "block_s": B}'
        if not isinstance(raw, Mapping) or set(raw) != {"calls", "window_s", "block_s"}:
            raise ValueError(form)
        return AppLimit(
            int(_number("app_limit.calls", raw["calls"], 1, 10_000_000)),
            _number("app_limit.window_s", raw["window_s"], 0.001, 86_400),
            _number("app_limit.block_s", raw["block_s"], 0.001, 86_400),
        )

    @staticmethod
    def _tiers(raw: Any) -> dict[str, str]:
        if not isinstance(raw, Mapping):
            raise ValueError('tier must map ad accounts to tiers, e.g. {"act_1000000001": "development"}')
        tiers = {}
        for account, tier in raw.items():
            if tier not in DEFAULT_TIERS:
                raise ValueError(f"tier for {account} must be one of {sorted(DEFAULT_TIERS)}")
            tiers[_account_key(str(account))] = tier
        return tiers

    @staticmethod
    def _multipliers(raw: Any) -> dict[str, float]:
        if not isinstance(raw, Mapping) or not all(str(k).isdigit() for k in raw):
            raise ValueError('spend_multiplier must map campaign ids to factors, e.g. {"1202100000000001": 10}')
        return {str(k): _number(f"spend_multiplier.{k}", v, 0, 1_000_000) for k, v in raw.items()}

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["html_statuses"] = list(self.html_statuses)
        body["errors"] = [rule.to_json() for rule in self.errors]
        return body


class Counters:
    NAMES = (
        "requests",
        "batch_items",
        "writes",
        "rate_limited",
        "mutation_limited",
        "object_limited",
        "errors_injected",
        "timeouts_injected",
        "html_errors_injected",
        "preset_errors",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def clear(self) -> None:
        with self._lock:
            self._values = dict.fromkeys(self.NAMES, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


def _parse_now(body: Mapping[str, Any]) -> float | None:
    """A /_sandbox/clock body: {"now": "<ISO 8601 with offset>"}, {"now": <epoch seconds>} or {} (real time)."""
    if set(body) - {"now"}:
        raise ValueError('the body is {"now": "2026-12-03T02:00:00+00:00"}, {"now": <epoch seconds>} or {}')
    if "now" not in body or body["now"] is None:
        return None
    raw = body["now"]
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise ValueError("now must be ISO 8601 with an offset, e.g. 2026-12-03T02:00:00+00:00")
        return parsed.timestamp()
    return _number("now", raw, 0, 32_503_680_000)  # up to year 3000


# --------------------------------------------------------------------------- requests / responses


@dataclass(frozen=True)
class GraphRequest:
    """One Graph call: a plain HTTP request or one batch item."""

    method: str
    version: str
    segments: tuple[str, ...]
    params: Mapping[str, str]
    host: str

    def url_with(self, **changes: str) -> str:
        params = {k: v for k, v in self.params.items() if k not in ("after", "before")}
        params.update(changes)
        return f"http://{self.host}/{self.version}/{'/'.join(self.segments)}?{urlencode(params)}"


@dataclass
class Response:
    status: int
    body: Any  # JSON-able, or a str sent as it is (an HTML page)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Route:
    account: int | None  # the ad account scored for the call; None for /me
    write: bool
    action: Callable[[], Any]
    scope: str = "ads_management"  # the business use case the call counts against


@dataclass(frozen=True)
class _Scope:
    """The object an insights request is about."""

    level: str
    column: str
    object_id: int
    account_id: int


def _sleep_ms(ms: float) -> None:
    """Latency as wall time only: a sleep holds no CPU. None at 0: even sleep(0) hands the GIL to
    another thread, a needless switch per request under many concurrent clients."""
    if ms > 0:
        time.sleep(ms / 1000)


def _single_values(pairs: Mapping[str, list[str]]) -> dict[str, str]:
    return {k: v[-1] for k, v in pairs.items()}


def _split_path(path: str) -> tuple[str, ...]:
    return tuple(unquote(s) for s in path.strip("/").split("/") if s)


def _transient_error(flip: bool) -> GraphError:
    if flip:
        return GraphError("Service temporarily unavailable", code=2, http_status=500, is_transient=True)
    return GraphError("An unknown error occurred", code=1, http_status=500, is_transient=True)


def _rate_limit_error(code: int, scope: str) -> GraphError:
    """A blocked scope of one ad account, as Meta marks it (Marketing API rate-limiting page)."""
    if scope == "ads_insights":
        return GraphError(  # as recorded in Airbyte's source-facebook-marketing unit tests
            "(#80000) There have been too many calls from this ad-account. Wait a bit and try again. For more "
            "info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
            code=80000,
            subcode=2446079,
        )
    if code == 17:
        return GraphError("User request limit reached", code=17, subcode=2446079)
    if code == 613:
        return GraphError(
            "There have been too many calls from this ad-account. Please wait a bit and try again.",
            code=613,
            subcode=1487742,
        )
    return GraphError(
        "There have been too many calls to this ad-account. Wait a bit and try again.",
        code=80004,
        subcode=2446079,
    )


def _app_limit_error(scope: str) -> GraphError:
    if scope == "ads_insights":
        return GraphError(
            "There have been too many calls from this app. Wait a bit and try again.", code=4, subcode=1504022
        )
    return GraphError("(#4) Application request limit reached", code=4)


def _object_limit_error(kind: str) -> GraphError:
    """The mutation rate and the per-object limits: they fail that call only, never block the account."""
    generic = "(#613) Calls to this api have exceeded the rate limit."
    return {
        "mutation_rate": lambda: GraphError(generic, code=613, subcode=5044001),
        "adset_budget": lambda: GraphError(
            "(#613) There have been too many changes to this ad set's budget. Please wait an hour and try again.",
            code=613,
            subcode=1487632,
        ),
        "spend_cap": lambda: GraphError("User request limit reached", code=17, subcode=1885172),
        "ad_creation": lambda: GraphError(generic, code=613, subcode=1487225),
    }[kind]()


# --------------------------------------------------------------------------- wire helpers


def _encode_cursor(kind: str, value: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def _decode_cursor(raw: str | None, kind: str) -> int | None:
    if not raw:
        return None
    try:
        prefix, value = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":")
        if prefix == kind:
            return int(value)
    except ValueError:
        pass
    raise GraphError("(#100) Invalid cursor in after")


def _limit(params: Mapping[str, str]) -> int:
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or int(raw) == 0:
        raise GraphError("(#100) Param limit must be a positive integer")
    return min(int(raw), MAX_LIMIT)


def _truthy(raw: str | None) -> bool:
    return raw is not None and raw.lower() not in ("", "false", "0")


def _parse_fields(raw: str | None, default: Sequence[str]) -> list[str]:
    if not raw:
        return list(default)
    if raw.startswith("["):  # the SDK JSON-encodes list params of POSTs: fields=["spend"]
        try:
            names = json.loads(raw)
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GraphError("(#100) Param fields must be a comma-separated list or a JSON array of names")
        raw = ",".join(names)
    while _NESTED_FIELDS.search(raw):  # "creative{id,name}" selects the whole creative
        raw = _NESTED_FIELDS.sub("", raw)
    return [f.strip() for f in raw.split(",") if f.strip()]


def _select(node_type: str, full: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    for name in fields:
        if name not in full:
            raise GraphError(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})")
    selected = {name: full[name] for name in fields}
    selected.setdefault("id", full["id"])  # Meta always returns the id of a node
    return selected


def _json_param(params: Mapping[str, str], name: str) -> Any:
    try:
        return json.loads(params[name])
    except ValueError:
        raise GraphError(f"(#100) Param {name} must be valid JSON") from None


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise GraphError(f"(#100) The parameter {name} is required")
    return value


def _budget(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) == 0:
        raise GraphError(f"(#100) Param {name} must be a positive integer amount in the account's minor units")
    return int(raw)


def _status_param(params: Mapping[str, str], default: str, allowed: Sequence[str] = STATUSES) -> str:
    status = params.get("status", default)
    if status not in allowed:
        raise GraphError(f"(#100) Param status must be one of {{{', '.join(allowed)}}}")
    return status


def _status_values(raw: Any, valid: set[str]) -> list[str]:
    values = raw if isinstance(raw, list) else [raw]
    for value in values:
        if value not in valid:
            raise GraphError(f"(#100) Filtering field effective_status with operation in with value {value} is invalid")
    return values


def _filter_statuses(kind: str, params: Mapping[str, str]) -> list[str]:
    """Effective statuses an edge returns: the filter, else all but ARCHIVED; never DELETED."""
    valid = EFFECTIVE_STATUSES[kind]
    wanted: list[str] | None = None
    if "effective_status" in params:
        raw = params["effective_status"]
        values = _json_param(params, "effective_status") if raw.startswith("[") else raw.split(",")
        wanted = _status_values(values, valid)
    if "filtering" in params:
        rules = _json_param(params, "filtering")
        for rule in rules if isinstance(rules, list) else [rules]:
            if not isinstance(rule, dict) or (rule.get("field"), rule.get("operator")) != ("effective_status", "IN"):
                raise GraphError("(#100) The sandbox supports only filtering on effective_status with operator IN")
            values = _status_values(rule.get("value"), valid)
            wanted = values if wanted is None else [s for s in wanted if s in values]
    if wanted is None:
        wanted = sorted(valid - {"ARCHIVED", "DELETED"})
    return [s for s in wanted if s != "DELETED"]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _campaign_json(row: Mapping[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "account_id": str(row["account_id"]),
        "name": row["name"],
        "objective": row["objective"],
        "status": row["status"],
        "configured_status": row["status"],
        "effective_status": row["effective_status"],
        "daily_budget": str(row["daily_budget"] or 0),
        "lifetime_budget": str(row["lifetime_budget"] or 0),
        "spend_cap": str(row["spend_cap"] or 0),  # unset reads "0", like the budgets (sandbox's choice)
        "buying_type": "AUCTION",
        "special_ad_categories": json.loads(row["special_ad_categories"]),
        "created_time": fb_time(row["created_ts"], tz),
        "updated_time": fb_time(row["updated_ts"], tz),
        "start_time": fb_time(row["created_ts"], tz),
        "stop_time": None,
        # Meta shows issues with the delivery state they explain (blog post 2018-11-27).
        "issues_info": json.loads(row["issues_info"] or "[]") if row["effective_status"] in DELIVERY_STATES else [],
    }


def _adset_json(row: Mapping[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "account_id": str(row["account_id"]),
        "campaign_id": str(row["campaign_id"]),
        "name": row["name"],
        "status": row["status"],
        "configured_status": row["status"],
        "effective_status": row["effective_status"],
        "daily_budget": str(row["daily_budget"] or 0),
        "lifetime_budget": str(row["lifetime_budget"] or 0),
        "optimization_goal": row["optimization_goal"],
        "billing_event": row["billing_event"],
        "targeting": json.loads(row["targeting"]),
        "created_time": fb_time(row["created_ts"], tz),
        "updated_time": fb_time(row["updated_ts"], tz),
    }


def _ad_json(row: Mapping[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "account_id": str(row["account_id"]),
        "campaign_id": str(row["campaign_id"]),
        "adset_id": str(row["adset_id"]),
        "name": row["name"],
        "status": row["status"],
        "configured_status": row["status"],
        "effective_status": row["effective_status"],
        "creative": json.loads(row["creative"]),
        "created_time": fb_time(row["created_ts"], tz),
        "updated_time": fb_time(row["updated_ts"], tz),
    }


def _account_json(row: Mapping[str, Any], now: float, access: AccountAccess) -> dict[str, Any]:
    tz = ZoneInfo(row["timezone_name"])
    hours = offset_hours(now, tz)
    return {
        "id": f"act_{row['id']}",
        "account_id": str(row["id"]),
        "name": row["name"],
        "currency": row["currency"],
        "account_status": access.account_status,
        "disable_reason": access.disable_reason,
        "user_tasks": list(access.user_tasks),
        "timezone_name": row["timezone_name"],
        # The offset now, so -8 or -7 for America/Los_Angeles depending on DST, 5.5 for Asia/Kolkata.
        "timezone_offset_hours_utc": int(hours) if hours.is_integer() else hours,
        "spend_cap": str(row["spend_cap"] or 0),
        "created_time": fb_time(row["created_ts"], tz),
    }


RENDER: dict[str, Callable[[Mapping[str, Any], ZoneInfo], dict[str, Any]]] = {
    "campaign": _campaign_json,
    "adset": _adset_json,
    "ad": _ad_json,
}
EDGE_KINDS = {"campaigns": "campaign", "adsets": "adset", "ads": "ad"}
# Money fields an edit may change; changing only these leaves updated_time alone, as on Meta.
EDITABLE_BUDGETS = {
    "campaign": ("daily_budget", "lifetime_budget", "spend_cap"),
    "adset": ("daily_budget", "lifetime_budget"),
    "ad": (),
}
CHILD_EDGES = {"campaign": ("adsets", "ads"), "adset": ("ads",), "ad": ()}
LEVELS = ("account", "campaign", "adset", "ad")
INSIGHT_FIELDS = {
    "account_id",
    "account_name",
    "campaign_id",
    "campaign_name",
    "adset_id",
    "adset_name",
    "ad_id",
    "ad_name",
    "date_start",
    "date_stop",
    "spend",
    "impressions",
    "clicks",
    "reach",
    "frequency",
    "ctr",
    "cpc",
    "cpm",
    "actions",
    "action_values",
    "purchase_roas",
}


def _insight_json(raw: Mapping[str, Any], fields: Sequence[str], account_name: str, currency: str) -> dict[str, Any]:
    """Meta's insights row: every metric a string, ratios from the row's own sums."""
    spend, impressions, clicks = raw["spend"], raw["impressions"], raw["clicks"]
    purchases, value = raw["purchases"], raw["purchase_value"]
    full: dict[str, Any] = {k: raw[k] for k in raw if k.endswith(("_id", "_name"))}
    full.update(
        account_name=account_name,
        date_start=raw["date_start"],
        date_stop=raw["date_stop"],
        spend=money(spend, currency),
        impressions=str(impressions),
        clicks=str(clicks),
        reach=str(raw["reach"]),
        frequency=f"{impressions / raw['reach']:.6f}" if raw["reach"] else "0",
        ctr=f"{clicks / impressions * 100:.6f}" if impressions else "0",
        cpm=f"{major(spend, currency) / impressions * 1000:.6f}" if impressions else "0",
        actions=[{"action_type": "link_click", "value": str(clicks)}] if clicks else [],
        action_values=[],
    )
    if clicks:
        full["cpc"] = f"{major(spend, currency) / clicks:.6f}"
    if purchases:
        full["actions"] += [{"action_type": t, "value": str(purchases)} for t in ("purchase", "omni_purchase")]
        full["action_values"] = [
            {"action_type": t, "value": money(value, currency)} for t in ("purchase", "omni_purchase")
        ]
    if value and spend:
        full["purchase_roas"] = [{"action_type": "omni_purchase", "value": f"{value / spend:.6f}"}]
    row = {name: full[name] for name in fields if name in full and full[name] != []}
    row.setdefault("date_start", full["date_start"])
    row.setdefault("date_stop", full["date_stop"])
    return row


def _usage_headers(account: int, usage: Usage, scope: str, mode: str, app_pct: float) -> dict[str, str]:
    """The usage headers of one account-scoped call, as the ``usage_headers`` fault chooses."""
    if mode == "none":
        return {}
    buc = {"X-Business-Use-Case-Usage": _compact({str(account): [_buc_entry(usage, scope)]})}
    if mode == "buc_only":
        return buc
    app = round(app_pct)
    return {
        "X-Ad-Account-Usage": _compact(
            {
                "acc_id_util_pct": usage.util_pct,
                "reset_time_duration": usage.reset_time_duration,
                "ads_api_access_tier": usage.access_tier,
            }
        ),
        **buc,
        "X-App-Usage": _compact({"call_count": app, "total_time": app, "total_cputime": app}),
    }


def _buc_entry(usage: Usage, scope: str) -> dict[str, Any]:
    """Meta computes total_cputime and total_time from real CPU and time; the sandbox reports the
    point score there, so the highest of the three is the binding limit."""
    score = round(usage.util_pct)
    return {
        "type": scope,
        "call_count": round(usage.call_count_pct),
        "total_cputime": score,
        "total_time": score,
        "estimated_time_to_regain_access": usage.regain_minutes,
        "ads_api_access_tier": usage.access_tier,
    }


def _cannot_parse() -> GraphError:
    return GraphError("Invalid OAuth access token - Cannot parse access token", code=190)


# --------------------------------------------------------------------------- the sandbox core


class Sandbox:
    """The simulated Meta behind the HTTP server: state, limits, faults and counters."""

    def __init__(
        self,
        store: Store,
        token: str | None = None,
        clock: Callable[[], float] = time.time,
        start_faults: Mapping[str, Any] | None = None,
        start_token: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.token = token
        # The token's state and the accounts' access, like the faults: the state given at start
        # (the command line's --scopes, --token-expires-in-days, ...) is restored by every reset.
        # Expiry is judged on the business clock, as every other "now" of Meta's objects.
        self.access = Access(start_token=dict(start_token or {}))
        self.access.reset(store.clock())
        # The faults given at start (e.g. a latency profile on the command line): in force from
        # the start and restored by every reset.
        self.start_faults = dict(start_faults or {})
        # Real time: rate-limit windows and blocks must really elapse. Business time (timestamps,
        # insights' today) is store.clock, which tests may move.
        self.clock = clock
        self.limiter = RateLimiter(clock)
        self.app_limiter = AppLimiter(clock)
        self.object_limiter = ObjectLimiter(clock)
        self.mutation_limiter = MutationLimiter(clock)
        self.ads_created: collections.Counter[int] = collections.Counter()  # per account, for ad_creation_limit
        self.report_runs = ReportRuns()
        self.counters = Counters()
        # Status edits per object id, no-ops included: drills check nothing was paused twice.
        self.status_writes: collections.Counter[str] = collections.Counter()
        self._writes_lock = threading.Lock()
        self._faults = Faults()
        self._fault_lock = threading.Lock()
        self._fault_rng = random.Random(self._faults.fault_seed)
        self._next_error_is_code_2 = False
        self._error_plan = ErrorPlan()
        self._trace_lock = threading.Lock()
        self._trace_n = 0
        self._trace_salt = time.time_ns()
        # Graph requests being served now, and the most at once since the last reset: proof that
        # latency sleeps overlap (the server runs a thread per connection).
        self._load_lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.set_faults(self.start_faults)

    # ----------------------------------------------------------------- control

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, body: Mapping[str, Any]) -> Faults:
        faults = Faults.from_json(body)
        insights = None if faults.insights_tier_params is None else parse_tier_params(faults.insights_tier_params)
        self.limiter.configure(faults.tier, parse_tier_params(faults.tier_params), insights)
        self.app_limiter.configure(AppLimit(**faults.app_limit) if faults.app_limit else None)
        self.object_limiter.configure(parse_object_limits(faults.object_limits))
        self.mutation_limiter.configure(faults.mutation_rate_per_s)
        with self._writes_lock:
            self.ads_created.clear()
        with self._fault_lock:
            self._faults = faults
            self._fault_rng = random.Random(faults.fault_seed)
            self._next_error_is_code_2 = False
            self._error_plan = ErrorPlan(faults.errors)
        return faults

    def reset(self, cfg: SeedConfig) -> None:
        self.store.reset(cfg)
        self.set_faults(self.start_faults)
        self.access.reset(self.store.clock())
        self.limiter.clear()
        self.app_limiter.clear()
        self.object_limiter.clear()
        self.report_runs.clear()
        self.counters.clear()
        with self._load_lock:
            self.peak_in_flight = self.in_flight
        with self._writes_lock:
            self.status_writes.clear()

    def state(self) -> dict[str, Any]:
        accounts = []
        for account in self.store.accounts():
            key, active_ads = f"act_{account['id']}", self.store.active_ads(account["id"])
            scopes = {scope: self.limiter.snapshot(key, scope, active_ads) for scope in SCOPES}
            for snapshot in scopes.values():
                del snapshot["tier"]
            limits = scopes["ads_management"]
            access = self.access.account(account["id"])
            accounts.append(
                {
                    "id": key,
                    "name": account["name"],
                    "account_status": access.account_status,
                    "disable_reason": access.disable_reason,
                    "user_tasks": list(access.user_tasks),
                    "tier": self.limiter.tier_of(key),
                    "timezone_name": account["timezone_name"],
                    "currency": account["currency"],
                    "campaigns": self.store.campaign_counts(account["id"]),
                    "active_ads": active_ads,
                    # ads_management, at the top level as before; each scope in full below.
                    "score": limits["score"],
                    "blocked_until": limits["blocked_until"],
                    "rejected_while_blocked": limits["rejected_while_blocked"],
                    "scopes": scopes,
                }
            )
        return {
            "accounts": accounts,
            "token": self.access.token.state_json(self.store.clock()),
            "app": self.app_limiter.snapshot(),
            "faults": self._faults.to_json(),
            "errors_left": self._error_plan.remaining(),  # per rule of the errors fault
            "counters": self.counters.snapshot(),
            "load": {"in_flight": self.in_flight, "peak_in_flight": self.peak_in_flight},
            "seed": self.store.seed_config(),
        }

    def handle_control(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> Response:
        """The /_sandbox/ API: plain JSON, no token, no faults, no rate limits."""
        route = (method, path.rstrip("/"))
        try:
            if route == ("GET", "/_sandbox/state"):
                return Response(200, self.state())
            if route == ("GET", "/_sandbox/faults"):
                return Response(200, self._faults.to_json())
            if route == ("POST", "/_sandbox/faults"):
                return Response(200, self.set_faults(self._json_body(body)).to_json())
            if route == ("POST", "/_sandbox/reset"):
                self.reset(SeedConfig.from_json(self._json_body(body)))
                return Response(200, self.state())
            if route == ("GET", "/_sandbox/clock"):
                return Response(200, self._clock_json())
            if route == ("POST", "/_sandbox/clock"):
                self.store.clock.set(_parse_now(self._json_body(body)))
                return Response(200, self._clock_json())
            if route == ("GET", "/_sandbox/campaigns"):
                account = _account_key(query["account"])[4:] if "account" in query else None
                data = self.store.compact_campaigns(int(account) if account else None, query.get("status"))
                with self._writes_lock:
                    for row in data:
                        row["status_writes"] = self.status_writes[row["id"]]
                return Response(200, {"data": data})
            if method == "POST" and route[1].startswith("/_sandbox/campaigns/"):
                return self._set_delivery(route[1].rsplit("/", 1)[1], self._json_body(body))
            if route == ("GET", "/_sandbox/token"):
                return Response(200, self.access.token.state_json(self.store.clock()))
            if route == ("POST", "/_sandbox/token"):
                now = self.store.clock()
                return Response(200, self.access.update_token(self._json_body(body), now).state_json(now))
            if method == "POST" and route[1].startswith("/_sandbox/accounts/"):
                return self._set_account_access(route[1].rsplit("/", 1)[1], self._json_body(body))
        except ValueError as exc:
            return Response(400, {"error": {"message": str(exc)}})
        return Response(404, {"error": {"message": f"unknown control endpoint {method} {path}"}})

    def _clock_json(self) -> dict[str, Any]:
        now = self.store.clock()
        return {
            "now": datetime.fromtimestamp(now, ZoneInfo("UTC")).isoformat(),
            "epoch": round(now, 3),
            "offset_s": round(self.store.clock.offset, 3),
        }

    def _set_delivery(self, raw_id: str, body: Mapping[str, Any]) -> Response:
        """POST /_sandbox/campaigns/{id}: {"effective_status": "WITH_ISSUES"|"IN_PROCESS"|null, "issues_info"?}."""
        if set(body) - {"effective_status", "issues_info"} or "effective_status" not in body:
            raise ValueError('the body is {"effective_status": "WITH_ISSUES"|"IN_PROCESS"|null, "issues_info": [...]}')
        state = body["effective_status"]
        if state is not None and state not in DELIVERY_STATES:
            raise ValueError(f"effective_status must be one of {list(DELIVERY_STATES)} or null")
        issues = parse_issues_info(body["issues_info"]) if body.get("issues_info") is not None else None
        if not raw_id.isdigit() or not self.store.set_delivery(int(raw_id), state, issues):
            return Response(404, {"error": {"message": f"no campaign {raw_id}"}})
        return Response(200, next(c for c in self.store.compact_campaigns(None, None, int(raw_id))))

    def _set_account_access(self, raw_id: str, body: Mapping[str, Any]) -> Response:
        """POST /_sandbox/accounts/{act_id}: {"account_status", "disable_reason", "user_tasks"}, each optional."""
        key = _account_key(raw_id)
        if self.store.account(int(key[4:])) is None:
            return Response(404, {"error": {"message": f"no ad account {key}"}})
        return Response(200, self.access.update_account(int(key[4:]), body).to_json(key))

    @staticmethod
    def _json_body(body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            parsed = json.loads(body)
        except ValueError:
            raise ValueError("the body must be JSON") from None
        if not isinstance(parsed, dict):
            raise ValueError("the body must be a JSON object")
        return parsed

    # ----------------------------------------------------------------- graph entry point

    def handle_graph(self, method: str, path: str, params: Mapping[str, str], host: str) -> Response:
        """One HTTP request on a Graph path (a single call or a batch), counted while in flight."""
        with self._load_lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return self._graph(method, path, params, host)
        finally:
            with self._load_lock:
                self.in_flight -= 1

    def _graph(self, method: str, path: str, params: Mapping[str, str], host: str) -> Response:
        self.counters.add("requests")
        match = _VERSIONED.match(path)
        version = match.group(1) if match else "v25.0"
        trace = self._trace_id()
        faults = self._faults
        html_status = self._html_status(faults.html_error_rate, faults)
        if html_status is not None and html_status not in HTML_APPLIED:
            return self._html_response(html_status, trace)  # the edge answered; Meta never saw it
        try:
            if match is None:
                raise GraphError("(#100) Graph paths need a version prefix such as /v25.0/")
            if version_key(version) < version_key(faults.min_version):
                raise deprecated_version()
            _sleep_ms(faults.latency_ms)
            segments = _split_path(match.group(2) or "")
            if segments == ("debug_token",):
                response = self._debug_token(method, params, faults)
            elif method == "POST" and not segments:
                self._authenticate(params, faults)
                response = self._batch(version, params, host, faults)
            else:
                self._authenticate(params, faults)
                response = self._single(GraphRequest(method, version, segments, params, host), faults, trace)
        except GraphError as err:
            response = Response(err.http_status, self._error_body(err, trace))
        if html_status is not None:
            return self._html_response(html_status, trace)  # applied, but its answer was lost
        response.headers.update({"facebook-api-version": version, "x-fb-trace-id": trace})
        return response

    def _html_status(self, rate: float, faults: Faults) -> int | None:
        """Whether the edge answers this call with an HTML page, and with which 5xx."""
        if not self._roll(rate):
            return None
        self.counters.add("html_errors_injected")
        with self._fault_lock:
            return self._fault_rng.choice(faults.html_statuses)

    @staticmethod
    def _html_response(status: int, trace: str) -> Response:
        return Response(status, HTML_PAGES[status], {"Content-Type": _HTML, "x-fb-trace-id": trace})

    def _usage_headers(self, account: int, usage: Usage, scope: str, mode: str) -> dict[str, str]:
        headers = _usage_headers(account, usage, scope, mode, self.app_limiter.util_pct())
        if scope == "ads_insights" and mode != "none":  # Meta's insights answers also carry this
            headers["X-FB-Ads-Insights-Throttle"] = _compact(
                {
                    "app_id_util_pct": self.app_limiter.util_pct(),
                    "acc_id_util_pct": usage.util_pct,
                    "ads_api_access_tier": usage.access_tier,
                }
            )
        return headers

    def _authenticate(self, params: Mapping[str, str], faults: Faults) -> None:
        """The token of a Graph call: present, accepted, and neither expired nor invalidated."""
        token = params.get("access_token")
        if not token:
            raise GraphError("An access token is required to request this resource.", code=104)
        self._expire_token_fault(faults)
        if is_app_token(token):  # an app token only inspects tokens; it manages no ads
            raise GraphError("(#200) Permissions error", code=200, http_status=403)
        if not self._accepts(token):
            raise _cannot_parse()
        error = self.access.token.error(self.store.clock())
        if error is not None:
            raise error

    @staticmethod
    def _expire_token_fault(faults: Faults) -> None:
        """The blunt expire_token fault: every Graph call answers 190/463, debug_token included."""
        if faults.expire_token:
            raise GraphError(
                "Error validating access token: Session has expired on Tuesday, 24-Nov-26 "
                "10:00:00 PST. The current time is later.",
                code=190,
                subcode=463,
            )

    def _accepts(self, token: str) -> bool:
        """Whether ``token`` is the token the sandbox knows: any user token, or only ``--token``."""
        return not is_app_token(token) and (self.token is None or token == self.token)

    def _debug_token(self, method: str, params: Mapping[str, str], faults: Faults) -> Response:
        """GET /debug_token?input_token=T: 200 with Meta's ``data`` even for an expired or unknown T."""
        if method != "GET":
            raise object_not_found("debug_token", method)  # GET only, as recorded
        self._expire_token_fault(faults)
        token = self.access.token
        access_token = params.get("access_token", "")
        if not access_token:
            raise must_provide_app_token()
        input_token = params.get("input_token", "").strip()
        if not input_token:
            raise GraphError("(#100) The parameter input_token is required")
        refusal = debug_token_refusal(access_token, input_token, token)
        if refusal is not None:
            raise refusal
        if input_token.partition("|")[0] == token.app_id and is_app_token(input_token):
            data = {"app_id": token.app_id, "type": "APP", "application": token.application, "is_valid": True}
        elif self._accepts(input_token):
            data = token.debug_json(self.store.clock())
        else:
            data = {"error": {"code": 190, "message": _cannot_parse().message}, "is_valid": False, "scopes": []}
        return Response(200, {"data": data})

    def _single(self, req: GraphRequest, faults: Faults, trace: str) -> Response:
        if self._roll(faults.timeout_rate):
            # A slow request that is still applied afterwards: a client timeout proves nothing.
            self.counters.add("timeouts_injected")
            time.sleep(faults.timeout_ms / 1000)
        if self._roll(faults.error_rate):
            raise self._injected_error()
        return self._call(req, faults, trace)

    def _call(self, req: GraphRequest, faults: Faults, trace: str, in_batch: bool = False) -> Response:
        """Route, rate-limit and apply one call; errors become error responses."""
        headers: dict[str, str] = {}
        try:
            route = self._route(req)
            self._check_access(route)
            if not self.app_limiter.charge():  # the whole app: every account's calls
                self.counters.add("rate_limited")
                raise _app_limit_error(route.scope)
            if route.account is not None:
                points = WRITE_POINTS if route.write else READ_POINTS
                decision = self.limiter.charge(
                    f"act_{route.account}",
                    points,
                    route.scope,
                    self.store.active_ads(route.account),
                )
                headers = self._usage_headers(route.account, decision.usage, route.scope, faults.usage_headers)
                if not decision.allowed:
                    self.counters.add("rate_limited")
                    raise _rate_limit_error(faults.rate_limit_code, route.scope)
                if route.write and not self.mutation_limiter.charge(route.account):
                    self.counters.add("mutation_limited")
                    raise _object_limit_error("mutation_rate")
            rule = self._error_plan.take(
                CallKind(
                    route.write,
                    route.scope == "ads_insights",
                    in_batch,
                    route.account,
                    route.write and "fields" in req.params,
                )
            )
            if rule is not None and rule.preset != "read_after_write":
                self.counters.add("preset_errors")
                raise preset_error(rule.preset, rule.subcode)
            body = route.action()
            if route.write:
                self.counters.add("writes")
            else:
                self._object_delay(body, faults)
            if rule is not None:  # applied; then the read after the write fails
                self.counters.add("preset_errors")
                # The write's normal answer: {"success": true} for an edit, {"id"} for a creation.
                original = {"success": body["success"]} if "success" in body else {"id": body["id"]}
                raise preset_error(rule.preset, original_response=original)
            return Response(200, body, headers)
        except GraphError as err:
            return Response(err.http_status, self._error_body(err, trace), headers)

    def _check_access(self, route: _Route) -> None:
        """Permissions, the user's tasks and the account's status, before the call is charged."""
        if route.account is None:
            return
        token = self.access.token
        if route.write:
            refusal = write_refusal(token, f"act_{route.account}", self.access.account(route.account))
        else:
            refusal = read_refusal(token)
        if refusal is not None:
            raise refusal

    @staticmethod
    def _object_delay(body: Any, faults: Faults) -> None:
        """per_object_ms: a read waits for each object it returns (a list page, insights rows)."""
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, list):
            _sleep_ms(faults.per_object_ms * len(data))

    # ----------------------------------------------------------------- batch

    def _batch(self, version: str, params: Mapping[str, str], host: str, faults: Faults) -> Response:
        if "batch" not in params:
            raise GraphError("(#100) The parameter batch is required")
        items = _json_param(params, "batch")
        if not isinstance(items, list):
            raise GraphError("(#100) The parameter batch must be a JSON array")
        if len(items) > MAX_BATCH:
            raise GraphError(f"Too many requests in batch message. Maximum batch size is {MAX_BATCH}")
        _sleep_ms(faults.per_item_ms * len(items))
        include_headers = params.get("include_headers", "true").lower() != "false"
        usage: dict[str, list[dict[str, Any]]] = {}
        token = params["access_token"]  # items inherit it (it also goes into their paging links)
        with self.store.batch():
            results = [self._batch_item(item, version, host, token, faults, include_headers, usage) for item in items]
        headers = {"X-Business-Use-Case-Usage": _compact(usage)} if usage else {}
        return Response(200, results, headers)

    def _batch_item(
        self,
        item: Any,
        version: str,
        host: str,
        token: str,
        faults: Faults,
        include_headers: bool,
        usage: dict[str, list[dict[str, Any]]],
    ) -> dict[str, Any] | None:
        self.counters.add("batch_items")
        if self._roll(faults.timeout_rate):
            self.counters.add("timeouts_injected")
            return None  # Meta's "did not complete in time": not applied, the client retries it
        trace = self._trace_id()
        html_status = self._html_status(faults.html_item_rate, faults)
        if html_status is not None and html_status not in HTML_APPLIED:
            return self._batch_result(self._html_response(html_status, trace), version, include_headers)
        try:
            req = self._batch_request(item, version, host, token)
            if self._roll(faults.error_rate):
                raise self._injected_error()
            response = self._call(req, faults, trace, in_batch=True)
        except GraphError as err:
            response = Response(err.http_status, self._error_body(err, trace))
        if html_status is not None:
            return self._batch_result(self._html_response(html_status, trace), version, include_headers)
        for account, entries in json.loads(response.headers.get("X-Business-Use-Case-Usage", "{}")).items():
            kept = [e for e in usage.get(account, []) if e["type"] not in {n["type"] for n in entries}]
            usage[account] = kept + entries  # the latest entry per use case
        return self._batch_result(response, version, include_headers)

    @staticmethod
    def _batch_result(response: Response, version: str, include_headers: bool) -> dict[str, Any]:
        result: dict[str, Any] = {"code": response.status}
        html = isinstance(response.body, str)
        if include_headers:
            headers = dict(response.headers)
            content_type = headers.pop("Content-Type", "text/javascript; charset=UTF-8")
            result["headers"] = [
                {"name": "Content-Type", "value": content_type},
                *([] if html else [{"name": "facebook-api-version", "value": version}]),
                *({"name": k, "value": v} for k, v in headers.items()),
            ]
        result["body"] = response.body if html else _compact(response.body)
        return result

    @staticmethod
    def _batch_request(item: Any, version: str, host: str, token: str) -> GraphRequest:
        if not isinstance(item, dict) or not isinstance(item.get("relative_url"), str):
            raise GraphError("(#100) Each batch item needs a method and a relative_url")
        method = str(item.get("method", "GET")).upper()
        if method not in ("GET", "POST", "DELETE"):
            raise GraphError(f"(#100) Unsupported batch method {method}")
        url = urlsplit(item["relative_url"].lstrip("/"))
        path = re.sub(r"^v\d+\.\d+(/|$)", "", url.path)  # the version is optional in items
        params = _single_values(parse_qs(url.query, keep_blank_values=True))
        body = item.get("body", "")
        if not isinstance(body, str):
            raise GraphError("(#100) A batch item body must be a URL-encoded string")
        params.update(_single_values(parse_qs(body, keep_blank_values=True)))
        params.setdefault("access_token", token)
        return GraphRequest(method, version, _split_path(path), params, host)

    # ----------------------------------------------------------------- routing

    def _route(self, req: GraphRequest) -> _Route:
        if not req.segments:
            raise GraphError("(#100) Missing object id in the request path")
        if len(req.segments) > 2 and req.segments[:2] != ("me", "permissions"):
            raise GraphError(f"Unknown path components: /{'/'.join(req.segments[2:])}", code=2500)
        if len(req.segments) > 3:
            raise GraphError(f"Unknown path components: /{'/'.join(req.segments[3:])}", code=2500)
        head = req.segments[0]
        edge = req.segments[1] if len(req.segments) >= 2 else None
        if head == "me":
            return self._me_route(req, edge)
        if head.startswith("act_"):
            return self._account_route(req, head, edge)
        if head.isdigit():
            return self._object_route(req, int(head), edge)
        raise GraphError(f"(#803) Some of the aliases you requested do not exist: {head}", code=803)

    def _me_route(self, req: GraphRequest, edge: str | None) -> _Route:
        if edge == "permissions":
            return self._permissions_route(req)
        if req.method != "GET" or edge not in (None, "adaccounts"):
            raise object_not_found("me", req.method)
        if edge is None:
            fields = _parse_fields(req.params.get("fields"), ("id", "name"))
            return _Route(None, False, lambda: _select("User", USER, fields))
        return _Route(None, False, lambda: self._list_accounts(req))

    def _permissions_route(self, req: GraphRequest) -> _Route:
        """GET /me/permissions lists them; DELETE /me/permissions/{name} revokes one."""
        if req.method == "GET" and len(req.segments) == 2:
            return _Route(None, False, lambda: {"data": self.access.token.permissions()})
        if req.method == "DELETE" and len(req.segments) == 3:
            return _Route(None, True, lambda: self._revoke(req.segments[2]))
        raise object_not_found("permissions", req.method)

    def _revoke(self, permission: str) -> dict[str, bool]:
        known = {p["permission"] for p in self.access.token.permissions()}
        if permission not in known:
            raise GraphError(f"(#100) The permission {permission} was never granted to this app")
        self.access.revoke(permission)
        return {"success": True}

    def _reachable(self, account_id: int, object_id: str, method: str) -> None:
        """An account the token's user has no role on cannot be loaded, nor anything in it."""
        if not self.access.account(account_id).reachable:
            raise object_not_found(object_id, method)

    def _account_route(self, req: GraphRequest, head: str, edge: str | None) -> _Route:
        account = self.store.account(int(head[4:])) if head[4:].isdigit() else None
        if account is None:
            raise object_not_found(head, req.method)
        account_id = account["id"]
        self._reachable(account_id, head, req.method)
        if edge is None and req.method == "GET":
            fields = _parse_fields(req.params.get("fields"), ("id", "account_id"))
            return _Route(account_id, False, lambda: _select("AdAccount", self._account_json(account), fields))
        if edge is None and req.method == "POST":
            return _Route(account_id, True, lambda: self._update_account(account, req.params))
        if edge in EDGE_KINDS and req.method == "GET":
            kind = EDGE_KINDS[edge]
            return _Route(account_id, False, lambda: self._list_edge(req, kind, "account_id", account_id))
        if edge in EDGE_KINDS and req.method == "POST":
            return _Route(account_id, True, lambda: self._create(EDGE_KINDS[edge], account_id, req.params))
        if edge == "insights" and req.method in ("GET", "POST"):
            scope = _Scope("account", "account_id", account_id, account_id)
            return self._insights_route(req, scope)
        raise self._bad_edge(req, head, edge)

    def _insights_route(self, req: GraphRequest, scope: _Scope) -> _Route:
        """GET insights answers now; POST starts an async report run. Both count as ads_insights
        calls (1 point each: a report run is not a mutation)."""
        action = self._insights if req.method == "GET" else self._create_report
        return _Route(scope.account_id, False, lambda: action(req, scope), "ads_insights")

    def _report_route(self, req: GraphRequest, run: ReportRun, edge: str | None) -> _Route:
        if edge is None and req.method == "GET":
            return _Route(run.account_id, False, lambda: self._report_status(req, run), "ads_insights")
        if edge == "insights" and req.method == "GET":
            return _Route(run.account_id, False, lambda: self._report_rows(req, run), "ads_insights")
        raise self._bad_edge(req, str(run.id), edge)

    def _object_route(self, req: GraphRequest, object_id: int, edge: str | None) -> _Route:
        node = self.store.find(object_id)
        if node is None:
            run = self.report_runs.get(object_id)
            if run is not None:
                self._reachable(run.account_id, str(object_id), req.method)
                return self._report_route(req, run, edge)
            raise object_not_found(str(object_id), req.method)
        account_id = node.account_id
        self._reachable(account_id, str(object_id), req.method)
        if edge is None and req.method == "GET":
            fields = _parse_fields(req.params.get("fields"), ("id",))
            return _Route(account_id, False, lambda: self._render(node, fields))
        if edge is None and req.method == "POST":
            return _Route(account_id, True, lambda: self._update(node, req.params))
        if edge is None and req.method == "DELETE":
            return _Route(account_id, True, lambda: self._update(node, {"status": "DELETED"}))
        if edge in CHILD_EDGES[node.kind] and req.method == "GET":
            column = f"{node.kind}_id"
            return _Route(account_id, False, lambda: self._list_edge(req, EDGE_KINDS[edge], column, object_id))
        if edge == "insights" and req.method in ("GET", "POST"):
            scope = _Scope(node.kind, "id" if node.kind == "ad" else f"{node.kind}_id", object_id, account_id)
            return self._insights_route(req, scope)
        raise self._bad_edge(req, str(object_id), edge)

    @staticmethod
    def _bad_edge(req: GraphRequest, head: str, edge: str | None) -> GraphError:
        if edge is None or edge in (*EDGE_KINDS, "insights"):
            return object_not_found(head, req.method)
        return GraphError(f"Unknown path components: /{edge}", code=2500)

    # ----------------------------------------------------------------- reads

    def _account_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return _account_json(row, self.store.clock(), self.access.account(row["id"]))

    def _render(self, node: Node, fields: Sequence[str]) -> dict[str, Any]:
        return _select(NODE_TYPES[node.kind], RENDER[node.kind](node.row, self.store.zone(node.account_id)), fields)

    def _list_accounts(self, req: GraphRequest) -> dict[str, Any]:
        fields = _parse_fields(req.params.get("fields"), ("account_id", "id"))
        after = _decode_cursor(req.params.get("after"), "id")
        limit = _limit(req.params)
        accounts = [
            a
            for a in self.store.accounts()
            if (after is None or a["id"] > after) and self.access.account(a["id"]).reachable
        ]
        page = accounts[:limit]
        data = [_select("AdAccount", self._account_json(a), fields) for a in page]
        total = len(accounts) if _truthy(req.params.get("summary")) else None
        return self._list_body(req, data, [a["id"] for a in page], len(accounts) > limit, total)

    def _list_edge(self, req: GraphRequest, kind: str, column: str, scope_id: int) -> dict[str, Any]:
        fields = _parse_fields(req.params.get("fields"), ("id",))
        page = self.store.list_edge(
            kind,
            column,
            scope_id,
            _filter_statuses(kind, req.params),
            _decode_cursor(req.params.get("after"), "id"),
            _limit(req.params),
            _truthy(req.params.get("summary")),
        )
        data = [
            _select(NODE_TYPES[kind], RENDER[kind](row, self.store.zone(row["account_id"])), fields)
            for row in page.rows
        ]
        return self._list_body(req, data, [row["id"] for row in page.rows], page.has_more, page.total)

    @staticmethod
    def _list_body(
        req: GraphRequest,
        data: list[dict[str, Any]],
        ids: list[int],
        has_more: bool,
        total: int | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"data": data}
        if ids:
            after = _encode_cursor("id", ids[-1])
            body["paging"] = {"cursors": {"before": _encode_cursor("id", ids[0]), "after": after}}
            if has_more:  # clients stop when next is absent
                body["paging"]["next"] = req.url_with(after=after)
        if total is not None:
            body["summary"] = {"total_count": total}
        return body

    def _insights(self, req: GraphRequest, scope: _Scope) -> dict[str, Any]:
        rows, _ = self._insight_rows(req.params, scope)
        limit = self._faults.sync_insights_max_rows
        if limit and len(rows) > limit:  # too large to answer synchronously: ask for less
            raise preset_error("reduce_data")
        return self._offset_page(req, rows)

    def _create_report(self, req: GraphRequest, scope: _Scope) -> dict[str, str]:
        """POST …/insights: an async report run; its rows are computed now, when it is created."""
        rows, dates = self._insight_rows(req.params, scope)
        faults = self._faults
        outcome = (
            "Job Failed"
            if self._roll(faults.async_fail_rate)
            else ("Job Skipped" if self._roll(faults.async_skip_rate) else "Job Completed")
        )
        run = self.report_runs.create(
            lambda run_id: ReportRun(
                run_id,
                scope.account_id,
                rows,
                dates.since.isoformat(),
                dates.until.isoformat(),
                int(self.store.clock()),
                self.clock(),
                faults.async_job_seconds,
                outcome,
            )
        )
        return {"report_run_id": str(run.id)}

    def _report_status(self, req: GraphRequest, run: ReportRun) -> dict[str, Any]:
        # Meta adds error_code / error_message to a failed run since v25.0.
        full = report_json(run, self.clock() - run.created, version_key(req.version) >= (25, 0))
        fields = _parse_fields(req.params.get("fields"), REPORT_FIELDS)
        unknown = sorted(set(fields) - set(REPORT_FIELDS))
        if unknown:
            raise GraphError(f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type (AdReportRun)")
        return {name: full[name] for name in ("id", *fields) if name in full}

    def _report_rows(self, req: GraphRequest, run: ReportRun) -> dict[str, Any]:
        status = report_json(run, self.clock() - run.created, False)["async_status"]
        if status != "Job Completed":
            raise GraphError(f"(#100) The report run {run.id} has no results: its async_status is {status}")
        return self._offset_page(req, run.rows)

    def _insight_rows(self, params: Mapping[str, str], scope: _Scope) -> tuple[list[dict[str, Any]], DateRange]:
        """Every row an insights request asks for, with days in the ad account's time zone."""
        level = params.get("level", scope.level)
        if level not in LEVELS or LEVELS.index(level) < LEVELS.index(scope.level):
            raise GraphError(f"(#100) level must be one of {', '.join(LEVELS[LEVELS.index(scope.level) :])}")
        if "breakdowns" in params:
            raise GraphError("(#100) The sandbox does not support breakdowns")
        fields = _parse_fields(params.get("fields"), ("impressions", "spend"))
        unknown = sorted(set(fields) - INSIGHT_FIELDS)
        if unknown:
            valid = ", ".join(sorted(INSIGHT_FIELDS))
            raise GraphError(f"(#100) {unknown[0]} is not valid for fields param; valid: {valid}")
        increment = params.get("time_increment", "all_days")
        if increment not in ("1", "all_days"):
            raise GraphError("(#100) The sandbox supports time_increment=1 and all_days only")
        now = self.store.clock()
        time_range = _json_param(params, "time_range") if "time_range" in params else None
        if time_range is not None and not isinstance(time_range, dict):
            raise GraphError('(#100) time_range must be {"since":"YYYY-MM-DD","until":"YYYY-MM-DD"}')
        tz = self.store.zone(scope.account_id)
        dates = resolve_dates(params.get("date_preset"), time_range, local_day(now, tz))
        ads = self.store.ads_in_scope(scope.column, scope.object_id)
        daily = increment == "1"
        raw = insight_rows(
            self.store.seed,
            ads,
            dates,
            level,
            daily,
            now,
            self._faults.spend_multiplier,
            LocalDays(tz),
        )
        account = self.store.account(scope.account_id) or {"name": "", "currency": "USD"}
        return [_insight_json(r, fields, account["name"], account["currency"]) for r in raw], dates

    @staticmethod
    def _offset_page(req: GraphRequest, rows: list[dict[str, Any]]) -> dict[str, Any]:
        start = _decode_cursor(req.params.get("after"), "offset") or 0
        limit = _limit(req.params)
        page = rows[start : start + limit]
        body: dict[str, Any] = {"data": page}
        if page:
            after = _encode_cursor("offset", start + len(page))
            body["paging"] = {"cursors": {"before": _encode_cursor("offset", start), "after": after}}
            if start + limit < len(rows):
                body["paging"]["next"] = req.url_with(after=after)
        return body

    # ----------------------------------------------------------------- writes

    def _update(self, node: Node, params: Mapping[str, str]) -> dict[str, Any]:
        editable = {"name", "status", *EDITABLE_BUDGETS[node.kind]}
        for key in params:
            if key not in editable | _AUTH_PARAMS | {"fields"}:
                raise GraphError(f"(#100) The sandbox does not support editing {key} on {NODE_TYPES[node.kind]}")
        changes: dict[str, Any] = {}
        if "status" in params:
            changes["status"] = _status_param(params, "")
        if "name" in params:
            changes["name"] = _required(params, "name")
        for name in EDITABLE_BUDGETS[node.kind]:
            if name in params:
                changes[name] = _budget(params, name)
        budget_change = any(changes.get(k, node.row[k]) != node.row[k] for k in ("daily_budget", "lifetime_budget"))
        if node.kind == "adset" and budget_change and not self.object_limiter.adset_budget_change(node.row["id"]):
            self.counters.add("object_limited")
            raise _object_limit_error("adset_budget")
        self.store.update(node, changes)
        if "status" in changes:
            with self._writes_lock:
                self.status_writes[str(node.row["id"])] += 1
        result: dict[str, Any] = {"success": True}
        if "fields" in params:  # read-after-write
            fresh = self.store.find(node.row["id"])
            assert fresh is not None  # objects are never removed, only marked DELETED
            result.update(self._render(fresh, _parse_fields(params["fields"], ())))
        return result

    def _update_account(self, account: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
        """POST /act_X: the sandbox edits only spend_cap (10 changes a day, then 17/1885172)."""
        for key in params:
            if key not in {"spend_cap"} | _AUTH_PARAMS | {"fields"}:
                raise GraphError(f"(#100) The sandbox does not support editing {key} on AdAccount")
        spend_cap = _budget(params, "spend_cap")
        if spend_cap is not None and spend_cap != account["spend_cap"]:
            if not self.object_limiter.spend_cap_change(account["id"]):
                self.counters.add("object_limited")
                raise _object_limit_error("spend_cap")
            self.store.set_spend_cap(account["id"], spend_cap)
        result: dict[str, Any] = {"success": True}
        if "fields" in params:
            fresh = self.store.account(account["id"])
            assert fresh is not None
            result.update(_select("AdAccount", self._account_json(fresh), _parse_fields(params["fields"], ())))
        return result

    def _create(self, kind: str, account_id: int, params: Mapping[str, str]) -> dict[str, str]:
        name = _required(params, "name")
        status = _status_param(params, "ACTIVE", ("ACTIVE", "PAUSED"))
        if kind == "campaign":
            new_id = self.store.create_campaign(account_id, self._campaign_fields(params, name, status))
        elif kind == "adset":
            new_id = self.store.create_adset(
                account_id,
                {
                    "name": name,
                    "status": status,
                    "campaign_id": self._id_param(params, "campaign_id"),
                    "daily_budget": _budget(params, "daily_budget"),
                    "lifetime_budget": _budget(params, "lifetime_budget"),
                    "optimization_goal": params.get("optimization_goal", "OFFSITE_CONVERSIONS"),
                    "billing_event": params.get("billing_event", "IMPRESSIONS"),
                    "targeting": self._object_param(params, "targeting"),
                },
            )
        else:
            limit = self._faults.ad_creation_limit.get(f"act_{account_id}")
            if limit is not None and self.ads_created[account_id] >= limit:
                self.counters.add("object_limited")
                raise _object_limit_error("ad_creation")
            new_id = self.store.create_ad(
                account_id,
                {
                    "name": name,
                    "status": status,
                    "adset_id": self._id_param(params, "adset_id"),
                    "creative": self._creative(params),
                },
            )
            with self._writes_lock:
                self.ads_created[account_id] += 1
        return {"id": str(new_id)}

    @staticmethod
    def _campaign_fields(params: Mapping[str, str], name: str, status: str) -> dict[str, Any]:
        objective = _required(params, "objective")
        if objective not in OBJECTIVES:
            raise GraphError(f"(#100) Param objective must be one of {{{', '.join(OBJECTIVES)}}}")
        if "special_ad_categories" not in params:
            raise GraphError("(#100) The parameter special_ad_categories is required")
        categories = _json_param(params, "special_ad_categories")
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise GraphError("(#100) Param special_ad_categories must be a JSON array of strings")
        daily, lifetime = _budget(params, "daily_budget"), _budget(params, "lifetime_budget")
        if daily and lifetime:
            raise GraphError("(#100) Set either daily_budget or lifetime_budget, not both")
        return {
            "name": name,
            "objective": objective,
            "status": status,
            "daily_budget": daily,
            "lifetime_budget": lifetime,
            "special_ad_categories": categories,
            "spend_cap": _budget(params, "spend_cap"),
        }

    @staticmethod
    def _id_param(params: Mapping[str, str], name: str) -> int:
        value = _required(params, name)
        if not value.isdigit():
            raise GraphError(f"(#100) Param {name} must be a numeric id")
        return int(value)

    @staticmethod
    def _object_param(params: Mapping[str, str], name: str) -> dict[str, Any]:
        _required(params, name)
        value = _json_param(params, name)
        if not isinstance(value, dict):
            raise GraphError(f"(#100) Param {name} must be a JSON object")
        return value

    def _creative(self, params: Mapping[str, str]) -> dict[str, Any]:
        creative = self._object_param(params, "creative")
        if "creative_id" in creative:
            return {"id": str(creative["creative_id"])}
        allowed = {"name", "title", "body", "call_to_action_type"}
        if set(creative) - allowed:
            raise GraphError(f"(#100) Param creative takes creative_id or {', '.join(sorted(allowed))}")
        return creative

    # ----------------------------------------------------------------- faults and errors

    def _roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._fault_lock:
            return self._fault_rng.random() < rate

    def _injected_error(self) -> GraphError:
        self.counters.add("errors_injected")
        with self._fault_lock:
            flip, self._next_error_is_code_2 = self._next_error_is_code_2, not self._next_error_is_code_2
        return _transient_error(flip)

    def _trace_id(self) -> str:
        with self._trace_lock:
            self._trace_n += 1
            n = self._trace_n
        digest = hashlib.blake2b(f"{self._trace_salt}:{n}".encode(), digest_size=12).digest()
        return base64.urlsafe_b64encode(digest).decode()

    @staticmethod
    def _error_body(err: GraphError, trace: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": err.message, "type": err.error_type, "code": err.code}
        if err.subcode is not None:
            error["error_subcode"] = err.subcode
        if err.is_transient is not None:
            error["is_transient"] = err.is_transient
        if err.user_title is not None:
            error["error_user_title"] = err.user_title
        if err.user_msg is not None:
            error["error_user_msg"] = err.user_msg
        error.update(err.extra)
        error["fbtrace_id"] = trace
        return {"error": error}


# --------------------------------------------------------------------------- HTTP transport


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: requests.Session reuses the connection
    server: SandboxHTTPServer
    timeout = 120  # idle keep-alive connections end eventually

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            response = self._dispatch(method, url.path, url.query, body)
            self._send(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _dispatch(self, method: str, path: str, query: str, body: bytes) -> Response:
        sandbox = self.server.sandbox
        if self.server.closing:
            self.close_connection = True
            return Response(503, {"error": {"message": "sandbox is shutting down"}})
        params = _single_values(parse_qs(query, keep_blank_values=True))
        try:
            if path == "/_sandbox" or path.startswith("/_sandbox/"):
                return sandbox.handle_control(method, path, params, body)
            if method == "POST":
                params.update(_single_values(parse_qs(body.decode("utf-8"), keep_blank_values=True)))
            host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
            return sandbox.handle_graph(method, path, params, host)
        except Exception:  # noqa: BLE001 - a sandbox bug: show it, and still answer like Meta's code 1
            if not self.server.closing:  # (a request that outlived stop() finds the store closed)
                traceback.print_exc()
            error = {"message": "An unknown error occurred", "type": "OAuthException", "code": 1}
            return Response(500, {"error": error})

    def _send(self, response: Response) -> None:
        html = isinstance(response.body, str)
        payload = response.body.encode() if html else _compact(response.body).encode()
        headers = dict(response.headers)
        self.send_response(response.status)
        self.send_header("Content-Type", headers.pop("Content-Type", _JSON))
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class SandboxHTTPServer(ThreadingHTTPServer):
    """A thread per connection, so latency sleeps of concurrent clients overlap."""

    daemon_threads = True  # sleeping (latency/timeout) handlers never block shutdown
    allow_reuse_address = True
    # listen() backlog (the kernel caps it at net.core.somaxconn). With the default 5, 300 clients
    # connecting at once overflowed the queue: 147 had no answer after 60 s (docs/meta-sandbox.md).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], sandbox: Sandbox, verbose: bool = False) -> None:
        super().__init__(address, _Handler)
        self.sandbox = sandbox
        self.verbose = verbose
        self.closing = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.verbose:  # dropped client connections are routine (client timeouts)
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        """Stop answering and close the store; call after shutdown() from another thread."""
        self.closing = True
        self.server_close()
        self.sandbox.store.close()


def make_server(
    host: str = "127.0.0.1",
    port: int = 8765,
    store_path: str | Path = "var/meta_sandbox.sqlite3",
    *,
    seed: SeedConfig | None = None,
    reset: bool = False,
    token: str | None = None,
    verbose: bool = False,
    faults: Mapping[str, Any] | None = None,
    token_state: Mapping[str, Any] | None = None,
) -> SandboxHTTPServer:
    """A bound (not yet serving) sandbox; reseeds when asked to or when the store is empty.
    ``faults`` (a /_sandbox/faults body) and ``token_state`` (a /_sandbox/token body) are in force
    from the start and restored by every reset."""
    Faults.from_json(faults or {})  # a bad configuration fails before the store is opened
    issued_token(time.time()).updated(token_state or {}, time.time())
    sandbox = Sandbox(Store(store_path), token=token, start_faults=faults, start_token=token_state)
    if reset or not sandbox.store.is_seeded():
        sandbox.reset(seed or SeedConfig())
    return SandboxHTTPServer((host, port), sandbox, verbose=verbose)


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    store_path: str | Path = "var/meta_sandbox.sqlite3",
    *,
    seed: SeedConfig | None = None,
    reset: bool = False,
    token: str | None = None,
    verbose: bool = False,
    faults: Mapping[str, Any] | None = None,
    token_state: Mapping[str, Any] | None = None,
) -> None:
    """Run the sandbox in the foreground until interrupted (the CLI and the manage.py command)."""
    server = make_server(
        host,
        port,
        store_path,
        seed=seed,
        reset=reset,
        token=token,
        verbose=verbose,
        faults=faults,
        token_state=token_state,
    )
    print(f"Meta sandbox listening on {server.url} (store {Path(store_path).resolve()})", flush=True)
    latency = server.sandbox.faults
    if any(getattr(latency, name) for name in LATENCY_FIELDS):
        print(
            f"latency: {latency.latency_ms:g} ms per request, {latency.per_item_ms:g} ms per batch item, "
            f"{latency.per_object_ms:g} ms per listed object",
            flush=True,
        )
    if token_state:
        token = server.sandbox.access.token
        expires = "never" if token.expires_at == 0 else datetime.fromtimestamp(token.expires_at, ZoneInfo("UTC"))
        print(f"token: {token.type}, expires {expires}, scopes {','.join(token.scopes) or '(none)'}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Meta sandbox stopped", file=sys.stderr)
    finally:
        server.close()
