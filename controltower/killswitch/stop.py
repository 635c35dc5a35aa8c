"""Emergency stop: stop spend in seconds; the background sweeps that finish a halt.

The stop runs in the web request and never waits on the task queue (see the package's docstring
for its steps). Also here: its dry run (what it would pause and the daily budget at stake), where
a stop or resume acts (target), the re-sweeps and the watchdog's part, and stops 10.9 asks for.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from controltower import account_groups, audit, channels, fanout, queue, rules, schedules, stakes
from controltower.killswitch import ledger
from controltower.locks import is_held
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
from meta_modules import backoff, graph, throttle
from meta_modules.models import SpendSpike
from meta_modules.money import money

logger = logging.getLogger(__name__)

# Effective statuses a campaign configured ACTIVE can show; the listing is filtered on the configured status after.
CAMPAIGN_FIELDS = ("id", "status", "effective_status", "updated_time", *rules.SNAPSHOT_FIELDS)
# Read after our pause (and when confirming one): what resume compares.
PAUSED_FIELDS = fanout.PAUSED_FIELDS
# What a stop command's parameters may set (a command never dry-runs).
STOP_OPTIONS = ("stop_schedulers", "pause_campaigns", "send_alerts", "ad_account_ids")


@dataclass
class StopRequest:
    """A stop as asked; its defaults here are the stop's defaults everywhere."""

    reason: str
    actor: str
    stop_schedulers: bool = True
    pause_campaigns: bool = True
    send_alerts: bool = True
    dry_run: bool = False
    ad_account_ids: list[str] | None = None

    @classmethod
    def from_options(cls, actor: str, reason: str, options: Mapping[str, Any]) -> StopRequest:
        """A stop with the options given (a command's parameters); what they leave out takes the defaults."""
        return cls(actor=actor, reason=reason, **{name: options[name] for name in STOP_OPTIONS if name in options})


@dataclass
class StopResult:
    success: bool
    run_id: str | None
    dry_run: bool
    already_halted: bool
    schedulers_stopped: int
    campaigns_paused: int
    campaigns_pending: int
    campaigns_failed: list[dict[str, str]]
    alerts_sent: int
    errors: list[str]
    stopped_at: datetime
    message: str
    campaigns_by_account: dict[str, dict[str, int]]
    preview: dict[str, Any] | None = None
    joined: bool = False  # a stop was already running: this request joined it (run_id is that stop's)
    # Dry run only: what the stop would do (schedulers_stopped and campaigns_paused stay 0: nothing was done).
    would_stop: int | None = None
    would_pause: int | None = None
    alerts_outcome: str = ""  # why as many alerts went out as did (channels.outcome)
    alert_deliveries: list[dict[str, Any]] = field(default_factory=list)  # one per channel attempt


def _accounts(requested: Iterable[str] | None, deadline: float) -> list[str]:
    if requested is not None:
        return fanout.act_ids(requested)
    with graph.client().bounded(deadline) as meta:
        return meta.ad_accounts()


def target(accounts: list[str]) -> dict[str, Any]:
    """Where a stop or resume acts: the sandbox or live Meta, the Graph API version, and the access
    tier Meta's answers showed for each of `accounts` (those it read; unknown ones left out)."""
    stub = settings.META_MODE == "stub"
    return {
        "mode": settings.META_MODE,
        "graph_url": settings.META_GRAPH_URL,
        "api_version": settings.META_API_VERSION,
        "label": f"STUB sandbox at {settings.META_GRAPH_URL}" if stub else f"LIVE Meta ({settings.META_GRAPH_URL})",
        "tiers": {account: tier for account, tier in throttle.learnt_tiers(accounts).items() if tier},
    }


def account_currency(meta: graph.GraphClient, account: str, deadline: float) -> str:
    """The ad account's currency, which its budgets are counted in (minor units)."""
    currency = fanout.within_deadline(lambda: meta.get(account, {"fields": "currency"}, account), deadline).get(
        "currency"
    )
    if not currency:
        raise graph.MetaError(graph.ErrorKind.TRANSIENT, "Meta did not say the account's currency")
    return str(currency)


