"""Fire drills: prove on campaigns kept for the purpose that the kill switch's pause and
re-activation work end to end, without an emergency stop.

An operator designates canaries (at most one campaign per ad account, e.g. a tiny-budget one). A
drill, asked for by an operator or by DRILL_SCHEDULE, works on every canary, accounts in parallel
(controltower.fanout, as the stop and resume do):
 1. reads it: only a canary configured ACTIVE (rules.is_running) is drilled; any other fails the
    drill with why and is not touched;
 2. pauses it with the stop's own call (fanout.pause_call), timed, confirmed PAUSED by the answer;
 3. re-activates it with resume's own call (fanout.reactivate_call) under the write guard (nothing
    is re-activated while halted), timed, then reads it to confirm it is ACTIVE;
 4. if a halt began meanwhile, pauses it again: a drill never undoes a stop.
It touches no other campaign. Refused while halted (recorded as refused). It passes only if every
canary paused and came back. A failed drill sends a message at once, and the latest drill with a
verdict holds the health cycle's `drill:failed` condition (findings.drill_conditions) until a
later drill passes.

Threads only talk to Meta; every database write happens in the calling thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from controltower import audit, channels, fanout, rules
from controltower.models import CampaignHold, Canary, FireDrill, Notification
from meta_modules import graph
from meta_modules.errors import RETRYABLE
from meta_modules.gate import operations_halted

logger = logging.getLogger(__name__)

STATUS_FIELDS = "id,name,status,effective_status"
# Where a canary's drill stopped (a result's `failed_at`); "pause" means the stop's own call failed.
READ, NOT_RUNNING, PAUSE, REACTIVATE, HALT, UNEXPECTED = (
    "read",
    "not_running",
    "pause",
    "reactivate",
    "halt",
    "unexpected",
)
PASSED, FAILED = FireDrill.State.PASSED, FireDrill.State.FAILED  # a canary's outcome, as a drill's


class DrillRefused(Exception):
    """The drill cannot run now (another one runs, no canary is designated): answered 409."""


class InvalidCanary(Exception):
    """A designation the operator must correct: field name → messages (answered 400)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(m for messages in errors.values() for m in messages))
        self.errors = errors


class CanaryTaken(Exception):
    """The account already has a canary, or the campaign already is one (answered 409)."""


class MetaUnavailable(Exception):
    """Meta could not be asked whether the campaign exists (answered 503): nothing was designated."""


# --- pure rules -------------------------------------------------------------------------------


def verdict(results: list[dict[str, Any]]) -> str:
    """Passed only if there were canaries and every one paused and came back."""
    return (
        FireDrill.State.PASSED if results and all(r["outcome"] == PASSED for r in results) else FireDrill.State.FAILED
    )


def slowest(results: list[dict[str, Any]], key: str) -> int | None:
    """The slowest measured round trip of `key` (paused_ms, resumed_ms), None if none was measured."""
    return max((r[key] for r in results if r.get(key) is not None), default=None)


def summary(results: list[dict[str, Any]]) -> str:
    """One line for people: how many canaries, how fast, and each failure with why."""
    failed = [r for r in results if r["outcome"] != PASSED]
    pause, resume = slowest(results, "paused_ms"), slowest(results, "resumed_ms")
    times = f"slowest pause {pause} ms, slowest re-activation {resume} ms" if pause is not None else "nothing paused"
    canaries = f"{len(results)} {'canary' if len(results) == 1 else 'canaries'}"
    if not failed:
        return f"Passed: {canaries} paused and re-activated ({times})."
    reasons = "; ".join(f"{r['account']} {r['campaign_id']}: {r['error']}" for r in failed)
    return f"Failed: {len(failed)} of {canaries} ({times}). {reasons}"


def _ms(since: float, until: float | None) -> int:
    return round(((until if until is not None else time.monotonic()) - since) * 1000)


# --- the drill --------------------------------------------------------------------------------


def _status_call(canary: Canary) -> graph.BatchCall:
    return graph.BatchCall(canary.campaign_id, "GET", canary.campaign_id, {"fields": STATUS_FIELDS})


def _deadline() -> float:
    """Each step is bounded like a stop: by the kill switch's deadline."""
    return time.monotonic() + settings.EMERGENCY_STOP_DEADLINE_SECONDS


