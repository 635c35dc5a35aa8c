"""The tower's rules as pure functions: facts in, verdicts out. Thresholds come from settings.

- Health: module and system status (below), start-up progress, Beat and worker liveness, and when
  the watchdog must run the cycle itself.
- Kill switch: which listed campaigns a stop holds and what it remembers of them, whether resume
  may re-activate a hold, a halt's scope and whether it was left incomplete, and how long a retry
  round within a deadline waits.

Module status (first rule that matches wins):
  STOPPED   the operator stopped the module on purpose (desired state `stopped`);
  OFFLINE   its scheduler is not running (task disabled, Beat or every worker dead, or
            overdue past the grace period), its 24 h success rate is below
            MODULE_OFFLINE_SUCCESS_RATE, or it has not finished its first run within
            STARTING_GRACE_MINUTES of being expected to run (created, or last started);
  UNKNOWN   it has never finished a run and is still within that start-up grace;
  DEGRADED  success rate below MODULE_ONLINE_SUCCESS_RATE, more than MODULE_MAX_ERRORS_24H
            errors, the database unhealthy, or (for modules that call Meta) the API unhealthy;
  ONLINE    otherwise.
System status (first that matches wins): EMERGENCY_STOP while halted; CRITICAL when any
module is OFFLINE or more than 2 are DEGRADED; DEGRADED for 1–2; STARTING while a module is
UNKNOWN (waiting for its first run: a fresh install, a module just added or started); else
HEALTHY. The spec counts UNKNOWN as DEGRADED: that made every fresh install read CRITICAL for
its first minutes; a module that never runs still turns OFFLINE once the start-up grace is over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings

from controltower.models import ModuleStatus, SystemStatus
from meta_modules import backoff


@dataclass(frozen=True)
class Thresholds:
    online_success_rate: float
    offline_success_rate: float
    max_errors_24h: int
    overdue_grace: timedelta
    starting_grace: timedelta

    @classmethod
    def from_settings(cls) -> Thresholds:
        return cls(
            online_success_rate=settings.MODULE_ONLINE_SUCCESS_RATE,
            offline_success_rate=settings.MODULE_OFFLINE_SUCCESS_RATE,
            max_errors_24h=settings.MODULE_MAX_ERRORS_24H,
            overdue_grace=timedelta(seconds=settings.SCHEDULER_GRACE_SECONDS),
            starting_grace=timedelta(minutes=settings.STARTING_GRACE_MINUTES),
        )


@dataclass(frozen=True)
class ModuleSignals:
    """The facts a module's status depends on."""

    stopped_on_purpose: bool
    is_scheduler_running: bool
    has_finished_run: bool
    first_run_overdue: bool  # never finished a run, and the start-up grace is over
    success_rate: float | None
    error_count_24h: int
    is_db_healthy: bool
    is_api_healthy: bool


def is_overdue(reference: datetime | None, interval: timedelta, grace: timedelta, now: datetime) -> bool:
    """Late past its period plus grace (as healthchecks does). No reference = not yet due."""
    return reference is not None and now > reference + interval + grace


def first_run_overdue(has_finished_run: bool, expected_since: datetime, grace: timedelta, now: datetime) -> bool:
    """A module that has not finished its first run `grace` after it was expected to run: its
    start-up is over, and what never happened is an outage, not a start."""
    return not has_finished_run and now > expected_since + grace


def api_healthy(calls_meta: bool, api_calls: int, api_errors: int, probe_ok: bool, max_error_ratio: float) -> bool:
    """A module's Meta API health: this cycle's probe answered and its recent calls mostly succeeded.

    Modules that never call Meta are not affected by Meta's health.
    """
    if not calls_meta:
        return True
    if not probe_ok:
        return False
    return api_calls == 0 or api_errors / api_calls <= max_error_ratio


