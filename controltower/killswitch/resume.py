"""Resume: restore exactly what ran before the emergency stop, under the two-person rule if set.

Re-activates a hold only if it was configured ACTIVE before the stop and is still exactly as our
pause left it; what cannot be re-activated within the deadline stays `resuming` and is carried
on in the background (finish_resume). Also its dry run (resume_preview), decided the same way.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from controltower import account_groups, audit, channels, fanout, health, rules, schedules, stakes
from controltower.killswitch import ledger, stop
from controltower.models import (
    AccountGroup,
    CampaignHold,
    ControlTowerRun,
    Notification,
    RunState,
    RunType,
    SystemStatus,
    TowerState,
)
from meta_modules import graph
from meta_modules.errors import RETRYABLE
from meta_modules.gate import operations_halted

logger = logging.getLogger(__name__)

ALL_LISTED_STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "IN_PROCESS", "WITH_ISSUES")
STILL_PAUSING = "An emergency stop is still pausing campaigns; resume when it has finished."
NOT_YET = "re-activation pending: not worked on yet"
NEW_STOP = "left PAUSED: a new emergency stop began before it could be re-activated"
# What a resume command's parameters (and a resume waiting for approval) may set.
RESUME_OPTIONS = ("resume_schedulers", "resume_campaigns", "run_health_check")


class KillSwitchError(Exception):
    """A stop or resume that cannot proceed now (answered 409)."""


@dataclass
class ResumeRequest:
    """A resume as asked; its defaults here are the resume's defaults everywhere."""

    actor: str
    reason: str = ""
    resume_schedulers: bool = True
    resume_campaigns: bool = True
    run_health_check: bool = True
    dry_run: bool = False

    @classmethod
    def from_options(cls, actor: str, reason: str, options: Mapping[str, Any], dry_run: bool = False) -> ResumeRequest:
        """A resume with the options given (a command's parameters, a recorded request); what they leave
        out takes the defaults."""
        return cls(
            actor=actor,
            reason=reason,
            dry_run=dry_run,
            **{name: options[name] for name in RESUME_OPTIONS if name in options},
        )


@dataclass
class ResumeResult:
    success: bool
    run_id: str | None
    awaiting_approval: bool
    schedulers_resumed: int
    campaigns_resumed: int
    campaigns_skipped: list[dict[str, str]]
    campaigns_pending: int
    errors: list[str]
    system_status: str
    health_check_run_id: str | None
    resumed_at: datetime
    message: str
    # Dry run only: what resume would do (schedulers_resumed and campaigns_resumed stay 0).
    dry_run: bool = False
    would_restart: int | None = None
    would_reactivate: int | None = None
    preview: dict[str, Any] | None = None
    alerts_sent: int = 0
    alerts_outcome: str = ""
    alert_deliveries: list[dict[str, Any]] = field(default_factory=list)


def _approval_pending(state: TowerState) -> bool:
    """A first operator's resume waits for a second one (two-person rule), not expired."""
    return bool(settings.RESUME_REQUIRES_SECOND_APPROVER) and state.resume_awaiting_approval()


def _as_approved(state: TowerState, request: ResumeRequest) -> ResumeRequest:
    """What an approver carries out: the options the first operator asked for."""
    asked = state.resume_request
    return ResumeRequest.from_options(request.actor, asked.get("reason", request.reason), asked, request.dry_run)


def _resume_refusal(state: TowerState) -> str | None:
    """Why resume cannot proceed now (its dry run answers the same), or None."""
    if not state.emergency_stop_active:
        return "The tower is not halted: there is nothing to resume."
    if (
        CampaignHold.objects.filter(halt_run_id=state.halt_run_id, claimed_until__gt=timezone.now()).exists()
        or stop.stops_in_flight()
    ):
        return STILL_PAUSING
    return None


def _approval_gate(state: TowerState, request: ResumeRequest) -> bool:
    """Two-person rule. True when this request may proceed; False when it was recorded for approval."""
    if not settings.RESUME_REQUIRES_SECOND_APPROVER:
        return True
    if not _approval_pending(state):
        state.request_resume(
            request.actor,
            {
                "reason": request.reason,
                "resume_schedulers": request.resume_schedulers,
                "resume_campaigns": request.resume_campaigns,
                "run_health_check": request.run_health_check,
            },
        )
        return False
    if state.resume_requested_by == request.actor:
        raise KillSwitchError(f"Resume was requested by {request.actor}; a different operator must approve it.")
    return True