def _timed_send(
    canaries: list[Canary], call: Callable[[Canary], graph.BatchCall], **options: Any
) -> tuple[dict[str, fanout.Answer], dict[str, int]]:
    """fanout.send, with each campaign's round trip (ms until its account's last answer)."""
    answered: dict[str, float] = {}
    started = time.monotonic()
    answers, _ = fanout.send(canaries, call, _deadline(), answered=answered, **options)
    return answers, {c.campaign_id: _ms(started, answered.get(c.account_id)) for c in canaries}


def _drill(canaries: list[Canary]) -> list[dict[str, Any]]:
    results = {
        c.campaign_id: {
            "account": c.account_id,
            "campaign_id": c.campaign_id,
            "name": c.name,
            "paused_ms": None,
            "resumed_ms": None,
            "outcome": FAILED,
            "failed_at": "",
            "error": "",
        }
        for c in canaries
    }

    def fail(canary: Canary, step: str, error: str) -> None:
        result = results[canary.campaign_id]
        if not result["failed_at"]:  # the first failure says why
            result["failed_at"], result["error"] = step, error

    read, _ = fanout.send(canaries, _status_call, _deadline())
    running: list[Canary] = []
    for canary in canaries:
        error, body = read[canary.campaign_id]
        if body is None:
            fail(canary, READ, f"could not be read, not touched: {error}")
        elif not rules.is_running(body):
            fail(
                canary,
                NOT_RUNNING,
                f"not running on Meta (status {body.get('status')}, effective {body.get('effective_status')}), "
                "not touched",
            )
        else:
            running.append(canary)

    paused, took = _timed_send(running, fanout.pause_call)
    for canary in running:
        error, body = paused[canary.campaign_id]
        if body is not None and body.get("status") == "PAUSED":
            results[canary.campaign_id]["paused_ms"] = took[canary.campaign_id]
        else:
            fail(canary, PAUSE, f"the stop's pause was not confirmed: {error or f'Meta answered {body}'}")

    # Every canary a pause was sent to is re-activated, confirmed or not: one whose answer was lost
    # may be paused all the same, and re-activating an ACTIVE campaign changes nothing.
    back, took = _timed_send(running, fanout.reactivate_call, allow_while_halted=False)
    sent_back = []
    for canary in running:
        error, _ = back[canary.campaign_id]
        if error is None:
            sent_back.append(canary)
        elif error.message == fanout.HALTED:
            fail(canary, HALT, "an emergency stop began during the drill: left paused (a drill never undoes a stop)")
        else:
            fail(canary, REACTIVATE, f"resume's re-activation failed: {error}")
    confirmed, _ = fanout.send(sent_back, _status_call, _deadline())
    for canary in sent_back:
        error, body = confirmed[canary.campaign_id]
        if body is not None and rules.is_running(body):
            results[canary.campaign_id]["resumed_ms"] = took[canary.campaign_id]
        else:
            fail(canary, REACTIVATE, f"not confirmed ACTIVE after the re-activation: {error or body}")

    if sent_back and operations_halted():  # a halt began while re-activating: the stop wins
        again, _ = fanout.send(sent_back, fanout.pause_call, _deadline())
        for canary in sent_back:
            error, body = again[canary.campaign_id]
            left = "left paused" if body is not None else f"PAUSING IT AGAIN FAILED ({error}): check it on Meta"
            result = results[canary.campaign_id]
            earlier = f"; before that: {result['error']}" if result["error"] else ""
            # The halt says most about this canary now, whatever failed before it.
            result["failed_at"] = HALT
            result["error"] = f"an emergency stop began during the drill: {left} (a drill never undoes a stop){earlier}"

    for result in results.values():
        if not result["failed_at"]:
            result["outcome"] = PASSED
    return list(results.values())


# --- canaries ---------------------------------------------------------------------------------


def designate(account_id: str, campaign_id: str, actor: str, reason: str) -> Canary:
    """Make a campaign its account's canary: one per account, never twice (CanaryTaken), and it must
    exist on Meta in that account, read now (InvalidCanary, or MetaUnavailable when Meta cannot say)."""
    account = fanout.act_ids([account_id])[0]
    current = Canary.objects.filter(account_id=account).first()
    if current is not None:
        raise CanaryTaken(f"{account} already has a canary ({current.campaign_id}): remove it first.")
    if Canary.objects.filter(campaign_id=campaign_id).exists():
        raise CanaryTaken(f"Campaign {campaign_id} is already a canary.")
    campaign = _read_campaign(account, campaign_id)
    if f"act_{campaign.get('account_id')}" != account:
        raise InvalidCanary({"campaign_id": [f"Campaign {campaign_id} is not in ad account {account} on Meta."]})
    try:
        with transaction.atomic():
            canary = Canary.objects.create(
                account_id=account,
                campaign_id=campaign_id,
                name=str(campaign.get("name", ""))[:400],
                designated_by=actor,
                reason=reason,
            )
    except IntegrityError:  # designated meanwhile by someone else
        raise CanaryTaken("Designated meanwhile: this account or this campaign has a canary now.") from None
    audit.record("canary_designated", actor=actor, reason=reason, account=account, campaign_id=campaign_id)
    return canary