def module_status(s: ModuleSignals, t: Thresholds) -> ModuleStatus:
    if s.stopped_on_purpose:
        return ModuleStatus.STOPPED
    if not s.is_scheduler_running:
        return ModuleStatus.OFFLINE
    if s.success_rate is not None and s.success_rate < t.offline_success_rate:
        return ModuleStatus.OFFLINE
    if s.first_run_overdue:
        return ModuleStatus.OFFLINE
    if not s.has_finished_run:
        return ModuleStatus.UNKNOWN
    if (
        (s.success_rate is not None and s.success_rate < t.online_success_rate)
        or s.error_count_24h > t.max_errors_24h
        or not s.is_db_healthy
        or not s.is_api_healthy
    ):
        return ModuleStatus.DEGRADED
    return ModuleStatus.ONLINE


def system_status(statuses: Iterable[ModuleStatus], halted: bool) -> SystemStatus:
    if halted:
        return SystemStatus.EMERGENCY_STOP
    statuses = list(statuses)
    if ModuleStatus.OFFLINE in statuses:
        return SystemStatus.CRITICAL
    degraded = statuses.count(ModuleStatus.DEGRADED)
    if degraded > 2:
        return SystemStatus.CRITICAL
    if degraded:
        return SystemStatus.DEGRADED
    if ModuleStatus.UNKNOWN in statuses:
        return SystemStatus.STARTING
    return SystemStatus.HEALTHY


@dataclass(frozen=True)
class FirstRuns:
    """How far the start-up is: modules expected to run (all but those stopped on purpose) and
    how many of them have finished a run."""

    run: int
    expected: int


def first_runs(modules: Iterable[tuple[bool, bool]]) -> FirstRuns:
    """From (stopped on purpose, has finished a run) per module. A module stopped on purpose
    needs no first run: the start-up does not wait for it."""
    expected = [has_run for stopped, has_run in modules if not stopped]
    return FirstRuns(run=sum(expected), expected=len(expected))


class Liveness(StrEnum):
    WAITING = "waiting_for_first_heartbeat"
    ALIVE = "alive"
    DEAD = "dead"


def liveness(seen: datetime | None, watched_since: datetime | None, stale: timedelta, now: datetime) -> Liveness:
    """Beat's or the workers' liveness from their latest heartbeat.

    Seen within `stale`: ALIVE; seen longer ago: DEAD. Never seen: WAITING for the first
    heartbeat during `stale` after the watch began (the heartbeat task was created or enabled),
    DEAD after it, or at once when nothing watches (no heartbeat task, or it is disabled).
    """
    if seen is not None:
        return Liveness.ALIVE if now - seen <= stale else Liveness.DEAD
    if watched_since is not None and now - watched_since <= stale:
        return Liveness.WAITING
    return Liveness.DEAD


def watchdog_should_run(
    now: datetime,
    last_check: datetime | None,
    interval: timedelta,
    grace: timedelta,
    infra_down_now: set[str],
    infra_down_recorded: set[str],
    status_now: str,
    status_recorded: str | None,
) -> bool:
    """Whether the watchdog must run the health cycle itself.

    When Beat or the workers stop, no scheduled cycle comes: the watchdog runs one when the
    last check is overdue, or when what is down now differs from what the last check
    recorded (so a dead worker is alerted, and its return resolved, without waiting an hour).
    While the last check recorded STARTING it runs one as soon as the status moves on, so the
    record (GET status, metrics, alerts) is not an hour behind the end of the start-up.
    """
    if last_check is None or now - last_check > interval + grace:
        return True
    if status_recorded == SystemStatus.STARTING and status_now != status_recorded:
        return True
    return infra_down_now != infra_down_recorded


NEVER_REACTIVATE = ("ARCHIVED", "DELETED")
# Per-campaign lists kept in a run record (errors, campaigns skipped or failed) stop here: the
# ledger has every campaign, paged and searchable (GET runs/{id}/campaigns, the run's console page).
RUN_RECORD_ITEMS = 100


MORE = "… and "


