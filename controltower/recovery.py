"""The auto-recovery engine: act on the policy's verdicts, record every attempt, verify it.

Each action does what its name says:
- RESTART_SCHEDULER: enable the module's periodic task if operators want it running, close a
  run stuck past the task time limit (cooperatively: marked `timeout`), run the job once now;
- RECONNECT_DB: drop and re-open this process's database connections (checked with a query)
  and tell every worker process to do the same before its next task;
- CLEAR_CACHE: empty the module's cache namespace;
- RESET_MODULE: close the module's in-flight runs, empty its cache, restart its error window,
  then restart its scheduler;
- ALERT_ADMIN: the module needs a human — an escalation through the alert channels.
The immediate outcome is recorded at once; whether it healed is verified at the next check.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections
from django.db.models import Count, Q
from django.utils import timezone

from controltower import audit, schedules
from controltower.findings import CRITICAL, AlertCondition, infrastructure_conditions
from controltower.health import HealthReport, ModuleHealth
from controltower.models import ModuleStatus, RecoveryAttempt, RecoveryState
from controltower.recovery_policy import (
    Action,
    Facts,
    History,
    Policy,
    RecoveryProcedure,
    breaker_open,
    decide,
    procedures,
)
from meta_modules.cache import ModuleCache
from meta_modules.models import MetaModule, ModuleRun

DB_GENERATION_KEY = "tower:db-generation"
DATABASE = "database"  # RECONNECT_DB acts on the whole tower: its attempts are recorded under this name
FAILING = (ModuleStatus.OFFLINE, ModuleStatus.DEGRADED)


@dataclass
class RecoveryReport:
    attempts: list[RecoveryAttempt] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[AlertCondition] = field(default_factory=list)
    # module code → (attempts in window, last action, last attempt healed or its immediate outcome)
    per_module: dict[str, tuple[int, str, bool | None]] = field(default_factory=dict)


# --- actions --------------------------------------------------------------------------


def _restart_scheduler(module: MetaModule) -> tuple[bool, dict[str, Any]]:
    detail: dict[str, Any] = {}
    if schedules.re_enable(module):
        detail["re_enabled"] = True
    stuck_before = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    detail["stuck_runs_closed"] = ModuleRun.objects.filter(
        module=module,
        outcome=ModuleRun.Outcome.RUNNING,
        started_at__lt=stuck_before,
    ).update(
        outcome=ModuleRun.Outcome.TIMEOUT,
        finished_at=timezone.now(),
        error_message="Stuck past the task time limit; closed by recovery.",
    )
    run = schedules.run_module_now(module.code, trigger=ModuleRun.Trigger.RECOVERY)
    detail["immediate_run"] = run
    return run["outcome"] == ModuleRun.Outcome.SUCCESS, detail


def backend_id() -> Any:
    """The database session's identity: the server process id on PostgreSQL."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]
        cursor.execute("SELECT 1")
        return id(connection.connection)


def _reconnect_db() -> tuple[bool, dict[str, Any]]:
    before = None
    with contextlib.suppress(Exception):  # the connection may be the broken thing: that is why we reconnect
        before = backend_id()
    connections.close_all()
    detail: dict[str, Any] = {"before": before, "workers_told": True}
    try:  # worker processes compare this before each task and reconnect when it moved (see tasks.py)
        cache.set(DB_GENERATION_KEY, time.time_ns(), timeout=None)
    except Exception as exc:  # noqa: BLE001 - the shared cache is down too: this process reconnects all the same
        detail.update(workers_told=False, cache_error=f"{type(exc).__name__}: {exc}")
    started = time.perf_counter()
    try:
        detail["after"] = backend_id()
    except Exception as exc:  # noqa: BLE001 - still unreachable: the attempt failed, recorded as such
        return False, {**detail, "error": f"{type(exc).__name__}: {exc}"}
    return True, {**detail, "probe_ms": round((time.perf_counter() - started) * 1000, 2)}


def _clear_cache(module: MetaModule) -> tuple[bool, dict[str, Any]]:
    return True, {"cache_version": ModuleCache(module.code).clear()}


