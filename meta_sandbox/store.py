"""State of the simulated Meta: ad accounts, campaigns, ad sets and ads in a small SQLite file.

Everything here is Meta's object model (ids, statuses and their rules, deterministic seeding)
plus synthetic delivery for insights. The wire format lives in server.py. One connection is
shared by all server threads under a single lock; WAL keeps commits cheap.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "DELETED")
# What Meta's delivery system may show over a configured ACTIVE or PAUSED campaign.
DELIVERY_STATES = ("IN_PROCESS", "WITH_ISSUES")
# The issue of Meta's own WITH_ISSUES example (developer blog, 2018-11-27), at campaign level.
DEFAULT_ISSUE = {
    "level": "CAMPAIGN",
    "error_code": 1815869,
    "error_summary": "Ad post is not available",
    "error_message": (
        "The Facebook post associated with your ad is not available. It may have been removed, "
        "or you may not have permission to view it."
    ),
}
ISSUE_KEYS = {"level": str, "error_code": int, "error_summary": str, "error_message": str, "mid": str}
# Effective statuses an edge filter may name, per object kind.
EFFECTIVE_STATUSES = {
    "campaign": {"ACTIVE", "PAUSED", "ARCHIVED", "DELETED", "IN_PROCESS", "WITH_ISSUES"},
    "adset": {"ACTIVE", "PAUSED", "ARCHIVED", "DELETED", "CAMPAIGN_PAUSED", "IN_PROCESS", "WITH_ISSUES"},
    "ad": {
        "ACTIVE",
        "PAUSED",
        "ARCHIVED",
        "DELETED",
        "CAMPAIGN_PAUSED",
        "ADSET_PAUSED",
        "IN_PROCESS",
        "WITH_ISSUES",
        "DISAPPROVED",
        "PENDING_REVIEW",
        "PREAPPROVED",
        "PENDING_BILLING_INFO",
    },
}
OBJECTIVES = (
    "OUTCOME_SALES",
    "OUTCOME_TRAFFIC",
    "OUTCOME_LEADS",
    "OUTCOME_ENGAGEMENT",
    "OUTCOME_AWARENESS",
    "OUTCOME_APP_PROMOTION",
)
ACCOUNT_ID_BASE = 1_000_000_000
MAX_ACCOUNTS = 1000  # an agency-sized business (issue 17 seeds 300)
ID_BASES = {
    "campaign": 1_202_100_000_000_000,
    "adset": 1_202_200_000_000_000,
    "ad": 1_202_300_000_000_000,
    "creative": 1_202_400_000_000_000,
}
TABLES = {"campaign": "campaigns", "adset": "adsets", "ad": "ads"}
VIEWS = {"campaign": "v_campaigns", "adset": "v_adsets", "ad": "v_ads"}
NODE_TYPES = {"campaign": "Campaign", "adset": "AdSet", "ad": "Ad"}
DAY = 86_400
SCHEMA_VERSION = 5
SQLITE_MAX_INTEGER = 2**63 - 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_ts INTEGER NOT NULL,
    timezone_name TEXT NOT NULL, currency TEXT NOT NULL, spend_cap INTEGER);
CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, name TEXT NOT NULL,
    objective TEXT NOT NULL, status TEXT NOT NULL, daily_budget INTEGER,
    lifetime_budget INTEGER, special_ad_categories TEXT NOT NULL,
    created_ts INTEGER NOT NULL, updated_ts INTEGER NOT NULL,
    -- Meta's delivery system, not the advertiser: IN_PROCESS / WITH_ISSUES, or NULL.
    delivery TEXT, issues_info TEXT, spend_cap INTEGER);
CREATE INDEX campaigns_account ON campaigns (account_id, id);
CREATE TABLE adsets (
    id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, campaign_id INTEGER NOT NULL,
    name TEXT NOT NULL, status TEXT NOT NULL, daily_budget INTEGER,
    optimization_goal TEXT NOT NULL, billing_event TEXT NOT NULL, targeting TEXT NOT NULL,
    created_ts INTEGER NOT NULL, updated_ts INTEGER NOT NULL, lifetime_budget INTEGER);
CREATE INDEX adsets_account ON adsets (account_id, id);
CREATE INDEX adsets_campaign ON adsets (campaign_id, id);
CREATE TABLE ads (
    id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, campaign_id INTEGER NOT NULL,
    adset_id INTEGER NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, creative TEXT NOT NULL,
    spend_base INTEGER NOT NULL, created_ts INTEGER NOT NULL, updated_ts INTEGER NOT NULL);
CREATE INDEX ads_account ON ads (account_id, id);
CREATE INDEX ads_campaign ON ads (campaign_id, id);
CREATE INDEX ads_adset ON ads (adset_id, id);
-- effective_status is derived, so a campaign's status change reaches its children without
-- touching their configured status (or their updated_time).
-- A delivery state shows only over ACTIVE or PAUSED (ARCHIVED and DELETED win); children keep
-- deriving from the campaign's configured status.
CREATE VIEW v_campaigns AS SELECT *, CASE
    WHEN delivery IS NOT NULL AND status IN ('ACTIVE', 'PAUSED') THEN delivery
    ELSE status END AS effective_status
FROM campaigns;
CREATE VIEW v_adsets AS
SELECT s.*, c.name AS campaign_name, CASE
    WHEN s.status IN ('DELETED', 'ARCHIVED') THEN s.status
    WHEN c.status IN ('DELETED', 'ARCHIVED') THEN c.status
    WHEN s.status = 'PAUSED' THEN 'PAUSED'
    WHEN c.status = 'PAUSED' THEN 'CAMPAIGN_PAUSED'
    ELSE 'ACTIVE' END AS effective_status
FROM adsets s JOIN campaigns c ON c.id = s.campaign_id;
CREATE VIEW v_ads AS
SELECT a.*, c.name AS campaign_name, s.name AS adset_name, CASE
    WHEN a.status IN ('DELETED', 'ARCHIVED') THEN a.status
    WHEN c.status IN ('DELETED', 'ARCHIVED') THEN c.status
    WHEN s.status IN ('DELETED', 'ARCHIVED') THEN s.status
    WHEN a.status = 'PAUSED' THEN 'PAUSED'
    WHEN c.status = 'PAUSED' THEN 'CAMPAIGN_PAUSED'
    WHEN s.status = 'PAUSED' THEN 'ADSET_PAUSED'
    ELSE 'ACTIVE' END AS effective_status
FROM ads a JOIN adsets s ON s.id = a.adset_id JOIN campaigns c ON c.id = a.campaign_id;
"""