def capped(items: Sequence[Any], limit: int = RUN_RECORD_ITEMS) -> list[Any]:
    """The first `limit` of a per-campaign list a run records, then one line saying how many more
    there are and where: a stop of 30,000 campaigns records 101 lines, not 30,000."""
    already = len(items) == limit + 1 and isinstance(items[-1], str) and items[-1].startswith(MORE)
    if len(items) <= limit or already:  # capped when written: shown as it is
        return list(items)
    return [*items[:limit], f"{MORE}{len(items) - limit} more — see the run's campaigns"]


def capped_actions(actions: Sequence[Any], limit: int = RUN_RECORD_ITEMS) -> list[Any]:
    """A run's actions_executed with every list in an action capped (a resume's `skipped`), and the
    actions themselves."""
    return capped(
        [
            {key: capped(value, limit) if isinstance(value, list) else value for key, value in action.items()}
            if isinstance(action, Mapping)
            else action
            for action in actions
        ],
        limit,
    )


# What Meta does not stamp in updated_time (budgets, spend cap) and what a person reads (the name):
# kept with each hold when it is paused and compared at resume.
SNAPSHOT_FIELDS = ("name", "daily_budget", "lifetime_budget", "spend_cap")


# The stop lists campaigns by these effective statuses (then keeps those configured ACTIVE): the
# listing pages it reads count them all.
LISTED_EFFECTIVE_STATUSES = ("ACTIVE", "IN_PROCESS", "WITH_ISSUES")


def is_running(campaign: Mapping[str, Any]) -> bool:
    """Whether a listed campaign is one a person left running: its configured status is ACTIVE.

    Its effective status says nothing about that: IN_PROCESS and WITH_ISSUES are shown for
    campaigns configured ACTIVE and PAUSED alike (docs/meta-sandbox.md, "configured vs effective", with its sources).
    """
    return campaign.get("status") == "ACTIVE"


def snapshot(campaign: Mapping[str, Any]) -> dict[str, str]:
    """The fields of a campaign that an edit can change without moving its updated_time."""
    return {name: _plain(campaign.get(name)) for name in SNAPSHOT_FIELDS if name in campaign}


def _plain(value: Any) -> str:
    """Meta's money fields are strings in minor units; "0" and absent both mean "not set"."""
    return "" if value in (None, "", "0", 0) else str(value)


class Leave(StrEnum):
    """Why resume leaves a held campaign as it is: what an operator reads in the preview and the result."""

    NOT_ACTIVE_BEFORE = "not_active_before"
    DELETED = "deleted"
    ARCHIVED = "archived"
    ACTIVE_AGAIN = "active_again"
    EDITED = "edited"
    UNCONFIRMED = "unconfirmed"
    OTHER_STATUS = "other_status"
    NOT_REQUESTED = "not_requested"


@dataclass(frozen=True)
class ResumeVerdict:
    """What resume does with one held campaign: re-activate it (leave is None) or leave it, and why."""

    leave: Leave | None = None
    reason: str = ""

    @property
    def reactivate(self) -> bool:
        return self.leave is None


REACTIVATE = ResumeVerdict()
# A hold never confirmed paused (pending, failed): without our pause's updated_time there is no
# proof the campaign is as we left it.
UNCONFIRMED = ResumeVerdict(Leave.UNCONFIRMED, "pause never confirmed by Meta; left as it is")
NOT_REQUESTED = ResumeVerdict(Leave.NOT_REQUESTED, "resume_campaigns=false")


