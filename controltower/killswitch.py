"""Emergency stop and resume: stop spend in seconds, restore exactly what ran.

The stop runs in the web request and never waits on the task queue (the queue may be what
is broken):
 1. the halt is recorded and committed first — from then on module jobs and Meta writes
    outside this module refuse to act; a press while another stop is still running joins it
    (recorded, answered at once) instead of sweeping Meta again;
 2. the modules' periodic tasks are disabled, remembering which were enabled;
 3. ACTIVE campaigns are listed from Meta (the source of truth), one CampaignHold is written
    per campaign BEFORE it is paused, then they are paused in batches, accounts in parallel,
    within the client's rate-limit budget;
 4. admins are alerted.
What is not confirmed paused within the deadline stays `pending` in the ledger; a Celery task
keeps sweeping until it is done. If the process doing any of this dies (a web worker killed
mid-request, a Celery worker killed mid-sweep, the queue down), the watchdog and the health
cycle finish the halt: every sweep covers the halt's whole scope and is idempotent, and a
campaign Meta no longer lists as ACTIVE is read, not paused again.

Only campaigns a person left running are held: Meta's listing filter is by effective status,
and a campaign configured PAUSED can read IN_PROCESS or WITH_ISSUES, so the listing is then
filtered on the configured status (rules.is_running). Resume re-activates a hold only if it was
configured ACTIVE before the stop and is still exactly as our pause left it (updated_time, and
the name and budgets that Meta does not stamp in updated_time). What resume cannot re-activate
within its deadline stays `resuming` and is worked on in the background, like the stop's pending
ones, until done or given up with an alert.

No exception escapes a stop or a resume: an unexpected failure on one account becomes that
account's error, the stop still alerts and hands the rest to the background sweep.

Threads only talk to Meta; every database write happens in the calling thread.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from controltower import audit, channels, queue, rules, stakes
from controltower.locks import is_held, lease
from controltower.models import (
    CampaignHold, ControlTowerRun, Notification, RunState, RunType, SystemStatus, TowerState,
)
from meta_modules import backoff, graph, throttle
from meta_modules.errors import RETRYABLE
from meta_modules.gate import operations_halted
from meta_modules.models import MetaModule, SpendSpike
from meta_modules.money import money
from meta_modules.scheduling import stagger_delay, staggered_last_run

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Effective statuses a campaign configured ACTIVE can show; the listing is filtered on the configured status after.
RUNNING_EFFECTIVE_STATUSES = ("ACTIVE", "IN_PROCESS", "WITH_ISSUES")
ALL_LISTED_STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "IN_PROCESS", "WITH_ISSUES")
CAMPAIGN_FIELDS = ("id", "status", "effective_status", "updated_time", *rules.SNAPSHOT_FIELDS)
# Read after our pause (and when confirming one): what resume compares.
PAUSED_FIELDS = ",".join(("status", "updated_time", *rules.SNAPSHOT_FIELDS))
KILL_SWITCH_LOCK = "kill_switch"
STILL_PAUSING = "An emergency stop is still pausing campaigns; resume when it has finished."
# Holds resume leaves as they are without asking Meta: their pause was never confirmed.
UNCONFIRMED_STATES = (CampaignHold.State.PENDING, CampaignHold.State.FAILED)


class KillSwitchError(Exception):
    """A stop or resume that cannot proceed now (answered 409)."""


@dataclass
class StopRequest:
    reason: str
    actor: str
    stop_schedulers: bool = True
    pause_campaigns: bool = True
    send_alerts: bool = True
    dry_run: bool = False
    ad_account_ids: list[str] | None = None


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
        return [f"{account}: {sum(reasons.values())} campaigns still pending — {reasons.most_common(1)[0][0].rstrip('.')}; "
                f"the background keeps {doing} them." for account, reasons in sorted(self.why.items())]


@dataclass
class SweepResult:
    paused: int = 0
    pending: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    by_account: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    left: Pending = field(default_factory=Pending)

    def leave_pending(self, account: str, why: str, n: int = 1) -> None:
        self.pending += n
        self.by_account[account]["pending"] += n
        self.left.add(account, why, n)

    def pending_reasons(self) -> list[str]:
        return self.left.reasons("pausing")


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


@dataclass
class ResumeRequest:
    actor: str
    reason: str = ""
    resume_schedulers: bool = True
    resume_campaigns: bool = True
    run_health_check: bool = True
    dry_run: bool = False


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


# --- helpers --------------------------------------------------------------------------


def _parallel(fn: Callable[[graph.GraphClient, str], T], accounts: Iterable[str],
              deadline: float) -> dict[str, T | graph.MetaError]:
    """Run `fn(client, account)` for every account at once, each thread with its own Graph client
    bound by the deadline. Whatever one account raises becomes that account's error."""
    accounts = list(accounts)
    if not accounts:
        return {}

    def guarded(account: str) -> T | graph.MetaError:
        try:
            with graph.client().bounded(deadline) as meta:
                return fn(meta, account)
        except graph.MetaError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a stop or resume must finish whatever one account does
            logger.exception("Unexpected failure on %s during a stop or resume", account)
            return graph.MetaError(graph.ErrorKind.TRANSIENT, f"unexpected {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=min(len(accounts), settings.KILL_SWITCH_PARALLELISM)) as pool:
        return dict(zip(accounts, pool.map(guarded, accounts)))


def _within_deadline(call: Callable[[], T], deadline: float) -> T:
    """`call()`, tried again while it fails transiently or on a rate limit (after the client's own
    retries) and the deadline leaves time for another try."""
    rounds = 0
    last: graph.MetaError | None = None
    while True:
        rounds += 1
        try:
            return call()
        except graph.MetaError as exc:
            if exc.deadline_only and last is not None:
                raise last from exc  # the deadline came: what Meta last said is the reason
            last = exc
            delay = (rules.retry_delay(rounds, deadline - time.monotonic(), exc.retry_after or 0.0)
                     if exc.kind in RETRYABLE else None)
            if delay is None:
                raise
        time.sleep(delay)


def _not_before(errors: Iterable[graph.MetaError | None]) -> float:
    """The soonest any of these failures can be retried (0 unless each names an account's block)."""
    return min((e.retry_after or 0.0 if e is not None else 0.0 for e in errors), default=0.0)


def _act_ids(accounts: Iterable[str]) -> list[str]:
    return [a if a.startswith("act_") else f"act_{a}" for a in accounts]


def _accounts(requested: Iterable[str] | None, deadline: float) -> list[str]:
    if requested is not None:
        return _act_ids(requested)
    with graph.client().bounded(deadline) as meta:
        return meta.ad_accounts()


def _kill_switch_lease(wait_until: float | None = None) -> Any:
    """Stops, sweeps and resumes take turns; a stop waits (until its deadline), a resume does not."""
    wait = max(0.0, wait_until - time.monotonic()) if wait_until is not None else 0.0
    return lease(KILL_SWITCH_LOCK, timedelta(seconds=settings.HOLD_CLAIM_SECONDS), wait=wait)


def _module_tasks() -> Any:
    return PeriodicTask.objects.filter(meta_module__isnull=False)


# --- emergency stop -------------------------------------------------------------------


def target(accounts: list[str]) -> dict[str, Any]:
    """Where a stop or resume acts: the sandbox or live Meta, the Graph API version, and the access
    tier Meta's answers showed for each of `accounts` (those it read; unknown ones left out)."""
    stub = settings.META_MODE == "stub"
    return {"mode": settings.META_MODE, "graph_url": settings.META_GRAPH_URL, "api_version": settings.META_API_VERSION,
            "label": f"STUB sandbox at {settings.META_GRAPH_URL}" if stub else f"LIVE Meta ({settings.META_GRAPH_URL})",
            "tiers": {account: tier for account, tier in throttle.learnt_tiers(accounts).items() if tier}}


def _account_currency(meta: graph.GraphClient, account: str, deadline: float) -> str:
    """The ad account's currency, which its budgets are counted in (minor units)."""
    currency = _within_deadline(lambda: meta.get(account, {"fields": "currency"}, account), deadline).get("currency")
    if not currency:
        raise graph.MetaError(graph.ErrorKind.TRANSIENT, "Meta did not say the account's currency")
    return str(currency)


def preview(request: StopRequest) -> StopResult:
    """Dry run: what a stop would disable and pause, and the daily budget at stake, read from the
    scheduler and Meta. Changes nothing.

    Never raises for Meta: the confirmation page must show the STOP button exactly when Meta is
    down, so what could not be listed (ad accounts or one account's campaigns) becomes an error."""
    deadline = time.monotonic() + settings.EMERGENCY_STOP_PREVIEW_SECONDS
    schedulers = list(_module_tasks().filter(enabled=True).values_list("meta_module__code", flat=True))
    listed, errors = _preview_listing(request, deadline) if request.pause_campaigns else ({}, [])
    found = {a: r for a, r in listed.items() if not isinstance(r, graph.MetaError)}
    campaigns = {a: [{"id": c["id"], "name": c.get("name", "")} for c in running]
                 for a, (_, running, _) in found.items()}
    at_stake = [row for _, _, row in found.values()]
    totals = stakes.per_currency(at_stake)
    pausing = sum(row.campaigns for row in at_stake)
    stopping = len(schedulers) if request.stop_schedulers else 0
    unlisted = " Meta could not be listed everywhere: see the errors." if errors else ""
    return StopResult(
        success=not errors, run_id=None, dry_run=True, already_halted=TowerState.get().emergency_stop_active,
        schedulers_stopped=0, campaigns_paused=0,
        campaigns_pending=0, campaigns_failed=[], alerts_sent=0, errors=errors, stopped_at=timezone.now(),
        message=f"Dry run: would stop {stopping} schedulers and pause {pausing} campaigns in {len(found)} "
                f"ad accounts ({stakes.summary(totals)}).{unlisted} Nothing was changed.",
        campaigns_by_account={a: {"active": len(c)} for a, c in campaigns.items()},
        preview={"schedulers": schedulers if request.stop_schedulers else [], "campaigns": campaigns,
                 "target": target(sorted(listed)), "stakes": {"accounts": [row.to_json() for row in at_stake],
                                                 "totals": [row.to_json() for row in totals]}},
        would_stop=stopping, would_pause=pausing,
        alerts_outcome=f"dry run, nothing sent; a stop would alert: {channels.describe()}" if request.send_alerts
        else channels.NOT_REQUESTED,
    )


def _preview_listing(request: StopRequest, deadline: float) -> tuple[dict[str, Any], list[str]]:
    """Per account its currency, running campaigns and their stakes, and why whatever could not be listed was not."""
    def listing(meta: graph.GraphClient, account: str) -> tuple[str, list[dict[str, Any]], stakes.Stakes]:
        currency, running = _account_currency(meta, account, deadline), _running(meta, account, deadline)
        return currency, running, stakes.of_account(account, currency, running)

    try:
        listed = _parallel(listing, _accounts(request.ad_account_ids or None, deadline), deadline)
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
        running = (ControlTowerRun.objects.filter(run_type=RunType.EMERGENCY_STOP, state=RunState.RUNNING,
                                                  executed_at__gt=_live_since()).order_by("executed_at").first()
                   if already else None)
        now = timezone.now()
        joining = {"state": RunState.COMPLETED, "message": _joined_message(running), "execution_time_ms": 0,
                   "actions_executed": [{"action": "joined", "run_id": str(running.pk)}],
                   "recommendations": [{"severity": "info", "module": "", "message": _joined_message(running)}],
                   } if running else {"state": RunState.RUNNING}
        # What was asked is kept with the run: whoever finishes the halt sweeps exactly its scope.
        run = ControlTowerRun.objects.create(
            run_type=RunType.EMERGENCY_STOP, command_type="emergency_stop",
            system_status=SystemStatus.EMERGENCY_STOP, executed_by=request.actor, executed_at=now,
            reason=request.reason, mode=settings.META_MODE,
            parameters={"stop_schedulers": request.stop_schedulers, "pause_campaigns": request.pause_campaigns,
                        "send_alerts": request.send_alerts,
                        "ad_account_ids": _act_ids(request.ad_account_ids) if request.ad_account_ids else None},
            **joining,
        )
        if not already:
            state.emergency_stop_active = True
            state.halted_by, state.halted_at, state.halt_reason = request.actor, now, request.reason
            state.halt_run = run
            state.held_task_ids = []
        state.system_status = SystemStatus.EMERGENCY_STOP
        # A join moves this too: the halt counts as complete only after a sweep that began after it.
        state.last_stop_at = now
        state.resume_requested_by, state.resume_requested_at, state.resume_request = "", None, {}
        state.save()
    return run, already, running


def _joined_message(running: ControlTowerRun) -> str:
    return (f"An emergency stop by {running.executed_by} is already running (since "
            f"{timezone.localtime(running.executed_at):%H:%M:%S}): this stop joined it and was recorded. "
            "The halt covers what you asked; follow its progress on its page.")


def _joined(run: ControlTowerRun, running: ControlTowerRun) -> StopResult:
    return StopResult(
        success=False, run_id=str(running.pk), dry_run=False, already_halted=True, schedulers_stopped=0,
        campaigns_paused=0, campaigns_pending=0, campaigns_failed=[], alerts_sent=0, errors=[],
        stopped_at=run.executed_at, message=run.message, campaigns_by_account={}, joined=True,
        alerts_outcome="joined the running stop, which sends the alerts")


def _disable_schedulers() -> list[str]:
    """Step 2: disable every enabled module task and remember it for resume."""
    with transaction.atomic():
        state = TowerState.locked()
        enabled = list(_module_tasks().filter(enabled=True).values_list("pk", "meta_module__code"))
        if not enabled:  # already done (a re-sweep): nothing for Beat to reload
            return []
        _module_tasks().filter(pk__in=[pk for pk, _ in enabled]).update(enabled=False)
        state.held_task_ids = sorted(set(state.held_task_ids) | {pk for pk, _ in enabled})
        state.save(update_fields=["held_task_ids", "updated_at"])
    PeriodicTasks.update_changed()
    return [code for _, code in enabled]


def _halt_scope(state: TowerState) -> rules.HaltScope:
    if state.halted_at is None:  # a halt no stop recorded (set by hand): nothing to sweep
        return rules.halt_scope([])
    stops = ControlTowerRun.objects.filter(run_type=RunType.EMERGENCY_STOP, executed_at__gte=state.halted_at)
    return rules.halt_scope(stops.values_list("parameters", flat=True))


def _secure(halt_run: ControlTowerRun, stop_run: ControlTowerRun, deadline: float) -> tuple[list[str], SweepResult]:
    """Steps 2 and 3 over the halt's whole scope; the halt is complete when nothing is left pending.

    Idempotent: the stop itself, its background sweeps and the watchdog all come through here.
    """
    began = timezone.now()
    scope = _halt_scope(TowerState.get())
    schedulers = _disable_schedulers() if scope.stop_schedulers else []
    result = SweepResult()
    if scope.pause_campaigns:
        # Serialised with resume and other sweeps; a sweep waits (bounded) rather than refuses.
        with _kill_switch_lease(deadline) as held:
            if not held:
                result.errors.append("Another stop or resume held the kill switch past the deadline; "
                                     "the background sweep will pause the campaigns.")
            else:
                try:
                    accounts = _within_deadline(lambda: _accounts(scope.accounts, deadline), deadline)
                    result = sweep(halt_run, stop_run, accounts, deadline)
                except graph.MetaError as exc:  # listing the ad accounts themselves failed
                    result.errors.append(f"Could not list ad accounts: {exc}")
                except Exception as exc:  # noqa: BLE001 - the halt stands; the background sweep carries on
                    logger.exception("The campaign sweep of halt %s failed", halt_run.pk)
                    result.errors.append(f"The sweep failed unexpectedly ({type(exc).__name__}: {exc}); "
                                         "the background sweep keeps pausing campaigns.")
    if not result.pending and not result.errors:
        TowerState.objects.filter(pk=1, emergency_stop_active=True, halt_run=halt_run).update(halt_swept_at=began)
    return schedulers, result


def sweep(halt_run: ControlTowerRun, stop_run: ControlTowerRun, accounts: list[str], deadline: float) -> SweepResult:
    """Step 3: list running campaigns from Meta, write holds, pause them; idempotent."""
    result = SweepResult()
    listed = _list_running(accounts, deadline)
    found: list[dict[str, Any]] = []
    for account, campaigns in listed.items():
        if isinstance(campaigns, graph.MetaError):
            result.errors.append(f"Could not list campaigns of {account}: {campaigns}")
            continue
        found.extend({**c, "account": account} for c in campaigns)
    owner = uuid.uuid4().hex
    claims = _hold_and_claim(halt_run, stop_run, found, accounts, owner)
    if claims is None:
        result.errors.append("The halt was lifted during the stop: nothing more was paused.")
        return result
    claimed, claimed_elsewhere = claims
    # Claimed by another sweeper, alive or dead: not done until a sweep confirms them.
    for account, n in claimed_elsewhere.items():
        result.leave_pending(account, "claimed by another sweep (if that one died, its claim lapses)", n)
    running = {c["id"] for c in found}
    answers, sent = _send([h for h in claimed if h.campaign_id in running], _pause_call, deadline)
    # Read rather than pause: pending ones no longer listed as running (most likely paused by a
    # sweep whose process died before it recorded the answer), and pauses Meta applied whose
    # answer lacks what resume compares (a read-after-write whose read failed).
    to_read = [h for h in claimed if h.campaign_id not in running or _unconfirmed(answers.get(h.campaign_id))]
    read, _ = _send(to_read, _read_call, deadline)
    running_again = [h for h in to_read if rules.is_running(read[h.campaign_id][1] or {})]
    paused_again, sent_again = _send(running_again, _pause_call, deadline)
    answers.update({h.campaign_id: read[h.campaign_id] for h in to_read})
    answers.update(paused_again)
    sent.update(sent_again)
    now = timezone.now()
    listed_as = {hold.pk: hold.snapshot for hold in claimed}
    for hold in claimed:
        error, body = answers[hold.campaign_id]
        _settle(hold, error, body, sent[hold.campaign_id], now, result)
    _save_holds(claimed, ["state", "attempts", "claimed_by", "claimed_until", "paused_at", "paused_updated_time",
                          "last_error"])
    # A snapshot is per campaign: written with the hold, and again only where the pause answer differs.
    for hold in claimed:
        if hold.snapshot != listed_as[hold.pk]:
            CampaignHold.objects.filter(pk=hold.pk).update(snapshot=hold.snapshot)
    return result


def _unconfirmed(answer: Answer | None) -> bool:
    """A pause Meta applied whose answer lacks the updated_time resume compares."""
    return answer is not None and answer[0] is None and answer[1] is not None and "updated_time" not in answer[1]


def _running(meta: graph.GraphClient, account: str, deadline: float) -> list[dict[str, Any]]:
    """The campaigns of an account a person left running (configured ACTIVE), listed by effective status."""
    campaigns = _within_deadline(lambda: meta.campaigns(account, CAMPAIGN_FIELDS, RUNNING_EFFECTIVE_STATUSES), deadline)
    return [c for c in campaigns if rules.is_running(c)]


def _list_running(accounts: list[str], deadline: float) -> dict[str, list[dict[str, Any]] | graph.MetaError]:
    return _parallel(lambda meta, account: _running(meta, account, deadline), accounts, deadline)


def _hold_and_claim(halt_run: ControlTowerRun, stop_run: ControlTowerRun, found: list[dict[str, Any]],
                    accounts: list[str], owner: str) -> tuple[list[CampaignHold], dict[str, int]] | None:
    """Write one hold per ACTIVE campaign (before pausing it) and claim the pending ones.

    Returns the holds claimed, and per account how many pending ones someone else still claims.
    """
    now = timezone.now()
    with transaction.atomic():
        state = TowerState.locked()
        if not state.emergency_stop_active or state.halt_run_id != halt_run.pk:
            return None
        CampaignHold.objects.bulk_create(
            [CampaignHold(halt_run=halt_run, stop_run=stop_run, campaign_id=c["id"], account_id=c["account"],
                          campaign_name=c.get("name", "")[:400], prior_status=c.get("status", ""),
                          prior_effective_status=c.get("effective_status", ""),
                          prior_updated_time=c.get("updated_time", ""), snapshot=rules.snapshot(c)) for c in found],
            ignore_conflicts=True,
        )
        # Held before and ACTIVE again (someone re-activated it during the halt): pause it again.
        CampaignHold.objects.filter(halt_run=halt_run, campaign_id__in=[c["id"] for c in found]).exclude(
            state=CampaignHold.State.PENDING).update(state=CampaignHold.State.PENDING, stop_run=stop_run)
        claimable = CampaignHold.objects.filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
            halt_run=halt_run, state=CampaignHold.State.PENDING, account_id__in=accounts,
        )
        claimable.update(claimed_by=owner, claimed_until=now + timedelta(seconds=settings.HOLD_CLAIM_SECONDS))
        pending = CampaignHold.objects.filter(halt_run=halt_run, state=CampaignHold.State.PENDING,
                                              account_id__in=accounts)
        elsewhere = pending.exclude(claimed_by=owner).values_list("account_id").annotate(n=Count("pk"))
        return list(pending.filter(claimed_by=owner)), dict(elsewhere)