def preview(request: StopRequest) -> StopResult:
    """Dry run: what a stop would disable and pause, and the daily budget at stake, read from the
    scheduler and Meta. Changes nothing.

    Never raises for Meta: the confirmation page must show the STOP button exactly when Meta is
    down, so what could not be listed (ad accounts or one account's campaigns) becomes an error."""
    deadline = time.monotonic() + settings.EMERGENCY_STOP_PREVIEW_SECONDS
    schedulers = list(schedules.module_tasks().filter(enabled=True).values_list("meta_module__code", flat=True))
    listed, errors = _preview_listing(request, deadline) if request.pause_campaigns else ({}, [])
    found = {a: r for a, r in listed.items() if not isinstance(r, graph.MetaError)}
    campaigns = {
        a: [{"id": c["id"], "name": c.get("name", "")} for c in running] for a, (_, running, _) in found.items()
    }
    at_stake = [row for _, _, row in found.values()]
    totals = stakes.per_currency(at_stake)
    pausing = sum(row.campaigns for row in at_stake)
    stopping = len(schedulers) if request.stop_schedulers else 0
    unlisted = " Meta could not be listed everywhere: see the errors." if errors else ""
    return StopResult(
        success=not errors,
        run_id=None,
        dry_run=True,
        already_halted=TowerState.get().emergency_stop_active,
        schedulers_stopped=0,
        campaigns_paused=0,
        campaigns_pending=0,
        campaigns_failed=[],
        alerts_sent=0,
        errors=errors,
        stopped_at=timezone.now(),
        message=f"Dry run: would stop {stopping} schedulers and pause {pausing} campaigns in {len(found)} "
        f"ad accounts ({stakes.summary(totals)}).{unlisted} Nothing was changed.",
        campaigns_by_account={a: {"active": len(c)} for a, c in campaigns.items()},
        preview={
            "schedulers": schedulers if request.stop_schedulers else [],
            "campaigns": campaigns,
            "target": target(sorted(listed)),
            "stakes": {"accounts": [row.to_json() for row in at_stake], "totals": [row.to_json() for row in totals]},
        },
        would_stop=stopping,
        would_pause=pausing,
        alerts_outcome=f"dry run, nothing sent; a stop would alert: {channels.describe()}"
        if request.send_alerts
        else channels.NOT_REQUESTED,
    )


def _preview_listing(request: StopRequest, deadline: float) -> tuple[dict[str, Any], list[str]]:
    """Per account its currency, running campaigns and their stakes, and why whatever could not be listed was not."""

    def listing(meta: graph.GraphClient, account: str) -> tuple[str, list[dict[str, Any]], stakes.Stakes]:
        currency, running = account_currency(meta, account, deadline), _running(meta, account, deadline)
        return currency, running, stakes.of_account(account, currency, running)

    try:
        listed = fanout.parallel(listing, _accounts(request.ad_account_ids or None, deadline), deadline)
    except graph.MetaError as exc:  # listing the ad accounts themselves failed
        return {}, [f"Could not list ad accounts: {exc}"]
    except Exception as exc:  # noqa: BLE001 - the stop form must render whatever Meta answers
        logger.exception("The stop preview could not list Meta")
        return {}, [f"Could not list ad accounts: unexpected {type(exc).__name__}: {exc}"]
    return listed, [f"{account}: {result}" for account, result in listed.items() if isinstance(result, graph.MetaError)]


def _live_since() -> datetime:
    """A stop still `running` that began before this is no longer live: its process died."""
    return timezone.now() - timedelta(seconds=settings.EMERGENCY_STOP_DEADLINE_SECONDS + settings.HOLD_CLAIM_SECONDS)