def _reset_module(module: MetaModule) -> tuple[bool, dict[str, Any]]:
    now = timezone.now()
    closed = schedules.cancel_in_flight(module, "Closed by RESET_MODULE recovery.")
    version = ModuleCache(module.code).clear()
    MetaModule.objects.filter(pk=module.pk).update(error_window_start=now)
    ok, restart = _restart_scheduler(module)
    return ok, {"in_flight_closed": closed, "cache_version": version, "error_window_start": now.isoformat(), **restart}


def run_action(module: MetaModule | None, procedure: RecoveryProcedure, trigger: str, actor: str) -> RecoveryAttempt:
    """Run one procedure (on `module`, or on the tower's database connections when None) and record it."""
    started = timezone.now()
    try:
        if procedure.action == Action.RESTART_SCHEDULER:
            ok, detail = _restart_scheduler(module)
        elif procedure.action == Action.RECONNECT_DB:
            ok, detail = _reconnect_db()
        elif procedure.action == Action.CLEAR_CACHE:
            ok, detail = _clear_cache(module)
        elif procedure.action == Action.RESET_MODULE:
            ok, detail = _reset_module(module)
        else:  # ALERT_ADMIN: the escalation is sent through the alert lifecycle of the cycle
            ok, detail = True, {"escalated": True}
    except Exception as exc:  # noqa: BLE001 - what it depends on is down (cache, broker): recorded as failed, the cycle goes on
        ok, detail = False, {"error": f"{type(exc).__name__}: {exc}"}
    attempt = RecoveryAttempt.objects.create(
        module_code=module.code if module else DATABASE,
        action=procedure.action,
        confidence=procedure.confidence,
        reason=procedure.reason,
        trigger=trigger,
        executed_by=actor,
        started_at=started,
        finished_at=timezone.now(),
        outcome=RecoveryAttempt.Outcome.SUCCEEDED if ok else RecoveryAttempt.Outcome.FAILED,
        detail=detail,
    )
    audit.record(
        "recovery",
        action=procedure.action.value,
        module=attempt.module_code,
        actor=actor,
        trigger=trigger,
        reason=procedure.reason,
        confidence=procedure.confidence,
        run_id=attempt.pk,
        outcome=attempt.outcome,
        error=detail.get("error", ""),
    )
    return attempt


# --- the engine -----------------------------------------------------------------------


def _facts(m: ModuleHealth) -> Facts:
    # An external module runs elsewhere: nothing here can restart it; its OFFLINE alert is the escalation.
    return Facts(
        status=m.status,
        stopped_on_purpose=m.status == ModuleStatus.STOPPED,
        desired_running=m.desired_state == MetaModule.DesiredState.RUNNING and not m.external,
        is_scheduler_running=m.is_scheduler_running,
        is_db_healthy=m.is_db_healthy,
        error_count_24h=m.error_count_24h,
        last_error=m.last_error,
    )


def _verify(report: HealthReport) -> None:
    """Did the previous attempts heal? The module is ONLINE at this check, or not."""
    healthy = {m.code: m.status == ModuleStatus.ONLINE for m in report.modules}
    healthy[DATABASE] = report.infrastructure.database.healthy
    for attempt in RecoveryAttempt.objects.filter(healed__isnull=True, started_at__lt=report.checked_at).exclude(
        action=Action.ALERT_ADMIN
    ):
        if attempt.module_code in healthy:
            attempt.healed = healthy[attempt.module_code]
            attempt.verified_at = report.checked_at
            attempt.save(update_fields=["healed", "verified_at"])


def _update_states(report: HealthReport, policy: Policy) -> dict[str, RecoveryState]:
    """Healthy for a while → the counter starts again and a human is no longer needed."""
    states = {s.module_code: s for s in RecoveryState.objects.all()}
    for m in report.modules:
        state = states.get(m.code) or RecoveryState(module_code=m.code)
        if m.status == ModuleStatus.ONLINE:
            state.healthy_since = state.healthy_since or report.checked_at
            if report.checked_at - state.healthy_since >= policy.reset_after_healthy:
                state.counter_reset_at, state.needs_human, state.needs_human_since = report.checked_at, False, None
        else:
            state.healthy_since = None
        state.save()
        states[m.code] = state
    return states