class GraphError(Exception):
    """An error Meta would answer with; server.py turns it into the Graph error body."""

    def __init__(
        self,
        message: str,
        code: int = 100,
        subcode: int | None = None,
        http_status: int = 400,
        error_type: str = "OAuthException",
        is_transient: bool | None = None,  # None: the body leaves it out
        user_title: str | None = None,
        user_msg: str | None = None,
        extra: Mapping[str, Any] | None = None,  # e.g. read-after-write's original_response
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        self.error_type = error_type
        self.is_transient = is_transient
        self.user_title = user_title
        self.user_msg = user_msg
        self.extra = dict(extra or {})


def object_not_found(object_id: str, method: str = "GET") -> GraphError:
    verb = "get" if method == "GET" else method.lower()
    return GraphError(
        f"Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be loaded "
        "due to missing permissions, or does not support this operation. Please read the Graph "
        "API documentation at https://developers.facebook.com/docs/graph-api",
        code=100,
        subcode=33,
        error_type="GraphMethodException",
    )


def _storable_id(object_id: int) -> bool:
    """Ids are SQLite INTEGERs: a longer one (act_99999999999999999999) names nothing, as on Meta."""
    return 0 < object_id <= SQLITE_MAX_INTEGER


def fb_time(ts: int | None, zone: ZoneInfo) -> str | None:
    """Meta's timestamp format, in the ad account's time zone: 2024-03-12T15:02:47-0700."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%dT%H:%M:%S%z")


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)  # ZoneInfo caches its instances


def local_day(ts: float, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ts, tz).date()


def local_day_start(day: date, tz: ZoneInfo) -> int:
    """The epoch second at which ``day`` begins in ``tz`` (a DST day is 23 or 25 hours long)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())


def offset_hours(ts: float, tz: ZoneInfo) -> float:
    """UTC offset at ``ts`` in hours (-8, -7 in DST, 5.5 for Asia/Kolkata)."""
    offset = datetime.fromtimestamp(ts, tz).utcoffset()
    return offset.total_seconds() / 3600 if offset else 0.0


# ISO 4217 currencies without minor units; every other one has cents (the sandbox's choice: Meta's
# own list of "offset 1" currencies is longer).
ZERO_DECIMAL_CURRENCIES = {"JPY", "KRW", "CLP", "VND", "ISK", "PYG"}


def major(minor: float, currency: str) -> float:
    """An amount in minor units (cents) in the currency's major units (dollars)."""
    return minor if currency in ZERO_DECIMAL_CURRENCIES else minor / 100


def money(minor: float, currency: str) -> str:
    """An amount in minor units as Meta's insights decimal string in the account currency."""
    if currency in ZERO_DECIMAL_CURRENCIES:
        return str(round(minor))
    return f"{minor / 100:.2f}"


class BusinessClock:
    """The sandbox's notion of now: real time shifted by a fixed offset, so time keeps flowing."""

    def __init__(self, real: Callable[[], float] = time.time) -> None:
        self._real = real
        self.offset = 0.0

    def __call__(self) -> float:
        return self._real() + self.offset

    def set(self, now: float | None) -> None:
        """Shift so that it is ``now`` at this instant; None returns to real time."""
        self.offset = 0.0 if now is None else now - self._real()


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class DeliveryIssue:
    """Seed rule: the ``nth`` campaign of ``status`` in ``account`` (every account if None) reads ``state``."""

    status: str  # "ACTIVE" | "PAUSED"
    nth: int
    state: str
    account: int | None = None

    @classmethod
    def from_json(cls, raw: Any) -> DeliveryIssue:
        form = (
            '{"account": 1, "nth_paused": 1, "effective_status": "WITH_ISSUES"} '
            '("account" optional: every account; or "nth_active")'
        )
        if not isinstance(raw, Mapping) or set(raw) - {"account", "nth_paused", "nth_active", "effective_status"}:
            raise ValueError(f"each delivery_issues entry looks like {form}")
        picks = [k for k in ("nth_paused", "nth_active") if k in raw]
        if len(picks) != 1 or raw.get("effective_status") not in DELIVERY_STATES:
            raise ValueError(f"each delivery_issues entry looks like {form}")
        account = _bounded_int("delivery_issues.account", raw["account"], 1, MAX_ACCOUNTS) if "account" in raw else None
        nth = _bounded_int(f"delivery_issues.{picks[0]}", raw[picks[0]], 1, 50_000)
        status = "PAUSED" if picks[0] == "nth_paused" else "ACTIVE"
        return cls(status, nth, raw["effective_status"], account)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {} if self.account is None else {"account": self.account}
        body[f"nth_{self.status.lower()}"] = self.nth
        body["effective_status"] = self.state
        return body


