#!/usr/bin/env python3
"""Benchmark: emergency stop, press → every ACTIVE campaign confirmed PAUSED on Meta.

    .venv/bin/python bench/emergency_stop.py [--accounts 5] [--active 200] [--latency-ms 50]

Runs the Meta sandbox as a separate process (real HTTP on loopback) with a fixed latency per
request, seeds ACTIVE, PAUSED and ARCHIVED campaigns, then measures in the same run:
  1. the tower's emergency stop (killswitch.emergency_stop: ledger, batches ≤ 50, accounts in
     parallel, rate-limit aware), on the standard tier;
  2. the naive baseline: the SDK, one update call per campaign, sequential;
  3. the tower's stop on the development tier (60 points per window): how long it takes and
     how many requests the sandbox rejected while the account was blocked (target: zero).
Prints a table and writes JSON next to it (bench/results/emergency_stop.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def control(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def active_count(url: str) -> int:
    return sum(a["campaigns"]["ACTIVE"] for a in control(url, "/_sandbox/state")["accounts"])


def reseed(url: str, accounts: int, active: int) -> None:
    control(url, "/_sandbox/reset", {"accounts": accounts, "seed": 7, "adsets_per_campaign": 1, "ads_per_adset": 1,
                                     "statuses": {"ACTIVE": active, "PAUSED": active // 10, "ARCHIVED": active // 20}})


def setup_django(tmp: Path, graph_url: str) -> None:
    os.environ.update(DJANGO_SETTINGS_MODULE="config.settings", SECRET_KEY="bench-" + "x" * 50,
                      TOWER_VAR_DIR=str(tmp), META_GRAPH_URL=graph_url, LOG_LEVEL="WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("sync_modules", stdout=open(os.devnull, "w"))


def tower_stop() -> tuple[float, object]:
    from controltower import killswitch
    from controltower.models import TowerState
    from meta_modules import graph

    graph.reset_clients()
    TowerState.objects.filter(pk=1).update(emergency_stop_active=False, halt_run=None)
    started = time.perf_counter()
    result = killswitch.emergency_stop(killswitch.StopRequest(reason="benchmark", actor="bench", send_alerts=False))
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
            fields=["id"], params={"effective_status": ["ACTIVE"], "limit": 100})
        for campaign in list(campaigns):
            Campaign(campaign["id"], api=api).api_update(params={"status": "PAUSED"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=5)
    parser.add_argument("--active", type=int, default=200, help="ACTIVE campaigns per account")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-stop-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sandbox = subprocess.Popen([sys.executable, "-m", "meta_modules.sandbox", "--port", str(port),
                                "--store", str(tmp / "sandbox.sqlite3")], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                control(url, "/_sandbox/state")
                break
            except OSError:
                time.sleep(0.1)
        setup_django(tmp, url)
        total = args.accounts * args.active
        results: dict[str, object] = {
            "machine": f"{platform.node()} · {os.cpu_count()} cores · {platform.python_implementation()} "
                       f"{platform.python_version()} · {platform.platform()}",
            "accounts": args.accounts, "active_campaigns": total, "latency_ms_per_request": args.latency_ms,
        }

        reseed(url, args.accounts, args.active)
        control(url, "/_sandbox/faults", {"latency_ms": args.latency_ms})
        seconds, result = tower_stop()
        assert active_count(url) == 0, "campaigns left ACTIVE"
        assert result.campaigns_paused == total, result
        counters = control(url, "/_sandbox/state")["counters"]
        results["tower_seconds"] = round(seconds, 3)
        results["tower_http_requests"] = counters["requests"]

        if not args.skip_naive:
            reseed(url, args.accounts, args.active)
            control(url, "/_sandbox/faults", {"latency_ms": args.latency_ms})
            naive = naive_stop(url)
            assert active_count(url) == 0
            results["naive_seconds"] = round(naive, 3)
            results["naive_http_requests"] = control(url, "/_sandbox/state")["counters"]["requests"]
            results["speedup"] = round(naive / seconds, 1)

        # Development tier: 30 ACTIVE campaigns need 90 points; the window allows 60.
        control(url, "/_sandbox/reset", {"accounts": 1, "seed": 7, "statuses": {"ACTIVE": 30}})
        account = control(url, "/_sandbox/state")["accounts"][0]["id"]
        control(url, "/_sandbox/faults", {"latency_ms": args.latency_ms, "tier": {account: "development"},
                                          "tier_params": {"development": {"decay_s": 5, "block_s": 5}}})
        dev_seconds, dev_result = tower_stop()
        state = control(url, "/_sandbox/state")
        results["development_tier"] = {
            "campaigns": 30, "seconds": round(dev_seconds, 3), "paused": dev_result.campaigns_paused,
            "rejected_while_blocked": state["accounts"][0]["rejected_while_blocked"],
            "rate_limited_responses": state["counters"]["rate_limited"], "window_s": 5,
        }
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)

    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "emergency_stop.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