def _histories(states: dict[str, RecoveryState], now: datetime, policy: Policy) -> dict[str, History]:
    window_start = now - policy.window
    attempts = (
        RecoveryAttempt.objects.filter(trigger=RecoveryAttempt.Trigger.AUTO, started_at__gte=window_start)
        .exclude(action=Action.ALERT_ADMIN)
        .values_list("module_code", "started_at")
    )
    histories: dict[str, History] = {}
    states = {DATABASE: RecoveryState(module_code=DATABASE), **states}
    for code, state in states.items():
        since = max(window_start, state.counter_reset_at) if state.counter_reset_at else window_start
        times = [t for c, t in attempts if c == code and t >= since]
        histories[code] = History(len(times), max(times, default=None), state.needs_human)
    return histories


def _summaries(
    codes: list[str], histories: dict[str, History], since: datetime
) -> dict[str, tuple[int, str, bool | None]]:
    """Per module: attempts counted by the policy, the latest action in the window and its verdict."""
    latest: dict[str, RecoveryAttempt] = {}
    for attempt in RecoveryAttempt.objects.filter(module_code__in=codes, started_at__gte=since).order_by("-started_at"):
        latest.setdefault(attempt.module_code, attempt)

    def healed(attempt: RecoveryAttempt) -> bool:
        return attempt.healed if attempt.healed is not None else attempt.outcome == RecoveryAttempt.Outcome.SUCCEEDED

    return {
        code: (
            histories[code].attempts_in_window if code in histories else 0,
            latest[code].action if code in latest else "",
            healed(latest[code]) if code in latest else None,
        )
        for code in codes
    }


def module_summaries(
    codes: list[str], now: datetime, policy: Policy | None = None
) -> dict[str, tuple[int, str, bool | None]]:
    """For display (GET health): attempts counted by the policy, last action, whether it healed."""
    policy = policy or Policy.from_settings()
    states = {code: RecoveryState(module_code=code) for code in codes}
    states.update({s.module_code: s for s in RecoveryState.objects.filter(module_code__in=codes)})
    return _summaries(codes, _histories(states, now, policy), now - policy.window)


def _recommend(result: RecoveryReport, code: str, label: str, procedure: RecoveryProcedure, note: str) -> None:
    result.recommendations.append(
        {
            "severity": "warning",
            "module": code,
            "action": procedure.action.value,
            "confidence": procedure.confidence,
            "message": f"{label}: {procedure.action.value} (confidence {procedure.confidence:.0%}) — {procedure.reason}"
            + (f"; {note}" if note else ""),
        }
    )


def _recover_database(
    report: HealthReport, histories: dict[str, History], policy: Policy, result: RecoveryReport
) -> None:
    """One RECONNECT_DB for the whole tower (not one per module), under its own backoff."""
    procedure = RecoveryProcedure(
        Action.RECONNECT_DB, 0.85, f"database unhealthy: {report.infrastructure.database.error}"
    )
    verdict = decide([procedure], histories.get(DATABASE, History(0, None, False)), report.checked_at, DATABASE, policy)
    if verdict.execute:
        result.attempts.append(run_action(None, procedure, RecoveryAttempt.Trigger.AUTO, "recovery engine"))
    else:  # backing off, or given up: the infrastructure alert is already the escalation
        _recommend(result, "", "Database", procedure, verdict.note)