@dataclass
class Lifted:
    """A resume that lifted the halt, before its health check: what report_resume needs."""

    request: ResumeRequest  # as carried out (an approver carries out what the first operator asked)
    run: ControlTowerRun
    started: float
    schedulers: list[str]
    outcome: Reactivation
    skipped: list[dict[str, str]]
    errors: list[str]


def resume(request: ResumeRequest) -> ResumeResult | Lifted:
    """Lift the halt (or answer a dry run, a request awaiting approval, a resume overtaken by a new
    stop); commander.resume then runs the health check (when asked) and report_resume."""
    if request.dry_run:
        return resume_preview(request)
    started = time.monotonic()
    deadline = started + settings.EMERGENCY_STOP_DEADLINE_SECONDS
    with ledger.kill_switch_lease() as held:
        if not held:
            raise KillSwitchError(STILL_PAUSING)
        with transaction.atomic():
            state = TowerState.locked()
            refusal = _resume_refusal(state)
            if refusal:
                raise KillSwitchError(refusal)
            if not _approval_gate(state, request):
                audit.record("resume", actor=request.actor, reason=request.reason, outcome="awaiting_approval")
                return ResumeResult(
                    success=False,
                    run_id=None,
                    awaiting_approval=True,
                    schedulers_resumed=0,
                    campaigns_resumed=0,
                    campaigns_skipped=[],
                    campaigns_pending=0,
                    errors=[],
                    system_status=state.system_status,
                    health_check_run_id=None,
                    resumed_at=timezone.now(),
                    message=f"Resume requested by {request.actor}; it takes effect when a different operator approves.",
                    alerts_outcome="awaiting approval: alerts go out when the resume is carried out",
                )
            approved_from = state.resume_requested_by
            if approved_from:  # the approver confirms what the first operator asked for
                request = _as_approved(state, request)
            run = ControlTowerRun.objects.create(
                run_type=RunType.RESUME,
                command_type="resume",
                state=RunState.RUNNING,
                system_status=SystemStatus.EMERGENCY_STOP,
                mode=settings.META_MODE,
                reason=request.reason,
                executed_by=f"{approved_from} (approved by {request.actor})" if approved_from else request.actor,
            )
            halt_run, stop_stamp, held_tasks = state.halt_run, state.last_stop_at, list(state.held_task_ids)
        unconfirmed = ledger.close_unconfirmed(halt_run, run)
        if request.resume_campaigns:
            outcome = _spread(halt_run, run, deadline)
        else:
            outcome = Reactivation(skipped=ledger.release(halt_run, run))
        skipped = unconfirmed + outcome.skipped
        errors = outcome.errors + outcome.left.reasons("re-activating")
        schedulers = schedules.restore_after_halt(held_tasks, request.resume_schedulers, request.actor)
        with transaction.atomic():
            state = TowerState.locked()
            if state.last_stop_at != stop_stamp:
                errors.append("A new emergency stop arrived during resume: the halt stays in force.")
                run.fail(
                    started,
                    actions_executed=[],
                    errors_encountered=rules.capped(errors),
                    recommendations=ControlTowerRun.note("Resume overtaken by a new stop."),
                )
                audit.record(
                    "resume",
                    actor=run.executed_by,
                    reason=request.reason,
                    run_id=run.pk,
                    outcome="overtaken",
                    campaigns_resumed=outcome.resumed,
                )
                return ResumeResult(
                    success=False,
                    run_id=str(run.pk),
                    awaiting_approval=False,
                    schedulers_resumed=0,
                    campaigns_resumed=outcome.resumed,
                    campaigns_skipped=skipped,
                    campaigns_pending=outcome.left.count,
                    errors=errors,
                    system_status=SystemStatus.EMERGENCY_STOP,
                    health_check_run_id=None,
                    resumed_at=timezone.now(),
                    message=errors[-1],
                    alerts_outcome="overtaken by a new stop, which sends the alerts",
                )
            state.end_halt()
    if outcome.left.count:
        schedule_resume_retry(run)
    return Lifted(request, run, started, schedulers, outcome, skipped, errors)


