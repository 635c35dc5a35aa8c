#!/usr/bin/env python3
"""Benchmark: the kill-switch readiness check (issue 18) at 10 and 300 ad accounts, and its estimate
against the emergency stop pressed right after it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \
        .venv/bin/python bench/readiness.py [--sizes 10 300] [--active 100] [--repeat 3] \
        [--dev-active 30] [--out readiness.json]

The Meta sandbox runs as its own process (real HTTP on loopback), seeded like bench/agency_stop.py
(per account --active ACTIVE campaigns plus 10 % PAUSED and 5 % ARCHIVED) with the live latency
profile (100 ms per request, 20 ms per batch item, 1 ms per listed object), standard tier. The tower
runs on a PostgreSQL database of its own with Redis as the shared cache, META_APP_ID (the sandbox's
app) and META_APP_SECRET set so debug_token is asked with the app token; no Celery worker runs.
For each size in --sizes:
  1. the campaign mirror is filled by module 10.2's sync job (`jobs.sync_campaigns`, in this
     process) with Meta's latency switched off (the sync is not what is measured), then the
     sandbox is reseeded (same seed: the same ids) with the live latency, which also clears its
     counters and rate-limit scores;
  2. the naive baseline: the same facts read one account after another (`readiness.assess()` with
     KILL_SWITCH_PARALLELISM=1 and the deadline lifted so every account is read), timed; then the
     sandbox is reseeded again (scores back to 0);
  3. --repeat readiness checks, `commander.check_readiness` (one ReadinessCheck row each): wall time,
     the Graph requests and batch items it made, the rate points it spent per account (the
     sandbox's /_sandbox/state before and after), the DB queries (CaptureQueriesContext), the verdict,
     paused_at_once / left_pending and estimated_seconds;
  4. a real emergency stop right after the last check, with no worker, pressed in a process of its
     own as bench/agency_stop.py presses it (its `--press stop`): when it answered, how busy the
     cores were and the sandbox's CPU time, and per account the holds paused vs pending against the
     check's estimate for that account;
  5. calibrated: the campaigns ACTIVE again (reseeded), one check — which now scales Meta's part
     of the time by the stop just seen (stop_factor) — and a second stop, against that estimate.
Then the development tier: one account of --dev-active ACTIVE campaigns on Meta's development tier
(60 points per window), one check then the stop, the same comparison.
Prints JSON and writes bench/results/<--out>.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agency_stop import cpu_ticks, reseed, reset_tower
from common import ROOT, machine, own_database, postgres_server, sandbox_process, save_results, setup_django, tower_env
from emergency_stop import control

LIVE = {"latency_ms": 100.0, "per_item_ms": 20.0, "per_object_ms": 1.0}  # the sandbox's `live` profile
OFF = {"latency_ms": 0.0, "per_item_ms": 0.0, "per_object_ms": 0.0}


def seed(url: str, accounts: int, active: int, latency: dict[str, float], tier: dict[str, str] | None = None) -> None:
    """Reseed the sandbox (counters, scores and blocks cleared; same ids) with `latency`, and `tier`."""
    reseed(url, argparse.Namespace(accounts=accounts, active=active, **latency))
    if tier:
        control(url, "/_sandbox/faults", {**control(url, "/_sandbox/faults"), "tier": tier})


def fill_mirror(url: str, accounts: int, active: int) -> dict[str, Any]:
    """Module 10.2's sync job with Meta's latency off, on an empty mirror and an empty cache (the
    accounts list a module run caches would be the previous size's)."""
    from django.core.cache import cache
    from django.db import connection

    from meta_modules import graph, jobs
    from meta_modules.models import Ad, AdAccount, AdSet, Campaign

    seed(url, accounts, active, OFF)
    cache.clear()
    with connection.cursor() as cursor:
        tables = ", ".join(m._meta.db_table for m in (Ad, AdSet, Campaign, AdAccount))
        cursor.execute(f"TRUNCATE {tables} CASCADE")
    graph.reset_clients()
    started = time.perf_counter()
    jobs.sync_campaigns.apply()
    took = round(time.perf_counter() - started, 1)
    mirrored = Campaign.objects.filter(status="ACTIVE").count()
    if mirrored != accounts * active:
        raise SystemExit(f"The sync mirrored {mirrored} ACTIVE campaigns, not {accounts * active}.")
    return {"how": "jobs.sync_campaigns (module 10.2), Meta's latency off", "seconds": took, "active": mirrored}


def sandbox_view(url: str) -> tuple[dict[str, int], dict[str, float]]:
    state = control(url, "/_sandbox/state")
    return state["counters"], {a["id"]: a["score"] for a in state["accounts"]}


def spent(url: str, before: tuple[dict[str, int], dict[str, float]]) -> dict[str, Any]:
    """What happened on Meta since `before`: requests, batch items, writes, points per account."""
    counters, scores = sandbox_view(url)
    points = Counter(round(scores[a] - before[1].get(a, 0), 2) for a in scores)
    return {
        "graph_requests": counters["requests"] - before[0]["requests"],
        "batch_items": counters["batch_items"] - before[0]["batch_items"],
        "writes": counters["writes"] - before[0]["writes"],
        "rate_limited": counters["rate_limited"] - before[0]["rate_limited"],
        "points_per_account": {str(p): n for p, n in sorted(points.items())},  # points spent → accounts
    }


def naive_check(url: str) -> dict[str, Any]:
    """The same facts, one account after the other: the check's own gathering, one thread."""
    from django.test import override_settings

    from controltower import readiness
    from meta_modules import graph

    graph.reset_clients()
    before = sandbox_view(url)
    with override_settings(KILL_SWITCH_PARALLELISM=1, READINESS_DEADLINE_SECONDS=3600):
        started = time.perf_counter()
        found = readiness.assess()
        took = time.perf_counter() - started
    return {
        "wall_s": round(took, 3),
        "verdict": found.verdict,
        "accounts_read": sum(a.facts.reachable for a in found.accounts),
        **spent(url, before),
    }


def one_check(url: str) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from controltower import commander

    before = sandbox_view(url)
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        found = commander.check_readiness("bench")
        took = time.perf_counter() - started
    latencies = [a["latency_ms"] for a in found.accounts if a["latency_ms"] is not None]
    return {
        "wall_s": round(took, 3),
        "duration_ms": found.duration_ms,
        "db_queries": len(queries.captured_queries),
        "verdict": found.verdict,
        "summary": found.summary,
        "campaigns_active": found.campaigns_active,
        "paused_at_once": found.paused_at_once,
        "left_pending": found.left_pending,
        "out_of_reach": found.out_of_reach,
        "estimated_seconds": found.estimated_seconds,
        "meta_seconds": found.meta_seconds,
        "stop_factor": found.stop_factor,
        "account_read_ms": {
            "min": min(latencies, default=None),
            "median": statistics.median(latencies) if latencies else None,
            "max": max(latencies, default=None),
        },
        "tiers": dict(Counter(a["tier"] for a in found.accounts)),
        "token": {k: found.token[k] for k in ("source", "valid", "type", "problem")},
        **spent(url, before),
        "_estimate": {a["account_id"]: a["headroom"] for a in found.accounts},
    }


def stop(url: str, env: dict[str, str], sandbox_pid: int, estimate: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The emergency stop, pressed in a process of its own (agency_stop's --press), no worker; what it
    did per account against the check's estimate."""
    from controltower.models import CampaignHold

    before = sandbox_view(url)
    busy0, sandbox0 = cpu_ticks(), cpu_ticks(sandbox_pid)[0]
    child = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "agency_stop.py"), "--press", "stop"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    busy, total = (a - b for a, b in zip(cpu_ticks(), busy0))
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    holds = Counter(CampaignHold.objects.filter(stop_run_id=answer["run_id"]).values_list("account_id", "state"))
    agree = [
        a
        for a, room in estimate.items()
        if holds[(a, "paused")] == room["at_once"] and holds[(a, "pending")] == room["pending"]
    ]
    return {
        "answered_s": answer["answered_s"],
        "paused": answer["paused"],
        "pending": answer["pending"],
        "failed": sum(n for (_, state), n in holds.items() if state == "failed"),
        "accounts_as_estimated": len(agree),
        "accounts": len(estimate),
        "cores_busy": round(busy / total, 2) if total else None,
        "sandbox_cpu_s": round(cpu_ticks(sandbox_pid)[0] - sandbox0, 2),
        "peak_rss_mb": answer["peak_rss_mb"],
        "left_active_on_meta": sum(a["campaigns"]["ACTIVE"] for a in control(url, "/_sandbox/state")["accounts"]),
        **spent(url, before),
    }


def compare(check: dict[str, Any], stopped: dict[str, Any]) -> dict[str, Any]:
    estimated = check["estimated_seconds"]
    return {
        "paused_agrees": check["paused_at_once"] == stopped["paused"],
        "pending_agrees": check["left_pending"] == stopped["pending"],
        "actual_over_estimated": round(stopped["answered_s"] / estimated, 2) if estimated else None,
    }


def measure_size(url: str, env: dict[str, str], pid: int, accounts: int, args: argparse.Namespace) -> dict[str, Any]:
    from meta_modules import graph

    result: dict[str, Any] = {"accounts": accounts, "active": accounts * args.active}
    result["mirror"] = fill_mirror(url, accounts, args.active)
    seed(url, accounts, args.active, LIVE)
    result["naive"] = naive_check(url)
    seed(url, accounts, args.active, LIVE)
    graph.reset_clients()
    checks = [one_check(url) for _ in range(args.repeat)]
    estimate = checks[-1].pop("_estimate")
    for check in checks[:-1]:
        check.pop("_estimate")
    result["checks"] = checks
    walls = [c["wall_s"] for c in checks]
    result["check_wall_s"] = {"first": walls[0], "median": statistics.median(walls)}
    result["naive_over_check"] = round(result["naive"]["wall_s"] / statistics.median(walls), 1)
    reset_tower()
    result["stop"] = stop(url, env, pid, estimate)
    result["estimate_vs_stop"] = compare(checks[-1], result["stop"])
    reset_tower()
    # Calibrated: the check after a real stop scales Meta's part by that stop's factor; a second
    # stop, on the same campaigns ACTIVE again, says how close that comes.
    seed(url, accounts, args.active, LIVE)
    graph.reset_clients()
    calibrated = one_check(url)
    estimate = calibrated.pop("_estimate")
    result["calibrated_check"] = calibrated
    reset_tower()
    result["second_stop"] = stop(url, env, pid, estimate)
    result["calibrated_vs_second_stop"] = compare(calibrated, result["second_stop"])
    reset_tower()
    return result


def development_tier(url: str, env: dict[str, str], pid: int, active: int) -> dict[str, Any]:
    from meta_modules import graph

    result: dict[str, Any] = {"accounts": 1, "active": active, "mirror": fill_mirror(url, 1, active)}
    account = control(url, "/_sandbox/state")["accounts"][0]["id"]
    seed(url, 1, active, LIVE, tier={account: "development"})
    graph.reset_clients()
    check = one_check(url)
    estimate = check.pop("_estimate")
    result["check"] = check
    result["headroom"] = estimate[account]
    reset_tower()
    result["stop"] = stop(url, env, pid, estimate)
    result["estimate_vs_stop"] = compare(check, result["stop"])
    reset_tower()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 300], help="ad accounts")
    parser.add_argument("--active", type=int, default=100, help="ACTIVE campaigns per account")
    parser.add_argument("--repeat", type=int, default=3, help="readiness checks per size")
    parser.add_argument("--dev-active", type=int, default=30, help="ACTIVE campaigns of the development-tier account")
    parser.add_argument("--out", default="readiness.json")
    args = parser.parse_args()
    if not postgres_server() or not os.environ.get("REDIS_URL", "").startswith("redis://"):
        raise SystemExit("DATABASE_URL=postgres://… and REDIS_URL=redis://… are required.")
    tmp = Path(tempfile.mkdtemp(prefix="bench-readiness-"))
    sandbox, url = sandbox_process(tmp)
    app_id = control(url, "/_sandbox/token")["app_id"]
    results: dict[str, Any] = {"machine": machine(), "meta": {"latency_profile": "live", **LIVE}, "sizes": {}}
    try:
        with own_database("bench_readiness") as database_url:
            redis = os.environ["REDIS_URL"]
            env = tower_env(
                database_url,
                tmp,
                META_GRAPH_URL=url,
                META_APP_ID=app_id,
                META_APP_SECRET="bench-app-secret",
                CACHE_URL=redis,
                CELERY_BROKER_URL=redis,
            )
            setup_django(env)
            from django.conf import settings

            results["settings"] = {
                name: getattr(settings, name)
                for name in (
                    "KILL_SWITCH_PARALLELISM",
                    "READINESS_BATCH_ITEM_MS",
                    "READINESS_DEADLINE_SECONDS",
                    "EMERGENCY_STOP_DEADLINE_SECONDS",
                )
            }
            for accounts in args.sizes:
                results["sizes"][accounts] = measure_size(url, env, sandbox.pid, accounts, args)
                print(accounts, "accounts", json.dumps(results["sizes"][accounts]), flush=True)
            results["development_tier"] = development_tier(url, env, sandbox.pid, args.dev_active)
            print("development tier", json.dumps(results["development_tier"]), flush=True)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
    save_results(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