# Harsh by default: in every account, delivery states over both configured statuses.
DEFAULT_DELIVERY_ISSUES = (
    DeliveryIssue("PAUSED", 1, "WITH_ISSUES"),
    DeliveryIssue("PAUSED", 2, "IN_PROCESS"),
    DeliveryIssue("ACTIVE", 1, "WITH_ISSUES"),
)


def parse_issues_info(raw: Any) -> list[dict[str, Any]]:
    """Validate an issues_info list (Meta's keys: level, error_code, error_summary, error_message)."""
    if not isinstance(raw, list):
        raise ValueError("issues_info must be a list of objects")
    for issue in raw:
        if not isinstance(issue, Mapping) or set(issue) - set(ISSUE_KEYS):
            raise ValueError(f"each issues_info entry is an object with some of {sorted(ISSUE_KEYS)}")
        for key, kind in ISSUE_KEYS.items():
            if key in issue and (not isinstance(issue[key], kind) or isinstance(issue[key], bool)):
                raise ValueError(f"issues_info.{key} must be a {kind.__name__}")
    return [dict(issue) for issue in raw]


def issues_for(state: str | None, issues: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Meta gives issues_info with WITH_ISSUES; the sandbox's default is the blog's example issue."""
    if state is None:
        return []
    if issues is None:
        return [dict(DEFAULT_ISSUE)] if state == "WITH_ISSUES" else []
    return issues


@dataclass(frozen=True)
class SeedConfig:
    accounts: int = 3
    campaigns_per_account: int = 20
    seed: int = 7
    statuses: Mapping[str, int] | None = None  # exact counts per account, overrides the mix
    adsets_per_campaign: int = 2
    ads_per_adset: int = 2
    history_days: int = 30
    delivery_issues: tuple[DeliveryIssue, ...] = DEFAULT_DELIVERY_ISSUES
    # Cycled over the accounts; account 1 is not on UTC by default (the harsh side).
    timezones: tuple[str, ...] = ("America/Los_Angeles", "UTC", "Europe/Berlin")
    currencies: tuple[str, ...] = ("USD", "EUR", "GBP")

    _LIMITS = {
        "accounts": (1, MAX_ACCOUNTS),
        "campaigns_per_account": (0, 50_000),
        "seed": (-(2**63), 2**63 - 1),
        "adsets_per_campaign": (0, 20),
        "ads_per_adset": (0, 20),
        "history_days": (1, 1100),
    }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SeedConfig:
        """Validate a /_sandbox/reset body; raises ValueError with a readable message."""
        unknown = set(body) - set(cls._LIMITS) - {"statuses", "delivery_issues", "timezones", "currencies"}
        if unknown:
            raise ValueError(f"unknown reset fields: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, (low, high) in cls._LIMITS.items():
            if key in body:
                values[key] = _bounded_int(key, body[key], low, high)
        statuses = body.get("statuses")
        if statuses is not None:
            if not isinstance(statuses, Mapping) or set(statuses) - set(STATUSES):
                raise ValueError(f"statuses must map some of {list(STATUSES)} to counts")
            values["statuses"] = {k: _bounded_int(f"statuses.{k}", v, 0, 50_000) for k, v in statuses.items()}
        if "delivery_issues" in body:
            if not isinstance(body["delivery_issues"], list):
                raise ValueError("delivery_issues must be a list (empty for none)")
            values["delivery_issues"] = tuple(DeliveryIssue.from_json(d) for d in body["delivery_issues"])
        if "timezones" in body:
            values["timezones"] = _names("timezones", body["timezones"], _is_zone, "IANA time zones like Asia/Kolkata")
        if "currencies" in body:
            values["currencies"] = _names("currencies", body["currencies"], _is_currency, "currency codes like USD")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts,
            "campaigns_per_account": self.campaigns_per_account,
            "seed": self.seed,
            "statuses": dict(self.statuses) if self.statuses is not None else None,
            "adsets_per_campaign": self.adsets_per_campaign,
            "ads_per_adset": self.ads_per_adset,
            "history_days": self.history_days,
            "delivery_issues": [d.to_json() for d in self.delivery_issues],
            "timezones": list(self.timezones),
            "currencies": list(self.currencies),
        }

    def account_zone(self, index: int) -> str:
        """The time zone of account ``index`` (1-based)."""
        return self.timezones[(index - 1) % len(self.timezones)]

    def account_currency(self, index: int) -> str:
        return self.currencies[(index - 1) % len(self.currencies)]


def _names(name: str, raw: Any, valid: Callable[[Any], bool], what: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(valid(v) for v in raw):
        raise ValueError(f"{name} must be a non-empty list of {what}")
    return tuple(raw)


def _is_zone(value: Any) -> bool:
    if not isinstance(value, str) or not value or value.startswith(("/", ".")):
        return False
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _is_currency(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 3 and value.isascii() and value.isupper()


def _bounded_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]")
    return value


_THEMES = (
    "Summer Sale",
    "Black Friday",
    "New Arrivals",
    "Retargeting",
    "Lookalike",
    "Brand Lift",
    "Holiday Gifts",
    "Clearance",
    "Best Sellers",
    "Product Launch",
    "Bundles",
    "Free Shipping",
)
_AUDIENCES = ("US 25-44", "UK Broad", "DE LAL 1%", "FR Interests", "CA Retarget 30d", "AU Broad")
_COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU")
_TITLES = ("Made to last", "Limited time offer", "Your new favourite", "Back in stock", "Free returns")
_BODIES = (
    "Shop the collection today.",
    "Loved by 10,000+ customers.",
    "Order now, ships tomorrow.",
    "Upgrade your routine.",
    "Only while stocks last.",
)
_CTAS = ("SHOP_NOW", "LEARN_MORE", "SIGN_UP", "BUY_NOW", "GET_OFFER")
_OBJECTIVE_MIX = ("OUTCOME_SALES",) * 6 + ("OUTCOME_TRAFFIC", "OUTCOME_LEADS", "OUTCOME_AWARENESS")


@dataclass
class _SeedRows:
    accounts: list[tuple]
    campaigns: list[list]
    adsets: list[tuple]
    ads: list[tuple]


def _campaign_statuses(cfg: SeedConfig, rng: random.Random) -> list[str]:
    if cfg.statuses is not None:
        statuses = [s for s in STATUSES for _ in range(cfg.statuses.get(s, 0))]
        rng.shuffle(statuses)
        return statuses
    # Roughly 70% ACTIVE, 20% PAUSED, 10% ARCHIVED.
    return [
        "ACTIVE" if r < 0.7 else "PAUSED" if r < 0.9 else "ARCHIVED"
        for r in (rng.random() for _ in range(cfg.campaigns_per_account))
    ]


def _generate(cfg: SeedConfig, now: int) -> _SeedRows:
    """All seed rows; ids, names, budgets and statuses depend only on cfg (times also on now)."""
    rng = random.Random(cfg.seed)
    rows = _SeedRows([], [], [], [])
    seq = {"campaign": 0, "adset": 0, "ad": 0}

    def next_id(kind: str) -> int:
        seq[kind] += 1
        return ID_BASES[kind] + seq[kind]

    for a in range(1, cfg.accounts + 1):
        account_id = ACCOUNT_ID_BASE + a
        first_campaign = len(rows.campaigns)
        tz = zone(cfg.account_zone(a))
        # History starts at a local midnight: insights days are the account's days.
        history_start = local_day_start(local_day(now, tz) - timedelta(days=cfg.history_days), tz)
        rows.accounts.append(
            (
                account_id,
                f"Sandbox Account {a}",
                history_start,
                cfg.account_zone(a),
                cfg.account_currency(a),
                None,
            )
        )
        for k, status in enumerate(_campaign_statuses(cfg, rng), start=1):
            # Most campaigns exist for the whole history; some start later (new launches).
            offset = rng.randrange(3 * 3600) if rng.random() < 0.8 else rng.randrange(cfg.history_days * DAY)
            created = min(history_start + offset, now - 60)
            # One draw whatever ``now`` is, so ids, names and statuses never depend on the clock.
            updated = created + int(rng.random() * (now - created))
            budget = rng.randrange(10, 201) * 500  # 50.00 .. 1,000.00 USD in cents
            campaign_id = next_id("campaign")
            name = f"A{a} {rng.choice(_THEMES)} - {rng.choice(_AUDIENCES)} #{k:04d}"
            rows.campaigns.append(
                [
                    campaign_id,
                    account_id,
                    name,
                    rng.choice(_OBJECTIVE_MIX),
                    status,
                    budget,
                    None,
                    "[]",
                    created,
                    updated,
                    None,
                    None,
                    None,
                ]
            )
            _generate_children(cfg, rng, rows, next_id, account_id, campaign_id, name, budget, created, updated)
        _assign_delivery(cfg, a, rows.campaigns[first_campaign:])
    return rows


def _assign_delivery(cfg: SeedConfig, account_index: int, campaigns: list[list]) -> None:
    """Apply the delivery_issues rules to one account's campaigns (no RNG draws: the seed is unchanged)."""
    by_status: dict[str, list[list]] = {"ACTIVE": [], "PAUSED": []}
    for row in campaigns:  # in id order
        by_status.get(row[4], []).append(row)
    for rule in cfg.delivery_issues:
        candidates = by_status[rule.status]
        if rule.account in (None, account_index) and rule.nth <= len(candidates):
            row = candidates[rule.nth - 1]
            row[10], row[11] = rule.state, json.dumps(issues_for(rule.state, None))


def _generate_children(
    cfg: SeedConfig,
    rng: random.Random,
    rows: _SeedRows,
    next_id: Callable[[str], int],
    account_id: int,
    campaign_id: int,
    campaign_name: str,
    budget: int,
    created: int,
    updated: int,
) -> None:
    ads: list[list] = []
    for j in range(1, cfg.adsets_per_campaign + 1):
        adset_id = next_id("adset")
        targeting = {
            "geo_locations": {"countries": sorted(rng.sample(_COUNTRIES, rng.randint(1, 3)))},
            "age_min": rng.choice((18, 21, 25)),
            "age_max": rng.choice((45, 55, 65)),
            "genders": rng.choice(([1], [2], [1, 2])),
        }
        rows.adsets.append(
            (
                adset_id,
                account_id,
                campaign_id,
                f"{campaign_name} / Ad set {j}",
                "ACTIVE" if rng.random() < 0.9 else "PAUSED",
                budget // cfg.adsets_per_campaign,
                "OFFSITE_CONVERSIONS",
                "IMPRESSIONS",
                json.dumps(targeting),
                created + 60,
                updated,
                None,
            )
        )
        for k in range(1, cfg.ads_per_adset + 1):
            ad_id = next_id("ad")
            creative = {
                "id": str(ad_id - ID_BASES["ad"] + ID_BASES["creative"]),
                "name": f"Creative {campaign_id}-{j}-{k}",
                "title": rng.choice(_TITLES),
                "body": rng.choice(_BODIES),
                "call_to_action_type": rng.choice(_CTAS),
            }
            weight = rng.uniform(0.5, 1.5)
            ads.append(
                [
                    ad_id,
                    account_id,
                    campaign_id,
                    adset_id,
                    f"Ad {j}.{k} - {creative['title']}",
                    "ACTIVE" if rng.random() < 0.85 else "PAUSED",
                    json.dumps(creative),
                    weight,
                    created + 120,
                    updated,
                ]
            )
    # Split the campaign's daily budget across its ads by weight: that is their spend base.
    total_weight = sum(ad[7] for ad in ads) or 1.0
    for ad in ads:
        ad[7] = max(1, round(budget * ad[7] / total_weight))
        rows.ads.append(tuple(ad))


# --------------------------------------------------------------------------- store


@dataclass(frozen=True)
class Node:
    kind: str  # "campaign" | "adset" | "ad"
    row: dict[str, Any]

    @property
    def account_id(self) -> int:
        return self.row["account_id"]


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    has_more: bool
    total: int | None


class Store:
    """Thread-safe access to the sandbox's SQLite file. Seeds itself with defaults when empty."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        # Owner-only, like the tower's other runtime files: a folder it creates 0700, the file 0600
        # before SQLite opens it (its -wal and -shm files take the same mode).
        for folder in reversed([p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]):
            folder.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        # Business time (timestamps, seeding, insights' today); rate limits stay on real time.
        self.clock = BusinessClock(clock)
        self._zones: dict[int, ZoneInfo] = {}
        self._active_ads: dict[int, tuple[float, int]] = {}
        self._lock = threading.RLock()
        self._in_batch = False  # read and written only by the thread holding the lock
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._ensure_schema()
        self.seed = int(self._meta("seed", "0"))
        if not self.is_seeded():
            self.reset(SeedConfig())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._in_batch:  # the batch commits once, at its end
                yield self._conn
                return
            with self._conn:
                yield self._conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """A batch request's items in one transaction: one hold of the lock and one commit for the
        batch, not one per item. Per item they were most of the sandbox's time at agency scale,
        with hundreds of batches in flight taking turns on the lock (docs/meta-sandbox.md)."""
        with self._lock, self._conn:
            self._in_batch = True
            try:
                yield
            finally:
                self._in_batch = False

    def _ensure_schema(self) -> None:
        with self._tx() as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return
            # The store is disposable simulation state: an old layout is simply rebuilt.
            for kind, name in conn.execute(
                "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            ).fetchall():
                conn.execute(f"DROP {kind.upper()} IF EXISTS {name}")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _meta(self, key: str, default: str) -> str:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def is_seeded(self) -> bool:
        return self._meta("seed_config", "") != ""

    def seed_config(self) -> dict[str, Any]:
        return json.loads(self._meta("seed_config", "{}"))

    def reset(self, cfg: SeedConfig) -> None:
        """Replace all objects with a deterministic seed of ``cfg``."""
        rows = _generate(cfg, int(self.clock()))
        with self._tx() as conn:
            for table in ("ads", "adsets", "campaigns", "accounts", "meta"):
                conn.execute(f"DELETE FROM {table}")
            conn.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?)", rows.accounts)
            conn.executemany("INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows.campaigns)
            conn.executemany("INSERT INTO adsets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows.adsets)
            conn.executemany("INSERT INTO ads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows.ads)
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("seed", str(cfg.seed)), ("seed_config", json.dumps(cfg.to_json()))],
            )
            self.seed = cfg.seed
            self._zones = {}
            self._active_ads = {}

    def active_ads(self, account_id: int) -> int:
        """Effectively ACTIVE ads of an account (the BUC quota grows with them); recounted at
        most once a second, so a stream of writes does not pay for a count each."""
        now = time.monotonic()
        cached = self._active_ads.get(account_id)
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        with self._lock:
            count = self._conn.execute(
                "SELECT COUNT(*) FROM v_ads WHERE account_id = ? AND effective_status = 'ACTIVE'", (account_id,)
            ).fetchone()[0]
        self._active_ads[account_id] = (now, count)
        return count

    def zone(self, account_id: int) -> ZoneInfo:
        """The ad account's time zone (UTC for an account that does not exist)."""
        tz = self._zones.get(account_id)
        if tz is None:
            account = self.account(account_id)
            tz = self._zones[account_id] = zone(account["timezone_name"] if account else "UTC")
        return tz

    # ----------------------------------------------------------------- reads

    def accounts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._conn.execute("SELECT * FROM accounts ORDER BY id")]

    def account(self, account_id: int) -> dict[str, Any] | None:
        if not _storable_id(account_id):
            return None
        with self._lock:
            row = self._conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
        return dict(row) if row else None

    def find(self, object_id: int) -> Node | None:
        """The campaign, ad set or ad with this id (DELETED ones too, as Meta does by id)."""
        if not _storable_id(object_id):
            return None
        with self._lock:
            for kind, view in VIEWS.items():
                row = self._conn.execute(f"SELECT * FROM {view} WHERE id = ?", (object_id,)).fetchone()
                if row:
                    return Node(kind, dict(row))
        return None

    def list_edge(
        self,
        kind: str,
        scope_column: str,
        scope_id: int,
        effective: Sequence[str],
        after: int | None,
        limit: int,
        with_total: bool,
    ) -> Page:
        """Objects of ``kind`` under a parent, by ascending id, filtered by effective status."""
        marks = ",".join("?" * len(effective))
        where = f"{scope_column} = ? AND effective_status IN ({marks})"
        params: list[Any] = [scope_id, *effective]
        with self._lock:
            total = (
                self._conn.execute(f"SELECT COUNT(*) FROM {VIEWS[kind]} WHERE {where}", params).fetchone()[0]
                if with_total
                else None
            )
            if after is not None:
                where += " AND id > ?"
                params.append(after)
            rows = self._conn.execute(
                f"SELECT * FROM {VIEWS[kind]} WHERE {where} ORDER BY id LIMIT ?", [*params, limit + 1]
            ).fetchall()
        return Page([dict(r) for r in rows[:limit]], len(rows) > limit, total)

    def ads_in_scope(self, scope_column: str, scope_id: int) -> list[dict[str, Any]]:
        """Every ad (any status) under an account, campaign, ad set or ad, for insights."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT * FROM v_ads WHERE {scope_column} = ? ORDER BY id", (scope_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def campaign_counts(self, account_id: int) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        with self._lock:
            for status, n in self._conn.execute(
                "SELECT status, COUNT(*) FROM campaigns WHERE account_id = ? GROUP BY status", (account_id,)
            ):
                counts[status] = n
        return counts

    def compact_campaigns(
        self,
        account_id: int | None,
        status: str | None,
        campaign_id: int | None = None,
    ) -> list[dict[str, Any]]:
        where, params = ["1 = 1"], []
        if campaign_id is not None:
            where.append("id = ?")
            params.append(campaign_id)
        if account_id is not None:
            where.append("account_id = ?")
            params.append(account_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, account_id, name, status, effective_status, updated_ts, daily_budget, lifetime_budget, "
                "spend_cap, issues_info "
                f"FROM v_campaigns WHERE {' AND '.join(where)} ORDER BY id",
                params,
            ).fetchall()
        return [
            {
                "id": str(r["id"]),
                "account_id": str(r["account_id"]),
                "status": r["status"],
                "effective_status": r["effective_status"],
                "updated_time": fb_time(r["updated_ts"], self.zone(r["account_id"])),
                "name": r["name"],
                "daily_budget": _minor(r["daily_budget"]),
                "lifetime_budget": _minor(r["lifetime_budget"]),
                "spend_cap": _minor(r["spend_cap"]),
                "issues_info": (
                    json.loads(r["issues_info"] or "[]") if r["effective_status"] in DELIVERY_STATES else []
                ),
            }
            for r in rows
        ]

    def set_spend_cap(self, account_id: int, spend_cap: int) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE accounts SET spend_cap = ? WHERE id = ?", (spend_cap, account_id))

    def set_delivery(self, campaign_id: int, state: str | None, issues: list[dict[str, Any]] | None) -> bool:
        """Meta's delivery system marks a campaign: not an edit, so updated_time is unchanged."""
        if not _storable_id(campaign_id):
            return False
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE campaigns SET delivery = ?, issues_info = ? WHERE id = ?",
                (state, json.dumps(issues_for(state, issues)) if state else None, campaign_id),
            ).rowcount
        return changed == 1

    # ----------------------------------------------------------------- writes

    def update(self, node: Node, changes: Mapping[str, Any]) -> bool:
        """Apply Meta's edit rules; returns False for a no-op (updated_time is then unchanged)."""
        table = TABLES[node.kind]
        with self._tx() as conn:
            row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (node.row["id"],)).fetchone()
            if row is None:
                raise object_not_found(str(node.row["id"]), "POST")
            _check_edit(NODE_TYPES[node.kind], row["status"], changes)
            diff = {k: v for k, v in changes.items() if row[k] != v}
            if not diff:
                return False
            # updated_time must strictly increase: the tower compares it to spot human edits. Meta
            # does not bump it for budget-only edits (daily_budget, lifetime_budget, spend_cap).
            if diff.keys() & {"name", "status"}:
                diff["updated_ts"] = max(int(self.clock()), row["updated_ts"] + 1)
            sets = ", ".join(f"{k} = ?" for k in diff)
            conn.execute(f"UPDATE {table} SET {sets} WHERE id = ?", [*diff.values(), row["id"]])
            return True

    def create_campaign(self, account_id: int, fields: Mapping[str, Any]) -> int:
        now = int(self.clock())
        with self._tx() as conn:
            new_id = self._next_id(conn, "campaign")
            conn.execute(
                "INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                (
                    new_id,
                    account_id,
                    fields["name"],
                    fields["objective"],
                    fields["status"],
                    fields.get("daily_budget"),
                    fields.get("lifetime_budget"),
                    json.dumps(fields.get("special_ad_categories", [])),
                    now,
                    now,
                    fields.get("spend_cap"),
                ),
            )
        return new_id

    def create_adset(self, account_id: int, fields: Mapping[str, Any]) -> int:
        now = int(self.clock())
        with self._tx() as conn:
            _live_parent(conn, "campaigns", fields["campaign_id"], account_id, "campaign_id")
            new_id = self._next_id(conn, "adset")
            conn.execute(
                "INSERT INTO adsets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    account_id,
                    fields["campaign_id"],
                    fields["name"],
                    fields["status"],
                    fields.get("daily_budget"),
                    fields["optimization_goal"],
                    fields["billing_event"],
                    json.dumps(fields["targeting"]),
                    now,
                    now,
                    fields.get("lifetime_budget"),
                ),
            )
        return new_id

    def create_ad(self, account_id: int, fields: Mapping[str, Any]) -> int:
        now = int(self.clock())
        with self._tx() as conn:
            adset = _live_parent(conn, "adsets", fields["adset_id"], account_id, "adset_id")
            campaign = conn.execute(
                "SELECT daily_budget FROM campaigns WHERE id = ?", (adset["campaign_id"],)
            ).fetchone()
            siblings = conn.execute("SELECT COUNT(*) FROM ads WHERE adset_id = ?", (adset["id"],)).fetchone()[0]
            new_id = self._next_id(conn, "ad")
            creative = {"id": str(new_id - ID_BASES["ad"] + ID_BASES["creative"]), **fields["creative"]}
            budget = adset["daily_budget"] or campaign["daily_budget"] or 2000
            conn.execute(
                "INSERT INTO ads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    account_id,
                    adset["campaign_id"],
                    adset["id"],
                    fields["name"],
                    fields["status"],
                    json.dumps(creative),
                    max(1, budget // (siblings + 1)),
                    now,
                    now,
                ),
            )
        return new_id

    @staticmethod
    def _next_id(conn: sqlite3.Connection, kind: str) -> int:
        current = conn.execute(f"SELECT MAX(id) FROM {TABLES[kind]}").fetchone()[0]
        return (current or ID_BASES[kind]) + 1