def report_resume(lifted: Lifted, check: ControlTowerRun | None) -> ResumeResult:
    """After the halt is lifted and the health check (`check`, when asked) ran: the system status,
    the alerts, the run's record and the answer."""
    request, run, started, schedulers, outcome, skipped, errors = (
        lifted.request,
        lifted.run,
        lifted.started,
        lifted.schedulers,
        lifted.outcome,
        lifted.skipped,
        lifted.errors,
    )
    status = check.system_status if check else health.evaluate().system_status
    TowerState.set(system_status=status)
    message = (
        f"Resumed: {len(schedulers)} schedulers re-enabled, {outcome.resumed} campaigns re-activated, "
        f"{len(skipped)} left as they are"
        + (f", {outcome.left.count} still being re-activated in the background" if outcome.left.count else "")
        + f". System status {status.upper()}."
    )
    sent = channels.deliver(
        channels.Message(
            kind=Notification.Kind.EMERGENCY,
            subject=f"RESUMED by {run.executed_by}",
            body="\n".join([message, *errors]),
            payload={"event": "resume", "run_id": str(run.pk)},
        ),
        run,
    )
    alerts, alerts_sent = channels.outcome(True, sent), sum(n.ok for n in sent)
    run.finish(
        started,
        actions_executed=[
            {"action": "resume_schedulers", "modules": schedulers},
            {
                "action": "resume_campaigns",
                "resumed": outcome.resumed,
                "skipped": rules.capped(skipped),
                "pending": outcome.left.count,
            },
            {"action": "alerts", "sent": alerts_sent, "outcome": alerts},
        ],
        errors_encountered=rules.capped(errors),
        recommendations=ControlTowerRun.note(message),
        system_status=status,
    )
    audit.record(
        "resume",
        actor=run.executed_by,
        reason=request.reason,
        run_id=run.pk,
        outcome="incomplete" if errors else "ok",
        schedulers_resumed=len(schedulers),
        campaigns_resumed=outcome.resumed,
        campaigns_skipped=len(skipped),
        campaigns_pending=outcome.left.count,
        system_status=status,
        alerts=alerts,
    )
    return ResumeResult(
        success=not errors,
        run_id=str(run.pk),
        awaiting_approval=False,
        schedulers_resumed=len(schedulers),
        campaigns_resumed=outcome.resumed,
        campaigns_skipped=skipped,
        campaigns_pending=outcome.left.count,
        errors=errors,
        system_status=status,
        health_check_run_id=str(check.pk) if check else None,
        resumed_at=timezone.now(),
        message=message,
        alerts_sent=alerts_sent,
        alerts_outcome=alerts,
        alert_deliveries=channels.delivery_rows(sent),
    )


def _spread(halt_run: ControlTowerRun, run: ControlTowerRun, deadline: float) -> Reactivation:
    """Re-activation shared with the workers (controltower.account_groups). The ledger says first,
    in one statement, which holds this resume re-activates (`resuming`); this process then works
    on the account groups nobody took; the answer adds what the workers did and still do."""
    held = CampaignHold.objects.filter(halt_run=halt_run, state=CampaignHold.State.PAUSED)
    accounts = list(held.order_by("account_id").values_list("account_id", flat=True).distinct())
    held.update(state=CampaignHold.State.RESUMING, resume_run=run, resume_note=NOT_YET)

    def on(mine: list[AccountGroup]) -> None:
        accounts = [a for group in mine for a in group.accounts]
        holds = list(
            CampaignHold.objects.filter(resume_run=run, state=CampaignHold.State.RESUMING, account_id__in=accounts)
        )
        part = _reactivate(holds, run, deadline, halted=lambda: _overtaken(run))
        for group in mine:
            group.finish(part.only(group.accounts).to_json())

    def too_late(accounts: list[str]) -> dict[str, Any]:
        left = Reactivation()
        pending = CampaignHold.objects.filter(
            resume_run=run, state=CampaignHold.State.RESUMING, account_id__in=accounts
        )
        for account, n in pending.values_list("account_id").annotate(n=Count("pk")):
            left.left.add(account, "not reached before the deadline", n)
        return left.to_json()

    account_groups.work(account_groups.plan(run, accounts), on, deadline, too_late)
    return _groups_outcome(run)


def _groups_outcome(run: ControlTowerRun) -> Reactivation:
    """What the resume's account groups did, and those still being re-activated elsewhere."""
    outcome = Reactivation()
    elsewhere: list[str] = []
    for group in run.account_groups.all():
        if group.finished_at:
            outcome.merge(Reactivation.from_json(group.outcome))
        else:
            elsewhere += group.accounts
    left = (
        CampaignHold.objects.filter(resume_run=run, state=CampaignHold.State.RESUMING, account_id__in=elsewhere)
        .values_list("account_id")
        .annotate(n=Count("pk"))
    )
    for account, n in left:
        outcome.left.add(account, "being re-activated by a Celery worker", n)
    return outcome


