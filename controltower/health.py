"""Health evaluation: gather facts from recorded runs and scheduler state, classify, persist.

Facts are gathered in a fixed number of queries whatever the number of modules: one for
the modules with their latest run and error (index-backed subqueries), one aggregate over
the last 24 h of runs, and one timed database probe.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Avg, Count, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from controltower import rules
from controltower.models import ControlTowerRun, ModuleStatus, RunType, SystemHealthLog, TowerState
from meta_modules.models import MetaModule, ModuleRun

FAILED = (ModuleRun.Outcome.FAILURE, ModuleRun.Outcome.TIMEOUT)
FINISHED = (ModuleRun.Outcome.SUCCESS, *FAILED)


@dataclass
class ModuleHealth:
    """Everything known about one module at one check. Unknown is None, never invented."""

    code: str
    name: str
    function: str
    status: str
    desired_state: str
    desired_state_by: str
    desired_state_reason: str
    runs_24h: int
    successes_24h: int
    failures_24h: int
    skipped_24h: int
    success_rate: float | None
    avg_execution_time_ms: int | None
    error_count_24h: int
    api_calls_24h: int
    api_errors_24h: int
    is_scheduler_running: bool
    is_db_healthy: bool
    is_api_healthy: bool
    scheduler_enabled: bool
    overdue: bool
    last_run: datetime | None
    next_run: datetime | None
    last_error: str
    last_error_time: datetime | None
    cpu_usage_pct: float | None
    peak_rss_mb: float | None


@dataclass
class DatabaseHealth:
    healthy: bool
    probe_ms: float | None
    error: str = ""
    pool_size: int | None = None
    active_connections: int | None = None


@dataclass
class HealthReport:
    checked_at: datetime
    system_status: str
    halted: bool
    modules: list[ModuleHealth]
    database: DatabaseHealth
    mode: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total_api_calls_24h(self) -> int:
        return sum(m.api_calls_24h for m in self.modules)

    @property
    def total_errors_24h(self) -> int:
        return sum(m.error_count_24h for m in self.modules)


def probe_database() -> DatabaseHealth:
    """A real round trip, timed; healthy when it answers within DB_HEALTHY_LATENCY_MS."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
            probe_ms = (time.perf_counter() - started) * 1000
            health = DatabaseHealth(healthy=probe_ms <= settings.DB_HEALTHY_LATENCY_MS, probe_ms=round(probe_ms, 2))
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT count(*), count(*) FILTER (WHERE state = 'active') "
                    "FROM pg_stat_activity WHERE datname = current_database()"
                )
                health.pool_size, health.active_connections = cursor.fetchone()
            return health
    except Exception as exc:  # the probe's job is to report the failure, not raise it
        return DatabaseHealth(healthy=False, probe_ms=None, error=f"{type(exc).__name__}: {exc}")


def _modules() -> QuerySet[MetaModule]:
    latest = ModuleRun.objects.filter(module=OuterRef("pk")).exclude(outcome=ModuleRun.Outcome.SKIPPED).order_by("-started_at")
    latest_error = ModuleRun.objects.filter(module=OuterRef("pk"), outcome__in=FAILED).order_by("-started_at")
    return MetaModule.objects.select_related("periodic_task__interval").annotate(
        last_run=Subquery(latest.values("started_at")[:1]),
        last_error=Subquery(latest_error.values("error_message")[:1]),
        last_error_time=Subquery(latest_error.values("started_at")[:1]),
    )


def _runs_24h(since: datetime) -> dict[Any, dict[str, Any]]:
    finished = Q(outcome__in=FINISHED)
    rows = (
        ModuleRun.objects.filter(started_at__gte=since)
        .values("module_id")
        .annotate(
            runs=Count("id", filter=finished),
            successes=Count("id", filter=Q(outcome=ModuleRun.Outcome.SUCCESS)),
            failures=Count("id", filter=Q(outcome__in=FAILED)),
            skipped=Count("id", filter=Q(outcome=ModuleRun.Outcome.SKIPPED)),
            avg_ms=Avg("duration_ms", filter=finished),
            api_calls=Sum("api_calls"),
            api_errors=Sum("api_errors"),
            cpu_ms=Sum("cpu_ms", filter=finished),
            wall_ms=Sum("duration_ms", filter=finished),
            peak_rss=Max("peak_rss_mb"),
        )
    )
    return {row["module_id"]: row for row in rows}


def _next_run(module: MetaModule, last_run: datetime | None) -> datetime | None:
    task = module.periodic_task
    if task is None or not task.enabled or task.interval is None:
        return None
    reference = task.last_run_at or last_run or task.date_changed
    return reference + timedelta(seconds=task.interval.every) if reference else None