def _minor(amount: int | None) -> str | None:
    return None if amount is None else str(amount)


def _check_edit(node_type: str, status: str, changes: Mapping[str, Any]) -> None:
    """Meta's rules: DELETED is final; ARCHIVED may only be renamed or moved to DELETED."""
    if status == "DELETED":
        raise GraphError(f"(#100) This {node_type} has been deleted and can no longer be edited.")
    if status != "ARCHIVED":
        return
    new_status = changes.get("status", "ARCHIVED")
    if new_status not in ("ARCHIVED", "DELETED"):
        raise GraphError(
            f"(#100) An archived {node_type} can only be changed to DELETED; it cannot be set to {new_status}."
        )
    other = sorted(set(changes) - {"status", "name"})
    if other:
        raise GraphError(f"(#100) An archived {node_type} can only be renamed or deleted; cannot edit {other[0]}.")


def _live_parent(conn: sqlite3.Connection, table: str, parent_id: int, account_id: int, param: str) -> sqlite3.Row:
    row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (parent_id,)).fetchone()
    if row is None or row["account_id"] != account_id or row["status"] in ("ARCHIVED", "DELETED"):
        raise GraphError(f"(#100) Param {param} must be an active or paused object of this ad account.")
    return row


# --------------------------------------------------------------------------- insights