def _begin_halt(request: StopRequest) -> tuple[ControlTowerRun, bool, ControlTowerRun | None]:
    """Step 1: record the halt and commit, before anything else happens.

    The one place that decides whether a stop is already running (under the tower state's row
    lock, so of two presses at once exactly one sweeps): then this press joins it — recorded as a
    completed run of its own (who, when, why; its scope widens the halt's) — and the running stop
    is returned as the third value instead of sweeping Meta again for the whole deadline.
    """
    with transaction.atomic():
        state = TowerState.locked()
        already = state.emergency_stop_active
        running = (
            ControlTowerRun.objects.filter(
                run_type=RunType.EMERGENCY_STOP, state=RunState.RUNNING, executed_at__gt=_live_since()
            )
            .order_by("executed_at")
            .first()
            if already
            else None
        )
        now = timezone.now()
        joining = (
            {
                "state": RunState.COMPLETED,
                "message": _joined_message(running),
                "execution_time_ms": 0,
                "actions_executed": [{"action": "joined", "run_id": str(running.pk)}],
                "recommendations": ControlTowerRun.note(_joined_message(running)),
            }
            if running
            else {"state": RunState.RUNNING}
        )
        # What was asked is kept with the run: whoever finishes the halt sweeps exactly its scope.
        run = ControlTowerRun.objects.create(
            run_type=RunType.EMERGENCY_STOP,
            command_type="emergency_stop",
            system_status=SystemStatus.EMERGENCY_STOP,
            executed_by=request.actor,
            executed_at=now,
            reason=request.reason,
            mode=settings.META_MODE,
            parameters={
                "stop_schedulers": request.stop_schedulers,
                "pause_campaigns": request.pause_campaigns,
                "send_alerts": request.send_alerts,
                "ad_account_ids": fanout.act_ids(request.ad_account_ids) if request.ad_account_ids else None,
            },
            **joining,
        )
        state.begin_halt(run)
    return run, already, running


def _joined_message(running: ControlTowerRun) -> str:
    return (
        f"An emergency stop by {running.executed_by} is already running (since "
        f"{timezone.localtime(running.executed_at):%H:%M:%S}): this stop joined it and was recorded. "
        "The halt covers what you asked; follow its progress on its page."
    )


def _joined(run: ControlTowerRun, running: ControlTowerRun) -> StopResult:
    return StopResult(
        success=False,
        run_id=str(running.pk),
        dry_run=False,
        already_halted=True,
        schedulers_stopped=0,
        campaigns_paused=0,
        campaigns_pending=0,
        campaigns_failed=[],
        alerts_sent=0,
        errors=[],
        stopped_at=run.executed_at,
        message=run.message,
        campaigns_by_account={},
        joined=True,
        alerts_outcome="joined the running stop, which sends the alerts",
    )


def _halt_scope(state: TowerState) -> rules.HaltScope:
    if state.halted_at is None:  # a halt no stop recorded (set by hand): nothing to sweep
        return rules.halt_scope([])
    stops = ControlTowerRun.objects.filter(run_type=RunType.EMERGENCY_STOP, executed_at__gte=state.halted_at)
    return rules.halt_scope(stops.values_list("parameters", flat=True))


def _secure(
    halt_run: ControlTowerRun, stop_run: ControlTowerRun, deadline: float, spread: bool
) -> tuple[list[str], ledger.SweepResult]:
    """Steps 2 and 3 over the halt's whole scope; the halt is complete when nothing is left pending.

    Idempotent: the stop itself, its background sweeps and the watchdog all come through here. A
    stop (`spread`) shares the accounts with the Celery workers; a background sweep, already on
    a worker or the watchdog, works on them itself.
    """
    began = timezone.now()
    scope = _halt_scope(TowerState.get())
    schedulers = schedules.hold_for_halt() if scope.stop_schedulers else []
    result = ledger.SweepResult()
    if scope.pause_campaigns:
        # Serialised with resume and other sweeps; a sweep waits (bounded) rather than refuses.
        with ledger.kill_switch_lease(deadline) as held:
            if not held:
                result.notes.append(
                    "Another stop or resume held the kill switch past the deadline; "
                    "the background sweep will pause the campaigns."
                )
            else:
                try:
                    accounts = fanout.within_deadline(lambda: _accounts(scope.accounts, deadline), deadline)
                    result = (
                        _spread(halt_run, stop_run, accounts, deadline)
                        if spread
                        else sweep(halt_run, stop_run, accounts, deadline)
                    )
                except graph.MetaError as exc:  # listing the ad accounts themselves failed
                    result.notes.append(f"Could not list ad accounts: {exc}")
                except Exception as exc:  # noqa: BLE001 - the halt stands; the background sweep carries on
                    logger.exception("The campaign sweep of halt %s failed", halt_run.pk)
                    result.notes.append(
                        f"The sweep failed unexpectedly ({type(exc).__name__}: {exc}); "
                        "the background sweep keeps pausing campaigns."
                    )
    if not result.pending and not result.errors:
        TowerState.halt_swept(halt_run, began)
    return schedulers, result