def evaluate(now: datetime | None = None) -> HealthReport:
    """Evaluate every module and the system from facts. Reads only; writes nothing."""
    now = now or timezone.now()
    thresholds = rules.Thresholds.from_settings()
    database = probe_database()
    halted = TowerState.objects.filter(pk=1, emergency_stop_active=True).exists()
    aggregates = _runs_24h(now - timedelta(hours=24))
    modules: list[ModuleHealth] = []
    for module in _modules():
        agg = aggregates.get(module.pk, {})
        runs, successes, failures = agg.get("runs", 0), agg.get("successes", 0), agg.get("failures", 0)
        task = module.periodic_task
        enabled = bool(task and task.enabled)
        interval = timedelta(seconds=task.interval.every) if task and task.interval else None
        reference = module.last_run or (task.date_changed if task else None)
        overdue = bool(interval) and rules.is_overdue(reference, interval, thresholds.overdue_grace, now)
        stopped = module.desired_state == MetaModule.DesiredState.STOPPED
        api_calls, api_errors = agg.get("api_calls") or 0, agg.get("api_errors") or 0
        signals = rules.ModuleSignals(
            stopped_on_purpose=stopped,
            is_scheduler_running=enabled and not overdue,
            has_finished_run=module.last_run is not None,
            success_rate=successes / runs if runs else None,
            error_count_24h=failures,
            is_db_healthy=database.healthy,
            is_api_healthy=not module.calls_meta or api_calls == 0 or api_errors / api_calls <= settings.API_MAX_ERROR_RATIO,
        )
        modules.append(ModuleHealth(
            code=module.code, name=module.name, function=module.function,
            status=rules.module_status(signals, thresholds).value,
            desired_state=module.desired_state, desired_state_by=module.desired_state_by,
            desired_state_reason=module.desired_state_reason,
            runs_24h=runs, successes_24h=successes, failures_24h=failures, skipped_24h=agg.get("skipped", 0),
            success_rate=signals.success_rate,
            avg_execution_time_ms=round(agg["avg_ms"]) if agg.get("avg_ms") is not None else None,
            error_count_24h=failures, api_calls_24h=api_calls, api_errors_24h=api_errors,
            is_scheduler_running=signals.is_scheduler_running, is_db_healthy=database.healthy,
            is_api_healthy=signals.is_api_healthy, scheduler_enabled=enabled, overdue=overdue,
            last_run=module.last_run, next_run=_next_run(module, module.last_run),
            last_error=module.last_error or "", last_error_time=module.last_error_time,
            cpu_usage_pct=round(100 * agg["cpu_ms"] / agg["wall_ms"], 1) if agg.get("cpu_ms") and agg.get("wall_ms") else None,
            peak_rss_mb=agg.get("peak_rss"),
        ))
    statuses = [ModuleStatus(m.status) for m in modules]
    counts = {status.value: statuses.count(status) for status in ModuleStatus}
    return HealthReport(
        checked_at=now, system_status=rules.system_status(statuses, halted).value, halted=halted,
        modules=modules, database=database, mode=settings.META_MODE, counts=counts,
    )


@transaction.atomic
def persist(report: HealthReport, executed_by: str, execution_time_ms: int) -> ControlTowerRun:
    """Write 1 run + one log per module in one transaction and update the tower's state."""
    run = ControlTowerRun.objects.create(
        run_type=RunType.HEALTH_CHECK,
        system_status=report.system_status,
        total_modules_checked=len(report.modules),
        online_modules=report.counts[ModuleStatus.ONLINE],
        degraded_modules=report.counts[ModuleStatus.DEGRADED],
        offline_modules=report.counts[ModuleStatus.OFFLINE],
        module_health_details={m.code: m.status for m in report.modules},
        total_api_calls_24h=report.total_api_calls_24h,
        total_errors_24h=report.total_errors_24h,
        db_connection_pool_size=report.database.pool_size,
        db_active_connections=report.database.active_connections,
        db_query_avg_ms=report.database.probe_ms,
        errors_encountered=[report.database.error] if report.database.error else [],
        execution_time_ms=execution_time_ms,
        executed_by=executed_by,
        executed_at=report.checked_at,
        mode=report.mode,
    )
    SystemHealthLog.objects.bulk_create(
        SystemHealthLog(
            run=run, module_name=m.code, module_full_name=m.name, health_status=m.status,
            success_rate=m.success_rate, avg_execution_time_ms=m.avg_execution_time_ms,
            error_count_24h=m.error_count_24h, api_calls_24h=m.api_calls_24h,
            is_scheduler_running=m.is_scheduler_running, is_db_healthy=m.is_db_healthy,
            is_api_healthy=m.is_api_healthy, last_run=m.last_run, next_run=m.next_run,
            last_error=m.last_error, last_error_time=m.last_error_time,
            db_connections=report.database.active_connections, memory_usage_mb=m.peak_rss_mb, cpu_usage_pct=m.cpu_usage_pct,
            checked_at=report.checked_at, mode=report.mode,
        )
        for m in report.modules
    )
    # While halted the status stays EMERGENCY_STOP: only resume clears it.
    TowerState.get()
    TowerState.objects.filter(pk=1).update(
        system_status=F("system_status") if report.halted else report.system_status,
        last_health_check=report.checked_at,
    )
    return run


def run_check(executed_by: str) -> ControlTowerRun:
    started = time.perf_counter()
    report = evaluate()
    return persist(report, executed_by, round((time.perf_counter() - started) * 1000))
