"""Module runs done in parts: the jobs that work per ad account, spread over the Celery workers.

`@account_job(code, accounts)` registers `work(run, account) -> counts` as module `code`'s task.
The task (the dispatch) lists the accounts, records one `ModuleRunPart` per
MODULE_ACCOUNTS_PER_TASK of them and sends each part to the workers as a task of its own; when the
broker cannot take them, or the module runs here ("run now", tests), the parts run inside the
dispatch. The module still has one `ModuleRun`: no result backend is needed, the parts report to
the database and whichever reports last (the dispatch counts as one) closes the run, by a
conditional update on the count still pending. A part that has not reported by the run's deadline
(its worker died, it hung) is recorded lost and the run closed without it, by the next dispatch of
any module, a check sent for the deadline, or whoever calls `close_overdue()`.

Within a part every account is worked on alone: an account Meta is blocking is deferred with the
reason (not waited on), an account that fails is recorded with its error, and the others go on.
A part refuses to start while the tower is halted or the module stopped, and the Graph client
refuses its writes if a halt comes while it runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from meta_modules import registry
from meta_modules.graph import ErrorKind, MetaError, Scope, WriteRefused, client
from meta_modules.models import ModuleRun, ModuleRunPart
from meta_modules.runs import RunContext, counting_into, execute, refusal_reason

logger = logging.getLogger(__name__)

Counts = Mapping[str, Any]  # what the work did on one account: numbers (summed) and lists (merged)
Accounts = Callable[[RunContext], list[str]]
Work = Callable[[RunContext, str], Counts]

DONE, FAILED, DEFERRED, REFUSED, LOST = "done", "failed", "deferred", "refused", "lost"
LOST_REASON = "No report by the run's deadline: its worker died, or it hung."
ERROR_CHARS = 300  # per account, in the run's summary


@dataclass(frozen=True)
class AccountJob:
    accounts: Accounts
    work: Work


JOBS: dict[str, AccountJob] = {}


# --- the verdict (pure) ---------------------------------------------------------------------------


def merge(counts: Iterable[Counts]) -> dict[str, Any]:
    """The accounts' counts as one: numbers summed, lists merged (sorted, once each)."""
    total: dict[str, Any] = {}
    for each in counts:
        for key, value in each.items():
            if isinstance(value, list):
                total[key] = sorted(set(total.get(key, [])) | set(value))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


@dataclass(frozen=True)
class Verdict:
    outcome: str
    error: str
    summary: dict[str, Any]


def verdict(results: Mapping[str, Mapping[str, Any]]) -> Verdict:
    """The module's one outcome from each account's result. Any account failed: failure; any lost
    (no report by the deadline): timeout; nothing done because the tower halted: skipped; nothing
    done because Meta blocked every account: failure; else success. Deferred and refused accounts
    are reported either way."""
    by_status: dict[str, dict[str, str]] = {s: {} for s in (DONE, FAILED, DEFERRED, REFUSED, LOST)}
    for account, result in sorted(results.items()):
        by_status[result["status"]][account] = (result.get("error") or result.get("reason") or "")[:ERROR_CHARS]
    done = [r for r in results.values() if r["status"] == DONE]
    summary: dict[str, Any] = {
        **merge({k: v for k, v in r.items() if k != "status"} for r in done),
        **{f"accounts_{status}": len(accounts) for status, accounts in by_status.items()},
        **{status: by_status[status] for status in (FAILED, DEFERRED, REFUSED, LOST) if by_status[status]},
    }
    failed, lost = by_status[FAILED], by_status[LOST]
    if failed:
        first = "; ".join(f"{a}: {e}" for a, e in list(failed.items())[:3])
        return Verdict(
            ModuleRun.Outcome.FAILURE, f"{len(failed)} of {len(results)} ad accounts failed: {first}", summary
        )
    if lost:
        account, why = next(iter(lost.items()))
        return Verdict(
            ModuleRun.Outcome.TIMEOUT,
            f"{len(lost)} of {len(results)} ad accounts not done by the run's deadline: {account}: {why}",
            summary,
        )
    if results and not done and by_status[REFUSED]:
        return Verdict(ModuleRun.Outcome.SKIPPED, next(iter(by_status[REFUSED].values())), summary)
    if results and not done:
        return Verdict(ModuleRun.Outcome.FAILURE, f"Meta blocked all {len(results)} ad accounts: none done.", summary)
    return Verdict(ModuleRun.Outcome.SUCCESS, "", summary)


def part_seconds(spec: registry.ModuleSpec) -> int:
    """How long a run's parts have: the setting, but never past the module's next run."""
    return min(settings.MODULE_PART_DEADLINE_SECONDS, spec.every_seconds)


# --- one part ---------------------------------------------------------------------------------------