def _pause_call(hold: CampaignHold) -> graph.BatchCall:
    return graph.BatchCall(hold.campaign_id, "POST", f"{hold.campaign_id}/", {"status": "PAUSED", "fields": PAUSED_FIELDS})


def _read_call(hold: CampaignHold) -> graph.BatchCall:
    return graph.BatchCall(hold.campaign_id, "GET", hold.campaign_id, {"fields": PAUSED_FIELDS})


Answer = tuple[graph.MetaError | None, dict[str, Any] | None]


def _send(holds: list[CampaignHold], call: Callable[[CampaignHold], graph.BatchCall],
          deadline: float) -> tuple[dict[str, Answer], Counter[str]]:
    """One batch item per hold, accounts in parallel. Items that fail transiently or on a rate
    limit (after the client's own retries) go again while the deadline allows.

    Returns campaign id → (final error, answer), and how many requests went out per campaign.
    """
    answers: dict[str, Answer] = {}
    sent: Counter[str] = Counter()
    todo, rounds = holds, 0
    while todo:
        rounds += 1
        by_account: dict[str, list[CampaignHold]] = defaultdict(list)
        for hold in todo:
            by_account[hold.account_id].append(hold)
        outcomes = _parallel(
            lambda meta, a: meta.batch(a, [call(h) for h in by_account[a]], allow_while_halted=True), by_account, deadline)
        todo = []
        for account, outcome in outcomes.items():
            for hold in by_account[account]:
                if isinstance(outcome, graph.MetaError):
                    error, body = outcome, None
                else:
                    error, body = outcome.failed.get(hold.campaign_id), outcome.succeeded.get(hold.campaign_id)
                if error is not None and error.deadline_only and hold.campaign_id in answers:
                    continue  # not sent (the deadline): the previous answer says more
                sent[hold.campaign_id] += error is None or not error.deadline_only
                answers[hold.campaign_id] = (error, body)
                if body is None and (error is None or error.kind in RETRYABLE):
                    todo.append(hold)
        delay = rules.retry_delay(rounds, deadline - time.monotonic(),
                                  _not_before(answers[h.campaign_id][0] for h in todo)) if todo else None
        if delay is None:
            break
        time.sleep(delay)
    return answers, sent


