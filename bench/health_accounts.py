#!/usr/bin/env python3
"""Benchmark: the health and report paths at 3 and at 300 ad accounts on PostgreSQL (issue 17, point 5).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres [REDIS_URL=redis://127.0.0.1:6379/N] \\
        .venv/bin/python bench/health_accounts.py [--repeat 15] [--campaigns-per-account 100] [--insight-days 14]

DATABASE_URL only says where the server is: the script creates two databases of its own
(bench_accounts_few_<pid>, bench_accounts_many_<pid>) and drops them at the end (--keep leaves them).
REDIS_URL, when given, is the shared cache (the access tiers learnt per account live there, as in
production); without it the embedded file cache is used. A Meta sandbox runs in-process for the
cycle's API probe. The facts are built by tests/agency.py, as the flat-in-accounts test builds them:
per account 100 campaigns (80 ACTIVE, 10 PAUSED, 10 ARCHIVED) with one ad set and one ad each and
14 days of daily insights per ad, a spend spike today on one account in ten, the access tier learnt,
and 3 runs of each of the 17 modules whose summary carries a detail per account; plus a week of hourly
health checks for the report. 3 accounts in one database, 300 in the other; the paths are timed on
both in alternation, round after round (2 warm-up rounds, then the median of --repeat, with its
spread), so that the load of other processes on this shared machine falls on both sizes alike; then
all again with an emergency stop in force holding every ACTIVE campaign (a ledger row each):
  the health cycle (commander.health_cycle: upkeep, probes, evaluate, recovery, persist, alerts),
  GET health, GET status, the dashboard, GET report (7 days), the console's report page, /metrics
— the time and the number of SQL queries of each, and the ratio 300 / 3 (goal: ≤ 2×, same queries).
The naive baseline, in the same run: what a check reads about the accounts (the mirror's ACTIVE
campaigns and their USD daily budgets, today's unacknowledged spikes in each account's own today, the
access tiers), read account by account as a per-account loop does — checked equal to what the tower
reads in a fixed number of queries (health._campaign_totals, health._spend_spikes_today,
throttle.learnt_tiers).
Prints a table and writes bench/results/health_accounts.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from common import ROOT, database_name, machine, own_database, save_results, setup_django, tower_env

SCALES = (3, 300)
HISTORY_CHECKS = 7 * 24  # a week of hourly checks behind the report
METRICS_TOKEN = "bench-metrics"


def use_database(name: str) -> None:
    """Point this process's connection at another benchmark database (reconnected at the next query)."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name


def history(checks: int) -> None:
    """A week of hourly completed checks and their 17 logs (what the report and the strips read)."""
    from django.utils import timezone

    from controltower.models import ControlTowerRun, SystemHealthLog
    from meta_modules.registry import MODULES

    now = timezone.now()
    runs = ControlTowerRun.objects.bulk_create(
        ControlTowerRun(
            run_type="health_check",
            system_status="healthy",
            executed_at=now - timedelta(hours=checks - i),
            executed_by="scheduler",
            mode="stub",
            total_modules_checked=len(MODULES),
            online_modules=len(MODULES),
            module_health_details={spec.code: "online" for spec in MODULES},
            execution_time_ms=900,
        )
        for i in range(checks)
    )
    SystemHealthLog.objects.bulk_create(
        SystemHealthLog(
            run=run,
            module_name=spec.code,
            module_full_name=spec.name,
            health_status="online",
            checked_at=run.executed_at,
            success_rate=1.0,
            is_scheduler_running=True,
            is_db_healthy=True,
            is_api_healthy=True,
            mode="stub",
        )
        for run in runs
        for spec in MODULES
    )


