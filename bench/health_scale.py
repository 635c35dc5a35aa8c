#!/usr/bin/env python3
"""Benchmark: health.evaluate() over 100k and 1M module runs on PostgreSQL, against a naive baseline.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/health_scale.py [--repeat 7]

DATABASE_URL only says where the server is: the script creates its own database
(bench_health_<pid>) on it and drops it at the end (--keep leaves it). After migrate and
sync_modules it COPYs ModuleRun rows for the 17 modules spread uniformly over the last 30 days
(mostly success, some failure/timeout, a few skipped; durations, api calls, cpu, rss), first
100,000 in total, then the difference up to 1,000,000. One module ("healthy", the last one)
never fails in 30 days: its "latest error" subquery finds nothing and is its worst case.
For each size, in the same run:
  1. health.evaluate() with a fresh heartbeat (Beat and workers alive): median of --repeat
     runs after 2 warm-ups, and its SQL query count (CaptureQueriesContext);
  2. EXPLAIN (ANALYZE, BUFFERS) of the two queries that read meta_module_runs;
  3. the naive baseline: load the last 24 h of runs of each module as ORM rows and compute the
     same counts in Python — checked equal to evaluate()'s.
Prints a table and writes bench/results/health_scale.json.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from common import machine, own_database, save_results, setup_django, tower_env

SIZES = (100_000, 1_000_000)
DAYS = 30
CHUNK = 100_000
ERRORS = (
    "GraphError 17: User request limit reached",
    "Soft time limit exceeded.",
    "OperationalError: server closed the connection unexpectedly",
)
COLUMNS = (
    "id",
    "module_id",
    "started_at",
    "finished_at",
    "outcome",
    "trigger",
    "error_message",
    "duration_ms",
    "api_calls",
    "api_errors",
    "cpu_ms",
    "peak_rss_mb",
    "celery_task_id",
    "summary",
)


def insert_runs(count: int, module_ids: list[str], end: datetime, rng: random.Random) -> None:
    """COPY `count` runs, uniform over the last DAYS days; the last module never fails."""
    from django.db import connection

    span = DAYS * 86400.0
    healthy = module_ids[-1]
    cursor = connection.cursor().cursor  # the psycopg2 cursor, for copy_from
    # Written in time order, as runs are recorded: the heap is correlated with started_at.
    offsets = sorted((rng.random() * span for _ in range(count)), reverse=True)
    done = 0
    while done < count:
        n = min(CHUNK, count - done)
        buf = io.StringIO()
        write = buf.write
        for offset in offsets[done : done + n]:
            module = module_ids[rng.randrange(len(module_ids))]
            started = end - timedelta(seconds=offset)
            r = rng.random()
            outcome = "success" if r < 0.90 else "failure" if r < 0.95 else "timeout" if r < 0.97 else "skipped"
            if module == healthy and outcome in ("failure", "timeout"):
                outcome = "success"
            error = ""
            if outcome == "skipped":
                duration, api_calls, api_errors, cpu, rss = "\\N", 0, 0, "\\N", "\\N"
                finished = started
            else:
                duration = int(rng.lognormvariate(7.0, 0.8)) if outcome != "timeout" else 300_000
                api_calls = rng.randrange(0, 60)
                api_errors = rng.randrange(0, 3) if outcome == "failure" and api_calls else 0
                cpu = int(duration * rng.uniform(0.05, 0.6))
                rss = round(rng.uniform(80, 400), 1)
                finished = started + timedelta(milliseconds=duration)
                if outcome != "success":
                    error = ERRORS[rng.randrange(len(ERRORS))]
            write(
                f"{uuid.UUID(int=rng.getrandbits(128), version=4)}\t{module}\t{started.isoformat()}\t"
                f"{finished.isoformat()}\t{outcome}\tschedule\t{error}\t{duration}\t{api_calls}\t{api_errors}\t"
                f"{cpu}\t{rss}\t\t{{}}\n"
            )
        buf.seek(0)
        cursor.copy_from(buf, "meta_module_runs", columns=COLUMNS)
        done += n
    with connection.cursor() as c:
        c.execute("ANALYZE meta_module_runs")  # what autovacuum would do after such a load


def timed(fn, repeat: int, warmups: int = 2) -> tuple[float, Any]:
    for _ in range(warmups):
        result = fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 1), result


def naive(since: datetime) -> dict[str, dict[str, Any]]:
    """What a view without aggregates does: each module's runs of the last 24 h, counted in Python."""
    from meta_modules.models import MetaModule, ModuleRun

    out = {}
    for module in MetaModule.objects.all():
        runs = list(ModuleRun.objects.filter(module=module, started_at__gte=since))
        finished = [r for r in runs if r.outcome in ("success", "failure", "timeout")]
        durations = [r.duration_ms for r in finished if r.duration_ms is not None]
        out[module.code] = {
            "runs": len(finished),
            "successes": sum(r.outcome == "success" for r in runs),
            "failures": sum(r.outcome in ("failure", "timeout") for r in runs),
            "skipped": sum(r.outcome == "skipped" for r in runs),
            "avg_ms": round(sum(durations) / len(durations)) if durations else None,
            "api_calls": sum(r.api_calls for r in runs),
        }
    return out


