#!/usr/bin/env python3
"""Benchmark: the module jobs that work per ad account, at agency scale, in parts over Celery workers.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres CELERY_BROKER_URL=redis://127.0.0.1:6379/13 \
        .venv/bin/python bench/module_cycle.py [--accounts 300] [--campaigns-per-account 100] \
        [--latency-ms 100] [--per-item-ms 20] [--workers 1 2] [--concurrency 8] [--sample 10] \
        [--out module_cycle.json]

The Meta sandbox runs as a separate process (real HTTP on loopback), seeded with --accounts ×
--campaigns-per-account campaigns (one ad set and one ad each, 8 days of history), answering every
request in --latency-ms plus --per-item-ms per batch item, standard tier.

For each count in --workers, that many `celery -A config worker --pool prefork --concurrency
--concurrency` processes are started, then each per-account module is sent to them as Beat would
(`apply_async` of its task) and timed from the send to its one ModuleRun being closed by its last
part: 10.2 (sync the mirror; the mirror is emptied first, so every count does the same full sync),
10.4 (insights; emptied first likewise), 10.14 (today's spend). The mirror 10.2 built is what 10.4
and 10.14 read. Recorded per module: wall time, the run's own duration, parts, outcome, Meta calls.

The naive baseline, in the same run: the old sequential loop (one task, the accounts one after the
other: `work(run, account)` for each), over the first --sample accounts in this process, timed
and extrapolated to every account. The jobs' schedules are printed beside the figures (a run must
end within its interval). Prints JSON and writes bench/results/<--out>.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import ROOT, machine, own_database, sandbox_process, save_results, setup_django, tower_env

BIN = ROOT / ".venv" / "bin"
MODULES = ("10.2", "10.4", "10.14")


def control(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url + path, data=data, method="POST" if data else "GET", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def start_workers(count: int, concurrency: int, env: dict[str, str], tmp: Path) -> list[subprocess.Popen]:
    workers = []
    for n in range(count):
        log = tmp / f"worker{n}.log"
        workers.append(
            subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "-A",
                    "config",
                    "worker",
                    "--loglevel",
                    "info",
                    "--pool",
                    "prefork",
                    "--concurrency",
                    str(concurrency),
                    "--without-gossip",
                    "--without-mingle",
                    "-n",
                    f"bench{os.getpid()}-{n}@%h",
                ],
                cwd=ROOT,
                env={**os.environ, **env, "LOG_LEVEL": "INFO"},
                stdout=open(log, "w"),
                stderr=subprocess.STDOUT,
            )
        )
    for n in range(count):
        log, deadline = tmp / f"worker{n}.log", time.monotonic() + 120
        while not re.search(r"ready\.", log.read_text()):
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {n} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=120)


def empty_before(code: str) -> None:
    """Each worker count does the same work: a full sync into an empty mirror, insights into none."""
    from meta_modules.models import AdAccount, DailyInsight

    if code == "10.2":
        AdAccount.objects.all().delete()  # cascades to campaigns, ad sets, ads, insights, snapshots
    elif code == "10.4":
        DailyInsight.objects.all().delete()


def timed_run(code: str, url: str) -> dict[str, Any]:
    from config.celery import app
    from meta_modules import jobs, registry  # noqa: F401  (jobs registers the module tasks)
    from meta_modules.models import ModuleRun

    empty_before(code)
    requests_before = control(url, "/_sandbox/state")["counters"]["requests"]
    sent = time.perf_counter()
    task_id = app.tasks[registry.get(code).task].apply_async().id
    while True:
        run = ModuleRun.objects.filter(celery_task_id=task_id).exclude(outcome=ModuleRun.Outcome.RUNNING).first()
        if run is not None:
            break
        if time.perf_counter() - sent > 1800:
            raise SystemExit(f"{code} did not finish in 30 min")
        time.sleep(0.1)
    wall = time.perf_counter() - sent
    summary = run.summary
    return {
        "wall_seconds": round(wall, 2),
        "run_duration_seconds": round(run.duration_ms / 1000, 2),
        "outcome": run.outcome,
        "error": run.error_message[:300],
        "parts": summary.get("parts"),
        "parts_queued": summary.get("parts_queued"),
        "accounts_done": summary.get("accounts_done"),
        "accounts_not_done": {k: summary.get(f"accounts_{k}") for k in ("failed", "deferred", "refused", "lost")},
        "cpu_seconds_in_jobs": round((run.cpu_ms or 0) / 1000, 2),
        "api_calls": run.api_calls,
        "sandbox_requests": control(url, "/_sandbox/state")["counters"]["requests"] - requests_before,
        "schedule_seconds": registry.get(code).every_seconds,
    }


def naive(code: str, sample: list[str], total: int) -> dict[str, Any]:
    """The old loop: one task, `work(run, account)` for each account in turn, here."""
    from meta_modules import parts
    from meta_modules.runs import RunContext, counting_into

    work = parts.JOBS[code].work
    run = RunContext(run_id=None, module_code=code)
    start = time.perf_counter()
    with counting_into(run):
        for account in sample:
            work(run, account)
    seconds = time.perf_counter() - start
    return {
        "sample_accounts": len(sample),
        "sample_seconds": round(seconds, 2),
        "extrapolated_seconds": round(seconds / len(sample) * total, 1),
        "api_calls_sample": run.api_calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--campaigns-per-account", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--per-item-ms", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, default=8, help="prefork processes per worker")
    parser.add_argument("--sample", type=int, default=10, help="accounts in the naive baseline's sample")
    parser.add_argument("--out", default="module_cycle.json", help="file name under bench/results/")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-modules-"))
    sandbox, url = sandbox_process(tmp)
    results: dict[str, Any] = {
        "machine": machine(),
        "broker": os.environ.get("CELERY_BROKER_URL", "filesystem://"),
        "accounts": args.accounts,
        "campaigns_per_account": args.campaigns_per_account,
        "latency_ms_per_request": args.latency_ms,
        "per_item_ms": args.per_item_ms,
        "concurrency_per_worker": args.concurrency,
        "accounts_per_task": int(os.environ.get("MODULE_ACCOUNTS_PER_TASK", "1")),
        "loadavg_at_start": os.getloadavg(),
        "workers": {},
    }
    with own_database("bench_modules") as database_url:
        env = tower_env(database_url, tmp, META_GRAPH_URL=url)
        try:
            seeded = time.perf_counter()
            control(
                url,
                "/_sandbox/reset",
                {
                    "accounts": args.accounts,
                    "campaigns_per_account": args.campaigns_per_account,
                    "adsets_per_campaign": 1,
                    "ads_per_adset": 1,
                    "history_days": 8,
                    "seed": 7,
                },
            )
            results["seed_seconds"] = round(time.perf_counter() - seeded, 2)
            faults = {"latency_ms": args.latency_ms, "per_item_ms": args.per_item_ms, "async_job_seconds": 0}
            control(url, "/_sandbox/faults", faults)
            setup_django(env)
            from meta_modules import graph

            for count in args.workers:
                workers = start_workers(count, args.concurrency, env, tmp)
                try:
                    figures = {}
                    for code in MODULES:
                        figures[code] = timed_run(code, url)
                        print(count, "worker(s)", code, json.dumps(figures[code]), flush=True)
                finally:
                    stop_workers(workers)
                results["workers"][count] = figures

            from meta_modules.models import AdAccount

            sample = list(AdAccount.objects.order_by("pk").values_list("pk", flat=True)[: args.sample])
            AdAccount.objects.filter(pk__in=sample).delete()  # the sample's sync starts from nothing, as above
            graph.reset_clients()
            results["naive"] = {}
            for code in MODULES:
                results["naive"][code] = naive(code, sample, args.accounts)
                print("naive", code, json.dumps(results["naive"][code]), flush=True)
            results["speedup_vs_naive"] = {
                count: {
                    code: round(results["naive"][code]["extrapolated_seconds"] / figures[code]["wall_seconds"], 1)
                    for code in MODULES
                }
                for count, figures in results["workers"].items()
            }
            results["sandbox_counters"] = control(url, "/_sandbox/state")["counters"]
            results["loadavg_at_end"] = os.getloadavg()
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=10)
            from django.db import connections

            connections.close_all()

    save_results(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