def _spread(
    halt_run: ControlTowerRun, stop_run: ControlTowerRun, accounts: list[str], deadline: float
) -> ledger.SweepResult:
    """Step 3 shared with the workers (controltower.account_groups): this process sweeps the groups
    nobody took, several at a time; the answer adds what the workers did and what they still do."""

    def on(mine: list[AccountGroup]) -> None:
        part = sweep(halt_run, stop_run, [a for group in mine for a in group.accounts], deadline)
        for i, group in enumerate(mine):
            group.finish(part.only(group.accounts, notes=i == 0).to_json())

    account_groups.work(account_groups.plan(stop_run, accounts), on, deadline, _too_late)
    return _groups_result(stop_run)


def _too_late(accounts: list[str]) -> dict[str, Any]:
    note = f"{len(accounts)} ad accounts were not reached before the deadline: the background sweep pauses them."
    return ledger.SweepResult(notes=[note]).to_json()


def _groups_result(stop_run: ControlTowerRun) -> ledger.SweepResult:
    """What the stop's account groups did, and those still being swept elsewhere (their ledger so far)."""
    result = ledger.SweepResult()
    elsewhere: list[AccountGroup] = []
    for group in stop_run.account_groups.all():
        if group.finished_at:
            result.merge(ledger.SweepResult.from_json(group.outcome))
        else:
            elsewhere.append(group)
    if elsewhere:
        accounts = [a for group in elsewhere for a in group.accounts]
        pending = (
            CampaignHold.objects.filter(
                halt_run=TowerState.get().halt_run_id, state=CampaignHold.State.PENDING, account_id__in=accounts
            )
            .values_list("account_id")
            .annotate(n=Count("pk"))
        )
        for account, n in pending:
            result.leave_pending(account, "being paused by a Celery worker", n)
        takers = sorted({group.taken_by for group in elsewhere if group.taken_by}) or ["the workers (queued)"]
        result.notes.append(
            f"{len(accounts)} ad accounts are still being swept by {', '.join(takers)}: follow this stop's page."
        )
    return result


def sweep_group(group: AccountGroup) -> dict[str, Any]:
    """A worker's share of a stop: sweep the group's accounts for the halt in force. The worker
    finishing the stop's last group marks the halt swept when no group left anything."""
    state = TowerState.get()
    if not state.emergency_stop_active:
        group.finish(ledger.SweepResult(notes=["The halt was lifted before this group was swept."]).to_json())
        return {"done": True, "reason": "halt lifted"}
    result = sweep(
        state.halt_run, group.run, group.accounts, time.monotonic() + settings.EMERGENCY_STOP_DEADLINE_SECONDS
    )
    group.finish(result.only(group.accounts, notes=True).to_json())
    if not group.run.account_groups.filter(finished_at__isnull=True).exists():
        whole = _groups_result(group.run)
        if not (whole.pending or whole.errors):
            TowerState.halt_swept(state.halt_run, group.run.executed_at)
    return {"paused": result.paused, "pending": result.pending, "failed": len(result.failed)}