@dataclass(frozen=True)
class DateRange:
    since: date
    until: date


_LAST_N = {"last_3d": 3, "last_7d": 7, "last_14d": 14, "last_28d": 28, "last_30d": 30, "last_90d": 90}
DATE_PRESETS = ("today", "yesterday", "this_month", "last_month", "maximum", "data_maximum", *_LAST_N)


def resolve_dates(preset: str | None, time_range: Mapping[str, str] | None, today: date) -> DateRange:
    """The range of a date_preset or time_range; last_Nd ends yesterday, as on Meta."""
    if time_range is not None:
        try:
            since = date.fromisoformat(time_range["since"])
            until = date.fromisoformat(time_range["until"])
        except (KeyError, TypeError, ValueError):
            raise GraphError('(#100) time_range must be {"since":"YYYY-MM-DD","until":"YYYY-MM-DD"}') from None
        if since > until:
            raise GraphError("(#100) time_range since must be on or before until")
        return DateRange(since, until)
    preset = preset or "last_30d"
    if preset in _LAST_N:
        return DateRange(today - timedelta(days=_LAST_N[preset]), today - timedelta(days=1))
    if preset == "today":
        return DateRange(today, today)
    if preset == "yesterday":
        return DateRange(today - timedelta(days=1), today - timedelta(days=1))
    if preset == "this_month":
        return DateRange(today.replace(day=1), today)
    if preset == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        return DateRange(last.replace(day=1), last)
    if preset in ("maximum", "data_maximum"):
        return DateRange(today - timedelta(days=37 * 30), today)  # Meta keeps 37 months
    raise GraphError(f"(#100) date_preset must be one of {', '.join(DATE_PRESETS)}")