def _read_campaign(account: str, campaign_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + settings.EMERGENCY_STOP_PREVIEW_SECONDS
    try:
        with graph.client().bounded(deadline) as meta:
            return fanout.within_deadline(
                lambda: meta.get(campaign_id, {"fields": "id,name,account_id,status,effective_status"}, account),
                deadline,
            )
    except graph.MetaError as exc:
        if exc.kind in (*RETRYABLE, graph.ErrorKind.AUTH, graph.ErrorKind.DEPRECATED_VERSION):
            raise MetaUnavailable(f"Meta could not be asked about campaign {campaign_id}: {exc}") from exc
        raise InvalidCanary({"campaign_id": [f"Campaign {campaign_id} could not be read on Meta: {exc}"]}) from exc


def release(canary: Canary, actor: str, reason: str) -> None:
    """The campaign is no longer a canary (nothing is done to it on Meta)."""
    canary.delete()
    audit.record(
        "canary_released", actor=actor, reason=reason, account=canary.account_id, campaign_id=canary.campaign_id
    )


# --- drills -----------------------------------------------------------------------------------


def refused(actor: str, reason: str, trigger: str, why: str) -> FireDrill:
    """A drill asked for and not run: recorded with why."""
    drill = FireDrill.refused(actor, reason, trigger, why)
    audit.record("fire_drill", actor=actor, reason=reason, drill_id=drill.pk, trigger=trigger, outcome="refused")
    return drill


def run(actor: str, reason: str, trigger: str) -> FireDrill:
    """Drill every canary now (the orchestrator has refused it while halted). Raises DrillRefused
    when no canary is designated or another drill is running."""
    canaries = list(Canary.objects.all())
    if not canaries:
        raise DrillRefused("No canary campaign is designated: designate one per ad account first.")
    busy = CampaignHold.objects.filter(
        campaign_id__in=[c.campaign_id for c in canaries],
        state__in=(CampaignHold.State.PENDING, CampaignHold.State.RESUMING),
    ).first()
    if busy is not None:  # a drill's pause would look like a person's edit to the kill switch
        raise DrillRefused(f"The kill switch is still working on canary {busy.campaign_id} ({busy.state}).")
    drill = FireDrill.begin(actor, reason, trigger)
    if drill is None:
        running = FireDrill.running()
        since = (
            f" (by {running.executed_by} since {timezone.localtime(running.started_at):%H:%M:%S})" if running else ""
        )
        raise DrillRefused(f"A fire drill is already running{since}: one at a time.")
    try:
        results = _drill(canaries)
        state, message = verdict(results), summary(results)
    except Exception as exc:  # noqa: BLE001 - the drill is recorded and alerted whatever happened
        logger.exception("Fire drill %s failed unexpectedly", drill.pk)
        results, state = [], FireDrill.State.FAILED
        message = f"Failed unexpectedly ({type(exc).__name__}: {exc}): check the canaries on Meta."
    drill.finish(
        state,
        results=results,
        pause_ms=slowest(results, "paused_ms"),
        resume_ms=slowest(results, "resumed_ms"),
        message=message,
    )
    audit.record(
        "fire_drill",
        actor=actor,
        reason=reason,
        drill_id=drill.pk,
        trigger=trigger,
        outcome=state,
        canaries=len(canaries),
        pause_ms=drill.pause_ms,
        resume_ms=drill.resume_ms,
    )
    if state == FireDrill.State.FAILED:
        channels.deliver(_failure_alert(drill))
    return drill


def _failure_alert(drill: FireDrill) -> channels.Message:
    return channels.Message(
        kind=Notification.Kind.DRILL,
        subject=f"FIRE DRILL FAILED ({drill.get_trigger_display().lower()}, by {drill.executed_by})",
        body=f"Reason: {drill.reason}\n{drill.message}",
        payload={
            "event": "fire_drill_failed",
            "drill_id": str(drill.pk),
            "actor": drill.executed_by,
            "trigger": drill.trigger,
            "results": drill.results,
        },
    )