def paths(accounts: int) -> dict[str, Callable[[], Any]]:
    """Each measured path, with clients of this database's own users (a console session lives in it)."""
    from django.contrib.auth.models import User
    from django.test import Client
    from rest_framework.test import APIClient

    from controltower import commander
    from meta_modules import clock

    api = APIClient(SERVER_NAME="127.0.0.1")  # in bench.common.tower_env's ALLOWED_HOSTS
    api.force_authenticate(User.objects.get_or_create(username=f"bench-api-{accounts}", defaults={"is_staff": True})[0])
    console = Client(SERVER_NAME="127.0.0.1")
    console.force_login(
        User.objects.get_or_create(username=f"bench-console-{accounts}", defaults={"is_staff": True})[0]
    )

    def get(client: Any, url: str, **headers: str) -> Callable[[], Any]:
        def fetch() -> Any:
            response = client.get(url, headers=headers)
            assert response.status_code == 200, (url, response.status_code, response.content[:300])
            return response

        return fetch

    return {
        "health cycle": lambda: commander.health_cycle("scheduler"),
        "GET health": get(api, "/meta/control-tower/health"),
        "GET status": get(api, "/meta/control-tower/status"),
        "dashboard": get(console, "/"),
        "GET report (7 days)": get(api, "/meta/control-tower/report?days=7"),
        "console report (7 days)": get(console, "/report/?days=7"),
        "/metrics": get(console, "/metrics", Authorization=f"Bearer {METRICS_TOKEN}"),
        "account facts": lambda: account_facts(clock.now()),
        "naive: account facts per account": lambda: naive_account_facts(clock.now()),
    }


def account_facts(now: datetime) -> tuple[Any, ...]:
    """What a check reads about the accounts, as the tower reads it."""
    from controltower import health
    from meta_modules import throttle

    active, budget = health._campaign_totals()
    spikes = sorted(spike["campaign_id"] for spike in health._spend_spikes_today(now))
    return active, budget, spikes, throttle.learnt_tiers()


def naive_account_facts(now: datetime) -> tuple[Any, ...]:
    """The same, account by account: a few queries and a cache read per account."""
    from django.core.cache import cache

    from meta_modules import days, throttle
    from meta_modules.models import AdAccount, Campaign, SpendSpike

    active, cents, spikes, tiers = 0, 0, [], {}
    for account in AdAccount.objects.order_by("pk"):
        running = list(Campaign.objects.filter(account=account, status="ACTIVE").values_list("daily_budget_cents"))
        active += len(running)
        if account.currency == "USD":
            cents += sum(budget or 0 for (budget,) in running)
        today = days.local_today(now, account.zone)
        spikes += SpendSpike.objects.filter(campaign__account=account, day=today, acknowledged=False).values_list(
            "campaign_id", flat=True
        )
        tiers[account.pk] = cache.get(throttle.TIER_KEY.format(account=account.pk), "")
    return active, round(cents / 100, 2), sorted(spikes), tiers


