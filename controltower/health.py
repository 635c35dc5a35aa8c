"""Health evaluation: facts from recorded runs, scheduler state and probes → verdicts.

`evaluate()` reads and writes nothing (GET /health uses it); `with_recovery()` adds each module's
recovery summary for GET health and the cycle's log. Facts are gathered in a fixed
number of queries whatever the number of modules: the modules with their latest run and
error (index-backed subqueries), one aggregate over the last 24 h of runs, the tower state,
the heartbeat task, the campaign mirror totals and the timed database probe. The probes
that cost a network round trip (broker, Meta API, worker ping) run once per cycle; their
latest results are kept on TowerState.probes and read from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django_celery_beat.models import PeriodicTask

from controltower import probes, rules
from controltower.models import ModuleStatus, TowerState
from controltower.schedules import HEARTBEAT_TASK
from meta_modules import clock, days
from meta_modules.models import AdAccount, Campaign, MetaModule, ModuleRun, SpendSpike
from meta_modules.money import money

FAILED = (ModuleRun.Outcome.FAILURE, ModuleRun.Outcome.TIMEOUT)
FINISHED = (ModuleRun.Outcome.SUCCESS, *FAILED)


@dataclass
class ModuleHealth:
    """Everything known about one module at one check. Unknown is None, never invented.

    The one shape of the module health record: GET health serializes it as it is, and the cycle
    logs it (a SystemHealthLog row, under the spec's names: SPEC_NAMES).
    """

    code: str
    name: str
    function: str
    status: str
    desired_state: str
    desired_state_by: str
    desired_state_reason: str
    desired_state_at: datetime | None
    calls_meta: bool
    external: bool  # runs outside this codebase and reports its runs; the tower cannot restart it
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
    first_run_overdue: bool  # no run finished within STARTING_GRACE_MINUTES of being expected to run
    interval_seconds: int | None
    last_run: datetime | None
    last_outcome: str
    next_run: datetime | None
    last_error: str
    last_error_time: datetime | None
    cpu_usage_pct: float | None
    memory_usage_mb: float | None
    db_connections: int | None  # the database's, at this check: the spec's table repeats it per module
    # The recovery so far, known once recovery has looked at this check (with_recovery).
    recovery_attempts: int = 0
    last_recovery_action: str = ""
    recovery_successful: bool | None = None


# The spec's names (meta_system_health_logs, GET health) of the fields named otherwise here.
SPEC_NAMES = {"code": "module_name", "name": "module_full_name", "status": "health_status"}
RECOVERY_FIELDS = ("recovery_attempts", "last_recovery_action", "recovery_successful")


def with_recovery(
    modules: list[ModuleHealth], summaries: Mapping[str, tuple[int, str, bool | None]]
) -> list[ModuleHealth]:
    """The modules with their recovery summaries (attempts counted by the policy, last action,
    whether it healed), as they are served and logged."""
    return [replace(m, **dict(zip(RECOVERY_FIELDS, summaries[m.code], strict=True))) for m in modules]


@dataclass
class Infrastructure:
    database: probes.DatabaseHealth
    beat: rules.Liveness
    workers: rules.Liveness
    beat_last_seen: datetime | None
    worker_last_seen: datetime | None
    # Results of the per-cycle probes (None until a cycle has probed).
    broker: dict[str, Any] | None
    meta_api: dict[str, Any] | None
    workers_ping: dict[str, Any] | None

    @property
    def beat_alive(self) -> bool:
        return self.beat != rules.Liveness.DEAD  # waiting for its first heartbeat is not a failure yet

    @property
    def workers_alive(self) -> bool:
        return self.workers != rules.Liveness.DEAD

    @property
    def meta_api_ok(self) -> bool:
        return self.meta_api is None or bool(self.meta_api.get("ok"))


@dataclass
class HealthReport:
    checked_at: datetime
    system_status: str
    halted: bool
    modules: list[ModuleHealth]
    infrastructure: Infrastructure
    mode: str
    total_campaigns_active: int | None
    total_daily_budget_usd: float | None
    counts: dict[str, int] = field(default_factory=dict)
    # Unacknowledged spend spikes found by 10.9 on their account's local today: campaign_id,
    # campaign__name, ratio, spend_today, day, requested_emergency_stop, and spend with its currency.
    spend_spikes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first_runs(self) -> rules.FirstRuns:
        return rules.first_runs(
            (m.desired_state == MetaModule.DesiredState.STOPPED, m.last_run is not None) for m in self.modules
        )

    @property
    def total_api_calls_24h(self) -> int:
        return sum(m.api_calls_24h for m in self.modules)

    @property
    def total_errors_24h(self) -> int:
        return sum(m.error_count_24h for m in self.modules)


def _modules() -> QuerySet[MetaModule]:
    latest = (
        ModuleRun.objects.filter(module=OuterRef("pk"))
        .exclude(outcome=ModuleRun.Outcome.SKIPPED)
        .order_by("-started_at")
    )
    latest_error = ModuleRun.objects.filter(module=OuterRef("pk"), outcome__in=FAILED).order_by("-started_at")
    return MetaModule.objects.select_related("periodic_task__interval").annotate(
        # Set only for modules running outside this codebase (ExternalModule): their schedule.
        external_interval=F("external__expected_interval_seconds"),
        external_since=F("external__registered_at"),
        last_run=Subquery(latest.values("started_at")[:1]),
        last_outcome=Subquery(latest.values("outcome")[:1]),
        last_error=Subquery(latest_error.values("error_message")[:1]),
        last_error_time=Subquery(latest_error.values("started_at")[:1]),
    )


def _runs_24h(since: datetime) -> dict[Any, dict[str, Any]]:
    finished = Q(outcome__in=FINISHED)
    # A RESET_MODULE recovery restarts the module's error window.
    in_error_window = Q(module__error_window_start__isnull=True) | Q(started_at__gte=F("module__error_window_start"))
    rows = (
        ModuleRun.objects.filter(started_at__gte=since)
        .values("module_id")
        .annotate(
            runs=Count("id", filter=finished & in_error_window),
            successes=Count("id", filter=Q(outcome=ModuleRun.Outcome.SUCCESS) & in_error_window),
            failures=Count("id", filter=Q(outcome__in=FAILED) & in_error_window),
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


def _infrastructure(state: TowerState, installed_at: datetime | None, now: datetime) -> Infrastructure:
    heartbeat = PeriodicTask.objects.filter(name=HEARTBEAT_TASK).only("last_run_at", "enabled").first()
    stale = timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS)
    # The watch began at install (the first module's creation), a fixed point: the heartbeat
    # task's date_changed moves at each of Beat's saves, so it would wait forever.
    watched_since = installed_at if heartbeat and heartbeat.enabled else None
    workers = rules.liveness(state.worker_heartbeat_at, watched_since, stale, now)
    beat_sent = heartbeat.last_run_at if heartbeat else None
    if workers == rules.Liveness.ALIVE:
        # A worker ran the heartbeat, so Beat had sent it: Beat's own record (last_run_at) is saved
        # only every few minutes, and would read "last sent —" through a whole start-up.
        beat, beat_sent = workers, max(filter(None, (beat_sent, state.worker_heartbeat_at)))
    else:
        beat = rules.liveness(beat_sent, watched_since, stale, now)
    stored = state.probes or {}
    return Infrastructure(
        database=probes.database(),
        beat=beat,
        workers=workers,
        beat_last_seen=beat_sent,
        worker_last_seen=state.worker_heartbeat_at,
        broker=stored.get("broker"),
        meta_api=stored.get("meta_api"),
        workers_ping=stored.get("workers"),
    )


def _next_run(task: PeriodicTask | None, last_run: datetime | None) -> datetime | None:
    if task is None or not task.enabled or task.interval is None:
        return None
    reference = task.last_run_at or last_run or task.date_changed
    return reference + timedelta(seconds=task.interval.every) if reference else None


def _campaign_totals() -> tuple[int | None, float | None]:
    """ACTIVE campaigns in the mirror and their daily budgets in USD (USD accounts only); null
    while the mirror is empty (never synced: unknown, not zero)."""
    active = Q(status="ACTIVE")
    # The USD accounts as a subquery, not a join: one scan of the campaigns without hashing their
    # text keys (6.9 → 6.1 ms at 30,000 campaigns, the data of bench/health_accounts.py).
    usd = AdAccount.objects.filter(currency="USD").values("pk")
    totals = Campaign.objects.aggregate(
        mirrored=Count("id"),
        count=Count("id", filter=active),
        budget=Sum("daily_budget_cents", filter=active & Q(account_id__in=usd)),
    )
    if not totals["mirrored"]:
        return None, None
    return totals["count"], round((totals["budget"] or 0) / 100, 2)


def _spend_spikes_today(now: datetime) -> list[dict[str, Any]]:
    """Unacknowledged spikes of their account's local today (one query: the dates that are today
    somewhere, then each account's own today)."""
    rows = SpendSpike.objects.filter(acknowledged=False, day__range=days.todays_anywhere(now)).values(
        "campaign_id",
        "campaign__name",
        "ratio",
        "spend_today",
        "day",
        "requested_emergency_stop",
        "campaign__account__timezone_name",
        "campaign__account__currency",
    )
    return [
        {**row, "spend": money(row["spend_today"], row["campaign__account__currency"])}
        for row in rows
        if row["day"] == days.local_today(now, days.zone(row["campaign__account__timezone_name"]))
    ]


def evaluate(now: datetime | None = None) -> HealthReport:
    """Evaluate every module and the system from facts, at the tower clock's now by default. Reads only."""
    now = now or clock.now()
    thresholds = rules.Thresholds.from_settings()
    state = TowerState.get()
    rows = list(_modules())
    infra = _infrastructure(state, min((m.created_at for m in rows), default=None), now)
    aggregates = _runs_24h(now - timedelta(hours=24))
    modules = [
        _module_health(module, aggregates.get(module.pk, {}), infra, thresholds, now, state.emergency_stop_active)
        for module in rows
    ]
    statuses = [ModuleStatus(m.status) for m in modules]
    campaigns_active, budget_usd = _campaign_totals()
    spikes = _spend_spikes_today(now)
    return HealthReport(
        checked_at=now,
        system_status=rules.system_status(statuses, state.emergency_stop_active).value,
        halted=state.emergency_stop_active,
        modules=modules,
        infrastructure=infra,
        mode=settings.META_MODE,
        total_campaigns_active=campaigns_active,
        total_daily_budget_usd=budget_usd,
        counts={status.value: statuses.count(status) for status in ModuleStatus},
        spend_spikes=spikes,
    )


def _module_health(
    module: MetaModule,
    agg: dict[str, Any],
    infra: Infrastructure,
    thresholds: rules.Thresholds,
    now: datetime,
    halted: bool,
) -> ModuleHealth:
    runs, successes, failures = agg.get("runs", 0), agg.get("successes", 0), agg.get("failures", 0)
    api_calls, api_errors = agg.get("api_calls") or 0, agg.get("api_errors") or 0
    task = module.periodic_task
    external = module.external_interval is not None
    if external:
        # Runs elsewhere on its own schedule, not through Beat and our workers: only its reports
        # show it alive (watched from its registration until the first one).
        enabled, interval, watched_since = True, module.external_interval, module.external_since
    else:
        enabled = bool(task and task.enabled)
        interval = task.interval.every if task and task.interval else None
        watched_since = task.date_changed if task else None
    reference = module.last_run or watched_since
    overdue = interval is not None and rules.is_overdue(
        reference, timedelta(seconds=interval), thresholds.overdue_grace, now
    )
    signals = rules.ModuleSignals(
        # An emergency stop halts every module on purpose: stopped, not failed.
        stopped_on_purpose=halted or module.desired_state == MetaModule.DesiredState.STOPPED,
        is_scheduler_running=enabled and not overdue and (external or (infra.beat_alive and infra.workers_alive)),
        has_finished_run=module.last_run is not None,
        # Expected to run since it was created, or since an operator last started it.
        first_run_overdue=rules.first_run_overdue(
            module.last_run is not None,
            max(module.created_at, module.desired_state_at or module.created_at),
            thresholds.starting_grace,
            now,
        ),
        success_rate=successes / runs if runs else None,
        error_count_24h=failures,
        is_db_healthy=infra.database.healthy,
        is_api_healthy=rules.api_healthy(
            module.calls_meta, api_calls, api_errors, infra.meta_api_ok, settings.API_MAX_ERROR_RATIO
        ),
    )
    wall_ms = agg.get("wall_ms")
    return ModuleHealth(
        code=module.code,
        name=module.name,
        function=module.function,
        status=rules.module_status(signals, thresholds).value,
        desired_state=module.desired_state,
        desired_state_by=module.desired_state_by,
        desired_state_reason=module.desired_state_reason,
        desired_state_at=module.desired_state_at,
        calls_meta=module.calls_meta,
        external=external,
        runs_24h=runs,
        successes_24h=successes,
        failures_24h=failures,
        skipped_24h=agg.get("skipped", 0),
        success_rate=signals.success_rate,
        avg_execution_time_ms=round(agg["avg_ms"]) if agg.get("avg_ms") is not None else None,
        error_count_24h=failures,
        api_calls_24h=api_calls,
        api_errors_24h=api_errors,
        is_scheduler_running=signals.is_scheduler_running,
        is_db_healthy=signals.is_db_healthy,
        is_api_healthy=signals.is_api_healthy,
        scheduler_enabled=enabled,
        overdue=overdue,
        first_run_overdue=signals.first_run_overdue,
        interval_seconds=interval,
        last_run=module.last_run,
        last_outcome=module.last_outcome or "",
        next_run=reference + timedelta(seconds=interval) if external else _next_run(task, module.last_run),
        last_error=module.last_error or "",
        last_error_time=module.last_error_time,
        cpu_usage_pct=round(100 * agg["cpu_ms"] / wall_ms, 1) if agg.get("cpu_ms") is not None and wall_ms else None,
        memory_usage_mb=agg.get("peak_rss"),
        db_connections=infra.database.active_connections,
    )