def sweep(
    halt_run: ControlTowerRun, stop_run: ControlTowerRun, accounts: list[str], deadline: float
) -> ledger.SweepResult:
    """Step 3: list running campaigns from Meta, write holds, pause them; idempotent."""
    result = ledger.SweepResult()
    listed = _list_running(accounts, deadline)
    found: list[dict[str, Any]] = []
    for account, campaigns in listed.items():
        if isinstance(campaigns, graph.MetaError):
            result.unlisted[account] = str(campaigns)
            continue
        found.extend({**c, "account": account} for c in campaigns)
    owner = uuid.uuid4().hex
    claims = ledger.hold_and_claim(halt_run, stop_run, found, accounts, owner)
    if claims is None:
        result.notes.append("The halt was lifted during the stop: nothing more was paused.")
        return result
    claimed, claimed_elsewhere = claims
    # Claimed by another sweeper, alive or dead: not done until a sweep confirms them.
    for account, n in claimed_elsewhere.items():
        result.leave_pending(account, "claimed by another sweep (if that one died, its claim lapses)", n)
    running = {c["id"] for c in found}
    answers, sent = fanout.send([h for h in claimed if h.campaign_id in running], fanout.pause_call, deadline)
    # Read rather than pause: pending ones no longer listed as running (most likely paused by a
    # sweep whose process died before it recorded the answer), and pauses Meta applied whose
    # answer lacks what resume compares (a read-after-write whose read failed).
    to_read = [h for h in claimed if h.campaign_id not in running or _unconfirmed(answers.get(h.campaign_id))]
    read, _ = fanout.send(to_read, fanout.read_call, deadline)
    running_again = [h for h in to_read if rules.is_running(read[h.campaign_id][1] or {})]
    paused_again, sent_again = fanout.send(running_again, fanout.pause_call, deadline)
    answers.update({h.campaign_id: read[h.campaign_id] for h in to_read})
    answers.update(paused_again)
    sent.update(sent_again)
    now = timezone.now()
    listed_as = {hold.pk: hold.snapshot for hold in claimed}
    for hold in claimed:
        error, body = answers[hold.campaign_id]
        ledger.settle(hold, error, body, sent[hold.campaign_id], now, result)
    ledger.save_holds(
        claimed, ["state", "attempts", "claimed_by", "claimed_until", "paused_at", "paused_updated_time", "last_error"]
    )
    # A snapshot is per campaign: written with the hold, and again only where the pause answer differs.
    for hold in claimed:
        if hold.snapshot != listed_as[hold.pk]:
            CampaignHold.objects.filter(pk=hold.pk).update(snapshot=hold.snapshot)
    return result


def _unconfirmed(answer: fanout.Answer | None) -> bool:
    """A pause Meta applied whose answer lacks the updated_time resume compares."""
    return answer is not None and answer[0] is None and answer[1] is not None and "updated_time" not in answer[1]


def _running(meta: graph.GraphClient, account: str, deadline: float) -> list[dict[str, Any]]:
    """The campaigns of an account a person left running (configured ACTIVE), listed by effective status."""
    campaigns = fanout.within_deadline(
        lambda: meta.campaigns(account, CAMPAIGN_FIELDS, rules.LISTED_EFFECTIVE_STATUSES), deadline
    )
    return [c for c in campaigns if rules.is_running(c)]


def _list_running(accounts: list[str], deadline: float) -> dict[str, list[dict[str, Any]] | graph.MetaError]:
    return fanout.parallel(lambda meta, account: _running(meta, account, deadline), accounts, deadline)


def _stop_message(result: StopResult) -> str:
    parts = [f"{result.schedulers_stopped} schedulers stopped", f"{result.campaigns_paused} campaigns paused"]
    if result.campaigns_pending:
        parts.append(f"{result.campaigns_pending} still pending (retrying in the background)")
    if result.campaigns_failed:
        parts.append(f"{len(result.campaigns_failed)} could not be paused")
    prefix = "Emergency stop re-swept (already halted)" if result.already_halted else "Emergency stop active"
    return f"{prefix}: " + ", ".join(parts) + "."


def _stop_alert(request: StopRequest, result: StopResult) -> channels.Message:
    return channels.Message(
        kind=Notification.Kind.EMERGENCY,
        subject=f"EMERGENCY STOP by {request.actor}",
        body=f"Reason: {request.reason}\n{result.message}",
        payload={
            "event": "emergency_stop",
            "actor": request.actor,
            "reason": request.reason,
            "campaigns_paused": result.campaigns_paused,
            "campaigns_pending": result.campaigns_pending,
            "campaigns_failed": len(result.campaigns_failed),
            "run_id": result.run_id,
        },
    )