def _settle(hold: CampaignHold, error: graph.MetaError | None, body: dict[str, Any] | None, pauses_sent: int,
            now: datetime, result: SweepResult) -> None:
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


def _save_holds(holds: list[CampaignHold], fields: list[str]) -> None:
    """bulk_update(holds, fields) as one UPDATE per distinct set of values. The holds of a sweep or
    a resume share a handful of values (state, Meta's updated_time to the second, the error), while
    bulk_update builds a CASE/WHEN per row and field (on PostgreSQL one 5,000-branch CASE per field):
    with it a 5,000-campaign stop took 31 s instead of 4.4 s there, 9.7 s instead of 5.5 s on SQLite
    (docs/BENCHMARKS.md)."""
    groups: dict[tuple[Any, ...], list[uuid.UUID]] = defaultdict(list)
    for hold in holds:
        groups[tuple(getattr(hold, name) for name in fields)].append(hold.pk)
    with transaction.atomic():
        for values, pks in groups.items():
            CampaignHold.objects.filter(pk__in=pks).update(**dict(zip(fields, values)))


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
        kind=Notification.Kind.EMERGENCY, subject=f"EMERGENCY STOP by {request.actor}",
        body=f"Reason: {request.reason}\n{result.message}",
        payload={"event": "emergency_stop", "actor": request.actor, "reason": request.reason,
                 "campaigns_paused": result.campaigns_paused, "campaigns_pending": result.campaigns_pending,
                 "campaigns_failed": len(result.campaigns_failed), "run_id": result.run_id})


