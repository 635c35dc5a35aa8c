#!/usr/bin/env python3
"""Benchmark: emergency stop, press → every ACTIVE campaign confirmed PAUSED on Meta.

    [DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres] .venv/bin/python bench/emergency_stop.py \
        [--accounts 5] [--campaigns 1000 5000] [--latency-ms 50] [--repeat 3] [--skip-naive] [--skip-processes] \
        [--mutation-rate-per-s 100] [--usage-headers buc_only] [--out emergency_stop.json]

Runs the Meta sandbox as a separate process (real HTTP on loopback) with a fixed latency per
request. For each size in --campaigns (ACTIVE campaigns in total, spread evenly over --accounts,
plus 10 % PAUSED and 5 % ARCHIVED per account), reseeded before every measurement, in the same run:
  1. the tower's stop in this process (killswitch.emergency_stop: ledger, batches ≤ 50, accounts
     in parallel, rate-limit aware), standard tier, --repeat times, each followed by a resume
     (killswitch.resume without its health check: every held campaign re-activated);
  2. unless --skip-processes: the same stop through the real endpoint, POST
     /meta/control-tower/emergency-stop on the web process as `tower.py up` starts it
     (tower.web_command, 2 workers) (fresh per size, so its rate budget starts clean), timed by the
     client; the peak RSS (VmHWM) of the worker that served it;
  3. unless --skip-processes: the background sweep on a real `celery -A config worker --concurrency 1`
     process: Meta fails every call during the stop (error_rate 1.0), so the stop pauses nothing and
     queues `resweep_halt` itself; Meta recovers; the worker's sweep pauses everything (its duration
     from the worker's "succeeded in" log line), then one `run_health_cycle` runs on it; the peak
     RSS of the worker's pool process after each;
  4. unless --skip-naive: the naive baseline, the SDK with one update call per campaign, sequential.
After each stop: every account's rate-limit score in the sandbox (points of the 9,000-point window
used) and the rate-limited / rejected-while-blocked counters. Then the largest size in ONE standard
account (above 3,000 campaigns the pauses need more than its 9,000-point window: the stop must stop
at the budget and leave the rest pending, without being blocked), and the development tier (60
points per window) with 30 campaigns: the stop must wait for the window instead of calling.
Meta's limits set a floor under every stop, computed for each size and printed beside it
(`floor`): per account (accounts run in parallel) the round trips one after the other (listing
pages of 100, then pause batches of 50) × the latency, the writes at Meta's mutation rate of
about 100 in any second (the client never sends faster), and whether the pauses fit in 90 % of the
account's 9,000-point window (the rest must wait for the window). `--mutation-rate-per-s` makes
the sandbox enforce that rate (613/5044001 beyond it); `--usage-headers buc_only` makes it send
only X-Business-Use-Case-Usage, as the live Marketing API does.
With a postgres:// DATABASE_URL the script creates its own database (bench_stop_<pid>) on that
server and drops it at the end; without one it uses SQLite in a temporary TOWER_VAR_DIR.
CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/3) is passed on; without it the worker uses the
file-system broker. Prints JSON and writes bench/results/<--out>.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    free_port,
    machine,
    own_database,
    postgres_server,
    sandbox_process,
    save_results,
    setup_django,
    tower_env,
)

import tower  # the web process as tower.py up starts it (importable once common has set the path)

BIN = ROOT / ".venv" / "bin"
STANDARD_MAX_POINTS = 9000


def control(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url + path, data=data, method="POST" if data else "GET", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def active_count(url: str) -> int:
    return sum(a["campaigns"]["ACTIVE"] for a in control(url, "/_sandbox/state")["accounts"])


MUTATIONS_PER_SECOND = 100  # Meta's mutation rate per app and ad account (the client paces itself to it)
WRITE_CEILING = 0.9  # the client's share of an account's window it spends on writes
LISTING_PAGE, BATCH = 100, 50
META_FAULTS: dict[str, Any] = {}  # the sandbox behaviours a run asks for (--mutation-rate-per-s, --usage-headers)


def reseed(url: str, accounts: int, active: int, latency_ms: int, **faults: Any) -> None:
    control(
        url,
        "/_sandbox/reset",
        {
            "accounts": accounts,
            "seed": 7,
            "adsets_per_campaign": 1,
            "ads_per_adset": 1,
            "statuses": {"ACTIVE": active, "PAUSED": active // 10, "ARCHIVED": active // 20},
        },
    )
    control(url, "/_sandbox/faults", {"latency_ms": latency_ms, "async_job_seconds": 0, **META_FAULTS, **faults})


def floor(active_per_account: int, latency_ms: float) -> dict[str, Any]:
    """The least time Meta's limits allow for one account's share of a stop (accounts in parallel)."""
    pages, batches = -(-active_per_account // LISTING_PAGE), -(-active_per_account // BATCH)
    round_trips = (pages + batches) * latency_ms / 1000
    writes = max(0, active_per_account - MUTATIONS_PER_SECOND) / MUTATIONS_PER_SECOND  # any 1 s may hold 100
    points = pages + 3 * active_per_account
    return {
        "round_trips_s": round(round_trips, 3),
        "writes_at_mutation_rate_s": round(writes, 3),
        "points_needed": points,
        "fits_one_window": points <= WRITE_CEILING * STANDARD_MAX_POINTS,
        "seconds": round(max(round_trips, writes), 3),
    }


def rate_budget(url: str) -> dict[str, Any]:
    """What the stop cost each account's rate-limit window, as the sandbox counted it."""
    state = control(url, "/_sandbox/state")
    scores = [a["score"] for a in state["accounts"]]
    return {
        "max_account_points": max(scores),
        "max_account_util_pct": round(max(scores) / STANDARD_MAX_POINTS * 100, 1),
        "rate_limited_responses": state["counters"]["rate_limited"],
        "mutation_limited_responses": state["counters"]["mutation_limited"],
        "rejected_while_blocked": sum(a["rejected_while_blocked"] for a in state["accounts"]),
        "http_requests": state["counters"]["requests"],
    }


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for {pid}")


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def prepare(env: dict[str, str]) -> str:
    """Migrate, sync modules, an operator with a token. → the token."""
    setup_django(env)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from controltower.models import ApiToken
    from controltower.roles import OPERATORS_GROUP

    user = get_user_model().objects.create_user("bench", password=None, is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    return ApiToken.issue(user, "bench", None, created_by="bench")[1]


def reset_tower() -> None:
    """Back to running: not halted, module schedules enabled, no ledger; each stop does the same work."""
    from django.db import connection
    from django_celery_beat.models import PeriodicTask

    from controltower.models import CampaignHold, TowerState

    TowerState.objects.filter(pk=1).update(emergency_stop_active=False, halt_run=None, held_task_ids=[])
    CampaignHold.objects.all().delete()
    PeriodicTask.objects.filter(meta_module__isnull=False).update(enabled=True)
    connection.close()  # SQLite: no open transaction while the server processes write


def tower_stop() -> tuple[float, Any]:
    from controltower import commander, killswitch
    from meta_modules import graph

    reset_tower()
    graph.reset_clients()
    started = time.perf_counter()
    result = commander.emergency_stop(killswitch.StopRequest(reason="benchmark", actor="bench", send_alerts=False))
    return time.perf_counter() - started, result


def tower_resume() -> tuple[float, Any]:
    """Resume after tower_stop(): re-activate every held campaign (no health check: timed on its own)."""
    from controltower import commander, killswitch
    from meta_modules import graph

    graph.reset_clients()
    started = time.perf_counter()
    result = commander.resume(killswitch.ResumeRequest(actor="bench", reason="benchmark", run_health_check=False))
    return time.perf_counter() - started, result


def naive_stop(graph_url: str) -> float:
    """One SDK call per campaign, sequential: what a script without batching does."""
    from facebook_business.adobjects.adaccount import AdAccount
    from facebook_business.adobjects.campaign import Campaign
    from facebook_business.api import FacebookAdsApi
    from facebook_business.session import FacebookSession

    session = FacebookSession(access_token="bench", timeout=30)
    session.GRAPH = graph_url
    api = FacebookAdsApi(session)
    started = time.perf_counter()
    for account in api.call("GET", ("me", "adaccounts"), params={"fields": "id", "limit": 100}).json()["data"]:
        campaigns = AdAccount(account["id"], api=api).get_campaigns(
            fields=["id", "status"], params={"effective_status": ["ACTIVE", "IN_PROCESS", "WITH_ISSUES"], "limit": 100}
        )
        for campaign in list(campaigns):
            if campaign["status"] == "ACTIVE":  # configured ACTIVE: what a person left running
                Campaign(campaign["id"], api=api).api_update(params={"status": "PAUSED"})
    return time.perf_counter() - started


def http_json(
    port: int, method: str, path: str, token: str, body: dict | None = None, timeout: float = 60
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(
        method,
        path,
        body=json.dumps(body) if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else {}


def api_stop(env: dict[str, str], token: str, tmp: Path) -> dict[str, Any]:
    """The stop through POST /meta/control-tower/emergency-stop on a fresh 2-worker gunicorn."""
    reset_tower()
    port = free_port()
    server = subprocess.Popen(
        [*tower.web_command("127.0.0.1", port), "--workers", "2"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "gunicorn.log", "a"),
    )
    try:
        for _ in range(300):
            try:
                if http_json(port, "GET", "/meta/control-tower/status", token, timeout=5)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        # Both workers answer a few requests first, so the stop does not pay for lazy imports.
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: http_json(port, "GET", "/meta/control-tower/status", token), range(32)))
        workers = children(server.pid)
        before = {pid: vm_hwm_mb(pid) for pid in workers}
        started = time.perf_counter()
        status, body = http_json(port, "POST", "/meta/control-tower/emergency-stop", token, {"reason": "benchmark"})
        seconds = time.perf_counter() - started
        after = {pid: vm_hwm_mb(pid) for pid in workers}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert status == 200, (status, body)
    served = max(workers, key=lambda pid: after[pid] - before[pid])
    return {
        "seconds": round(seconds, 3),
        "http_status": status,
        "paused": body["campaigns_paused"],
        "pending": body["campaigns_pending"],
        "errors": body["errors"],
        "web_worker_peak_rss_mb": {
            "served_the_stop": after[served],
            "same_before_the_stop": before[served],
            "other_worker": [after[p] for p in workers if p != served],
        },
    }


def wait_for_log(path: Path, pattern: str, start: int, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text()[start:])
        if match:
            return match
        time.sleep(0.2)
    raise SystemExit(f"worker log never showed {pattern!r}; see {path}")


def worker_sweep(
    env: dict[str, str], url: str, accounts: int, active: int, latency_ms: int, tmp: Path
) -> dict[str, Any]:
    """Meta down during the stop → the stop queues the background sweep → a real worker pauses everything."""
    from controltower import killswitch, tasks
    from meta_modules import graph

    log = tmp / "worker.log"
    log.write_text("")
    worker = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel",
            "info",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"bench{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env={**os.environ, **env, "LOG_LEVEL": "INFO"},
        stdout=open(log, "a"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_log(log, r"ready\.", 0, 60)
        pool = children(worker.pid)[0]
        idle = vm_hwm_mb(pool)
        reseed(url, accounts, active, latency_ms, error_rate=1.0)
        reset_tower()
        graph.reset_clients()
        stop = killswitch.emergency_stop(
            killswitch.StopRequest(reason="benchmark: Meta down", actor="bench", send_alerts=False)
        )
        assert stop.campaigns_paused == 0 and stop.errors, stop
        control(url, "/_sandbox/faults", {"latency_ms": latency_ms})  # Meta is back; the countdown runs
        failed_calls = control(url, "/_sandbox/state")["counters"]["requests"]
        mark = len(log.read_text())
        done = wait_for_log(log, r"resweep_halt\[[^\]]+\] succeeded in ([0-9.]+)s: (\{.*\})", mark, 180)
        sweep = {"seconds": float(done.group(1)), "result": done.group(2)[:300], **rate_budget(url)}
        sweep["http_requests"] -= failed_calls  # those the stop made while Meta was down
        assert active_count(url) == 0, "campaigns left ACTIVE after the background sweep"
        after_sweep = vm_hwm_mb(pool)
        mark = len(log.read_text())
        tasks.run_health_cycle.delay()
        done = wait_for_log(log, r"run_health_cycle\[[^\]]+\] succeeded in ([0-9.]+)s", mark, 180)
        cycle_seconds = float(done.group(1))
        after_cycle = vm_hwm_mb(pool)
        main_rss = vm_hwm_mb(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    return {
        "background_sweep": sweep,
        "health_cycle_seconds": cycle_seconds,
        "worker_peak_rss_mb": {
            "pool_process_idle": idle,
            "pool_process_after_sweep": after_sweep,
            "pool_process_after_health_cycle": after_cycle,
            "main_process": main_rss,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=5)
    parser.add_argument(
        "--campaigns",
        type=int,
        nargs="+",
        default=[1000, 5000],
        help="ACTIVE campaigns in total, spread evenly over the accounts",
    )
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="in-process stops per size")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-processes", action="store_true", help="no gunicorn / celery worker phases")
    parser.add_argument(
        "--mutation-rate-per-s",
        type=int,
        default=0,
        help="the sandbox rejects writes to an account beyond this many a second (0 = off)",
    )
    parser.add_argument("--usage-headers", choices=("all", "buc_only"), default="all")
    parser.add_argument("--out", default="emergency_stop.json", help="file name under bench/results/")
    args = parser.parse_args()
    META_FAULTS.update(mutation_rate_per_s=args.mutation_rate_per_s, usage_headers=args.usage_headers)

    tmp = Path(tempfile.mkdtemp(prefix="bench-stop-"))
    (tmp / "staticfiles").mkdir()
    databases = contextlib.ExitStack()
    database_url = (
        databases.enter_context(own_database("bench_stop")) if postgres_server() else f"sqlite:///{tmp / 'db.sqlite3'}"
    )
    sandbox, url = sandbox_process(tmp)
    # The stop queues its background sweep after KILL_SWITCH_RETRY_BASE_SECONDS (default 15 s): shorter, to save time.
    env = tower_env(database_url, tmp, META_GRAPH_URL=url, KILL_SWITCH_RETRY_BASE_SECONDS="2")
    results: dict[str, Any] = {
        "machine": machine(),
        "database": "postgresql" if postgres_server() else "sqlite",
        "broker": os.environ.get("CELERY_BROKER_URL", "filesystem://"),
        "accounts": args.accounts,
        "latency_ms_per_request": args.latency_ms,
        "loadavg_at_start": os.getloadavg(),
        "sandbox": dict(META_FAULTS),
        "sizes": {},
    }
    try:
        token = prepare(env)
        for total in args.campaigns:
            active = total // args.accounts
            total = active * args.accounts
            size: dict[str, Any] = {"loadavg": os.getloadavg(), "floor": floor(active, args.latency_ms)}
            runs = []
            for _ in range(args.repeat):
                reseed(url, args.accounts, active, args.latency_ms)
                seconds, result = tower_stop()
                assert active_count(url) == 0, "campaigns left ACTIVE"
                assert result.campaigns_paused == total, result
                runs.append({"seconds": round(seconds, 3), **rate_budget(url)})
                resumed_in, resumed = tower_resume()
                assert resumed.campaigns_resumed == total and active_count(url) == total, resumed
                runs[-1]["resume_seconds"] = round(resumed_in, 3)
            size["tower"] = {
                "median_seconds": statistics.median(r["seconds"] for r in runs),
                "resume_median_seconds": statistics.median(r["resume_seconds"] for r in runs),
                "runs": runs,
            }
            size["tower"]["vs_floor"] = round(size["tower"]["median_seconds"] / size["floor"]["seconds"], 2)
            print(total, "tower", json.dumps(size["tower"]), flush=True)
            if not args.skip_processes:
                reseed(url, args.accounts, active, args.latency_ms)
                size["api"] = {**api_stop(env, token, tmp), **rate_budget(url)}
                assert active_count(url) == 0, "campaigns left ACTIVE after the API stop"
                print(total, "api", json.dumps(size["api"]), flush=True)
                size["worker"] = worker_sweep(env, url, args.accounts, active, args.latency_ms, tmp)
                print(total, "worker", json.dumps(size["worker"]), flush=True)
            if not args.skip_naive:
                reseed(url, args.accounts, active, args.latency_ms)
                naive = naive_stop(url)
                assert active_count(url) == 0
                size["naive"] = {"seconds": round(naive, 3), **rate_budget(url)}
                size["speedup"] = round(naive / size["tower"]["median_seconds"], 1)
                print(total, "naive", json.dumps(size["naive"]), flush=True)
            results["sizes"][total] = size

        # One standard-tier account with the largest size: pausing it all needs 3 points a campaign,
        # more than the 9,000-point window when above 3,000. The stop must stop at the budget (not get
        # blocked) and leave the rest pending for the background sweep.
        single = max(args.campaigns)
        reseed(url, 1, single, args.latency_ms)
        seconds, result = tower_stop()
        results["one_account"] = {
            "campaigns": single,
            "seconds": round(seconds, 3),
            "paused": result.campaigns_paused,
            "pending": result.campaigns_pending,
            "failed": len(result.campaigns_failed),
            "floor": floor(single, args.latency_ms),
            "why_pending": result.errors,
            **rate_budget(url),
        }
        assert result.campaigns_paused + result.campaigns_pending == single, result

        # Development tier: 30 ACTIVE campaigns need 90 points; the window allows 60.
        control(url, "/_sandbox/reset", {"accounts": 1, "seed": 7, "statuses": {"ACTIVE": 30}})
        account = control(url, "/_sandbox/state")["accounts"][0]["id"]
        control(
            url,
            "/_sandbox/faults",
            {
                "latency_ms": args.latency_ms,
                "tier": {account: "development"},
                "tier_params": {"development": {"decay_s": 5, "block_s": 5}},
            },
        )
        dev_seconds, dev_result = tower_stop()
        state = control(url, "/_sandbox/state")
        results["development_tier"] = {
            "campaigns": 30,
            "seconds": round(dev_seconds, 3),
            "paused": dev_result.campaigns_paused,
            "rejected_while_blocked": state["accounts"][0]["rejected_while_blocked"],
            "rate_limited_responses": state["counters"]["rate_limited"],
            "window_s": 5,
        }
        results["bench_process_peak_rss_mb"] = vm_hwm_mb(os.getpid())
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
        databases.close()

    save_results(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