def emergency_stop(request: StopRequest) -> StopResult:
    if request.dry_run:
        return preview(request)
    started = time.monotonic()
    deadline = started + settings.EMERGENCY_STOP_DEADLINE_SECONDS
    run, already, running = _begin_halt(request)
    if running is not None:
        audit.record(
            "emergency_stop",
            actor=request.actor,
            reason=request.reason,
            run_id=run.pk,
            outcome="joined",
            joined_run_id=running.pk,
        )
        return _joined(run, running)
    halt_run = TowerState.get().halt_run
    # A stop while halted re-sweeps the whole halt, which now includes what this one asked for.
    schedulers, sweep_result = _secure(halt_run, run, deadline, spread=True)
    result = StopResult(
        success=not (sweep_result.pending or sweep_result.failed or sweep_result.errors),
        run_id=str(run.pk),
        dry_run=False,
        already_halted=already,
        schedulers_stopped=len(schedulers),
        campaigns_paused=sweep_result.paused,
        campaigns_pending=sweep_result.pending,
        campaigns_failed=sweep_result.failed,
        alerts_sent=0,
        errors=sweep_result.errors + sweep_result.pending_reasons(),
        stopped_at=run.executed_at,
        message="",
        campaigns_by_account={a: dict(c) for a, c in sweep_result.by_account.items()},
    )
    result.message = _stop_message(result)
    sent = channels.deliver(_stop_alert(request, result), run) if request.send_alerts else []
    result.alerts_sent = sum(n.ok for n in sent)
    result.alerts_outcome = channels.outcome(request.send_alerts, sent)
    result.alert_deliveries = channels.delivery_rows(sent)
    if sweep_result.pending or sweep_result.errors:
        schedule_resweep(halt_run)
    run.finish(
        started,
        actions_executed=[
            {"action": "disable_schedulers", "modules": schedulers},
            {
                "action": "pause_campaigns",
                "paused": result.campaigns_paused,
                "pending": result.campaigns_pending,
                "failed": len(result.campaigns_failed),
                "by_account": result.campaigns_by_account,
            },
            {"action": "alerts", "sent": result.alerts_sent, "outcome": result.alerts_outcome},
        ],
        errors_encountered=rules.capped(
            result.errors + [f"{f['campaign_id']}: {f['reason']}" for f in result.campaigns_failed]
        ),
        recommendations=ControlTowerRun.note(result.message),
    )
    audit.record(
        "emergency_stop",
        actor=request.actor,
        reason=request.reason,
        run_id=run.pk,
        outcome="ok" if result.success else "incomplete",
        already_halted=already,
        schedulers_stopped=result.schedulers_stopped,
        campaigns_paused=result.campaigns_paused,
        campaigns_pending=result.campaigns_pending,
        campaigns_failed=len(result.campaigns_failed),
        alerts=result.alerts_outcome,
    )
    return result


def queue_pass(task_name: str, run: ControlTowerRun, attempt: int, what: str) -> bool:
    """Queue a background pass after a doubling countdown; with the queue down, the watchdog and the
    health cycle carry the work on instead."""
    try:
        queue.send(
            task_name,
            [str(run.pk), attempt],
            countdown=backoff.delay(attempt + 1, settings.KILL_SWITCH_RETRY_BASE_SECONDS, 600),
        )
        return True
    except Exception as exc:  # noqa: BLE001 - broker down
        logger.warning("Could not queue %s (%s); the watchdog and the health cycle carry it on", what, exc)
        return False


def schedule_resweep(halt_run: ControlTowerRun | None, attempt: int = 0) -> bool:
    """Queue the background sweep of a halt."""
    return halt_run is not None and queue_pass(
        "controltower.tasks.resweep_halt", halt_run, attempt, "the kill-switch sweep"
    )