def emergency_stop(request: StopRequest) -> StopResult:
    if request.dry_run:
        return preview(request)
    started = time.monotonic()
    deadline = started + settings.EMERGENCY_STOP_DEADLINE_SECONDS
    run, already, running = _begin_halt(request)
    if running is not None:
        audit.record("emergency_stop", actor=request.actor, reason=request.reason, run_id=run.pk, outcome="joined",
                     joined_run_id=running.pk)
        return _joined(run, running)
    halt_run = TowerState.get().halt_run
    # A stop while halted re-sweeps the whole halt, which now includes what this one asked for.
    schedulers, sweep_result = _secure(halt_run, run, deadline)
    result = StopResult(
        success=not (sweep_result.pending or sweep_result.failed or sweep_result.errors),
        run_id=str(run.pk), dry_run=False, already_halted=already, schedulers_stopped=len(schedulers),
        campaigns_paused=sweep_result.paused, campaigns_pending=sweep_result.pending,
        campaigns_failed=sweep_result.failed, alerts_sent=0, errors=sweep_result.errors + sweep_result.pending_reasons(),
        stopped_at=run.executed_at, message="",
        campaigns_by_account={a: dict(c) for a, c in sweep_result.by_account.items()},
    )
    result.message = _stop_message(result)
    sent = channels.deliver(_stop_alert(request, result), run) if request.send_alerts else []
    result.alerts_sent = sum(n.ok for n in sent)
    result.alerts_outcome = channels.outcome(request.send_alerts, sent)
    result.alert_deliveries = channels.delivery_rows(sent)
    if sweep_result.pending or sweep_result.errors:
        schedule_resweep(halt_run)
    _finish(run, started, actions=[{"action": "disable_schedulers", "modules": schedulers},
                                   {"action": "pause_campaigns", "paused": result.campaigns_paused,
                                    "pending": result.campaigns_pending, "failed": len(result.campaigns_failed),
                                    "by_account": result.campaigns_by_account},
                                   {"action": "alerts", "sent": result.alerts_sent, "outcome": result.alerts_outcome}],
            errors=result.errors + [f"{f['campaign_id']}: {f['reason']}" for f in result.campaigns_failed],
            message=result.message)
    audit.record("emergency_stop", actor=request.actor, reason=request.reason, run_id=run.pk,
                 outcome="ok" if result.success else "incomplete", already_halted=already,
                 schedulers_stopped=result.schedulers_stopped, campaigns_paused=result.campaigns_paused,
                 campaigns_pending=result.campaigns_pending, campaigns_failed=len(result.campaigns_failed),
                 alerts=result.alerts_outcome)
    return result


