#!/usr/bin/env python3
"""Benchmark: GET report over a year of hourly history on PostgreSQL, against a naive baseline.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/report.py [--repeat 7]

DATABASE_URL only says where the server is: the script creates its own database
(bench_report_<pid>) on it, and drops it at the end (--keep leaves it). In that database it
generates, with bulk inserts, one year of hourly health checks (8,760 runs × 17 module logs =
148,920 logs) with failure episodes, maintenance stops, monthly emergency stops and resumes,
the recovery attempts and alerts they cause, and the last 30 days of module runs (the default
retention). Then, in the same run:
  1. GET report (the real endpoint, in-process) for 7, 30 and 365 days: median of --repeat runs
     and the number of queries;
  2. the two time-weighted figures alone (system uptime + module availability, SQL);
  3. the naive baseline: load the checks and logs of the period into Python (ORM rows) and
     compute the same uptime and availability in loops — checked equal to the SQL figures.
Prints a table and writes bench/results/report.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from common import machine, own_database, save_results, setup_django, tower_env

PERIODS = (7, 30, 365)
HISTORY_DAYS = 365
MODULE_RUN_DAYS = 30
BATCH = 5000
ERRORS = (
    "GraphError 17: User request limit reached",
    "GraphError 100/33: Unsupported get request",
    "Soft time limit exceeded.",
    "OperationalError: server closed the connection unexpectedly",
)


# --- database of our own ---------------------------------------------------------------------------


# --- one year of history ---------------------------------------------------------------------------


def generate(end: datetime, rng: random.Random) -> dict[str, int]:
    """Hourly checks with per-module failure episodes and maintenance, monthly emergency stops."""
    from controltower import rules
    from controltower.models import (
        Alert,
        ControlTowerRun,
        ModuleStatus,
        RecoveryAttempt,
        SystemHealthLog,
        SystemStatus,
    )
    from meta_modules.registry import MODULES

    hours = HISTORY_DAYS * 24
    start = end - timedelta(hours=hours)
    halts = sorted(rng.sample(range(24, hours - 24), 12))
    halted = {h + i for h in halts for i in range(rng.randint(1, 5))}
    episode: dict[str, tuple[str, int]] = {}  # code → (status, hours left)
    open_alerts: dict[str, Alert] = {}
    runs, logs, attempts, alerts, events = [], [], [], [], []
    timeline: dict[tuple[str, int], str] = {}
    for hour in range(hours):
        at = start + timedelta(hours=hour, seconds=7)
        statuses = {}
        for spec in MODULES:
            status, left = episode.get(spec.code, (ModuleStatus.ONLINE, 0))
            if left == 0:
                draw = rng.random()
                if draw < 0.004:
                    status, left = rng.choice([ModuleStatus.OFFLINE, ModuleStatus.DEGRADED]), rng.randint(1, 6)
                elif draw < 0.0045:
                    status, left = ModuleStatus.STOPPED, rng.randint(2, 8)
                else:
                    status = ModuleStatus.ONLINE
            episode[spec.code] = (status, max(0, left - 1))
            statuses[spec.code] = ModuleStatus.STOPPED if hour in halted else status
        system = rules.system_status([ModuleStatus(s) for s in statuses.values()], hour in halted)
        run = ControlTowerRun(
            run_type="health_check",
            system_status=system,
            executed_at=at,
            executed_by="scheduler",
            mode="stub",
            total_modules_checked=17,
            execution_time_ms=rng.randint(400, 2500),
            module_health_details=statuses,
            online_modules=sum(s == ModuleStatus.ONLINE for s in statuses.values()),
        )
        runs.append(run)
        for spec in MODULES:
            status = statuses[spec.code]
            timeline[(spec.code, hour)] = status
            failing = status in (ModuleStatus.OFFLINE, ModuleStatus.DEGRADED)
            logs.append(
                SystemHealthLog(
                    run=run,
                    module_name=spec.code,
                    module_full_name=spec.name,
                    health_status=status,
                    checked_at=at,
                    success_rate=0.6 if failing else 1.0,
                    error_count_24h=rng.randint(1, 30) if failing else 0,
                    api_calls_24h=rng.randint(0, 400),
                    is_scheduler_running=status != ModuleStatus.OFFLINE,
                    is_db_healthy=True,
                    is_api_healthy=True,
                    mode="stub",
                )
            )
            prefix = f"module:{spec.code}:"
            key = f"{prefix}{status}" if failing else None
            for stale in [k for k in open_alerts if k.startswith(prefix) and k != key]:
                open_alerts.pop(stale).resolved_at = at
            if key and key not in open_alerts:
                open_alerts[key] = Alert(
                    key=key,
                    severity="critical" if status == ModuleStatus.OFFLINE else "warning",
                    title=key,
                    module_code=spec.code,
                    opened_at=at,
                    last_seen_at=at,
                )
                alerts.append(open_alerts[key])
                if status == ModuleStatus.OFFLINE:  # auto-recovery restarts an OFFLINE module
                    attempts.append(
                        RecoveryAttempt(
                            module_code=spec.code,
                            action="restart_scheduler",
                            confidence=0.9,
                            reason="module OFFLINE",
                            executed_by="recovery engine",
                            started_at=at + timedelta(seconds=2),
                            outcome="succeeded",
                            verified_at=at + timedelta(hours=1),
                            healed=rng.random() < 0.6,
                        )
                    )
        if hour in halts:
            stop_at = at - timedelta(minutes=40)
            length = sum(1 for h in range(hour, hour + 6) if h in halted)
            events += [
                ControlTowerRun(
                    run_type="emergency_stop",
                    command_type="emergency_stop",
                    system_status=SystemStatus.EMERGENCY_STOP,
                    executed_at=stop_at,
                    executed_by="bench-operator",
                    reason="Budget spike",
                    mode="stub",
                ),
                ControlTowerRun(
                    run_type="resume",
                    command_type="resume",
                    system_status=SystemStatus.HEALTHY,
                    executed_at=stop_at + timedelta(hours=length),
                    executed_by="bench-operator",
                    mode="stub",
                ),
            ]
    ControlTowerRun.objects.bulk_create(runs + events, batch_size=BATCH)
    SystemHealthLog.objects.bulk_create(logs, batch_size=BATCH)
    RecoveryAttempt.objects.bulk_create(attempts, batch_size=BATCH)
    Alert.objects.bulk_create(alerts, batch_size=BATCH)
    module_runs = generate_module_runs(end, start, timeline, rng)
    return {
        "health_checks": len(runs),
        "emergency_stops_and_resumes": len(events),
        "health_logs": len(logs),
        "recovery_attempts": len(attempts),
        "alerts": len(alerts),
        "module_runs": module_runs,
    }


def generate_module_runs(
    end: datetime, start: datetime, timeline: dict[tuple[str, int], str], rng: random.Random
) -> int:
    """The last MODULE_RUN_DAYS of runs at each module's interval; failing hours fail."""
    from meta_modules.models import MetaModule, ModuleRun
    from meta_modules.registry import MODULES

    ids = dict(MetaModule.objects.values_list("code", "pk"))
    rows = []
    for spec in MODULES:
        at = end - timedelta(days=MODULE_RUN_DAYS)
        while at < end:
            status = timeline.get((spec.code, int((at - start).total_seconds() // 3600)), "online")
            if status == "stopped":
                outcome, error = "skipped", "Module stopped."
            elif (status in ("offline", "degraded") and rng.random() < 0.5) or rng.random() < 0.01:
                outcome, error = "failure", rng.choice(ERRORS)
            else:
                outcome, error = "success", ""
            rows.append(
                ModuleRun(
                    module_id=ids[spec.code],
                    started_at=at,
                    finished_at=at + timedelta(seconds=2),
                    outcome=outcome,
                    error_message=error,
                    duration_ms=rng.randint(50, 4000),
                    api_calls=rng.randint(0, 20) if spec.calls_meta else 0,
                )
            )
            at += timedelta(seconds=spec.every_seconds)
    ModuleRun.objects.bulk_create(rows, batch_size=BATCH)
    return len(rows)


# --- measurements ----------------------------------------------------------------------------------


def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm-up: connection, plans, caches
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1), result


def naive(period: Any) -> dict[str, Any]:
    """What a straightforward implementation does: load the rows, walk them in Python."""
    from django.db.models import Q

    from controltower.models import ControlTowerRun, SystemHealthLog

    points = list(
        ControlTowerRun.objects.filter(
            Q(run_type="health_check", state="completed") | Q(run_type__in=["emergency_stop", "resume"]),
            executed_at__gte=period.since,
            executed_at__lt=period.until,
        ).order_by("executed_at")
    )
    held: dict[str, float] = defaultdict(float)
    for point, following in zip(points, [*points[1:], None]):
        held[point.system_status] += (
            (following.executed_at if following else period.until) - point.executed_at
        ).total_seconds()
    by_module: dict[str, list] = defaultdict(list)
    for log in SystemHealthLog.objects.filter(checked_at__gte=period.since, checked_at__lt=period.until).order_by(
        "module_name", "checked_at"
    ):
        by_module[log.module_name].append(log)
    availability = {}
    for code, rows in by_module.items():
        seconds: dict[str, float] = defaultdict(float)
        for log, following in zip(rows, [*rows[1:], None]):
            seconds[log.health_status] += (
                (following.checked_at if following else period.until) - log.checked_at
            ).total_seconds()
        counted = sum(seconds.values()) - seconds["stopped"]
        availability[code] = 100 * seconds["online"] / counted if counted else None
    known = sum(held.values())
    return {"uptime_pct": 100 * held["healthy"] / known if known else None, "availability": availability}


def sql_figures(period: Any, names: dict[str, str]) -> dict[str, Any]:
    from controltower import reports

    uptime = reports.system_uptime(period)
    modules = reports.module_availability(period, names)["modules"]
    return {"uptime_pct": uptime["uptime_pct"], "availability": {m["module"]: m["availability_pct"] for m in modules}}


def same_figures(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def close(x: float | None, y: float | None) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and abs(x - y) < 1e-3)

    return (
        close(a["uptime_pct"], b["uptime_pct"])
        and a["availability"].keys() == b["availability"].keys()
        and all(close(a["availability"][code], b["availability"][code]) for code in a["availability"])
    )


def measure(end: datetime, repeat: int) -> list[dict[str, Any]]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from controltower import reports
    from meta_modules.models import MetaModule

    client = APIClient(SERVER_NAME="127.0.0.1")  # in bench.common.tower_env's ALLOWED_HOSTS
    client.force_authenticate(User.objects.create_user("bench", is_staff=True))
    names = dict(MetaModule.objects.values_list("code", "name"))
    rows = []
    for days in PERIODS:
        period = reports.Period(end - timedelta(days=days), end)
        params = {"since": period.since.isoformat(), "until": period.until.isoformat()}

        def get() -> Any:
            response = client.get("/meta/control-tower/report", params)  # noqa: B023 - called within this iteration
            assert response.status_code == 200, response.content[:500]
            return response

        endpoint_ms, _ = median_ms(get, repeat)
        with CaptureQueriesContext(connection) as queries:
            get()
        sql_ms, sql = median_ms(lambda: sql_figures(period, names), repeat)  # noqa: B023 - called within this iteration
        naive_ms, baseline = median_ms(lambda: naive(period), max(3, repeat // 2))  # noqa: B023 - called within this iteration
        assert same_figures(sql, baseline), (sql, baseline)
        rows.append(
            {
                "days": days,
                "report_ms": endpoint_ms,
                "queries": len(queries),
                "uptime_availability_sql_ms": sql_ms,
                "naive_ms": naive_ms,
                "naive_over_sql": round(naive_ms / sql_ms, 1),
                "uptime_pct": round(sql["uptime_pct"], 3),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per figure (median)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    with own_database("bench_report", keep=args.keep) as database_url:
        setup_django(tower_env(database_url, Path(tempfile.mkdtemp(prefix="bench-report-"))))
        from django.db import connection
        from django.utils import timezone

        end = timezone.now()
        started = time.perf_counter()
        counts = generate(end, random.Random(7))
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # what autovacuum would have done after such a load
            cursor.execute("SELECT version()")
            server = cursor.fetchone()[0].split(" on ")[0]
        generated_s = round(time.perf_counter() - started, 1)
        rows = measure(end, args.repeat)
        connection.close()

    results = {
        "machine": f"{machine()} · {server}",
        "rows": counts,
        "generation_seconds": generated_s,
        "repeat": args.repeat,
        "periods": rows,
    }
    print(f"{results['machine']}\nrows: {counts} (generated and inserted in {generated_s} s)\n")
    print(
        "| period | GET report (median) | queries | uptime + availability in SQL | naive: ORM rows → Python "
        "| naive / SQL |\n|---|---|---|---|---|---|"
    )
    for row in rows:
        print(
            f"| {row['days']} days | {row['report_ms']} ms | {row['queries']} "
            f"| {row['uptime_availability_sql_ms']} ms | {row['naive_ms']} ms | {row['naive_over_sql']}× |"
        )
    save_results("report.json", results)


if __name__ == "__main__":
    main()