def measure(databases: dict[int, str], repeat: int) -> dict[int, dict[str, dict[str, Any]]]:
    """Every path on every database in turn, round after round (2 warm-up rounds, then `repeat`):
    the sizes share the machine's moments, so another process's load falls on both alike."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from meta_modules import clock

    by_size, samples = {}, {}
    for accounts, name in databases.items():
        use_database(name)
        by_size[accounts] = paths(accounts)
        samples[accounts] = {path: [] for path in by_size[accounts]}
        assert account_facts(clock.now()) == naive_account_facts(clock.now())  # the baseline reads the same
    for round_ in range(2 + repeat):
        for accounts, name in databases.items():
            use_database(name)
            connection.ensure_connection()
            for path, fn in by_size[accounts].items():
                started = time.perf_counter()
                fn()
                if round_ >= 2:
                    samples[accounts][path].append((time.perf_counter() - started) * 1000)
    figures: dict[int, dict[str, dict[str, Any]]] = {}
    for accounts, name in databases.items():
        use_database(name)
        figures[accounts] = {}
        for path, fn in by_size[accounts].items():
            with CaptureQueriesContext(connection) as captured:
                fn()
            times = samples[accounts][path]
            figures[accounts][path] = {
                "ms": round(statistics.median(times), 1),
                "min": round(min(times), 1),
                "max": round(max(times), 1),
                "queries": len(captured.captured_queries),
            }
    return figures


def ratios(few: dict[str, dict[str, Any]], many: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per path, many / few of the medians and of the fastest runs (the least disturbed by other processes)."""
    return {
        name: (round(many[name]["ms"] / few[name]["ms"], 2), round(many[name]["min"] / few[name]["min"], 2))
        for name in few
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per figure (median)")
    parser.add_argument("--campaigns-per-account", type=int, default=100)
    parser.add_argument("--insight-days", type=int, default=14, help="days of daily insights per ad")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from meta_sandbox.testing import start_sandbox
    from tests import agency

    cache = {"CACHE_URL": os.environ["REDIS_URL"]} if os.environ.get("REDIS_URL") else {}
    with (
        start_sandbox(accounts=1, campaigns_per_account=1, seed=7) as sandbox,
        own_database("bench_accounts_few", keep=args.keep) as few_url,
        own_database("bench_accounts_many", keep=args.keep) as many_url,
    ):
        env = tower_env(
            few_url,
            Path(tempfile.mkdtemp(prefix="bench-accounts-")),
            META_GRAPH_URL=sandbox.url,
            METRICS_TOKEN=METRICS_TOKEN,
            # No worker runs here: the cycle's ping would wait its whole timeout (1 s by default) for
            # replies, a fixed cost that would hide what the accounts cost. Its minimum instead.
            WORKER_PING_TIMEOUT_SECONDS="0.05",
            **cache,
        )
        setup_django(env)
        from django.core.cache import cache as shared_cache
        from django.core.management import call_command
        from django.db import connection

        from controltower import cycle
        from controltower.models import CampaignHold
        from meta_modules import clock

        shared_cache.clear()
        with connection.cursor() as cursor:
            cursor.execute("SELECT version()")
            server = cursor.fetchone()[0].split(" on ")[0]
        databases = {SCALES[0]: database_name(few_url), SCALES[1]: database_name(many_url)}
        scales = []
        for accounts, name in databases.items():
            use_database(name)
            if accounts != SCALES[0]:
                call_command("migrate", verbosity=0)
                call_command("sync_modules", stdout=open(os.devnull, "w"))
            scale = agency.Agency(accounts, args.campaigns_per_account, args.insight_days)
            started = time.perf_counter()
            history(HISTORY_CHECKS)
            agency.grow(scale, clock.now())
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")  # what autovacuum does after such a load (not during the timing)
            build_s = round(time.perf_counter() - started, 1)
            scales.append(
                {
                    "accounts": accounts,
                    "campaigns": scale.campaigns,
                    "ads": scale.campaigns,
                    "insights": scale.insights,
                    "build_seconds": build_s,
                }
            )
            print(f"{accounts} accounts built in {build_s} s", flush=True)
        for accounts, name in databases.items():
            use_database(name)
            agency.record_runs(agency.Agency(accounts, args.campaigns_per_account, args.insight_days), clock.now())
            cycle.heartbeat()
        figures = measure(databases, args.repeat)
        for row in scales:
            row["paths"] = figures[row["accounts"]]
        # Then an emergency stop in force, holding every ACTIVE campaign (a ledger row each).
        for name in databases.values():
            use_database(name)
            agency.hold_active_campaigns(agency.halt())
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE meta_control_tower_campaign_holds")
        figures = measure(databases, args.repeat)
        for row, name in zip(scales, databases.values(), strict=True):
            use_database(name)
            row["halted_paths"] = figures[row["accounts"]]
            row["holds"] = CampaignHold.objects.count()
        connection.close()

    few, many = scales
    tables = {key: ratios(few[key], many[key]) for key in ("paths", "halted_paths")}
    naive_over_ours = round(
        many["paths"]["naive: account facts per account"]["ms"] / many["paths"]["account facts"]["ms"], 1
    )
    results = {
        "machine": f"{machine()} · {server}",
        "cache": "redis" if cache else "file",
        "repeat": args.repeat,
        "campaigns_per_account": args.campaigns_per_account,
        "insight_days": args.insight_days,
        "history_checks": HISTORY_CHECKS,
        "scales": scales,
        "ratios": tables,
        "naive_over_ours_at_300": naive_over_ours,
    }
    print(f"\n{results['machine']} · cache {results['cache']}")
    for key, title in (("paths", "running"), ("halted_paths", "halted, every ACTIVE campaign held")):
        print(
            f"\n{title}\n| path | {few['accounts']} accounts: median (fastest–slowest) | queries "
            f"| {many['accounts']} accounts | queries | ratio of medians | of fastest |\n|---|---|---|---|---|---|---|"
        )
        for name, (ratio, fastest) in tables[key].items():
            a, b = few[key][name], many[key][name]
            print(
                f"| {name} | {a['ms']} ms ({a['min']}–{a['max']}) | {a['queries']} "
                f"| {b['ms']} ms ({b['min']}–{b['max']}) | {b['queries']} | {ratio}× | {fastest}× |"
            )
    print(f"\nnaive / ours (account facts) at {many['accounts']} accounts: {naive_over_ours}×")
    save_results("health_accounts.json", results)


if __name__ == "__main__":
    main()
