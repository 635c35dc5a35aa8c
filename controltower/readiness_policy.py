"""Would the kill switch work right now? Facts about the token and each ad account in, verdicts out.

Pure: no database, no Meta, no clock (`now` is given). `controltower.readiness` gathers the facts.

The headroom follows what the stop's Graph client does (meta_modules.throttle): per account, the
listing reads first (1 point per page of 100), then pauses of 3 points each while the score stays
under 90 % of the tier's window, counted from what Meta last reported as used. Whatever does not
fit waits for the window: pending, paused by the background sweeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controltower.models import ReadinessCheck
from meta_modules.throttle import (
    READ_POINTS,
    TIER_MAX_POINTS,
    UNKNOWN_TIER_MAX_POINTS,
    WRITE_CEILING,
    WRITE_POINTS,
)

READY, DEGRADED, NOT_READY = ReadinessCheck.Verdict.values
VERDICT_LABELS = dict(ReadinessCheck.Verdict.choices)
LIST_PAGE = 100  # the stop lists running campaigns in pages of this many
BATCH = 50  # Meta's batch limit: pauses go in batches of this many
REQUIRED_PERMISSION = "ads_management"
EDITING_TASKS = frozenset({"MANAGE", "ADVERTISE"})  # the ad account tasks that may edit campaigns
# Meta's AdAccount.account_status values (Marketing API, Ad Account reference).
ACCOUNT_STATUSES = {
    1: "ACTIVE",
    2: "DISABLED",
    3: "UNSETTLED",
    7: "PENDING_RISK_REVIEW",
    8: "PENDING_SETTLEMENT",
    9: "IN_GRACE_PERIOD",
    100: "PENDING_CLOSURE",
    101: "CLOSED",
    201: "ANY_ACTIVE",
    202: "ANY_CLOSED",
}
# Ads still deliver (and so may need stopping) in these; Meta warns before it disables the account.
WARNING_STATUSES = frozenset({3, 8, 9})
ACTIVE_STATUSES = frozenset({1, 201})


def rank(verdict: str) -> int:
    """READY < DEGRADED < NOT READY; a verdict not known here counts as DEGRADED."""
    return (READY, DEGRADED, NOT_READY).index(verdict) if verdict in VERDICT_LABELS else 1


def worst(verdicts: Iterable[str]) -> str:
    return max(verdicts, key=rank, default=READY)


# --- the token -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenFacts:
    """What Meta said about the access token (debug_token, else /me/permissions)."""

    checked: bool  # Meta answered at all
    valid: bool | None = None
    type: str = ""
    expires_at: datetime | None = None  # None: never (or not known, see `source`)
    data_access_expires_at: datetime | None = None
    scopes: tuple[str, ...] | None = None  # None: not known
    source: str = ""  # "debug_token" or "permissions"
    error: str = ""


@dataclass(frozen=True)
class TokenReadiness:
    verdict: str
    reasons: tuple[str, ...]
    facts: TokenFacts
    problem: str = ""  # what alerts on: unasked, invalid, expired, permission, expiring, scopes_unknown

    def to_json(self) -> dict[str, Any]:
        facts = self.facts
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "problem": self.problem,
            "valid": facts.valid,
            "type": facts.type,
            "expires_at": facts.expires_at.isoformat() if facts.expires_at else None,
            "data_access_expires_at": facts.data_access_expires_at.isoformat()
            if facts.data_access_expires_at
            else None,
            "scopes": list(facts.scopes) if facts.scopes is not None else None,
            "source": facts.source,
            "error": facts.error,
        }


def _in_days(moment: datetime, now: datetime) -> str:
    left = moment - now
    if left < timedelta(days=1):
        return f"in {max(0, round(left.total_seconds() / 3600))} h"
    return f"in {left.days} days"


def token_readiness(facts: TokenFacts, now: datetime, warn_days: int) -> TokenReadiness:
    """NOT READY when Meta refuses the token or it lacks ads_management; DEGRADED when it (or its
    data access) expires within `warn_days`, or when Meta could not say what it may do."""
    reasons: list[str] = []
    verdict = READY
    if not facts.checked:
        why = f"Meta could not be asked about the access token: {facts.error}"
        return TokenReadiness(NOT_READY, (why,), facts, "unasked")
    if facts.valid is False:
        why = f": {facts.error}" if facts.error else ""
        return TokenReadiness(NOT_READY, (f"Meta says the access token is not valid{why}.",), facts, "invalid")
    if facts.expires_at is not None and facts.expires_at <= now:
        why = f"The access token expired at {facts.expires_at:%Y-%m-%d %H:%M} UTC."
        return TokenReadiness(NOT_READY, (why,), facts, "expired")
    problem = ""
    if facts.scopes is None:
        verdict, problem = DEGRADED, "scopes_unknown"
        reasons.append(f"Meta did not say which permissions the token has{': ' + facts.error if facts.error else ''}.")
    elif REQUIRED_PERMISSION not in facts.scopes:
        why = f"The access token lacks the {REQUIRED_PERMISSION} permission: no campaign can be paused."
        return TokenReadiness(NOT_READY, (why,), facts, "permission")
    warn = timedelta(days=warn_days)
    if facts.expires_at is not None and facts.expires_at - now <= warn:
        verdict, problem = DEGRADED, "expiring"
        reasons.append(
            f"The access token expires {_in_days(facts.expires_at, now)} ({facts.expires_at:%Y-%m-%d %H:%M} UTC)."
        )
    if facts.data_access_expires_at is not None:
        if facts.data_access_expires_at <= now:
            why = "The token's data access has expired: its user must log in again."
            return TokenReadiness(NOT_READY, (why,), facts, "expired")
        if facts.data_access_expires_at - now <= warn:
            verdict, problem = DEGRADED, "expiring"
            reasons.append(
                f"The token's data access expires {_in_days(facts.data_access_expires_at, now)} "
                f"({facts.data_access_expires_at:%Y-%m-%d %H:%M} UTC)."
            )
    return TokenReadiness(verdict, tuple(reasons), facts, problem)


# --- each ad account -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountFacts:
    """What one read of an ad account (and the mirror) says."""

    account_id: str
    reachable: bool
    error: str = ""
    name: str = ""
    account_status: int | None = None
    disable_reason: int | None = None
    user_tasks: tuple[str, ...] | None = None  # None: Meta did not say
    timezone_name: str = ""
    currency: str = ""
    tier: str = ""  # development_access / standard_access, '' when Meta has not said
    used_pct: float = 0.0  # of the tier's window, as Meta last reported it
    frees_in_s: float | None = None  # until the reported score decays (or a block ends)
    latency_ms: float | None = None  # the read's round trip
    active_campaigns: int = 0  # configured ACTIVE, from the mirror
    listed_campaigns: int = 0  # those the stop's listing returns (by effective status), for its pages
    mirror_synced_at: datetime | None = None
    mirror_stale: bool = False  # 10.2 has not synced it within MIRROR_STALE_HOURS: the counts may be old


@dataclass(frozen=True)
class Headroom:
    """What a stop pressed now would do in one account."""

    max_points: int
    used_points: float
    list_pages: int
    at_once: int  # paused within the stop's answer
    pending: int  # left for the background sweeps, once Meta's window frees
    seconds: float | None  # the account's part of the stop, from the read's latency


def headroom(
    active: int,
    tier: str,
    used_pct: float,
    latency_ms: float | None,
    item_ms: float,
    blocked: bool = False,
    listed: int = 0,
) -> Headroom:
    """The stop's own arithmetic (see the module's docstring), for `active` running campaigns.

    Meta sends usage headers only once an account has made enough calls: with nothing reported
    (no tier, no usage) the client counts nothing against the window, and sends batches sized to
    the strictest tier's, one after the other. `listed`: the campaigns the stop's listing returns
    (it lists by effective status, which PAUSED ones with delivery issues share), when more than `active`."""
    max_points = TIER_MAX_POINTS.get(tier, UNKNOWN_TIER_MAX_POINTS)
    used = max_points * used_pct / 100.0
    pages = max(1, math.ceil(max(active, listed) / LIST_PAGE))
    after_listing = used + pages * READ_POINTS
    window = int(max_points * WRITE_CEILING // WRITE_POINTS)
    if blocked or after_listing > max_points:
        at_once = 0
    elif tier not in TIER_MAX_POINTS and not used_pct:
        at_once = active
    else:
        at_once = max(0, min(active, int((max_points * WRITE_CEILING - after_listing) // WRITE_POINTS)))
    seconds = None
    if latency_ms is not None:
        requests = pages + math.ceil(at_once / min(BATCH, window))
        seconds = round((requests * latency_ms + at_once * item_ms) / 1000.0, 2)
    return Headroom(max_points, round(used, 2), pages, at_once, active - at_once, seconds)


@dataclass(frozen=True)
class AccountReadiness:
    facts: AccountFacts
    verdict: str
    reasons: tuple[str, ...]
    editable: bool
    headroom: Headroom | None

    @property
    def account_id(self) -> str:
        return self.facts.account_id

    def to_json(self) -> dict[str, Any]:
        facts = self.facts
        room = self.headroom
        return {
            "account_id": facts.account_id,
            "name": facts.name,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "reachable": facts.reachable,
            "error": facts.error,
            "account_status": facts.account_status,
            "account_status_name": ACCOUNT_STATUSES.get(facts.account_status, "")
            if facts.account_status is not None
            else "",
            "disable_reason": facts.disable_reason,
            "user_tasks": list(facts.user_tasks) if facts.user_tasks is not None else None,
            "editable": self.editable,
            "timezone_name": facts.timezone_name,
            "currency": facts.currency,
            "tier": facts.tier,
            "active_campaigns": facts.active_campaigns,
            "mirror_synced_at": facts.mirror_synced_at.isoformat() if facts.mirror_synced_at else None,
            "latency_ms": facts.latency_ms,
            "headroom": asdict(room) if room else None,
            "frees_in_s": facts.frees_in_s,
        }


def account_readiness(facts: AccountFacts, item_ms: float) -> AccountReadiness:
    """NOT READY when a stop could not pause this account's campaigns (unreachable, not editable,
    an account Meta does not let edit); DEGRADED when it could, but not all at once or with a warning."""
    if not facts.reachable:
        return AccountReadiness(
            facts, NOT_READY, (f"{facts.account_id} cannot be read with this token: {facts.error}",), False, None
        )
    reasons: list[str] = []
    verdict = READY
    editable = facts.user_tasks is None or bool(EDITING_TASKS & set(facts.user_tasks))
    if not editable:
        verdict = NOT_READY
        tasks = ", ".join(facts.user_tasks or ()) or "none"
        reasons.append(
            f"{facts.account_id}: the token's user may not edit this account (its tasks: {tasks}; "
            "pausing needs MANAGE or ADVERTISE)."
        )
    elif facts.user_tasks is None:
        verdict = DEGRADED
        reasons.append(f"{facts.account_id}: Meta did not say what the token's user may do in this account.")
    status = facts.account_status
    if status is not None and status not in ACTIVE_STATUSES:
        name = ACCOUNT_STATUSES.get(status, f"status {status}")
        if status in WARNING_STATUSES:
            verdict = worst((verdict, DEGRADED))
            reasons.append(f"{facts.account_id} is {name}: Meta may disable it; its ads may still deliver.")
        else:
            verdict = NOT_READY
            reasons.append(f"{facts.account_id} is {name}: Meta refuses edits in it.")
    if facts.mirror_stale:
        verdict = worst((verdict, DEGRADED))
        when = f"last synced {facts.mirror_synced_at:%Y-%m-%d %H:%M} UTC" if facts.mirror_synced_at else "never synced"
        reasons.append(
            f"{facts.account_id}: its campaigns in the mirror were {when} (module 10.2): the counts may be old."
        )
    blocked = facts.used_pct >= 100.0
    room = headroom(
        facts.active_campaigns,
        facts.tier,
        facts.used_pct,
        facts.latency_ms,
        item_ms,
        blocked,
        facts.listed_campaigns,
    )
    if facts.tier == "development_access":
        verdict = worst((verdict, DEGRADED))
        reasons.append(
            f"{facts.account_id} is on Meta's development tier ({room.max_points} points per window, "
            f"about {int(room.max_points * WRITE_CEILING // WRITE_POINTS)} pauses)."
        )
    if room.pending and editable:
        verdict = worst((verdict, DEGRADED))
        wait = f" about {round(facts.frees_in_s)} s later" if facts.frees_in_s else " when Meta's window frees"
        reasons.append(
            f"{facts.account_id}: a stop now would pause {room.at_once} of its {facts.active_campaigns} ACTIVE "
            f"campaigns at once; {room.pending} would wait for Meta's rate window and be paused{wait}."
        )
    return AccountReadiness(facts, verdict, tuple(reasons), editable, room)


# --- overall ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    verdict: str
    summary: str
    reasons: tuple[str, ...]
    token: TokenReadiness
    accounts: tuple[AccountReadiness, ...] = field(default_factory=tuple)
    campaigns_active: int = 0
    paused_at_once: int = 0
    left_pending: int = 0  # would wait for Meta's rate window, paused by the background sweeps
    out_of_reach: int = 0  # in accounts a stop could not pause at all
    estimated_seconds: float | None = None  # Meta's part × stop_factor
    meta_seconds: float | None = None  # Meta's part: its latencies and batch items
    stop_factor: float | None = None  # the last real stop's time over its estimate (None: no stop seen)


def stop_seconds(per_account: Iterable[float | None], parallelism: int) -> float | None:
    """Accounts go in parallel, `parallelism` at once: the slowest account per round, rounds in turn."""
    known = sorted((s for s in per_account if s is not None), reverse=True)
    if not known:
        return None
    rounds = [known[i] for i in range(0, len(known), max(1, parallelism))]
    return round(sum(rounds), 1)


def stop_factor(last_stop_seconds: float | None, its_estimate: float | None) -> float | None:
    """How much longer than Meta's part the last real stop took here (the tower's own work, the
    machine, the workers): never below 1, None without both figures."""
    if not last_stop_seconds or not its_estimate:
        return None
    return round(max(1.0, last_stop_seconds / its_estimate), 2)


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def overall(
    token: TokenReadiness,
    accounts: list[AccountReadiness],
    parallelism: int,
    unlisted: str = "",
    factor: float | None = None,
    halted: bool = False,
) -> Readiness:
    """READY / DEGRADED / NOT READY with the reasons in words, and what a stop now would do.
    `unlisted`: why the ad accounts themselves could not be listed, if they could not; `factor`:
    the last real stop's `stop_factor`, which scales Meta's part of the time into the estimate.
    While `halted` the mirror still counts what the stop paused (10.2 does not sync during a halt):
    the summary says what the token and accounts allow (the re-sweeps, and resume) instead."""
    reasons = list(token.reasons)
    for account in accounts:
        reasons.extend(account.reasons)
    usable = [a for a in accounts if a.verdict != NOT_READY]
    verdict = worst([token.verdict, *(a.verdict for a in accounts)])
    if verdict == NOT_READY and token.verdict != NOT_READY and usable:
        verdict = DEGRADED  # some accounts would not be paused; the others would
    if unlisted:
        verdict = NOT_READY
        reasons.append(f"The ad accounts could not be listed: {unlisted}")
    elif not accounts:
        verdict = NOT_READY
        reasons.append("No ad account is known: set META_AD_ACCOUNT_IDS or let the token list its accounts.")
    elif not usable:
        verdict = NOT_READY
        reasons.append("No ad account could be paused with this token.")
    active = sum(a.facts.active_campaigns for a in accounts)
    at_once = sum(a.headroom.at_once for a in usable if a.headroom)
    pending = sum(a.headroom.pending for a in usable if a.headroom)
    out_of_reach = active - at_once - pending
    meta_seconds = stop_seconds((a.headroom.seconds if a.headroom else None for a in usable), parallelism)
    seconds = round(meta_seconds * (factor or 1.0), 1) if meta_seconds is not None else None
    label = VERDICT_LABELS[verdict]
    if verdict == NOT_READY:
        summary = f"{label}: {reasons[0] if reasons else 'the kill switch would not work.'}"
    elif halted:
        summary = (
            f"{label}: halted; the token and {_count(len(usable), 'account')} let the kill switch re-sweep "
            "and resume re-activate."
        )
    else:
        about = f" in about {seconds:g} s" if seconds is not None else ""
        summary = (
            f"{label}: a stop now would pause {_count(at_once, 'campaign')} in {_count(len(usable), 'account')}{about}"
        )
        summary += f"; {pending:,} would be left pending" if pending else ""
        summary += f"; {out_of_reach:,} could not be paused" if out_of_reach else ""
        summary += "."
    return Readiness(
        verdict=verdict,
        summary=summary,
        reasons=tuple(reasons),
        token=token,
        accounts=tuple(accounts),
        campaigns_active=active,
        paused_at_once=at_once,
        left_pending=pending,
        out_of_reach=out_of_reach,
        estimated_seconds=seconds,
        meta_seconds=meta_seconds,
        stop_factor=factor,
    )