def _finish(run: ControlTowerRun, started: float, actions: list[dict[str, Any]], errors: list[str], message: str,
            failed: bool = False) -> None:
    ControlTowerRun.objects.filter(pk=run.pk).update(
        state=RunState.FAILED if failed else RunState.COMPLETED, actions_executed=actions, errors_encountered=errors,
        execution_time_ms=round((time.monotonic() - started) * 1000),
        recommendations=[{"severity": "info", "module": "", "message": message}],
    )


def _queue_pass(task: Any, run: ControlTowerRun, attempt: int, what: str) -> bool:
    """Queue a background pass after a doubling countdown; with the queue down, the watchdog and the
    health cycle carry the work on instead."""
    try:
        queue.send(task, [str(run.pk), attempt], countdown=backoff.delay(attempt + 1, settings.KILL_SWITCH_RETRY_BASE_SECONDS, 600))
        return True
    except Exception as exc:  # broker down
        logger.warning("Could not queue %s (%s); the watchdog and the health cycle carry it on", what, exc)
        return False


def schedule_resweep(halt_run: ControlTowerRun | None, attempt: int = 0) -> bool:
    """Queue the background sweep of a halt."""
    from controltower.tasks import resweep_halt

    return halt_run is not None and _queue_pass(resweep_halt, halt_run, attempt, "the kill-switch sweep")


def resweep(halt_run_id: str, attempt: int, follow_up: bool = True) -> dict[str, Any]:
    """Background sweep of a halt until every ACTIVE campaign in its scope is confirmed paused.

    `follow_up`: the task's chain schedules the next attempt and, after the last, alerts; the
    watchdog's and the cycle's sweeps do not (they come again by themselves).
    """
    state = TowerState.get()
    if not state.emergency_stop_active or str(state.halt_run_id) != halt_run_id:
        return {"done": True, "reason": "halt lifted"}
    _, result = _secure(state.halt_run, state.halt_run, time.monotonic() + settings.EMERGENCY_STOP_DEADLINE_SECONDS)
    remaining = result.pending or result.errors
    if remaining and follow_up and attempt + 1 < settings.KILL_SWITCH_RETRY_ATTEMPTS:
        schedule_resweep(state.halt_run, attempt + 1)
    elif remaining and follow_up:
        channels.deliver(channels.Message(
            kind=Notification.Kind.EMERGENCY, subject="EMERGENCY STOP incomplete: campaigns still not paused",
            body=f"After {attempt + 1} sweeps, {result.pending} campaigns are still pending.\n"
                 + "\n".join(result.errors + result.pending_reasons()),
        ), state.halt_run)
    return {"paused": result.paused, "pending": result.pending, "failed": len(result.failed),
            "errors": result.errors + result.pending_reasons()}


def sweep_needed() -> bool:
    """A halt left incomplete that nobody is finishing (its process died, or the queue is down)."""
    state = TowerState.get()
    starting = ControlTowerRun.objects.filter(
        run_type=RunType.EMERGENCY_STOP, state=RunState.RUNNING,
        executed_at__gt=timezone.now() - timedelta(seconds=settings.EMERGENCY_STOP_DEADLINE_SECONDS)).exists()
    return rules.halt_needs_sweep(state.emergency_stop_active, state.last_stop_at, state.halt_swept_at, starting,
                                  is_held(KILL_SWITCH_LOCK))


def finish_abandoned() -> None:
    """The watchdog's and the cycle's part: finish a halt nobody is finishing, close stop runs
    whose process died before they ended, and say so; carry on re-activations a resume left."""
    if sweep_needed():
        resweep(str(TowerState.get().halt_run_id), attempt=0, follow_up=False)
    _close_interrupted_stops()
    if not is_held(KILL_SWITCH_LOCK):
        for run_id in _resumes_left_pending():
            finish_resume(str(run_id), attempt=0, follow_up=False)


def _close_interrupted_stops() -> None:
    """A stop still `running` long after any live one could be: the process running it died."""
    interrupted = list(ControlTowerRun.objects.filter(run_type=RunType.EMERGENCY_STOP, state=RunState.RUNNING,
                                                      executed_at__lt=_live_since()))
    if not interrupted:
        return
    halt = ("The halt is still in force; the watchdog and the background sweeps finish it."
            if TowerState.get().emergency_stop_active else "The halt has since been lifted.")
    for run in interrupted:
        ledger = dict(CampaignHold.objects.filter(Q(halt_run=run) | Q(stop_run=run))
                      .values_list("state").annotate(n=Count("pk")))
        message = (f"Interrupted: the process running this stop ended before it finished. {halt} Ledger now: "
                   f"{ledger.get(CampaignHold.State.PAUSED, 0)} paused, {ledger.get(CampaignHold.State.PENDING, 0)} "
                   f"pending, {ledger.get(CampaignHold.State.FAILED, 0)} failed.")
        if not ControlTowerRun.objects.filter(pk=run.pk, state=RunState.RUNNING).update(
                state=RunState.FAILED, errors_encountered=[message], message=message,
                recommendations=[{"severity": "critical", "module": "", "message": message}]):
            continue  # another watchdog closed it first
        channels.deliver(channels.Message(
            kind=Notification.Kind.EMERGENCY, subject=f"EMERGENCY STOP by {run.executed_by} was interrupted",
            body=f"Reason: {run.reason}\n{message}", payload={"event": "emergency_stop_interrupted",
                                                              "run_id": str(run.pk), "actor": run.executed_by}), run)


def stop_for_requested_spikes() -> StopResult | None:
    """10.9 asks for an emergency stop (opt-in SPIKE_REQUESTS_EMERGENCY_STOP): carry it out once."""
    spikes = list(SpendSpike.objects.filter(requested_emergency_stop=True, acknowledged=False)
                  .select_related("campaign__account"))
    if not spikes:
        return None
    reason = "Budget spike (10.9): " + "; ".join(
        f"{s.campaign.name} at {s.ratio:.1f}× its baseline, {money(s.spend_today, s.campaign.account.currency)} "
        f"spent today" for s in spikes)
    result = emergency_stop(StopRequest(reason=reason[:2000], actor="10.9 Budget Spike Manager"))
    SpendSpike.objects.filter(pk__in=[s.pk for s in spikes]).update(
        acknowledged=True, acknowledged_at=timezone.now(), acknowledged_by=f"emergency stop {result.run_id}")
    return result


