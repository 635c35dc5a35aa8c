"""The history report (GET report): uptime, availability, recovery, MTTR, emergency stops, false positives.

Every figure is computed by the database, in a fixed number of queries whatever the period:
the time-weighted ones with window functions over the check timeline (LEAD / LAG, portable
between SQLite and PostgreSQL), the rest with aggregates. Only the emergency stops (a handful)
come back as rows.

Definitions
- Timelines: the system's is the completed health checks plus emergency stops and resumes (they
  change the system status between two checks); a module's is its health logs at the completed
  checks. Each point's status holds until the next point, the last one until the end of the
  period. Time before the first point of the period is unknown and left out of every denominator.
- System uptime: share of the known time the system was HEALTHY, STARTING time left out: a
  start-up (modules having their first runs) is neither up nor down.
- Module availability: per module, share of its known time ONLINE. Time STOPPED on purpose
  (operator stop, emergency stop) is left out like a maintenance window, and so is UNKNOWN
  (waiting for its first run within the start-up grace: neither up nor down); a module that
  never runs is OFFLINE after that grace and counts as unavailable.
- MTTR: per module, an episode begins at a DEGRADED or OFFLINE check that follows an ONLINE one
  (or is the module's first check of the period) and ends at its next ONLINE check; STOPPED and
  UNKNOWN checks neither begin nor end one. The mean is over closed episodes; open ones are
  listed apart with their age.
- Auto-recovery: automatic attempts (escalations apart), each verified at the check after it;
  success = healed / verified.
- Fire drills: those started in the period, by verdict (a refused drill was asked for and not run).
- False positive: an alert opened in the period (spend spikes and infrastructure alerts left
  out) that was resolved at or before the first check after its opening, with no recovery
  attempt and no completed command on its module (on any module for system-wide alerts), and
  no emergency stop or completed resume, between its opening and its resolution. Rate = false
  positives / judged alerts (those whose next check has happened).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import CharField, Count, Exists, F, Max, OuterRef, Q, Subquery, Sum, TextField, Value
from django.db.models.functions import Cast, Concat
from django.db.models.lookups import Exact
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from controltower import findings, health
from controltower.models import (
    Alert,
    ControlTowerRun,
    FireDrill,
    ModuleStatus,
    RecoveryAttempt,
    RunState,
    RunType,
    SystemHealthLog,
    SystemStatus,
)
from controltower.recovery_policy import Action
from meta_modules.models import MetaModule, ModuleRun

FAILED = (ModuleRun.Outcome.FAILURE, ModuleRun.Outcome.TIMEOUT)
# Alerts that are not judged for false positives: a spike is money, infrastructure is probed directly.
NOT_JUDGED_PREFIXES = ("spend_spike:", "infra:")
TOP_ERRORS = 10
DRILLS_LISTED = 10
# A module's time that is neither available nor unavailable: stopped on purpose, waiting for its first run.
NOT_COUNTED = (ModuleStatus.STOPPED, ModuleStatus.UNKNOWN)


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since > self.until:
            raise ValueError(f"A period cannot end ({self.until}) before it starts ({self.since}).")

    @property
    def seconds(self) -> float:
        return (self.until - self.since).total_seconds()


# --- pure helpers -----------------------------------------------------------------------


def pct(part: float, whole: float) -> float | None:
    """part / whole in percent (3 decimals); None when there is nothing to divide by."""
    return round(100 * part / whole, 3) if whole else None


def unknown_seconds(period: Period, first_point: datetime | None) -> float:
    """The time before the timeline's first point (all of it without one), from the timestamps
    themselves: summing the held spans in SQL overshoots on SQLite, whose julianday() rounds each
    instant to the millisecond, so `period - sum` could come out negative."""
    if first_point is None:
        return period.seconds
    return min(max((first_point - period.since).total_seconds(), 0.0), period.seconds)


def distribution(seconds_by_status: dict[str, float], statuses: list[str]) -> list[dict[str, Any]]:
    """Seconds and share of the known time for every status, in the given order."""
    known = sum(seconds_by_status.values())
    return [
        {
            "status": status,
            "seconds": round(seconds_by_status.get(status, 0.0), 3),
            "pct": pct(seconds_by_status.get(status, 0.0), known) or 0.0,
        }
        for status in statuses
    ]


def iso_weeks(since: datetime, until: datetime) -> list[str]:
    """Every ISO week (e.g. 2025-W03) the period [since, until) touches, in order."""
    last = (until - timedelta(microseconds=1)).date()
    monday = since.date() - timedelta(days=since.weekday())
    weeks = []
    while monday <= last:
        weeks.append(iso_week(monday))
        monday += timedelta(days=7)
    return weeks


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


WEEK_SECONDS = 7 * 86400


def mean_per_week(count: int, seconds: float) -> float | None:
    """Emergency stops per week, over a period of a week or more only: from a shorter one it would
    be an extrapolation (3 stops in one day are not "21 per week")."""
    return round(count / (seconds / WEEK_SECONDS), 3) if seconds >= WEEK_SECONDS else None


def span_text(seconds: float) -> str:
    """A period's length as a person says it: '45 min', '6 h', '1 day', '2.5 days'."""
    for unit, plural, size in (("day", "days", 86400), ("h", "h", 3600)):
        if seconds >= size:
            amount = f"{seconds / size:.1f}".removesuffix(".0")
            return f"{amount} {unit if amount == '1' else plural}"
    return f"{seconds / 60:.0f} min"