METRICS = ("spend", "impressions", "clicks", "reach", "purchases", "purchase_value")
LEVEL_KEYS = {"account": "account_id", "campaign": "campaign_id", "adset": "adset_id", "ad": "id"}


@dataclass(frozen=True)
class _Profile:
    """Per-ad traits that make ads differ: cost, click-through, fatigue, conversion."""

    cpm: float  # cents per 1000 impressions
    ctr: float
    decay: float  # daily CTR decay; > 0 for "fatiguing" creatives
    cvr: float  # purchases per click
    aov: float  # cents per purchase
    frequency: float


def _uniforms(count: int, *parts: object) -> list[float]:
    """``count`` (<= 8) deterministic floats in [0, 1) from a hash of ``parts``."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8 * count).digest()
    return [v * _INV_2_64 for v in struct.unpack(f"<{count}Q", digest)]


_INV_2_64 = 2.0**-64


@functools.lru_cache(maxsize=100_000)
def _profile(seed: int, ad_id: int) -> _Profile:
    u = _uniforms(7, seed, ad_id, "profile")
    return _Profile(
        cpm=600 + 1800 * u[0],
        ctr=0.006 + 0.024 * u[1],
        # About a third of creatives fatigue: CTR falls 2-4% a day (25-43% over 14 days).
        decay=0.02 + 0.02 * u[3] if u[2] < 0.35 else 0.0,
        cvr=0.01 + 0.05 * u[4],
        aov=3000 + 9000 * u[5],
        frequency=1.1 + 0.7 * u[6],
    )


def ad_day_metrics(seed: int, ad: Mapping[str, Any], day: int, age: int, share: float) -> tuple[int, ...]:
    """One ad's delivery on local day ordinal ``day``, ``age`` days after its creation day
    (``share`` = fraction of the day it ran).

    Deterministic from (seed, ad id, local date); in METRICS order, money in minor units."""
    p = _profile(seed, ad["id"])
    u = _uniforms(4, seed, ad["id"], day)
    spend = round(ad["spend_base"] * (0.6 + 0.4 * u[0]) * share)
    impressions = round(spend * 1000 / p.cpm)
    ctr = p.ctr * max(0.25, (1 - p.decay) ** age) * (0.9 + 0.2 * u[1])
    clicks = round(impressions * ctr)
    purchases = round(clicks * p.cvr * (0.8 + 0.4 * u[2]))
    value = round(purchases * p.aov * (0.85 + 0.3 * u[3]))
    return spend, impressions, clicks, round(impressions / p.frequency), purchases, value


class LocalDays:
    """The days of one ad account's time zone, as ordinals with their epoch bounds."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._starts: dict[int, int] = {}

    def ordinal(self, ts: float) -> int:
        return local_day(ts, self.tz).toordinal()

    def start(self, day: int) -> int:
        start = self._starts.get(day)
        if start is None:
            start = self._starts[day] = local_day_start(date.fromordinal(day), self.tz)
        return start

    def share(self, day: int, since_ts: float, now: float) -> float:
        """Fraction of local ``day`` after ``since_ts`` that had happened by ``now``."""
        start, end = self.start(day), self.start(day + 1)
        return max(0.0, (min(end, now) - max(start, since_ts)) / (end - start))


