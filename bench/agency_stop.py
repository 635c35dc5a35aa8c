#!/usr/bin/env python3
"""Benchmark: the emergency stop and the resume at agency scale, with 0, 1, 2 and 4 Celery workers.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres CELERY_BROKER_URL=redis://127.0.0.1:6379/5 \
        .venv/bin/python bench/agency_stop.py [--accounts 300] [--active 100] [--latency-ms 100] \
        [--per-item-ms 20] [--per-object-ms 0] [--workers 0 1 2 4] [--naive-sample 40] [--out agency_stop.json]

The Meta sandbox runs as its own process (real HTTP on loopback), seeded with --accounts ad accounts
of --active ACTIVE campaigns each (plus 10 % PAUSED and 5 % ARCHIVED), answering every request after
--latency-ms, plus --per-item-ms per batch item (and --per-object-ms per listed object), standard
tier. For each count in --workers, that many `celery -A config worker --concurrency 1` processes
are started, then:
  1. the stop is pressed in a process of its own standing in for the web worker
     (commander.emergency_stop, as the view calls it), which prints when it answered and its peak RSS;
  2. this script polls the ledger until every campaign is confirmed PAUSED (a hold settled with
     Meta's answer), and checks Meta lists none ACTIVE: that is the stop's time;
  3. the resume is pressed the same way (no health check) and timed until every hold is RESUMED.
Then the ledger's write of that many holds, its one INSERT against bulk_create (same rows, rolled
back). Recorded per run: how busy the machine's cores were and the sandbox's own CPU time (to tell
Meta's floor from this machine's CPU), when the web process answered, when the last campaign was confirmed, how many
account groups the web process and each worker took, the peak RSS (VmHWM) of the pressing process
and of each worker's pool process, and the load average.
Meta's floor for the slowest account (accounts are independent; each one's calls in sequence):
its listing (pages of 100, each the latency plus its objects) then its pause batches of 50 (each the
latency plus 50 items) — printed beside. The naive baseline: one SDK call per campaign, sequential,
timed on --naive-sample campaigns and extrapolated to all of them.
PostgreSQL and a Redis broker are required (the workers share them). Prints JSON and writes
bench/results/<--out>.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import ROOT, machine, own_database, postgres_server, sandbox_process, save_results, setup_django, tower_env
from emergency_stop import BIN, active_count, children, control, vm_hwm_mb, wait_for_log

LISTING_PAGE, BATCH = 100, 50


def reseed(url: str, args: argparse.Namespace) -> None:
    control(
        url,
        "/_sandbox/reset",
        {
            "accounts": args.accounts,
            "seed": 7,
            "adsets_per_campaign": 1,
            "ads_per_adset": 1,
            "statuses": {"ACTIVE": args.active, "PAUSED": args.active // 10, "ARCHIVED": args.active // 20},
        },
    )
    faults: dict[str, Any] = {"latency_ms": args.latency_ms, "per_item_ms": args.per_item_ms, "async_job_seconds": 0}
    if args.per_object_ms:
        faults["per_object_ms"] = args.per_object_ms
    control(url, "/_sandbox/faults", faults)


def floor(args: argparse.Namespace) -> dict[str, float]:
    """The least time Meta takes for one account's share of a stop: its calls one after the other."""
    pages = -(-args.active // LISTING_PAGE)
    listing = pages * args.latency_ms + args.active * args.per_object_ms
    batches = -(-args.active // BATCH)
    pausing = batches * args.latency_ms + args.active * args.per_item_ms
    return {"listing_s": listing / 1000, "pausing_s": pausing / 1000, "seconds": (listing + pausing) / 1000}


def press(action: str) -> dict[str, Any]:
    """In the child process: press stop or resume as the web process does; when it answered, peak RSS."""
    import django

    django.setup()
    from controltower import commander, killswitch

    started = time.perf_counter()
    if action == "stop":
        result = commander.emergency_stop(killswitch.StopRequest(reason="benchmark", actor="bench", send_alerts=False))
        answer = {"paused": result.campaigns_paused, "pending": result.campaigns_pending, "run_id": result.run_id}
    else:
        lifted = commander.resume(killswitch.ResumeRequest(actor="bench", reason="benchmark", run_health_check=False))
        answer = {"resumed": lifted.campaigns_resumed, "pending": lifted.campaigns_pending, "run_id": lifted.run_id}
    return {"answered_s": round(time.perf_counter() - started, 3), **answer, "peak_rss_mb": vm_hwm_mb(os.getpid())}


def reset_tower() -> None:
    from django.db import connection
    from django_celery_beat.models import PeriodicTask

    from controltower.models import AccountGroup, CampaignHold, TowerState

    TowerState.objects.filter(pk=1).update(
        emergency_stop_active=False, halt_run=None, held_task_ids=[], last_stop_at=None, halt_swept_at=None
    )
    AccountGroup.objects.all().delete()
    CampaignHold.objects.all().delete()
    PeriodicTask.objects.filter(meta_module__isnull=False).update(enabled=True)
    connection.close()


def cpu_ticks(pid: int | None = None) -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine, or (process CPU, 0) for `pid`."""
    tick = os.sysconf("SC_CLK_TCK")
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick, 0.0
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / tick, sum(values) / tick


def timed_press(action: str, env: dict[str, str], done: Any, timeout: float, sandbox: int) -> dict[str, Any]:
    """Press in a child process; poll `done()` until true. → the child's answer, the time to done, how
    busy the machine's cores were meanwhile and the sandbox's own CPU time."""
    machine, sandbox_cpu = cpu_ticks(), cpu_ticks(sandbox)[0]
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, __file__, "--press", action],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    while not done():
        if time.perf_counter() - started > timeout:  # recorded as such: the next run still goes
            out, _ = child.communicate(timeout=120)
            return {"confirmed_s": None, "not_done_after_s": timeout, **json.loads(out.strip().splitlines()[-1])}
        time.sleep(0.05)
    confirmed = time.perf_counter() - started
    busy, total = (a - b for a, b in zip(cpu_ticks(), machine))
    out, _ = child.communicate(timeout=120)
    return {
        "confirmed_s": round(confirmed, 3),
        "cores_busy": round(busy / total, 2),
        "sandbox_cpu_s": round(cpu_ticks(sandbox)[0] - sandbox_cpu, 2),
        **json.loads(out.strip().splitlines()[-1]),
    }


def takers(run_id: str) -> dict[str, int]:
    from controltower.models import AccountGroup

    return dict(Counter(AccountGroup.objects.filter(run_id=run_id).values_list("taken_by", flat=True)))


def start_workers(n: int, env: dict[str, str], tmp: Path) -> list[subprocess.Popen]:
    workers = []
    for i in range(n):
        log = tmp / f"worker{i}.log"
        log.write_text("")
        workers.append(
            subprocess.Popen(
                [str(BIN / "celery"), "-A", "config", "worker", "--loglevel", "info", "--concurrency", "1"]
                + ["--without-gossip", "--without-mingle", "-n", f"agency{i}-{os.getpid()}@%h"],
                cwd=ROOT,
                env={**os.environ, **env, "LOG_LEVEL": "INFO"},
                stdout=open(log, "a"),
                stderr=subprocess.STDOUT,
            )
        )
    for i in range(n):
        wait_for_log(tmp / f"worker{i}.log", r"ready\.", 0, 90)
    return workers


def ledger_write(total: int) -> dict[str, float]:
    """Writing `total` holds: the ledger's INSERT (ledger._insert_holds) against bulk_create, same rows."""
    from django.db import transaction
    from django.utils import timezone

    from controltower.killswitch import ledger
    from controltower.models import CampaignHold, ControlTowerRun, RunType

    run = ControlTowerRun.objects.create(run_type=RunType.EMERGENCY_STOP, executed_by="bench", mode="stub")
    found = [
        {
            "id": str(10**12 + i),
            "account": f"act_{i % 300}",
            "name": f"Campaign {i}",
            "status": "ACTIVE",
            "effective_status": "ACTIVE",
            "updated_time": "2026-12-03T12:00:00+0000",
            "daily_budget": "5000",
        }
        for i in range(total)
    ]
    timings = {}
    with transaction.atomic():
        started = time.perf_counter()
        ledger._insert_holds(run, run, found, timezone.now())
        timings["insert_s"] = round(time.perf_counter() - started, 3)
        transaction.set_rollback(True)
    with transaction.atomic():
        started = time.perf_counter()
        CampaignHold.objects.bulk_create(
            [
                CampaignHold(
                    halt_run=run,
                    stop_run=run,
                    campaign_id=c["id"],
                    account_id=c["account"],
                    campaign_name=c["name"],
                    prior_status=c["status"],
                    prior_effective_status=c["effective_status"],
                    prior_updated_time=c["updated_time"],
                    snapshot={"daily_budget": c["daily_budget"]},
                )
                for c in found
            ],
            ignore_conflicts=True,
        )
        timings["bulk_create_s"] = round(time.perf_counter() - started, 3)
        transaction.set_rollback(True)
    run.delete()
    return timings


def naive_per_call(url: str, sample: int) -> float:
    """One SDK update call per campaign, sequential, on `sample` campaigns: seconds per campaign."""
    from facebook_business.adobjects.campaign import Campaign
    from facebook_business.api import FacebookAdsApi
    from facebook_business.session import FacebookSession

    session = FacebookSession(access_token="bench", timeout=30)
    session.GRAPH = url
    api = FacebookAdsApi(session)
    ids = [c["id"] for c in control(url, "/_sandbox/campaigns?status=ACTIVE")["data"][:sample]]
    started = time.perf_counter()
    for campaign_id in ids:
        Campaign(campaign_id, api=api).api_update(params={"status": "PAUSED"})
    return (time.perf_counter() - started) / len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--press", choices=("stop", "resume"), help=argparse.SUPPRESS)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--active", type=int, default=100, help="ACTIVE campaigns per account")
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--per-item-ms", type=float, default=20)
    parser.add_argument("--per-object-ms", type=float, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--naive-sample", type=int, default=40)
    parser.add_argument("--out", default="agency_stop.json")
    args = parser.parse_args()
    if args.press:
        print(json.dumps(press(args.press)), flush=True)
        return
    if not postgres_server() or not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        raise SystemExit("DATABASE_URL=postgres://… and CELERY_BROKER_URL=redis://… are required.")
    tmp = Path(tempfile.mkdtemp(prefix="bench-agency-"))
    (tmp / "staticfiles").mkdir()
    sandbox, url = sandbox_process(tmp)
    total = args.accounts * args.active
    results: dict[str, Any] = {
        "machine": machine(),
        "accounts": args.accounts,
        "active_campaigns": total,
        "meta": {"latency_ms": args.latency_ms, "per_item_ms": args.per_item_ms, "per_object_ms": args.per_object_ms},
        "floor": floor(args),
        "runs": {},
    }
    try:
        with own_database("bench_agency") as database_url:
            env = tower_env(database_url, tmp, META_GRAPH_URL=url, CELERY_BROKER_URL=os.environ["CELERY_BROKER_URL"])
            setup_django(env)
            from controltower.models import CampaignHold

            def held(state: str) -> int:
                return CampaignHold.objects.filter(state=state).count()

            for n in args.workers:
                reseed(url, args)
                reset_tower()
                workers = start_workers(n, env, tmp)
                try:
                    run: dict[str, Any] = {"loadavg_at_start": os.getloadavg()}
                    run["stop"] = timed_press(
                        "stop", env, lambda: held(CampaignHold.State.PAUSED) >= total, 120, sandbox.pid
                    )
                    run["stop"]["left_active_on_meta"] = active_count(url)
                    run["stop"]["groups_taken_by"] = takers(run["stop"]["run_id"])
                    if not run["stop"]["confirmed_s"]:  # what is left needs a worker's background sweep
                        reset_tower()
                        results["runs"][n] = run
                        continue
                    if results["floor"]["seconds"]:
                        run["stop"]["vs_floor"] = round(run["stop"]["confirmed_s"] / results["floor"]["seconds"], 2)
                    run["resume"] = timed_press(
                        "resume", env, lambda: held(CampaignHold.State.RESUMED) >= total, 120, sandbox.pid
                    )
                    run["resume"]["groups_taken_by"] = takers(run["resume"]["run_id"])
                    run["worker_peak_rss_mb"] = [vm_hwm_mb(children(w.pid)[0]) for w in workers]
                finally:
                    for worker in workers:
                        worker.send_signal(signal.SIGTERM)
                    for worker in workers:
                        worker.wait(timeout=60)
                results["runs"][n] = run
                print(n, "workers", json.dumps(run), flush=True)
            results["ledger_write"] = ledger_write(total)
            print("ledger", json.dumps(results["ledger_write"]), flush=True)
            reseed(url, args)
            per_call = naive_per_call(url, args.naive_sample)
            results["naive"] = {"seconds_per_campaign": round(per_call, 4), "extrapolated_s": round(per_call * total)}
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
    save_results(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