def _overtaken(run: ControlTowerRun) -> bool:
    """A new emergency stop began after this resume did: it wins over what is not re-activated yet."""
    last_stop = TowerState.get().last_stop_at
    return last_stop is not None and last_stop > run.executed_at


def reactivate_group(group: AccountGroup) -> dict[str, Any]:
    """A worker's share of a resume: re-activate the group's `resuming` holds, unless a new stop began."""
    run = group.run
    holds = list(
        CampaignHold.objects.filter(resume_run=run, state=CampaignHold.State.RESUMING, account_id__in=group.accounts)
    )
    deadline = time.monotonic() + settings.EMERGENCY_STOP_DEADLINE_SECONDS
    outcome = _reactivate(holds, run, deadline, halted=lambda: _overtaken(run))
    if _overtaken(run):
        outcome.skipped += _leave_paused(
            CampaignHold.objects.filter(
                resume_run=run, state=CampaignHold.State.RESUMING, account_id__in=group.accounts
            )
        )
        outcome.left = ledger.Pending()
    group.finish(outcome.to_json())
    return {"resumed": outcome.resumed, "skipped": len(outcome.skipped), "pending": outcome.left.count}


def _leave_paused(left: QuerySet[CampaignHold]) -> list[dict[str, str]]:
    """A new stop began: what is not re-activated yet stays PAUSED, and says so."""
    skipped = [{"campaign_id": h.campaign_id, "account_id": h.account_id, "reason": NEW_STOP} for h in left]
    left.update(state=CampaignHold.State.SKIPPED, resume_note=NEW_STOP)
    return skipped


def _current(meta: graph.GraphClient, account: str) -> dict[str, dict[str, Any]]:
    """Meta's current state of an account's campaigns (not deleted), which resume compares with the holds."""
    return {c["id"]: c for c in meta.campaigns(account, stop.CAMPAIGN_FIELDS, ALL_LISTED_STATUSES)}