def insight_rows(
    seed: int,
    ads: Sequence[Mapping[str, Any]],
    dates: DateRange,
    level: str,
    daily: bool,
    now: float,
    spend_multiplier: Mapping[str, float],
    days: LocalDays,
) -> list[dict[str, Any]]:
    """Rows of summed integer metrics per object of ``level`` (and per local day if ``daily``).

    Past days are fixed; today is the partial local day so far and only accrues for ads that
    are effectively ACTIVE right now; ``spend_multiplier`` scales today's spend per campaign."""
    today = days.ordinal(now)
    groups: dict[tuple[int, int], dict[str, Any]] = {}
    for ad in ads:
        created = days.ordinal(ad["created_ts"])
        for day in range(max(dates.since.toordinal(), created), min(dates.until.toordinal(), today) + 1):
            metrics = _ad_metrics_on(
                seed, ad, day, day - created, today, days.share(day, ad["created_ts"], now), spend_multiplier
            )
            if metrics[1] == 0:
                continue  # Meta returns no row for a day without delivery
            key = (ad[LEVEL_KEYS[level]], day if daily else 0)
            row = groups.get(key)
            if row is None:
                span = (date.fromordinal(day),) * 2 if daily else (dates.since, dates.until)
                row = groups[key] = _new_row(ad, level, *span)
            for name, value in zip(METRICS, metrics):
                row[name] += value
    return [groups[key] for key in sorted(groups)]


def _ad_metrics_on(
    seed: int,
    ad: Mapping[str, Any],
    day: int,
    age: int,
    today: int,
    share: float,
    multiplier: Mapping[str, float],
) -> tuple[int, ...]:
    if day < today:
        return ad_day_metrics(seed, ad, day, age, share)
    if ad["effective_status"] != "ACTIVE":
        return (0,) * len(METRICS)
    spend, *rest = ad_day_metrics(seed, ad, day, age, share)
    return (round(spend * multiplier.get(str(ad["campaign_id"]), 1.0)), *rest)


def _new_row(ad: Mapping[str, Any], level: str, since: date, until: date) -> dict[str, Any]:
    row: dict[str, Any] = {"account_id": str(ad["account_id"])}
    if level in ("campaign", "adset", "ad"):
        row.update(campaign_id=str(ad["campaign_id"]), campaign_name=ad["campaign_name"])
    if level in ("adset", "ad"):
        row.update(adset_id=str(ad["adset_id"]), adset_name=ad["adset_name"])
    if level == "ad":
        row.update(ad_id=str(ad["id"]), ad_name=ad["name"])
    row.update(date_start=since.isoformat(), date_stop=until.isoformat())
    row.update(dict.fromkeys(METRICS, 0))
    return row