def _work_on(job: AccountJob, run: RunContext, account: str) -> dict[str, Any]:
    """One account's result; never raises but for the part's own time limit."""
    throttle = client().throttle
    blocked = max(throttle.blocked_for(account, Scope.ACCOUNT), throttle.blocked_for(account, Scope.INSIGHTS))
    if blocked > 0:
        return {"status": DEFERRED, "reason": f"Rate-limited by Meta for another {blocked:.0f}s: left to the next run."}
    try:
        return {"status": DONE, **job.work(run, account)}
    except MetaError as error:
        if error.deadline_only:  # not sent: the run's deadline came first
            return {"status": LOST, "reason": str(error)}
        if error.kind == ErrorKind.RATE_LIMITED:
            return {"status": DEFERRED, "reason": str(error)}
        return {"status": FAILED, "error": str(error)}
    except WriteRefused as refused:
        return {"status": REFUSED, "reason": str(refused)}
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        logger.exception("Module %s failed on ad account %s", run.module_code, account)
        return {"status": FAILED, "error": f"{type(exc).__name__}: {exc}"}


def _report(part_id: Any, run_id: Any, state: str, **fields: Any) -> None:
    """Record a part's end once (from open), count it off its run, and close the run if it was the last."""
    with transaction.atomic():
        ended = ModuleRunPart.objects.filter(pk=part_id, state__in=ModuleRunPart.OPEN).update(
            state=state, finished_at=timezone.now(), **fields
        )
        if ended:
            ModuleRun.objects.filter(pk=run_id).update(parts_pending=F("parts_pending") - 1)
    if ended:
        _close(run_id)


def run_part(part_id: Any, task_id: str = "", now: datetime | None = None) -> None:
    """Work on one part's accounts, if it is still pending and within its deadline."""
    started = timezone.now()
    claimed = ModuleRunPart.objects.filter(
        pk=part_id, state=ModuleRunPart.State.PENDING, deadline_at__gt=started
    ).update(state=ModuleRunPart.State.RUNNING, started_at=started, celery_task_id=task_id)
    if not claimed:  # taken already, or past its deadline (then close_overdue records it lost)
        return
    part = ModuleRunPart.objects.select_related("run__module").get(pk=part_id)
    module = part.run.module
    refusal = refusal_reason(module)
    if refusal:
        results = {account: {"status": REFUSED, "reason": refusal} for account in part.accounts}
        _report(part.pk, part.run_id, ModuleRunPart.State.REFUSED, results=results, error=refusal)
        return
    job = JOBS[module.code]
    context = RunContext(run_id=part.run_id, module_code=module.code, **({"now": now} if now else {}))
    results: dict[str, Any] = {}
    cpu_start = time.thread_time()
    seconds_left = (part.deadline_at - timezone.now()).total_seconds()
    try:
        with counting_into(context), client().bounded(time.monotonic() + seconds_left):
            for account in part.accounts:
                results[account] = _work_on(job, context, account)
    except SoftTimeLimitExceeded:
        for account in part.accounts:
            results.setdefault(account, {"status": LOST, "reason": "The part's time limit came first."})
    _report(
        part.pk,
        part.run_id,
        ModuleRunPart.State.DONE,
        results=results,
        api_calls=context.api_calls,
        api_errors=context.api_errors,
        cpu_ms=round((time.thread_time() - cpu_start) * 1000),
    )


@shared_task(name="meta_modules.parts.run_part", bind=True)
def run_part_task(self: Any, part_id: str) -> None:
    run_part(part_id, task_id=self.request.id or "")


# --- closing the run --------------------------------------------------------------------------------


def _lose(parts: Iterable[tuple[Any, Any, list[str]]]) -> None:
    for part_id, run_id, accounts in parts:
        results = {account: {"status": LOST, "reason": LOST_REASON} for account in accounts}
        with transaction.atomic():
            if ModuleRunPart.objects.filter(pk=part_id, state__in=ModuleRunPart.OPEN).update(
                state=ModuleRunPart.State.LOST, finished_at=timezone.now(), results=results, error=LOST_REASON
            ):
                ModuleRun.objects.filter(pk=run_id).update(parts_pending=F("parts_pending") - 1)


def _close(run_id: Any) -> None:
    """Close the run once: when nothing is pending, or its deadline passed (what is open is lost)."""
    now = timezone.now()
    claimed = (
        ModuleRun.objects.filter(pk=run_id, outcome=ModuleRun.Outcome.RUNNING, finished_at__isnull=True)
        .filter(Q(parts_pending=0) | Q(parts_deadline__lte=now))
        .update(finished_at=now)
    )
    if not claimed:
        return
    _lose(
        ModuleRunPart.objects.filter(run_id=run_id, state__in=ModuleRunPart.OPEN).values_list(
            "pk", "run_id", "accounts"
        )
    )
    run = ModuleRun.objects.get(pk=run_id)
    parts = run.parts.all()
    results = {account: result for part in parts.values_list("results", flat=True) for account, result in part.items()}
    # The parts run here are in the dispatch's own CPU time already; their Meta calls are not.
    figures = parts.aggregate(
        calls=Sum("api_calls"), errors=Sum("api_errors"), cpu=Sum("cpu_ms", filter=Q(queued=True))
    )
    found = verdict(results)
    ModuleRun.objects.filter(pk=run_id, outcome=ModuleRun.Outcome.RUNNING).update(
        outcome=found.outcome,
        error_message=found.error[:5000],
        duration_ms=round((now - run.started_at).total_seconds() * 1000),
        api_calls=run.api_calls + (figures["calls"] or 0),
        api_errors=run.api_errors + (figures["errors"] or 0),
        cpu_ms=(run.cpu_ms or 0) + (figures["cpu"] or 0),
        summary={**run.summary, **found.summary},
    )


