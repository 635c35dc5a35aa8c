"""The CampaignHold ledger: one hold per campaign the kill switch paused, written before it is
paused, claimed by the sweep pausing it, settled with Meta's answer, and closed by resume.

Also the kill switch's lock (stops, sweeps and resumes take turns over the ledger) and what a
stop or resume leaves to the background (Pending, SweepResult).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from controltower import rules
from controltower.locks import lease
from controltower.models import CampaignHold, ControlTowerRun, TowerState
from meta_modules import graph
from meta_modules.errors import RETRYABLE

KILL_SWITCH_LOCK = "kill_switch"
# Holds resume leaves as they are without asking Meta: their pause was never confirmed.
UNCONFIRMED_STATES = (CampaignHold.State.PENDING, CampaignHold.State.FAILED)


@dataclass
class Pending:
    """Campaigns left for the background, per account, with why: an operator is told, not left to guess."""

    why: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, account: str, why: str, n: int = 1) -> None:
        self.why[account][why] += n

    @property
    def count(self) -> int:
        return sum(sum(reasons.values()) for reasons in self.why.values())

    def reasons(self, doing: str) -> list[str]:
        """Per account, how many are left and the commonest reason."""
        return [
            f"{account}: {sum(reasons.values())} campaigns still pending — {reasons.most_common(1)[0][0].rstrip('.')}; "
            f"the background keeps {doing} them."
            for account, reasons in sorted(self.why.items())
        ]

    def only(self, accounts: set[str]) -> Pending:
        return Pending(defaultdict(Counter, {a: Counter(r) for a, r in self.why.items() if a in accounts}))

    def merge(self, other: Pending) -> None:
        for account, reasons in other.why.items():
            self.why[account].update(reasons)


@dataclass
class SweepResult:
    paused: int = 0
    pending: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what went wrong beyond one account
    unlisted: dict[str, str] = field(default_factory=dict)  # account → why its campaigns could not be listed
    by_account: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    left: Pending = field(default_factory=Pending)

    @property
    def errors(self) -> list[str]:
        return self.notes + [f"Could not list campaigns of {a}: {why}" for a, why in sorted(self.unlisted.items())]

    def leave_pending(self, account: str, why: str, n: int = 1) -> None:
        self.pending += n
        self.by_account[account]["pending"] += n
        self.left.add(account, why, n)

    def pending_reasons(self) -> list[str]:
        return self.left.reasons("pausing")

    def only(self, accounts: list[str], notes: bool) -> SweepResult:
        """This result's part for some of its accounts (an account group's outcome); `notes` with the general notes."""
        mine = set(accounts)
        part = SweepResult(
            failed=[f for f in self.failed if f["account_id"] in mine],
            notes=list(self.notes) if notes else [],
            unlisted={a: why for a, why in self.unlisted.items() if a in mine},
            left=self.left.only(mine),
        )
        for account, counts in self.by_account.items():
            if account in mine:
                part.by_account[account].update(counts)
        part.paused = sum(c.get("paused", 0) for c in part.by_account.values())
        part.pending = part.left.count
        return part

    def merge(self, other: SweepResult) -> None:
        self.paused += other.paused
        self.pending += other.pending
        self.failed += other.failed
        self.notes += other.notes
        self.unlisted.update(other.unlisted)
        for account, counts in other.by_account.items():
            for key, n in counts.items():
                self.by_account[account][key] += n
        self.left.merge(other.left)

    def to_json(self) -> dict[str, Any]:
        return {
            "paused": self.paused,
            "pending": self.pending,
            "failed": self.failed,
            "notes": self.notes,
            "unlisted": self.unlisted,
            "by_account": {a: dict(c) for a, c in self.by_account.items()},
            "left": {a: dict(r) for a, r in self.left.why.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepResult:
        result = cls(
            paused=data["paused"],
            pending=data["pending"],
            failed=data["failed"],
            notes=data["notes"],
            unlisted=data["unlisted"],
            left=Pending(defaultdict(Counter, {a: Counter(r) for a, r in data["left"].items()})),
        )
        for account, counts in data["by_account"].items():
            result.by_account[account].update(counts)
        return result


def kill_switch_lease(wait_until: float | None = None) -> Any:
    """Stops, sweeps and resumes take turns; a stop waits (until its deadline), a resume does not."""
    wait = max(0.0, wait_until - time.monotonic()) if wait_until is not None else 0.0
    return lease(KILL_SWITCH_LOCK, timedelta(seconds=settings.HOLD_CLAIM_SECONDS), wait=wait)


def hold_and_claim(
    halt_run: ControlTowerRun, stop_run: ControlTowerRun, found: list[dict[str, Any]], accounts: list[str], owner: str
) -> tuple[list[CampaignHold], dict[str, int]] | None:
    """Write one hold per ACTIVE campaign (before pausing it) and claim the pending ones.

    Returns the holds claimed, and per account how many pending ones someone else still claims.
    """
    now = timezone.now()
    with transaction.atomic():
        state = TowerState.locked()
        if not state.emergency_stop_active or state.halt_run_id != halt_run.pk:
            return None
        _insert_holds(halt_run, stop_run, found, now)
        # Held before and ACTIVE again (someone re-activated it during the halt): pause it again.
        CampaignHold.objects.filter(halt_run=halt_run, campaign_id__in=[c["id"] for c in found]).exclude(
            state=CampaignHold.State.PENDING
        ).update(state=CampaignHold.State.PENDING, stop_run=stop_run)
        claimable = CampaignHold.objects.filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
            halt_run=halt_run,
            state=CampaignHold.State.PENDING,
            account_id__in=accounts,
        )
        claimable.update(claimed_by=owner, claimed_until=now + timedelta(seconds=settings.HOLD_CLAIM_SECONDS))
        pending = CampaignHold.objects.filter(
            halt_run=halt_run, state=CampaignHold.State.PENDING, account_id__in=accounts
        )
        elsewhere = pending.exclude(claimed_by=owner).values_list("account_id").annotate(n=Count("pk"))
        return list(pending.filter(claimed_by=owner)), dict(elsewhere)


# Every column of a new hold, in the order _insert_holds gives them.
HOLD_COLUMNS = (
    "id",
    "halt_run",
    "stop_run",
    "campaign_id",
    "account_id",
    "campaign_name",
    "prior_status",
    "prior_effective_status",
    "prior_updated_time",
    "paused_updated_time",
    "snapshot",
    "state",
    "attempts",
    "last_error",
    "claimed_by",
    "created_at",
    "resume_note",
)


def _insert_holds(
    halt_run: ControlTowerRun, stop_run: ControlTowerRun, found: list[dict[str, Any]], now: datetime
) -> None:
    """One new hold per campaign (a campaign already held in this halt is left alone), in as few
    INSERT statements as the database allows: one on PostgreSQL. Not bulk_create, which prepares
    every field of every model instance: at agency scale that, not the database, was the stop's
    slowest step (docs/BENCHMARKS.md, "Agency scale")."""
    if not found:
        return
    fields = [CampaignHold._meta.get_field(name) for name in HOLD_COLUMNS]
    prep = {f.name: f.get_db_prep_save for f in fields}
    halt, stop, created = (
        prep["halt_run"](halt_run.pk, connection),
        prep["stop_run"](stop_run.pk, connection),
        prep["created_at"](now, connection),
    )
    rows = [
        (
            prep["id"](uuid.uuid4(), connection),
            halt,
            stop,
            c["id"],
            c["account"],
            c.get("name", "")[:400],
            c.get("status", ""),
            c.get("effective_status", ""),
            c.get("updated_time", ""),
            "",
            prep["snapshot"](rules.snapshot(c), connection),
            CampaignHold.State.PENDING.value,
            0,
            "",
            "",
            created,
            "",
        )
        for c in found
    ]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    per_statement = (connection.features.max_query_params or len(rows) * len(fields)) // len(fields)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(
                f"INSERT INTO {connection.ops.quote_name(CampaignHold._meta.db_table)} ({columns}) "
                f"VALUES {', '.join([placeholders] * len(chunk))} ON CONFLICT DO NOTHING",
                [value for row in chunk for value in row],
            )


def settle(
    hold: CampaignHold,
    error: graph.MetaError | None,
    body: dict[str, Any] | None,
    pauses_sent: int,
    now: datetime,
    result: SweepResult,
) -> None:
    """Record one hold's outcome: confirmed not running (with Meta's updated_time), failed, or still pending."""
    account = hold.account_id
    hold.attempts += pauses_sent
    hold.claimed_by, hold.claimed_until = "", None
    if error is None and body is not None:
        hold.state, hold.paused_at, hold.last_error = CampaignHold.State.PAUSED, now, ""
        hold.paused_updated_time = body.get("updated_time", "")
        hold.snapshot = {**hold.snapshot, **rules.snapshot(body)}
        result.paused += 1
        result.by_account[account]["paused"] += 1
    elif error is not None and error.kind not in RETRYABLE:
        hold.state, hold.last_error = CampaignHold.State.FAILED, str(error)
        result.failed.append({"campaign_id": hold.campaign_id, "account_id": account, "reason": str(error)})
        result.by_account[account]["failed"] += 1
    else:
        hold.last_error = str(error) if error else "No answer before the deadline."
        result.leave_pending(account, hold.last_error)


def save_holds(holds: list[CampaignHold], fields: list[str]) -> None:
    """bulk_update(holds, fields) as one UPDATE per distinct set of values. The holds of a sweep or
    a resume share a handful of values (state, Meta's updated_time to the second, the error), while
    bulk_update builds a CASE/WHEN per row and field (on PostgreSQL one 5,000-branch CASE per field),
    several times slower on a large stop (docs/BENCHMARKS.md, "Profile of the 5,000 stop")."""
    groups: dict[tuple[Any, ...], list[uuid.UUID]] = defaultdict(list)
    for hold in holds:
        groups[tuple(getattr(hold, name) for name in fields)].append(hold.pk)
    with transaction.atomic():
        for values, pks in groups.items():
            CampaignHold.objects.filter(pk__in=pks).update(**dict(zip(fields, values)))


def resumes_left_pending() -> list[Any]:
    return list(
        CampaignHold.objects.filter(state=CampaignHold.State.RESUMING)
        .values_list("resume_run_id", flat=True)
        .distinct()
        .order_by()
    )


def close_unconfirmed(halt_run: ControlTowerRun, run: ControlTowerRun) -> list[dict[str, str]]:
    """Holds never confirmed paused (pending, failed): without our pause's updated_time there is
    no proof the campaign is as we left it, so resume leaves them as they are and says so."""
    holds = CampaignHold.objects.filter(halt_run=halt_run, state__in=UNCONFIRMED_STATES)
    note = rules.UNCONFIRMED.reason
    closed = [{"campaign_id": h.campaign_id, "account_id": h.account_id, "reason": note} for h in holds]
    holds.update(state=CampaignHold.State.SKIPPED, resume_run=run, resume_note=note)
    return closed


def release(halt_run: ControlTowerRun, run: ControlTowerRun) -> list[dict[str, str]]:
    holds = CampaignHold.objects.filter(halt_run=halt_run, state=CampaignHold.State.PAUSED)
    released = [
        {"campaign_id": h.campaign_id, "account_id": h.account_id, "reason": rules.NOT_REQUESTED.reason} for h in holds
    ]
    holds.update(
        state=CampaignHold.State.RELEASED, resume_run=run, resume_note=f"Left paused: {rules.NOT_REQUESTED.reason}"
    )
    return released