# --- resume ---------------------------------------------------------------------------


def _approval_pending(state: TowerState) -> bool:
    """A first operator's resume waits for a second one (two-person rule), not expired."""
    ttl = timedelta(seconds=settings.RESUME_APPROVAL_TTL_SECONDS)
    return bool(settings.RESUME_REQUIRES_SECOND_APPROVER and state.resume_requested_by and state.resume_requested_at
                and timezone.now() - state.resume_requested_at <= ttl)


def _as_approved(state: TowerState, request: ResumeRequest) -> ResumeRequest:
    """What an approver carries out: the options the first operator asked for."""
    asked = state.resume_request
    return ResumeRequest(actor=request.actor, reason=asked.get("reason", request.reason),
                         resume_schedulers=asked.get("resume_schedulers", True),
                         resume_campaigns=asked.get("resume_campaigns", True),
                         run_health_check=asked.get("run_health_check", True), dry_run=request.dry_run)


def _resume_refusal(state: TowerState) -> str | None:
    """Why resume cannot proceed now (its dry run answers the same), or None."""
    if not state.emergency_stop_active:
        return "The tower is not halted: there is nothing to resume."
    if CampaignHold.objects.filter(halt_run_id=state.halt_run_id, claimed_until__gt=timezone.now()).exists():
        return STILL_PAUSING
    return None


def _approval_gate(state: TowerState, request: ResumeRequest) -> bool:
    """Two-person rule. True when this request may proceed; False when it was recorded for approval."""
    if not settings.RESUME_REQUIRES_SECOND_APPROVER:
        return True
    if not _approval_pending(state):
        state.resume_requested_by, state.resume_requested_at = request.actor, timezone.now()
        state.resume_request = {"reason": request.reason, "resume_schedulers": request.resume_schedulers,
                                "resume_campaigns": request.resume_campaigns,
                                "run_health_check": request.run_health_check}
        state.save(update_fields=["resume_requested_by", "resume_requested_at", "resume_request", "updated_at"])
        return False
    if state.resume_requested_by == request.actor:
        raise KillSwitchError(f"Resume was requested by {request.actor}; a different operator must approve it.")
    return True


def resume(request: ResumeRequest) -> ResumeResult:
    if request.dry_run:
        return resume_preview(request)
    started = time.monotonic()
    deadline = started + settings.EMERGENCY_STOP_DEADLINE_SECONDS
    with _kill_switch_lease() as held:
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
                    success=False, run_id=None, awaiting_approval=True, schedulers_resumed=0, campaigns_resumed=0,
                    campaigns_skipped=[], campaigns_pending=0, errors=[], system_status=state.system_status,
                    health_check_run_id=None, resumed_at=timezone.now(),
                    message=f"Resume requested by {request.actor}; it takes effect when a different operator approves.",
                    alerts_outcome="awaiting approval: alerts go out when the resume is carried out")
            approved_from = state.resume_requested_by
            if approved_from:  # the approver confirms what the first operator asked for
                request = _as_approved(state, request)
            run = ControlTowerRun.objects.create(
                run_type=RunType.RESUME, command_type="resume", state=RunState.RUNNING,
                system_status=SystemStatus.EMERGENCY_STOP, mode=settings.META_MODE, reason=request.reason,
                executed_by=f"{approved_from} (approved by {request.actor})" if approved_from else request.actor,
            )
            halt_run, stop_stamp, held_tasks = state.halt_run, state.last_stop_at, list(state.held_task_ids)
        unconfirmed = _close_unconfirmed(halt_run, run)
        if request.resume_campaigns:
            holds = list(CampaignHold.objects.filter(halt_run=halt_run, state=CampaignHold.State.PAUSED))
            outcome = _reactivate(holds, run, deadline)
        else:
            outcome = Reactivation(skipped=_release(halt_run, run))
        skipped = unconfirmed + outcome.skipped
        errors = outcome.errors + outcome.left.reasons("re-activating")
        schedulers = _restore_schedulers(held_tasks, request)
        with transaction.atomic():
            state = TowerState.locked()
            if state.last_stop_at != stop_stamp:
                errors.append("A new emergency stop arrived during resume: the halt stays in force.")
                _finish(run, started, [], errors, "Resume overtaken by a new stop.", failed=True)
                audit.record("resume", actor=run.executed_by, reason=request.reason, run_id=run.pk,
                             outcome="overtaken", campaigns_resumed=outcome.resumed)
                return ResumeResult(
                    success=False, run_id=str(run.pk), awaiting_approval=False, schedulers_resumed=0,
                    campaigns_resumed=outcome.resumed, campaigns_skipped=skipped,
                    campaigns_pending=outcome.left.count, errors=errors, system_status=SystemStatus.EMERGENCY_STOP,
                    health_check_run_id=None, resumed_at=timezone.now(), message=errors[-1],
                    alerts_outcome="overtaken by a new stop, which sends the alerts")
            state.emergency_stop_active = False
            state.held_task_ids = []
            state.resume_requested_by, state.resume_requested_at, state.resume_request = "", None, {}
            state.system_status = SystemStatus.UNKNOWN
            state.save()
    if outcome.left.count:
        schedule_resume_retry(run)
    from controltower import cycle, health

    check = cycle.run_cycle(executed_by=request.actor) if request.run_health_check else None
    status = check.system_status if check else health.evaluate().system_status
    TowerState.set(system_status=status)
    message = (f"Resumed: {len(schedulers)} schedulers re-enabled, {outcome.resumed} campaigns re-activated, "
               f"{len(skipped)} left as they are"
               + (f", {outcome.left.count} still being re-activated in the background" if outcome.left.count else "")
               + f". System status {status.upper()}.")
    sent = channels.deliver(channels.Message(kind=Notification.Kind.EMERGENCY, subject=f"RESUMED by {run.executed_by}",
                                             body="\n".join([message, *errors]),
                                             payload={"event": "resume", "run_id": str(run.pk)}), run)
    alerts, alerts_sent = channels.outcome(True, sent), sum(n.ok for n in sent)
    _finish(run, started, [{"action": "resume_schedulers", "modules": schedulers},
                           {"action": "resume_campaigns", "resumed": outcome.resumed, "skipped": skipped,
                            "pending": outcome.left.count},
                           {"action": "alerts", "sent": alerts_sent, "outcome": alerts}], errors, message)
    ControlTowerRun.objects.filter(pk=run.pk).update(system_status=status)
    audit.record("resume", actor=run.executed_by, reason=request.reason, run_id=run.pk,
                 outcome="incomplete" if errors else "ok", schedulers_resumed=len(schedulers),
                 campaigns_resumed=outcome.resumed, campaigns_skipped=len(skipped), campaigns_pending=outcome.left.count,
                 system_status=status, alerts=alerts)
    return ResumeResult(success=not errors, run_id=str(run.pk), awaiting_approval=False,
                        schedulers_resumed=len(schedulers), campaigns_resumed=outcome.resumed,
                        campaigns_skipped=skipped, campaigns_pending=outcome.left.count, errors=errors,
                        system_status=status, health_check_run_id=str(check.pk) if check else None,
                        resumed_at=timezone.now(), message=message, alerts_sent=alerts_sent,
                        alerts_outcome=alerts, alert_deliveries=channels.delivery_rows(sent))