@dataclass
class Reactivation:
    resumed_by_account: Counter[str] = field(default_factory=Counter)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # account → errors
    left: ledger.Pending = field(default_factory=ledger.Pending)

    @property
    def resumed(self) -> int:
        return sum(self.resumed_by_account.values())

    @property
    def errors(self) -> list[str]:
        return [error for _, errors in sorted(self.failures.items()) for error in errors]

    def only(self, accounts: list[str]) -> Reactivation:
        """This outcome's part for some of its accounts (an account group's)."""
        mine = set(accounts)
        return Reactivation(
            Counter({a: n for a, n in self.resumed_by_account.items() if a in mine}),
            [s for s in self.skipped if s["account_id"] in mine],
            defaultdict(list, {a: list(e) for a, e in self.failures.items() if a in mine}),
            self.left.only(mine),
        )

    def merge(self, other: Reactivation) -> None:
        self.resumed_by_account.update(other.resumed_by_account)
        self.skipped += other.skipped
        for account, errors in other.failures.items():
            self.failures[account] += errors
        self.left.merge(other.left)

    def to_json(self) -> dict[str, Any]:
        return {
            "resumed": dict(self.resumed_by_account),
            "skipped": self.skipped,
            "failures": dict(self.failures),
            "left": {a: dict(r) for a, r in self.left.why.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reactivation:
        return cls(
            Counter(data["resumed"]),
            data["skipped"],
            defaultdict(list, data["failures"]),
            ledger.Pending(defaultdict(Counter, {a: Counter(r) for a, r in data["left"].items()})),
        )


def _reactivate(
    holds: list[CampaignHold], run: ControlTowerRun, deadline: float, halted: Callable[[], bool] = lambda: False
) -> Reactivation:
    """Re-activate exactly the held campaigns still PAUSED as our pause left them.

    In rounds until the deadline: read the current state of the holds still undecided from
    Meta, decide each (rules.resume_verdict), re-activate the unchanged ones. A read or a
    re-activation that failed transiently or on a rate limit (after the client's own retries)
    is tried again next round, re-reading the campaign first so an edit made meanwhile is
    honoured. What is still undecided at the deadline, or when `halted()` says a new stop began
    (asked before every round), is left `resuming` (PAUSED on Meta), with its last error.
    """
    outcome = Reactivation()
    undecided = {hold.campaign_id: hold for hold in holds}
    last_failure: dict[str, str] = {}  # campaign → why the latest round did not settle it
    sent: set[str] = set()  # re-activations sent whose answer was a (transient) failure
    rounds = 0

    def skip(hold: CampaignHold, reason: str, error: bool = False) -> None:
        hold.state, hold.resume_note = CampaignHold.State.SKIPPED, reason
        outcome.skipped.append({"campaign_id": hold.campaign_id, "account_id": hold.account_id, "reason": reason})
        if error:
            outcome.failures[hold.account_id].append(f"{hold.campaign_id}: {reason}")
        del undecided[hold.campaign_id]

    def done(hold: CampaignHold, at: datetime, note: str = "") -> None:
        hold.state, hold.resumed_at, hold.resume_note = CampaignHold.State.RESUMED, at, note
        outcome.resumed_by_account[hold.account_id] += 1
        del undecided[hold.campaign_id]

    def reactivation(meta: graph.GraphClient, account: str, holds: list[CampaignHold]) -> graph.BatchResult:
        calls = [fanout.reactivate_call(h) for h in holds]
        return meta.batch(account, calls, allow_while_halted=True)

    while undecided and not halted():
        rounds += 1
        failures: list[graph.MetaError] = []  # this round's, for when to try again
        by_account: dict[str, list[CampaignHold]] = defaultdict(list)
        for hold in undecided.values():
            by_account[hold.account_id].append(hold)
        try:
            current = fanout.parallel(_current, by_account, deadline)
            read_at = timezone.now()  # one time per round: the ledger is then saved in a few UPDATEs
            to_activate: dict[str, list[CampaignHold]] = defaultdict(list)
            for account, account_holds in by_account.items():
                seen = current[account]
                for hold in account_holds:
                    if isinstance(seen, graph.MetaError):
                        if seen.deadline_only and hold.campaign_id in last_failure:
                            continue  # the deadline came: the previous failure says more
                        last_failure[hold.campaign_id] = f"could not read its current state: {seen}"
                        failures.append(seen)
                        if seen.kind not in RETRYABLE:
                            skip(hold, last_failure[hold.campaign_id], error=True)
                        continue
                    now_on_meta = seen.get(hold.campaign_id)
                    if hold.campaign_id in sent and rules.reactivated_unanswered(now_on_meta):
                        done(hold, read_at, "ACTIVE again after a re-activation whose answer was lost")
                        continue
                    verdict = rules.resume_verdict(
                        hold.prior_status, hold.paused_updated_time, hold.snapshot, now_on_meta
                    )
                    if verdict.reactivate:
                        to_activate[account].append(hold)
                    else:
                        skip(hold, verdict.reason)
            outcomes = fanout.parallel(lambda meta, a: reactivation(meta, a, to_activate[a]), to_activate, deadline)  # noqa: B023 - called within this iteration
            answered_at = timezone.now()
            for account, result in outcomes.items():
                for hold in to_activate[account]:
                    error = result if isinstance(result, graph.MetaError) else result.failed.get(hold.campaign_id)
                    if error is None:
                        done(hold, answered_at)
                        continue
                    if not error.deadline_only or hold.campaign_id not in last_failure:
                        last_failure[hold.campaign_id] = f"re-activation failed: {error}"
                    failures.append(error)
                    if error.kind in RETRYABLE:
                        sent.add(hold.campaign_id)
                    else:
                        skip(hold, last_failure[hold.campaign_id], error=True)
        except Exception as exc:  # noqa: BLE001 - what is undecided is carried on in the background
            logger.exception("Re-activation round %d of resume %s failed", rounds, run.pk)
            for campaign_id in undecided:
                last_failure[campaign_id] = f"unexpected {type(exc).__name__}: {exc}"
            break
        delay = (
            rules.retry_delay(rounds, deadline - time.monotonic(), fanout.not_before(failures)) if undecided else None
        )
        if delay is None:
            break
        time.sleep(delay)
    for hold in undecided.values():
        why = last_failure.get(hold.campaign_id, "no answer before the deadline")
        hold.state, hold.resume_note = CampaignHold.State.RESUMING, f"re-activation pending: {why}"
        outcome.left.add(hold.account_id, why)
    for hold in holds:
        hold.resume_run = run
    ledger.save_holds(holds, ["state", "resumed_at", "resume_note", "resume_run"])
    return outcome


def schedule_resume_retry(run: ControlTowerRun, attempt: int = 0) -> bool:
    """Queue the background re-activation of what a resume left."""
    return stop.queue_pass("controltower.tasks.finish_resume", run, attempt, "the background re-activation")


def finish_resume(resume_run_id: str, attempt: int, follow_up: bool = True) -> dict[str, Any]:
    """Re-activate what a resume left `resuming`, until done or given up (then alert).

    A new emergency stop wins: its holds are left PAUSED and reported. `follow_up` as in resweep.
    """
    deadline = time.monotonic() + settings.EMERGENCY_STOP_DEADLINE_SECONDS
    run = ControlTowerRun.objects.filter(pk=resume_run_id, run_type=RunType.RESUME).first()
    if run is None:
        return {"done": True, "reason": "no such resume"}
    with ledger.kill_switch_lease() as held:
        if not held:  # a stop or a sweep is working: come back later
            if follow_up:
                schedule_resume_retry(run, attempt)
            return {"done": False, "reason": "kill switch busy"}
        # Accounts a worker is still re-activating are theirs (the resume's account groups).
        resuming = CampaignHold.objects.filter(resume_run=run, state=CampaignHold.State.RESUMING).exclude(
            account_id__in=account_groups.accounts_in_flight(run)
        )
        holds = list(resuming)
        if not holds:
            return {"done": True}
        outcome = _reactivate(holds, run, deadline, halted=operations_halted)
        if operations_halted():  # a new stop began: it wins over what is left
            outcome.skipped += _leave_paused(resuming)
            outcome.left = ledger.Pending()
    record: dict[str, Any] = {
        "action": "resume_campaigns_background",
        "attempt": attempt + 1,
        "resumed": outcome.resumed,
        "skipped": rules.capped(outcome.skipped),
        "pending": outcome.left.count,
    }
    if outcome.left.count and follow_up and attempt + 1 < settings.KILL_SWITCH_RETRY_ATTEMPTS:
        schedule_resume_retry(run, attempt + 1)
    elif outcome.left.count and follow_up:
        _give_up_resume(run, attempt + 1, outcome)
        record["gave_up"] = outcome.left.count
    _record_background(run, record)
    return {
        "resumed": outcome.resumed,
        "skipped": len(outcome.skipped),
        "pending": outcome.left.count,
        "errors": outcome.errors + outcome.left.reasons("re-activating"),
    }


def _give_up_resume(run: ControlTowerRun, attempts: int, outcome: Reactivation) -> None:
    """The last background attempt failed: leave them PAUSED, say which and why, to everyone."""
    reasons = outcome.left.reasons("re-activating")
    holds = CampaignHold.objects.filter(resume_run=run, state=CampaignHold.State.RESUMING)
    ids = list(holds.values_list("campaign_id", flat=True))
    holds.update(
        state=CampaignHold.State.SKIPPED,
        resume_note=f"gave up after {attempts} background attempts; left PAUSED (re-activate it by hand)",
    )
    channels.deliver(
        channels.Message(
            kind=Notification.Kind.EMERGENCY,
            subject=f"RESUME incomplete: {len(ids)} campaigns left PAUSED",
            body=(
                f"After {attempts} background attempts, {len(ids)} campaigns that were running before the stop "
                "could not be re-activated and stay PAUSED:\n"
                + "\n".join(reasons)
                + "\nCampaigns: "
                + ", ".join(ids[:200])
                + (" …" if len(ids) > 200 else "")
            ),
            payload={"event": "resume_incomplete", "run_id": str(run.pk), "campaign_ids": ids},
        ),
        run,
    )


def _record_background(run: ControlTowerRun, action: dict[str, Any]) -> None:
    """Append what a background pass did to the resume's run record (a row lock: passes may overlap)."""
    with transaction.atomic():
        locked = ControlTowerRun.objects.select_for_update().get(pk=run.pk)
        locked.actions_executed = [*locked.actions_executed, action]
        locked.save(update_fields=["actions_executed"])


# --- resume dry run -------------------------------------------------------------------


def resume_preview(request: ResumeRequest) -> ResumeResult:
    """Dry run: which held campaigns resume would re-activate and which it would leave (and why),
    which schedulers it would restart and when each first runs, and the daily budget that would
    start spending again. Decided as resume decides — the same holds, Meta's current state read
    the same way, rules.resume_verdict, the same schedulers — and writes nothing.

    Raises KillSwitchError when resume itself would refuse; never raises for Meta: an account
    that cannot be read is an error, its campaigns `unknown`.
    """
    deadline = time.monotonic() + settings.EMERGENCY_STOP_PREVIEW_SECONDS
    state = TowerState.get()
    refusal = _resume_refusal(state)
    if refusal:
        raise KillSwitchError(refusal)
    if _approval_pending(state):  # what the approver would carry out
        request = _as_approved(state, request)
    holds = list(
        CampaignHold.objects.filter(
            halt_run_id=state.halt_run_id, state__in=[CampaignHold.State.PAUSED, *ledger.UNCONFIRMED_STATES]
        ).order_by("account_id", "campaign_id")
    )
    paused = [h for h in holds if h.state == CampaignHold.State.PAUSED]
    reading = sorted({h.account_id for h in paused}) if request.resume_campaigns else []
    read = fanout.parallel(
        lambda meta, a: (
            stop.account_currency(meta, a, deadline),
            fanout.within_deadline(lambda: _current(meta, a), deadline),
        ),
        reading,
        deadline,
    )
    errors = [
        f"{a}: could not read its campaigns ({r}); resume would try again"
        for a, r in read.items()
        if isinstance(r, graph.MetaError)
    ]
    campaigns: list[dict[str, str]] = []
    back: dict[str, list[dict[str, Any]]] = defaultdict(list)  # account → its campaigns coming back
    for hold in holds:
        seen = read.get(hold.account_id)
        row = {"campaign_id": hold.campaign_id, "account_id": hold.account_id, "name": hold.campaign_name}
        if isinstance(seen, graph.MetaError):
            campaigns.append({**row, "action": "unknown", "why": "", "reason": f"could not read it from Meta: {seen}"})
            continue
        verdict = (
            rules.UNCONFIRMED
            if hold.state != CampaignHold.State.PAUSED
            else rules.NOT_REQUESTED
            if not request.resume_campaigns
            else rules.resume_verdict(
                hold.prior_status, hold.paused_updated_time, hold.snapshot, seen[1].get(hold.campaign_id)
            )
        )
        campaigns.append(
            {
                **row,
                "action": "reactivate" if verdict.reactivate else "leave",
                "why": verdict.leave or "",
                "reason": verdict.reason,
            }
        )
        if verdict.reactivate:
            back[hold.account_id].append(seen[1][hold.campaign_id])
    try:
        spend = stakes.per_currency(stakes.of_account(a, read[a][0], c) for a, c in back.items())
    except ValueError as exc:  # a budget Meta wrote unreadably: say so rather than guess a figure
        errors.append(f"Could not add up the daily budgets: {exc}")
        spend = []
    now = timezone.now()
    tasks = schedules.held_to_restore(state.held_task_ids) if request.resume_schedulers else []
    schedulers = [
        {
            "code": t.meta_module.code,
            "name": t.meta_module.name,
            "every_seconds": schedules.every(t),
            "first_run_in_seconds": schedules.stagger_delay(i, schedules.every(t)),
            "first_run_at": now + timedelta(seconds=schedules.stagger_delay(i, schedules.every(t))),
        }
        for i, t in enumerate(tasks)
    ]
    reactivating = sum(len(c) for c in back.values())
    leaving = sum(c["action"] == "leave" for c in campaigns)
    unread = sum(c["action"] == "unknown" for c in campaigns)
    return ResumeResult(
        success=not errors,
        run_id=None,
        awaiting_approval=False,
        schedulers_resumed=0,
        campaigns_resumed=0,
        campaigns_skipped=[],
        campaigns_pending=0,
        errors=errors,
        system_status=state.system_status,
        health_check_run_id=None,
        resumed_at=now,
        message=f"Dry run: would restart {len(schedulers)} schedulers and re-activate {reactivating} campaigns "
        f"({stakes.summary(spend)}); {leaving} would be left as they are"
        + (f"; {unread} could not be read from Meta now" if unread else "")
        + ". Nothing was changed.",
        dry_run=True,
        would_restart=len(schedulers),
        would_reactivate=reactivating,
        preview={
            "target": stop.target(reading),
            "campaigns": campaigns,
            "schedulers": schedulers,
            "spend": [row.to_json() for row in spend],
        },
    )