def _recover_modules(
    report: HealthReport, histories: dict[str, History], policy: Policy, result: RecoveryReport
) -> None:
    supervised = [m for m in report.modules if m.status != ModuleStatus.STOPPED]
    failing = [m for m in supervised if m.status in FAILING]
    breaker = breaker_open(len(failing), len(supervised), policy)
    # One escalation for all; none when an infrastructure alert already names the shared cause.
    if breaker and not any(c.severity == CRITICAL for c in infrastructure_conditions(report)):
        result.conditions.append(
            AlertCondition(
                "recovery:breaker",
                CRITICAL,
                f"Auto-recovery paused: {len(failing)} of {len(supervised)} modules failing at once",
                "A shared cause (broker, database, Meta) is likely; restarting modules one by one would only storm. "
                "Fix the cause; recovery resumes by itself when fewer modules fail.",
            )
        )
    modules = {
        m.code: m
        for m in MetaModule.objects.select_related("periodic_task").filter(code__in=[m.code for m in report.modules])
    }
    for m in report.modules:
        procs = [p for p in procedures(_facts(m), policy) if p.action != Action.RECONNECT_DB]  # done once, above
        verdict = decide(procs, histories[m.code], report.checked_at, m.code, policy)
        if breaker:
            for procedure in procs:
                _recommend(result, m.code, f"{m.code} {m.name}", procedure, "auto-recovery paused (breaker)")
            continue
        for procedure in verdict.recommend:
            _recommend(result, m.code, f"{m.code} {m.name}", procedure, "" if verdict.execute else verdict.note)
        if verdict.escalate:
            RecoveryState.objects.filter(module_code=m.code).update(
                needs_human=True, needs_human_since=report.checked_at
            )
            result.attempts.append(
                run_action(
                    modules[m.code],
                    RecoveryProcedure(Action.ALERT_ADMIN, 1.0, verdict.note),
                    RecoveryAttempt.Trigger.AUTO,
                    "recovery engine",
                )
            )
        if verdict.execute:
            result.attempts.append(
                run_action(modules[m.code], verdict.execute, RecoveryAttempt.Trigger.AUTO, "recovery engine")
            )
    for state in RecoveryState.objects.filter(needs_human=True):
        result.conditions.append(
            AlertCondition(
                f"recovery:{state.module_code}:needs_human",
                CRITICAL,
                f"Module {state.module_code} needs a human: auto-recovery gave up",
                f"{policy.max_attempts} attempts within {policy.window} did not heal it; left alone until an operator "
                "acts (restart_module / start_all) or it stays healthy.",
                state.module_code,
            )
        )


def success_rate(since: datetime) -> dict[str, Any]:
    """Automatic recovery since `since`, in one aggregate query: attempts, verified, healed, rate."""
    totals = RecoveryAttempt.objects.filter(trigger=RecoveryAttempt.Trigger.AUTO, started_at__gte=since).aggregate(
        attempts=Count("id", filter=~Q(action=Action.ALERT_ADMIN)),
        verified=Count("id", filter=~Q(action=Action.ALERT_ADMIN) & Q(healed__isnull=False)),
        healed=Count("id", filter=Q(healed=True)),
        escalations=Count("id", filter=Q(action=Action.ALERT_ADMIN)),
    )
    totals["success_rate"] = totals["healed"] / totals["verified"] if totals["verified"] else None
    return totals


def recover(report: HealthReport, policy: Policy | None = None) -> RecoveryReport:
    """One cycle of auto-recovery over a fresh health report. Never while the tower is halted."""
    policy = policy or Policy.from_settings()
    result = RecoveryReport()
    _verify(report)
    histories = _histories(_update_states(report, policy), report.checked_at, policy)
    if not report.halted:
        if not report.infrastructure.database.healthy:
            _recover_database(report, histories, policy, result)
        _recover_modules(report, histories, policy, result)
        histories = _histories({s.module_code: s for s in RecoveryState.objects.all()}, report.checked_at, policy)
    codes = [m.code for m in report.modules]
    result.per_module = _summaries(codes, histories, report.checked_at - policy.window)
    return result


def operator_action(code: str, action: str, actor: str, reason: str = "") -> RecoveryAttempt:
    """An operator runs a procedure by hand (commander.recover decides whether it may)."""
    module = (
        None if action == Action.RECONNECT_DB else MetaModule.objects.select_related("periodic_task").get(code=code)
    )
    return run_action(
        module,
        RecoveryProcedure(Action(action), 1.0, reason or "run by an operator"),
        RecoveryAttempt.Trigger.OPERATOR,
        actor,
    )