def _current(meta: graph.GraphClient, account: str) -> dict[str, dict[str, Any]]:
    """Meta's current state of an account's campaigns (not deleted), which resume compares with the holds."""
    return {c["id"]: c for c in meta.campaigns(account, CAMPAIGN_FIELDS, ALL_LISTED_STATUSES)}


@dataclass
class Reactivation:
    resumed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    left: Pending = field(default_factory=Pending)


def _reactivate(holds: list[CampaignHold], run: ControlTowerRun, deadline: float,
                halted: Callable[[], bool] = lambda: False) -> Reactivation:
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
            outcome.errors.append(f"{hold.campaign_id}: {reason}")
        del undecided[hold.campaign_id]

    def done(hold: CampaignHold, at: datetime, note: str = "") -> None:
        hold.state, hold.resumed_at, hold.resume_note = CampaignHold.State.RESUMED, at, note
        outcome.resumed += 1
        del undecided[hold.campaign_id]

    def reactivation(meta: graph.GraphClient, account: str, holds: list[CampaignHold]) -> graph.BatchResult:
        calls = [graph.BatchCall(h.campaign_id, "POST", f"{h.campaign_id}/", {"status": "ACTIVE"}) for h in holds]
        return meta.batch(account, calls, allow_while_halted=True)

    while undecided and not halted():
        rounds += 1
        failures: list[graph.MetaError] = []  # this round's, for when to try again
        by_account: dict[str, list[CampaignHold]] = defaultdict(list)
        for hold in undecided.values():
            by_account[hold.account_id].append(hold)
        try:
            current = _parallel(_current, by_account, deadline)
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
                    verdict = rules.resume_verdict(hold.prior_status, hold.paused_updated_time, hold.snapshot,
                                                   now_on_meta)
                    if verdict.reactivate:
                        to_activate[account].append(hold)
                    else:
                        skip(hold, verdict.reason)
            outcomes = _parallel(lambda meta, a: reactivation(meta, a, to_activate[a]), to_activate, deadline)
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
        delay = rules.retry_delay(rounds, deadline - time.monotonic(), _not_before(failures)) if undecided else None
        if delay is None:
            break
        time.sleep(delay)
    for hold in undecided.values():
        why = last_failure.get(hold.campaign_id, "no answer before the deadline")
        hold.state, hold.resume_note = CampaignHold.State.RESUMING, f"re-activation pending: {why}"
        outcome.left.add(hold.account_id, why)
    for hold in holds:
        hold.resume_run = run
    _save_holds(holds, ["state", "resumed_at", "resume_note", "resume_run"])
    return outcome


def schedule_resume_retry(run: ControlTowerRun, attempt: int = 0) -> bool:
    """Queue the background re-activation of what a resume left."""
    from controltower.tasks import finish_resume as finish_resume_task

    return _queue_pass(finish_resume_task, run, attempt, "the background re-activation")


def finish_resume(resume_run_id: str, attempt: int, follow_up: bool = True) -> dict[str, Any]:
    """Re-activate what a resume left `resuming`, until done or given up (then alert).

    A new emergency stop wins: its holds are left PAUSED and reported. `follow_up` as in resweep.
    """
    deadline = time.monotonic() + settings.EMERGENCY_STOP_DEADLINE_SECONDS
    run = ControlTowerRun.objects.filter(pk=resume_run_id, run_type=RunType.RESUME).first()
    if run is None:
        return {"done": True, "reason": "no such resume"}
    with _kill_switch_lease() as held:
        if not held:  # a stop or a sweep is working: come back later
            if follow_up:
                schedule_resume_retry(run, attempt)
            return {"done": False, "reason": "kill switch busy"}
        holds = list(CampaignHold.objects.filter(resume_run=run, state=CampaignHold.State.RESUMING))
        if not holds:
            return {"done": True}
        outcome = _reactivate(holds, run, deadline, halted=operations_halted)
        if operations_halted():  # a new stop began: it wins over what is left
            note = "left PAUSED: a new emergency stop began before it could be re-activated"
            left = CampaignHold.objects.filter(resume_run=run, state=CampaignHold.State.RESUMING)
            outcome.skipped += [{"campaign_id": h.campaign_id, "account_id": h.account_id, "reason": note}
                                for h in left]
            left.update(state=CampaignHold.State.SKIPPED, resume_note=note)
            outcome.left = Pending()
    record: dict[str, Any] = {"action": "resume_campaigns_background", "attempt": attempt + 1,
                              "resumed": outcome.resumed, "skipped": outcome.skipped, "pending": outcome.left.count}
    if outcome.left.count and follow_up and attempt + 1 < settings.KILL_SWITCH_RETRY_ATTEMPTS:
        schedule_resume_retry(run, attempt + 1)
    elif outcome.left.count and follow_up:
        _give_up_resume(run, attempt + 1, outcome)
        record["gave_up"] = outcome.left.count
    _record_background(run, record)
    return {"resumed": outcome.resumed, "skipped": len(outcome.skipped), "pending": outcome.left.count,
            "errors": outcome.errors + outcome.left.reasons("re-activating")}


def _give_up_resume(run: ControlTowerRun, attempts: int, outcome: Reactivation) -> None:
    """The last background attempt failed: leave them PAUSED, say which and why, to everyone."""
    reasons = outcome.left.reasons("re-activating")
    holds = CampaignHold.objects.filter(resume_run=run, state=CampaignHold.State.RESUMING)
    ids = list(holds.values_list("campaign_id", flat=True))
    holds.update(state=CampaignHold.State.SKIPPED,
                 resume_note=f"gave up after {attempts} background attempts; left PAUSED (re-activate it by hand)")
    channels.deliver(channels.Message(
        kind=Notification.Kind.EMERGENCY, subject=f"RESUME incomplete: {len(ids)} campaigns left PAUSED",
        body=(f"After {attempts} background attempts, {len(ids)} campaigns that were running before the stop "
              "could not be re-activated and stay PAUSED:\n" + "\n".join(reasons)
              + "\nCampaigns: " + ", ".join(ids[:200]) + (" …" if len(ids) > 200 else "")),
        payload={"event": "resume_incomplete", "run_id": str(run.pk), "campaign_ids": ids}), run)


