"""The scheduler cycle (spec): probe → evaluate → recover → persist 1 run + N logs → alerts.

This module holds the cycle's own steps: `assess` (probe, evaluate) and `record` (persist,
alerts). The orchestrator (commander.health_cycle) composes them with the kill switch's upkeep
and auto-recovery, which acts on this check's facts; its effect shows (and is verified) at the
next check.

Only one cycle runs at a time (a database lease that holds on PostgreSQL and SQLite, taken by
the orchestrator with `lease_cycle`); a second one exits at once and is recorded as a skipped run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from controltower import alerts, findings, health, probes
from controltower.locks import lease
from controltower.models import (
    ControlTowerRun,
    ModuleStatus,
    RecoveryAttempt,
    RunState,
    RunType,
    SystemHealthLog,
    TowerState,
)
from meta_modules import throttle

if TYPE_CHECKING:  # recovery's result is handed in by the orchestrator: no dependency on the use case
    from controltower.recovery import RecoveryReport

logger = logging.getLogger(__name__)
CYCLE_LOCK = "health_cycle"
# The log's columns a module's health fills (the rest: the run, when and in which mode).
LOGGED = {f.name for f in SystemHealthLog._meta.concrete_fields} - {"id", "run", "checked_at", "mode"}


def refresh_probes() -> None:
    """Run the network probes once and keep their results for evaluations until the next cycle."""
    results = {
        "broker": probes.broker(),
        "meta_api": probes.meta_api(),
        "workers": probes.workers(),
        "meta_access_tiers": throttle.learnt_tiers(),
    }
    TowerState.set(probes=results)


@transaction.atomic
def persist(
    report: health.HealthReport,
    executed_by: str,
    execution_time_ms: int,
    conditions: list[findings.AlertCondition],
    recovered: RecoveryReport,
) -> ControlTowerRun:
    """Write 1 run + one log per module in one transaction, link the recoveries, update the state."""
    db = report.infrastructure.database
    run = ControlTowerRun.objects.create(
        run_type=RunType.HEALTH_CHECK,
        system_status=report.system_status,
        total_modules_checked=len(report.modules),
        online_modules=report.counts[ModuleStatus.ONLINE],
        degraded_modules=report.counts[ModuleStatus.DEGRADED],
        offline_modules=report.counts[ModuleStatus.OFFLINE],
        modules_expected=report.first_runs.expected,
        modules_run=report.first_runs.run,
        module_health_details={m.code: m.status for m in report.modules},
        errors_encountered=[c.as_dict() for c in findings.infrastructure_conditions(report)],
        total_api_calls_24h=report.total_api_calls_24h,
        total_errors_24h=report.total_errors_24h,
        total_campaigns_active=report.total_campaigns_active,
        total_daily_budget_usd=report.total_daily_budget_usd,
        db_connection_pool_size=db.pool_size,
        db_active_connections=db.active_connections,
        db_query_avg_ms=db.query_avg_ms,
        execution_time_ms=execution_time_ms,
        executed_by=executed_by,
        executed_at=report.checked_at,
        recommendations=findings.recommendations(report) + recovered.recommendations,
        recoveries_performed=[
            {
                "module": a.module_code,
                "action": a.action,
                "confidence": a.confidence,
                "reason": a.reason,
                "outcome": a.outcome,
                "detail": a.detail,
            }
            for a in recovered.attempts
        ],
        alerts=[c.as_dict() for c in conditions],
        mode=report.mode,
    )
    SystemHealthLog.objects.bulk_create(
        _health_log(run, report, m) for m in health.with_recovery(report.modules, recovered.per_module)
    )
    RecoveryAttempt.objects.filter(pk__in=[a.pk for a in recovered.attempts]).update(run=run)
    TowerState.health_checked(report.checked_at, report.system_status, report.halted)
    return run


def _health_log(run: ControlTowerRun, report: health.HealthReport, m: health.ModuleHealth) -> SystemHealthLog:
    return SystemHealthLog(
        run=run,
        checked_at=report.checked_at,
        mode=report.mode,
        **{
            column: getattr(m, f.name) for f in fields(m) if (column := health.SPEC_NAMES.get(f.name, f.name)) in LOGGED
        },
    )


@contextmanager
def lease_cycle() -> Iterator[bool]:
    """The cycle's lease: yields whether this process holds it (another cycle is running if not)."""
    with lease(CYCLE_LOCK, timedelta(seconds=settings.HEALTH_CYCLE_LOCK_SECONDS)) as acquired:
        if not acquired:
            logger.info("Health cycle skipped: another one holds the lock")
        yield acquired


def skipped(executed_by: str) -> ControlTowerRun:
    """The run recorded by a cycle that found another one running."""
    state = TowerState.get()
    return ControlTowerRun.objects.create(
        run_type=RunType.HEALTH_CHECK,
        state=RunState.SKIPPED,
        system_status=state.system_status,
        executed_by=executed_by,
        execution_time_ms=0,
        mode=settings.META_MODE,
        actions_executed=[{"action": "skipped", "detail": "Another health cycle is running."}],
    )


def assess() -> health.HealthReport:
    """The check: fresh probe results, then every module and the infrastructure evaluated."""
    refresh_probes()
    return health.evaluate()


def record(
    report: health.HealthReport,
    recovered: RecoveryReport,
    executed_by: str,
    started: float,
    found: list[findings.AlertCondition],
) -> ControlTowerRun:
    """Persist the check with what recovery did, then raise/resolve alerts and notify, with the
    conditions `found` by the cycle's other checks (the kill switch's readiness, the latest fire
    drill). `started`
    (perf_counter) is when the cycle began, for its execution time."""
    conditions = findings.alert_conditions(report) + recovered.conditions + found
    run = persist(report, executed_by, round((time.perf_counter() - started) * 1000), conditions, recovered)
    news = alerts.update(conditions, run, report.halted, now=report.checked_at)
    alerts.notify(news, report.system_status, run)
    return run


def heartbeat() -> None:
    """Executed by a worker on Beat's schedule: proves both alive."""
    TowerState.set(worker_heartbeat_at=timezone.now())