def resume_verdict(
    prior_status: str, paused_updated_time: str, paused_snapshot: Mapping[str, str], current: Mapping[str, Any] | None
) -> ResumeVerdict:
    """Whether resume re-activates a held campaign, from the hold and Meta's current state.

    Only a campaign configured ACTIVE before the stop, still PAUSED exactly as our pause left it
    (same updated_time, same name and budgets), comes back: anything else means someone changed
    it since the stop, and their word stands. Resume and its preview both decide here.
    """
    if prior_status != "ACTIVE":
        return ResumeVerdict(
            Leave.NOT_ACTIVE_BEFORE,
            f"configured {prior_status or 'status unknown'} before the stop, not ACTIVE: left as it is",
        )
    if current is None:
        return ResumeVerdict(Leave.DELETED, "no longer on Meta (deleted?)")
    status = current.get("status", "")
    if status in NEVER_REACTIVATE:
        return ResumeVerdict(Leave.DELETED if status == "DELETED" else Leave.ARCHIVED, f"{status} since the stop")
    if status == "ACTIVE":
        return ResumeVerdict(Leave.ACTIVE_AGAIN, "already ACTIVE again (changed by someone else since the stop)")
    if status != "PAUSED":
        return ResumeVerdict(Leave.OTHER_STATUS, f"status is {status}")
    if not paused_updated_time:
        return ResumeVerdict(Leave.UNCONFIRMED, "pause was never confirmed by Meta")
    if current.get("updated_time") != paused_updated_time:
        return ResumeVerdict(
            Leave.EDITED,
            f"edited on Meta since the stop (updated_time {current.get('updated_time')} ≠ {paused_updated_time})",
        )
    changed = [name for name, value in paused_snapshot.items() if name in current and _plain(current[name]) != value]
    if changed:
        return ResumeVerdict(Leave.EDITED, f"edited on Meta since the stop ({', '.join(changed)} changed)")
    return REACTIVATE


@dataclass(frozen=True)
class HaltScope:
    """What a halt covers: the union of what its stops asked for."""

    stop_schedulers: bool
    pause_campaigns: bool
    accounts: tuple[str, ...] | None  # None = every ad account the token sees


def halt_scope(stops: Iterable[Mapping[str, Any]]) -> HaltScope:
    """The scope of a halt from its stops' parameters (a stop while halted can only widen it).

    A stop recorded without parameters asked for everything (the defaults of a stop).
    """
    stops = list(stops)
    pausing = [s for s in stops if s.get("pause_campaigns", True)]
    everywhere = any(not s.get("ad_account_ids") for s in pausing)
    return HaltScope(
        stop_schedulers=any(s.get("stop_schedulers", True) for s in stops),
        pause_campaigns=bool(pausing),
        accounts=None if everywhere else tuple(sorted({a for s in pausing for a in s["ad_account_ids"]})),
    )


def halt_needs_sweep(
    halted: bool, last_stop_at: datetime | None, swept_at: datetime | None, stop_starting: bool, kill_switch_busy: bool
) -> bool:
    """Whether a halt was left incomplete with nobody working on it.

    Complete = a whole-scope sweep began after the latest stop and left nothing pending. A stop
    within its in-request deadline (`stop_starting`) or a sweeper holding the kill switch's lease
    is working on it. Otherwise the process that should have finished it died, or the queue
    that carries its retries is down: the watchdog and the health cycle take over.
    """
    if not halted or stop_starting or kill_switch_busy:
        return False
    return swept_at is None or (last_stop_at is not None and swept_at < last_stop_at)


def reactivated_unanswered(current: dict[str, str] | None) -> bool:
    """A held campaign we sent a re-activation for, whose answer was a transient failure
    (lost in a timeout, or an error Meta may still have applied), reads ACTIVE now: that
    re-activation (or someone's, to the same end) took effect. Nothing more to send."""
    return current is not None and current.get("status") == "ACTIVE"


def account_groups(accounts: Iterable[str], size: int) -> list[list[str]]:
    """Ad accounts in groups of at most `size`, in the order given (a stop's or resume's units of work)."""
    accounts = list(accounts)
    return [accounts[i : i + size] for i in range(0, len(accounts), size)]


def retry_delay(attempt: int, seconds_left: float, not_before: float = 0.0) -> float | None:
    """How long the kill switch waits after round `attempt` (1, 2, ...) of a retry loop that must end
    by a deadline: doubling from 0.5 s to at most 4 s, and no sooner than `not_before` (the
    rate-limit block of what is retried); None when the wait would not leave time to try."""
    return backoff.delay(attempt, 0.5, 4.0, not_before=not_before, seconds_left=seconds_left)