def measure(size: int, repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from controltower import cycle, health

    cycle.heartbeat()
    now = timezone.now()
    evaluate_ms, report = timed(lambda: health.evaluate(now), repeat)
    with CaptureQueriesContext(connection) as captured:
        health.evaluate(now)
    run_queries = [q["sql"] for q in captured.captured_queries if "meta_module_runs" in q["sql"]]
    plans = []
    with connection.cursor() as cursor:
        for sql in run_queries:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    # The same evaluation once every module has a recent failure (the "latest error" subqueries
    # stop at once): isolates what the never-failing module costs.
    from meta_modules.models import MetaModule, ModuleRun

    healthy = MetaModule.objects.order_by("code").last()
    extra = ModuleRun.objects.create(
        module=healthy,
        started_at=now - timedelta(hours=1),
        outcome="failure",
        finished_at=now - timedelta(hours=1),
        duration_ms=1000,
        error_message="bench",
    )
    all_failed_ms, _ = timed(lambda: health.evaluate(now), repeat)
    extra.delete()
    alive = report.infrastructure.beat_alive and report.infrastructure.workers_alive
    naive_ms, counts = timed(lambda: naive(now - timedelta(hours=24)), max(3, repeat // 2), warmups=1)
    for m in report.modules:
        ours = {
            "runs": m.runs_24h,
            "successes": m.successes_24h,
            "failures": m.failures_24h,
            "skipped": m.skipped_24h,
            "avg_ms": m.avg_execution_time_ms,
            "api_calls": m.api_calls_24h,
        }
        assert ours == counts[m.code], (m.code, ours, counts[m.code])
    return {
        "runs_total": size,
        "runs_last_24h": sum(m.runs_24h + m.skipped_24h for m in report.modules),
        "modules": len(report.modules),
        "beat_and_workers_alive": alive,
        "system_status": report.system_status,
        "evaluate_ms": evaluate_ms,
        "evaluate_ms_every_module_failed_recently": all_failed_ms,
        "queries": len(captured.captured_queries),
        "module_run_queries": len(run_queries),
        "naive_ms": naive_ms,
        "naive_over_evaluate": round(naive_ms / evaluate_ms, 1),
        "explain": [{"sql": sql, "plan": plan} for sql, plan in zip(run_queries, plans)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per figure (median)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    rows = []
    with own_database("bench_health", keep=args.keep) as database_url:
        setup_django(tower_env(database_url, Path(tempfile.mkdtemp(prefix="bench-health-"))))
        from django.db import connection
        from django.utils import timezone

        from meta_modules.models import MetaModule

        with connection.cursor() as cursor:
            cursor.execute("SELECT version()")
            server = cursor.fetchone()[0].split(" on ")[0]
        module_ids = [str(pk) for pk in MetaModule.objects.order_by("code").values_list("pk", flat=True)]
        end = timezone.now()
        rng = random.Random(7)
        inserted = 0
        for size in SIZES:
            started = time.perf_counter()
            insert_runs(size - inserted, module_ids, end, rng)
            inserted = size
            generated_s = round(time.perf_counter() - started, 1)
            row = measure(size, args.repeat)
            row["insert_seconds"] = generated_s
            rows.append(row)
            print(
                f"{size:,} runs: inserted in {generated_s} s, evaluate {row['evaluate_ms']} ms, "
                f"{row['queries']} queries, naive {row['naive_ms']} ms",
                flush=True,
            )
        connection.close()

    results = {
        "machine": f"{machine()} · {server}",
        "modules": len(module_ids),
        "days": DAYS,
        "repeat": args.repeat,
        "sizes": rows,
    }
    print(f"\n{results['machine']}\n")
    print(
        "| runs (30 days) | runs in last 24 h | evaluate() median | same, every module failed recently "
        "| queries | naive: ORM rows → Python | naive / evaluate |\n|---|---|---|---|---|---|---|"
    )
    for row in rows:
        print(
            f"| {row['runs_total']:,} | {row['runs_last_24h']:,} | {row['evaluate_ms']} ms "
            f"| {row['evaluate_ms_every_module_failed_recently']} ms | {row['queries']} "
            f"| {row['naive_ms']} ms | {row['naive_over_evaluate']}× |"
        )
    for row in rows:
        for item in row["explain"]:
            print(f"\n-- {row['runs_total']:,} runs --\n{item['sql']}\n{item['plan']}")
    save_results("health_scale.json", results)


if __name__ == "__main__":
    main()