def stop_frequency(count: int, seconds: float) -> str:
    """What the report says of the stops: the count over the actual period, and the weekly mean only
    when the period spans a week ("3 in 1 day"; "6 in 14 days, 3 per week")."""
    text = f"{count} in {span_text(seconds)}"
    weekly = mean_per_week(count, seconds)
    return text if weekly is None else f"{text}, {f'{weekly:.2f}'.rstrip('0').rstrip('.')} per week"


# --- SQL --------------------------------------------------------------------------------


def _seconds(start: str, end: str) -> str:
    """SQL for the seconds from `start` to `end` (two timestamp expressions) on this backend."""
    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM ({end}) - ({start}))"
    return f"(julianday({end}) - julianday({start})) * 86400.0"


def _sql_params(period: Period, **values: str) -> dict[str, Any]:
    adapt = connection.ops.adapt_datetimefield_value
    return {"since": adapt(period.since), "until": adapt(period.until), **values}


def _fetch(sql: str, params: dict[str, Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _datetime(value: datetime | str) -> datetime:
    """A timestamp from raw SQL: PostgreSQL returns datetimes, SQLite the stored UTC text."""
    return value if isinstance(value, datetime) else parse_datetime(value).replace(tzinfo=UTC)


_TIMELINE_SQL = """
    SELECT system_status, COUNT(*), SUM({held}), MIN(executed_at)
    FROM (
        SELECT system_status, executed_at,
               COALESCE(LEAD(executed_at) OVER (ORDER BY executed_at), %(until)s) AS held_until
        FROM {runs}
        WHERE executed_at >= %(since)s AND executed_at < %(until)s
          AND ((run_type = %(check)s AND state = %(completed)s) OR run_type IN (%(stop)s, %(resume)s))
    ) timeline
    GROUP BY system_status
"""

# The module timeline is the completed health checks: each one logs every module (cycle.persist
# writes the run and its 17 logs in one transaction), and a module's status holds until the next.
_CHECKS_CTE = """
    checks AS (
        SELECT id, executed_at, LEAD(executed_at) OVER (ORDER BY executed_at) AS next_at
        FROM {runs}
        WHERE run_type = %(check)s AND state = %(completed)s AND executed_at >= %(since)s AND executed_at < %(until)s
    )
"""

_MODULE_SPANS_SQL = """
    WITH {checks}
    SELECT logs.module_name, logs.health_status, COUNT(*), SUM({held})
    FROM {logs} logs JOIN checks ON logs.run_id = checks.id
    GROUP BY logs.module_name, logs.health_status
"""

# Episodes from the few logs that are not ONLINE (the ONLINE majority is never read): their
# DEGRADED/OFFLINE checks, plus the ONLINE check that follows any non-ONLINE one — a module
# absent from not_online at the next check was ONLINE there. Filtered to the transitions (an
# episode's first failing check, the ONLINE check that ends it), each start's LEAD is its end;
# STOPPED/UNKNOWN checks are left out before LAG looks back, so they neither begin nor end one.
_EPISODES_SQL = """
    WITH {checks}, not_online AS (
        SELECT logs.module_name, logs.health_status, logs.checked_at, checks.next_at
        FROM {logs} logs JOIN checks ON logs.run_id = checks.id
        WHERE logs.health_status <> %(online)s
    ), decisive AS (
        SELECT module_name, health_status, checked_at FROM not_online
        WHERE health_status IN (%(degraded)s, %(offline)s)
        UNION ALL
        SELECT module_name, %(online)s, next_at FROM not_online
        WHERE next_at IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM not_online later
            WHERE later.module_name = not_online.module_name AND later.checked_at = not_online.next_at)
    ), marked AS (
        SELECT module_name, health_status, checked_at,
               LAG(health_status) OVER (PARTITION BY module_name ORDER BY checked_at) AS previous
        FROM decisive
    ), transitions AS (
        SELECT module_name, health_status, checked_at,
               LEAD(checked_at) OVER (PARTITION BY module_name ORDER BY checked_at) AS recovered_at
        FROM marked
        WHERE (health_status <> %(online)s AND (previous IS NULL OR previous = %(online)s))
           OR (health_status = %(online)s AND previous <> %(online)s)
    )
    SELECT module_name, COUNT(recovered_at), SUM({duration}), MAX({duration}),
           MAX(CASE WHEN recovered_at IS NULL THEN checked_at END)
    FROM transitions
    WHERE health_status <> %(online)s
    GROUP BY module_name
"""


def _module_sql(template: str, **parts: str) -> str:
    checks = _CHECKS_CTE.format(runs=ControlTowerRun._meta.db_table)
    return template.format(checks=checks, logs=SystemHealthLog._meta.db_table, **parts)


def _module_params(period: Period) -> dict[str, Any]:
    return _sql_params(
        period,
        check=RunType.HEALTH_CHECK,
        completed=RunState.COMPLETED,
        online=ModuleStatus.ONLINE,
        degraded=ModuleStatus.DEGRADED,
        offline=ModuleStatus.OFFLINE,
    )


def system_uptime(period: Period) -> dict[str, Any]:
    sql = _TIMELINE_SQL.format(held=_seconds("executed_at", "held_until"), runs=ControlTowerRun._meta.db_table)
    rows = _fetch(
        sql,
        _sql_params(
            period,
            check=RunType.HEALTH_CHECK,
            completed=RunState.COMPLETED,
            stop=RunType.EMERGENCY_STOP,
            resume=RunType.RESUME,
        ),
    )
    seconds = {status: float(total) for status, _, total, _ in rows}
    # Summed (not subtracted) so that HEALTHY time can never exceed it by a rounding error.
    counted = sum(held for status, held in seconds.items() if status != SystemStatus.STARTING)
    unknown = unknown_seconds(period, min((_datetime(first) for *_, first in rows), default=None))
    return {
        "uptime_pct": pct(seconds.get(SystemStatus.HEALTHY, 0.0), counted),
        "known_seconds": round(period.seconds - unknown, 3),
        "unknown_seconds": round(unknown, 3),
        "points": sum(count for _, count, _, _ in rows),
        "distribution": distribution(seconds, [status.value for status in SystemStatus]),
    }


def _module_order(codes: set[str], names: dict[str, str]) -> list[str]:
    """Registered modules in registry order, then any others that appear in the history."""
    return [code for code in names if code in codes] + sorted(codes - set(names))


def module_availability(period: Period, names: dict[str, str]) -> dict[str, Any]:
    sql = _module_sql(_MODULE_SPANS_SQL, held=_seconds("checks.executed_at", "COALESCE(checks.next_at, %(until)s)"))
    seconds: dict[str, dict[str, float]] = defaultdict(dict)
    checks: Counter[str] = Counter()
    for code, status, count, total in _fetch(sql, _module_params(period)):
        seconds[code][status] = float(total)
        checks[code] += count
    modules, counted_total = [], 0.0
    for code in _module_order(set(seconds), names):
        by_status = seconds[code]
        counted = sum(held for status, held in by_status.items() if status not in NOT_COUNTED)
        counted_total += counted
        modules.append(
            {
                "module": code,
                "name": names.get(code, ""),
                "checks": checks[code],
                "availability_pct": pct(by_status.get(ModuleStatus.ONLINE, 0.0), counted),
                "counted_seconds": round(counted, 3),
                "distribution": distribution(by_status, [s.value for s in ModuleStatus]),
            }
        )
    online = sum(s.get(ModuleStatus.ONLINE, 0.0) for s in seconds.values())
    return {"overall_pct": pct(online, counted_total), "modules": modules}


def mttr(period: Period, names: dict[str, str]) -> dict[str, Any]:
    rows = _fetch(_module_sql(_EPISODES_SQL, duration=_seconds("checked_at", "recovered_at")), _module_params(period))
    by_code = {row[0]: row for row in rows}
    modules, open_episodes = [], []
    for code in _module_order(set(by_code), names):
        _, episodes, total, longest, open_since = by_code[code]
        modules.append(
            {
                "module": code,
                "name": names.get(code, ""),
                "episodes": episodes,
                "mean_seconds": round(float(total) / episodes, 3) if episodes else None,
                "longest_seconds": round(float(longest), 3) if longest is not None else None,
            }
        )
        if open_since is not None:
            started = _datetime(open_since)
            open_episodes.append(
                {
                    "module": code,
                    "name": names.get(code, ""),
                    "since": started,
                    "open_seconds": round((period.until - started).total_seconds(), 3),
                }
            )
    episodes = sum(row[1] for row in rows)
    total = sum(float(row[2]) for row in rows if row[2] is not None)
    return {
        "mean_seconds": round(total / episodes, 3) if episodes else None,
        "episodes": episodes,
        "modules": modules,
        "open_episodes": open_episodes,
    }


# --- aggregates -------------------------------------------------------------------------


def auto_recovery(period: Period) -> dict[str, Any]:
    auto = Q(trigger=RecoveryAttempt.Trigger.AUTO)
    rows = list(
        RecoveryAttempt.objects.filter(started_at__gte=period.since, started_at__lt=period.until)
        .values("action")
        .order_by("action")
        .annotate(
            attempts=Count("pk", filter=auto),
            verified=Count("pk", filter=auto & Q(healed__isnull=False)),
            healed=Count("pk", filter=auto & Q(healed=True)),
            operator=Count("pk", filter=Q(trigger=RecoveryAttempt.Trigger.OPERATOR)),
        )
    )
    actions = [row for row in rows if row["action"] != Action.ALERT_ADMIN]
    attempts, verified, healed = (sum(row[key] for row in actions) for key in ("attempts", "verified", "healed"))
    return {
        "attempts": attempts,
        "verified": verified,
        "healed": healed,
        "success_pct": pct(healed, verified),
        "escalations": sum(row["attempts"] for row in rows if row["action"] == Action.ALERT_ADMIN),
        "operator_attempts": sum(row["operator"] for row in actions),
        "by_action": [
            {
                "action": row["action"],
                "attempts": row["attempts"],
                "verified": row["verified"],
                "healed": row["healed"],
                "success_pct": pct(row["healed"], row["verified"]),
            }
            for row in actions
            if row["attempts"]
        ],
    }


def emergency_stops(period: Period, now: datetime) -> dict[str, Any]:
    """Halts begun in the period: a stop while already halted re-sweeps the same halt, so it is
    not counted; a halt lasts until the next completed resume (after the period too)."""
    events = ControlTowerRun.objects.filter(
        Q(run_type=RunType.EMERGENCY_STOP) | Q(run_type=RunType.RESUME, state=RunState.COMPLETED)
    )
    previous = events.filter(executed_at__lt=OuterRef("executed_at")).order_by("-executed_at")
    resume = ControlTowerRun.objects.filter(
        run_type=RunType.RESUME, state=RunState.COMPLETED, executed_at__gt=OuterRef("executed_at")
    ).order_by("executed_at")
    halts = list(
        ControlTowerRun.objects.filter(
            run_type=RunType.EMERGENCY_STOP, executed_at__gte=period.since, executed_at__lt=period.until
        )
        .annotate(
            previous_type=Subquery(previous.values("run_type")[:1]),
            resumed_at=Subquery(resume.values("executed_at")[:1]),
            resumed_by=Subquery(resume.values("executed_by")[:1]),
        )
        .filter(Q(previous_type__isnull=True) | Q(previous_type=RunType.RESUME))
        .order_by("executed_at")
        .values("pk", "executed_at", "executed_by", "reason", "resumed_at", "resumed_by")
    )
    stops = [
        {
            "run_id": halt["pk"],
            "stopped_at": halt["executed_at"],
            "stopped_by": halt["executed_by"],
            "reason": halt["reason"],
            "resumed_at": halt["resumed_at"],
            "resumed_by": halt["resumed_by"] or "",
            "still_active": halt["resumed_at"] is None,
            "duration_seconds": round(((halt["resumed_at"] or now) - halt["executed_at"]).total_seconds(), 3),
        }
        for halt in halts
    ]
    per_week = Counter(iso_week(stop["stopped_at"].astimezone(UTC).date()) for stop in stops)
    weeks = iso_weeks(period.since.astimezone(UTC), period.until.astimezone(UTC))
    return {
        "count": len(stops),
        "per_week": [{"week": week, "count": per_week[week]} for week in weeks],
        "mean_per_week": mean_per_week(len(stops), period.seconds),
        "stops": stops,
    }


def false_positives(period: Period) -> dict[str, Any]:
    opened, resolved, module = OuterRef("opened_at"), OuterRef("resolved_at"), OuterRef("module_code")
    system_wide = Exact(module, "")
    next_check = ControlTowerRun.objects.filter(
        run_type=RunType.HEALTH_CHECK, state=RunState.COMPLETED, executed_at__gt=opened
    ).order_by("executed_at")
    recovery_attempted = RecoveryAttempt.objects.filter(
        Q(module_code=module) | system_wide, started_at__gte=opened, started_at__lte=resolved
    )
    # modules_affected is a JSON list: its text holds "10.5" (quoted), which "10.15" does not.
    operator_acted = ControlTowerRun.objects.annotate(
        affected=Cast("modules_affected", TextField()),
        token=Concat(Value('"'), module, Value('"'), output_field=CharField()),
    ).filter(
        Q(run_type=RunType.EMERGENCY_STOP)
        | Q(run_type=RunType.RESUME, state=RunState.COMPLETED)
        | (Q(run_type=RunType.COMMAND, state=RunState.COMPLETED) & (Q(affected__contains=F("token")) | system_wide)),
        executed_at__gte=opened,
        executed_at__lte=resolved,
    )
    alerts = Alert.objects.filter(opened_at__gte=period.since, opened_at__lt=period.until)
    for prefix in NOT_JUDGED_PREFIXES:
        alerts = alerts.exclude(key__startswith=prefix)
    totals = alerts.annotate(
        next_check=Subquery(next_check.values("executed_at")[:1]),
        recovery_attempted=Exists(recovery_attempted),
        operator_acted=Exists(operator_acted),
    ).aggregate(
        opened=Count("pk"),
        judged=Count("pk", filter=Q(next_check__isnull=False)),
        false_positives=Count(
            "pk", filter=Q(resolved_at__lte=F("next_check"), recovery_attempted=False, operator_acted=False)
        ),
    )
    return {
        **totals,
        "false_positive_pct": pct(totals["false_positives"], totals["judged"]),
        "excluded_prefixes": [prefix.rstrip(":") for prefix in NOT_JUDGED_PREFIXES],
    }


def module_run_totals(period: Period) -> dict[str, Any]:
    def outcome(*values: str) -> Count:
        return Count("pk", filter=Q(outcome__in=values))

    totals = ModuleRun.objects.filter(started_at__gte=period.since, started_at__lt=period.until).aggregate(
        module_runs=Count("pk"),
        successes=outcome(ModuleRun.Outcome.SUCCESS),
        failures=outcome(ModuleRun.Outcome.FAILURE),
        timeouts=outcome(ModuleRun.Outcome.TIMEOUT),
        skipped=outcome(ModuleRun.Outcome.SKIPPED),
        running=outcome(ModuleRun.Outcome.RUNNING),
        api_calls=Sum("api_calls", default=0),
        api_errors=Sum("api_errors", default=0),
    )
    return {**totals, "errors": totals["failures"] + totals["timeouts"]}


def top_errors(period: Period, limit: int = TOP_ERRORS) -> list[dict[str, Any]]:
    rows = (
        ModuleRun.objects.filter(started_at__gte=period.since, started_at__lt=period.until, outcome__in=FAILED)
        .values("error_message", "module__code")
        .order_by()
        .annotate(count=Count("pk"), last_seen=Max("started_at"))
        .order_by("-count", "-last_seen")[:limit]
    )
    return [
        {
            "message": row["error_message"],
            "module": row["module__code"],
            "count": row["count"],
            "last_seen": row["last_seen"],
        }
        for row in rows
    ]


def fire_drills(period: Period, limit: int = DRILLS_LISTED) -> dict[str, Any]:
    """Fire drills started in the period: how many passed, failed and were refused, and the latest
    ones with their slowest pause and re-activation."""
    drills = FireDrill.objects.filter(started_at__gte=period.since, started_at__lt=period.until)
    counts = drills.aggregate(
        count=Count("pk"),
        **{state: Count("pk", filter=Q(state=state)) for state in FireDrill.State.values},
    )
    latest = drills.order_by("-started_at").values(
        "id", "started_at", "finished_at", "state", "trigger", "executed_by", "pause_ms", "resume_ms", "message"
    )[:limit]
    return {**counts, "latest": list(latest)}


def build(period: Period, now: datetime | None = None) -> dict[str, Any]:
    """The whole report for one period (its end at most `now`)."""
    now = now or timezone.now()
    names = dict(MetaModule.objects.values_list("code", "name"))
    return {
        "period": {"since": period.since, "until": period.until, "seconds": period.seconds, "generated_at": now},
        "system_uptime": system_uptime(period),
        "module_availability": module_availability(period, names),
        "mttr": mttr(period, names),
        "auto_recovery": auto_recovery(period),
        "emergency_stops": emergency_stops(period, now),
        "fire_drills": fire_drills(period),
        "alerts": false_positives(period),
        "totals": module_run_totals(period),
        "top_errors": top_errors(period),
        "recommendations": findings.recommendations(health.evaluate(now)),
    }