def close_overdue() -> int:
    """Record every open part past its deadline lost and close the runs that were waiting on them
    (or whose own dispatch never reported). Returns how many parts were lost."""
    now = timezone.now()
    overdue = list(
        ModuleRunPart.objects.filter(state__in=ModuleRunPart.OPEN, deadline_at__lte=now).values_list(
            "pk", "run_id", "accounts"
        )
    )
    _lose(overdue)
    waiting = ModuleRun.objects.filter(outcome=ModuleRun.Outcome.RUNNING, parts_deadline__lte=now).values_list(
        "pk", flat=True
    )
    for run_id in {run_id for _, run_id, _ in overdue} | set(waiting):
        _close(run_id)
    return len(overdue)


@shared_task(name="meta_modules.parts.close_overdue")
def close_overdue_task() -> int:
    return close_overdue()


# --- the dispatch ------------------------------------------------------------------------------------


def _send(parts: list[ModuleRunPart], deadline: datetime) -> int:
    """Send the parts to the workers, in order, until the broker fails; how many were sent."""
    seconds = max(1.0, (deadline - timezone.now()).total_seconds())
    sent = 0
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=settings.PROBE_TIMEOUT_SECONDS
            )
            for part in parts:
                run_part_task.apply_async(
                    args=[str(part.pk)],
                    connection=conn,
                    retry=False,
                    expires=deadline,
                    soft_time_limit=seconds,
                    time_limit=seconds + 30,
                )
                sent += 1
            # Whoever reports last closes the run; this check closes it if some never report.
            close_overdue_task.apply_async(connection=conn, retry=False, countdown=seconds + 1)
    except Exception as exc:  # noqa: BLE001 - any broker failure: the parts not sent run here
        logger.warning(
            "Broker unavailable for module run parts (%s): %d of %d run here", exc, len(parts) - sent, len(parts)
        )
    return sent


def _dispatch(run: RunContext, queue: bool) -> dict[str, Any]:
    close_overdue()
    job = JOBS[run.module_code]
    accounts = job.accounts(run)
    size = settings.MODULE_ACCOUNTS_PER_TASK
    deadline = timezone.now() + timedelta(seconds=part_seconds(registry.get(run.module_code)))
    with transaction.atomic():
        parts = ModuleRunPart.objects.bulk_create(
            [
                ModuleRunPart(run_id=run.run_id, accounts=accounts[i : i + size], deadline_at=deadline)
                for i in range(0, len(accounts), size)
            ]
        )
        # The dispatch counts as one more part: the run cannot close before it has reported.
        ModuleRun.objects.filter(pk=run.run_id).update(parts_pending=len(parts) + 1, parts_deadline=deadline)
    sent = _send(parts, deadline) if queue and parts else 0
    if sent:
        ModuleRunPart.objects.filter(pk__in=[p.pk for p in parts[:sent]]).update(queued=True)
    for part in parts[sent:]:
        run_part(part.pk, now=run.now)
    return {"accounts": len(accounts), "parts": len(parts), "parts_queued": sent, "parts_here": len(parts) - sent}


def run_module(
    code: str, trigger: str = ModuleRun.Trigger.SCHEDULE, task_id: str = "", queue: bool = True
) -> ModuleRun:
    """One run of an account job: dispatch its parts (to the workers if `queue` and the broker
    takes them, else here), then report the dispatch itself as done."""

    def dispatch(run: RunContext) -> dict[str, Any]:
        return _dispatch(run, queue)

    run = execute(code, dispatch, trigger=trigger, celery_task_id=task_id, in_parts=True)
    if run.parts_pending is not None:  # not refused: the dispatch is one of the parts to report
        ModuleRun.objects.filter(pk=run.pk).update(parts_pending=F("parts_pending") - 1)
        _close(run.pk)
        run.refresh_from_db()
    return run


def account_job(code: str, accounts: Accounts) -> Callable[[Work], Any]:
    """Register `work(run, account)` as module `code`'s task (task name from the registry), done
    in parts over `accounts(run)`."""
    spec = registry.get(code)

    def decorate(work: Work) -> Any:
        JOBS[code] = AccountJob(accounts, work)

        @shared_task(name=spec.task, bind=True)
        def task(self: Any, trigger: str = ModuleRun.Trigger.SCHEDULE) -> str:
            # Delivered by a worker: the parts go to the workers. Called here (run now, tests): here.
            queue = bool(self.request.id) and not self.request.is_eager
            return str(run_module(code, trigger, self.request.id or "", queue).pk)

        return task

    return decorate