def _record_background(run: ControlTowerRun, action: dict[str, Any]) -> None:
    """Append what a background pass did to the resume's run record (a row lock: passes may overlap)."""
    with transaction.atomic():
        locked = ControlTowerRun.objects.select_for_update().get(pk=run.pk)
        locked.actions_executed = [*locked.actions_executed, action]
        locked.save(update_fields=["actions_executed"])


def _resumes_left_pending() -> list[Any]:
    return list(CampaignHold.objects.filter(state=CampaignHold.State.RESUMING)
                .values_list("resume_run_id", flat=True).distinct().order_by())


def _close_unconfirmed(halt_run: ControlTowerRun, run: ControlTowerRun) -> list[dict[str, str]]:
    """Holds never confirmed paused (pending, failed): without our pause's updated_time there is
    no proof the campaign is as we left it, so resume leaves them as they are and says so."""
    holds = CampaignHold.objects.filter(halt_run=halt_run, state__in=UNCONFIRMED_STATES)
    note = rules.UNCONFIRMED.reason
    closed = [{"campaign_id": h.campaign_id, "account_id": h.account_id, "reason": note} for h in holds]
    holds.update(state=CampaignHold.State.SKIPPED, resume_run=run, resume_note=note)
    return closed


def _release(halt_run: ControlTowerRun, run: ControlTowerRun) -> list[dict[str, str]]:
    holds = CampaignHold.objects.filter(halt_run=halt_run, state=CampaignHold.State.PAUSED)
    released = [{"campaign_id": h.campaign_id, "account_id": h.account_id, "reason": rules.NOT_REQUESTED.reason}
                for h in holds]
    holds.update(state=CampaignHold.State.RELEASED, resume_run=run,
                 resume_note=f"Left paused: {rules.NOT_REQUESTED.reason}")
    return released


def _restore_schedulers(held_task_ids: list[int], request: ResumeRequest) -> list[str]:
    """Re-enable exactly the tasks enabled before the stop, of modules operators still want running."""
    if not request.resume_schedulers:
        MetaModule.objects.filter(periodic_task__in=_module_tasks().filter(pk__in=held_task_ids)).update(
            desired_state=MetaModule.DesiredState.STOPPED, desired_state_by=request.actor,
            desired_state_at=timezone.now(), desired_state_reason="Resumed without schedulers")
        return []
    wanted = _schedulers_to_restore(held_task_ids)
    for index, task in enumerate(wanted):  # staggered, so the modules do not all fire at once
        PeriodicTask.objects.filter(pk=task.pk).update(enabled=True,
                                                       last_run_at=staggered_last_run(index, _every(task)))
    PeriodicTasks.update_changed()
    return [task.meta_module.code for task in wanted]


def _schedulers_to_restore(held_task_ids: list[int]) -> list[PeriodicTask]:
    """The tasks enabled before the stop of modules operators still want running, in the order they restart."""
    return list(_module_tasks().filter(pk__in=held_task_ids, meta_module__desired_state=MetaModule.DesiredState.RUNNING)
                .select_related("interval", "meta_module").order_by("meta_module__position"))


def _every(task: PeriodicTask) -> int:
    return task.interval.every if task.interval else 3600


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
    holds = list(CampaignHold.objects.filter(halt_run_id=state.halt_run_id,
                                             state__in=[CampaignHold.State.PAUSED, *UNCONFIRMED_STATES])
                 .order_by("account_id", "campaign_id"))
    paused = [h for h in holds if h.state == CampaignHold.State.PAUSED]
    reading = sorted({h.account_id for h in paused}) if request.resume_campaigns else []
    read = _parallel(lambda meta, a: (_account_currency(meta, a, deadline),
                                      _within_deadline(lambda: _current(meta, a), deadline)), reading, deadline)
    errors = [f"{a}: could not read its campaigns ({r}); resume would try again" for a, r in read.items()
              if isinstance(r, graph.MetaError)]
    campaigns: list[dict[str, str]] = []
    back: dict[str, list[dict[str, Any]]] = defaultdict(list)  # account → its campaigns coming back
    for hold in holds:
        seen = read.get(hold.account_id)
        row = {"campaign_id": hold.campaign_id, "account_id": hold.account_id, "name": hold.campaign_name}
        if isinstance(seen, graph.MetaError):
            campaigns.append({**row, "action": "unknown", "why": "", "reason": f"could not read it from Meta: {seen}"})
            continue
        verdict = (rules.UNCONFIRMED if hold.state != CampaignHold.State.PAUSED
                   else rules.NOT_REQUESTED if not request.resume_campaigns
                   else rules.resume_verdict(hold.prior_status, hold.paused_updated_time, hold.snapshot,
                                             seen[1].get(hold.campaign_id)))
        campaigns.append({**row, "action": "reactivate" if verdict.reactivate else "leave",
                          "why": verdict.leave or "", "reason": verdict.reason})
        if verdict.reactivate:
            back[hold.account_id].append(seen[1][hold.campaign_id])
    try:
        spend = stakes.per_currency(stakes.of_account(a, read[a][0], c) for a, c in back.items())
    except ValueError as exc:  # a budget Meta wrote unreadably: say so rather than guess a figure
        errors.append(f"Could not add up the daily budgets: {exc}")
        spend = []
    now = timezone.now()
    tasks = _schedulers_to_restore(state.held_task_ids) if request.resume_schedulers else []
    schedulers = [{"code": t.meta_module.code, "name": t.meta_module.name, "every_seconds": _every(t),
                   "first_run_in_seconds": stagger_delay(i, _every(t)),
                   "first_run_at": now + timedelta(seconds=stagger_delay(i, _every(t)))} for i, t in enumerate(tasks)]
    reactivating = sum(len(c) for c in back.values())
    leaving = sum(c["action"] == "leave" for c in campaigns)
    unread = sum(c["action"] == "unknown" for c in campaigns)
    return ResumeResult(
        success=not errors, run_id=None, awaiting_approval=False, schedulers_resumed=0, campaigns_resumed=0,
        campaigns_skipped=[], campaigns_pending=0, errors=errors, system_status=state.system_status,
        health_check_run_id=None, resumed_at=now,
        message=f"Dry run: would restart {len(schedulers)} schedulers and re-activate {reactivating} campaigns "
                f"({stakes.summary(spend)}); {leaving} would be left as they are"
                + (f"; {unread} could not be read from Meta now" if unread else "") + ". Nothing was changed.",
        dry_run=True, would_restart=len(schedulers), would_reactivate=reactivating,
        preview={"target": target(reading), "campaigns": campaigns, "schedulers": schedulers,
                 "spend": [row.to_json() for row in spend]})