def resweep(halt_run_id: str, attempt: int, follow_up: bool = True) -> dict[str, Any]:
    """Background sweep of a halt until every ACTIVE campaign in its scope is confirmed paused.

    `follow_up`: the task's chain schedules the next attempt and, after the last, alerts; the
    watchdog's and the cycle's sweeps do not (they come again by themselves).
    """
    state = TowerState.get()
    if not state.emergency_stop_active or str(state.halt_run_id) != halt_run_id:
        return {"done": True, "reason": "halt lifted"}
    _, result = _secure(
        state.halt_run, state.halt_run, time.monotonic() + settings.EMERGENCY_STOP_DEADLINE_SECONDS, spread=False
    )
    remaining = result.pending or result.errors
    if remaining and follow_up and attempt + 1 < settings.KILL_SWITCH_RETRY_ATTEMPTS:
        schedule_resweep(state.halt_run, attempt + 1)
    elif remaining and follow_up:
        channels.deliver(
            channels.Message(
                kind=Notification.Kind.EMERGENCY,
                subject="EMERGENCY STOP incomplete: campaigns still not paused",
                body=f"After {attempt + 1} sweeps, {result.pending} campaigns are still pending.\n"
                + "\n".join(result.errors + result.pending_reasons()),
            ),
            state.halt_run,
        )
    return {
        "paused": result.paused,
        "pending": result.pending,
        "failed": len(result.failed),
        "errors": result.errors + result.pending_reasons(),
    }


def sweep_needed() -> bool:
    """A halt left incomplete that nobody is finishing (its process died, or the queue is down)."""
    state = TowerState.get()
    starting = (
        ControlTowerRun.objects.filter(
            run_type=RunType.EMERGENCY_STOP,
            state=RunState.RUNNING,
            executed_at__gt=timezone.now() - timedelta(seconds=settings.EMERGENCY_STOP_DEADLINE_SECONDS),
        ).exists()
        or stops_in_flight()
    )
    return rules.halt_needs_sweep(
        state.emergency_stop_active, state.last_stop_at, state.halt_swept_at, starting, is_held(ledger.KILL_SWITCH_LOCK)
    )


def stops_in_flight() -> bool:
    """A stop's account groups are still being swept by workers (the stop itself has answered)."""
    return AccountGroup.objects.filter(account_groups.in_flight(), run__run_type=RunType.EMERGENCY_STOP).exists()


def close_interrupted_stops() -> None:
    """A stop still `running` long after any live one could be: the process running it died."""
    interrupted = list(
        ControlTowerRun.objects.filter(
            run_type=RunType.EMERGENCY_STOP, state=RunState.RUNNING, executed_at__lt=_live_since()
        )
    )
    if not interrupted:
        return
    halt = (
        "The halt is still in force; the watchdog and the background sweeps finish it."
        if TowerState.get().emergency_stop_active
        else "The halt has since been lifted."
    )
    for run in interrupted:
        holds = dict(
            CampaignHold.objects.filter(Q(halt_run=run) | Q(stop_run=run)).values_list("state").annotate(n=Count("pk"))
        )
        message = (
            f"Interrupted: the process running this stop ended before it finished. {halt} Ledger now: "
            f"{holds.get(CampaignHold.State.PAUSED, 0)} paused, {holds.get(CampaignHold.State.PENDING, 0)} "
            f"pending, {holds.get(CampaignHold.State.FAILED, 0)} failed."
        )
        if not run.interrupt(message):
            continue  # another watchdog closed it first
        channels.deliver(
            channels.Message(
                kind=Notification.Kind.EMERGENCY,
                subject=f"EMERGENCY STOP by {run.executed_by} was interrupted",
                body=f"Reason: {run.reason}\n{message}",
                payload={"event": "emergency_stop_interrupted", "run_id": str(run.pk), "actor": run.executed_by},
            ),
            run,
        )


def stop_for_requested_spikes() -> StopResult | None:
    """10.9 asks for an emergency stop (opt-in SPIKE_REQUESTS_EMERGENCY_STOP): carry it out once."""
    spikes = list(
        SpendSpike.objects.filter(requested_emergency_stop=True, acknowledged=False).select_related("campaign__account")
    )
    if not spikes:
        return None
    reason = "Budget spike (10.9): " + "; ".join(
        f"{s.campaign.name} at {s.ratio:.1f}× its baseline, {money(s.spend_today, s.campaign.account.currency)} "
        f"spent today"
        for s in spikes
    )
    result = emergency_stop(StopRequest(reason=reason[:2000], actor="10.9 Budget Spike Manager"))
    SpendSpike.objects.filter(pk__in=[s.pk for s in spikes]).update(
        acknowledged=True, acknowledged_at=timezone.now(), acknowledged_by=f"emergency stop {result.run_id}"
    )
    return result
