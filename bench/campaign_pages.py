#!/usr/bin/env python3
"""Benchmark: a stop's pages and API at agency scale (300 ad accounts × 100 campaigns = 30,000 holds)
on PostgreSQL, against the naive baseline of listing every campaign in one body.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/campaign_pages.py [--repeat 5]

DATABASE_URL only says where the server is: the script creates its own database
(bench_pages_<pid>) on it and drops it at the end (--keep leaves it). There it bulk-inserts one
emergency stop whose ledger holds 300 × 100 campaigns (1 in 10 failed with one of four errors, 1 in
20 pending, the rest paused; daily budgets on 2 in 3) and its run record as a stop writes it today
(one errors_encountered line per failed campaign), and the 300 ad accounts in the mirror (USD, EUR
and JPY). Then, in the same run, each the median of --repeat after a warm-up, in-process with a
staff session (authentication, every query, serialization or the template):
  1. GET runs/{id} (the record and its per-account summary), GET runs/{id}/campaigns (the first and
     last page, a search, a filter), the console's stop result page and run page: time, body size
     and queries;
  2. a dry run's paging alone: one page of a 30,000-campaign stop preview (campaign_lists);
  3. the naive baseline: every hold of the run in one JSON body (the ledger serialized whole), and
     the run record with its uncapped per-campaign errors.
Prints a table and writes bench/results/campaign_pages.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import machine, own_database, save_results, setup_django, tower_env

ACCOUNTS, PER_ACCOUNT = 300, 100
ERRORS = (
    "(#200) Permission error: the ad account is disabled",
    "(#100) Invalid parameter: campaign is in a deleted ad set",
    "(#2635) You are calling a deprecated version of the Ads API",
    "(#1487) The campaign cannot be paused while its ads are in review",
)
CURRENCIES = ("USD", "EUR", "JPY")


def generate() -> str:
    """One stop over 30,000 campaigns, its ledger and record, the accounts in the mirror: its run id."""
    from django.contrib.auth.models import User

    from controltower.models import CampaignHold, ControlTowerRun, RunState, RunType
    from meta_modules.models import AdAccount

    User.objects.create_superuser("bench")
    failed_lines = []
    run = ControlTowerRun.objects.create(
        run_type=RunType.EMERGENCY_STOP,
        command_type="emergency_stop",
        state=RunState.COMPLETED,
        system_status="emergency_stop",
        executed_by="bench",
        reason="Agency-scale pages",
        mode="stub",
    )
    holds = []
    for a in range(1, ACCOUNTS + 1):
        for n in range(PER_ACCOUNT):
            campaign = f"{a:03d}{n:04d}"
            state = "failed" if n % 10 == 3 else "pending" if n % 20 == 7 else "paused"
            error = ERRORS[(a + n) % 4] if state == "failed" else ""
            if error:
                failed_lines.append(f"{campaign}: {error}")
            holds.append(
                CampaignHold(
                    halt_run=run,
                    stop_run=run,
                    campaign_id=campaign,
                    account_id=f"act_{a}",
                    campaign_name=f"{'Spring sale' if n % 25 == 0 else 'Evergreen'} {a}-{n}",
                    prior_status="ACTIVE",
                    snapshot={"daily_budget": str(500 + n * 10) if n % 3 else "", "lifetime_budget": ""},
                    state=state,
                    last_error=error,
                )
            )
    CampaignHold.objects.bulk_create(holds, batch_size=5000)
    AdAccount.objects.bulk_create(
        [AdAccount(id=f"act_{a}", name=f"Account {a}", currency=CURRENCIES[a % 3]) for a in range(1, ACCOUNTS + 1)]
    )
    ControlTowerRun.objects.filter(pk=run.pk).update(
        errors_encountered=failed_lines,
        actions_executed=[
            {"action": "pause_campaigns", "paused": 25500, "pending": 1500, "failed": len(failed_lines)},
        ],
    )
    return str(run.pk)


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, Any, int]:
    """Median milliseconds of `call` over `repeat` runs after a warm-up, its last result, its queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call()
    samples = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            result = call()
            samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 1), result, len(queries)


def measure(run_id: str, repeat: int) -> list[dict[str, Any]]:
    from django.contrib.auth.models import User
    from django.test import Client
    from rest_framework.renderers import JSONRenderer

    from controltower import campaign_lists
    from controltower.api.report_serializers import HoldSerializer, RunSerializer
    from controltower.models import CampaignHold, ControlTowerRun

    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(User.objects.get(username="bench"))
    api = "/meta/control-tower"
    last = ACCOUNTS * PER_ACCOUNT // campaign_lists.PAGE_SIZE
    gets = [
        ("GET runs/{id}", f"{api}/runs/{run_id}"),
        (f"GET runs/{{id}}/campaigns (page 1 of {last})", f"{api}/runs/{run_id}/campaigns"),
        (f"GET runs/{{id}}/campaigns?page={last} (the last)", f"{api}/runs/{run_id}/campaigns?page={last}"),
        ("GET runs/{id}/campaigns?q=spring sale 150-", f"{api}/runs/{run_id}/campaigns?q=spring%20sale%20150-"),
        (
            "GET runs/{id}/campaigns?account=act_150&state=failed",
            f"{api}/runs/{run_id}/campaigns?account=act_150&state=failed",
        ),
        ("console /stops/{id}/ (result page)", f"/stops/{run_id}/"),
        ("console /runs/{id}/ (run page)", f"/runs/{run_id}/"),
    ]
    rows = []
    for label, url in gets:
        ms, response, queries = timed(lambda url=url: client.get(url), repeat)
        assert response.status_code == 200, (url, response.status_code)
        rows.append({"what": label, "ms": ms, "bytes": len(response.content), "queries": queries})

    preview = {"campaigns": {}}
    for hold in CampaignHold.objects.values("account_id", "campaign_id", "campaign_name"):
        preview["campaigns"].setdefault(hold["account_id"], []).append(
            {"id": hold["campaign_id"], "name": hold["campaign_name"]}
        )
    ms, paged, _ = timed(lambda: campaign_lists.page_stop_preview(preview, campaign_lists.Search(q="spring")), repeat)
    rows.append(
        {
            "what": "dry run: one page of a 30,000-campaign preview, searched (in memory)",
            "ms": ms,
            "bytes": len(json.dumps(paged)),
            "queries": 0,
        }
    )

    run = ControlTowerRun.objects.get(pk=run_id)

    def every_hold() -> bytes:
        holds = CampaignHold.objects.filter(halt_run=run).order_by("account_id", "campaign_id")
        return JSONRenderer().render(HoldSerializer(holds, many=True).data)

    ms, body, queries = timed(every_hold, repeat)
    rows.append({"what": "naive: every hold in one JSON body", "ms": ms, "bytes": len(body), "queries": queries})
    uncapped = {**RunSerializer(run).data, "errors_encountered": run.errors_encountered}
    rows.append(
        {
            "what": "naive: the run record with every failed campaign's error",
            "ms": None,
            "bytes": len(JSONRenderer().render(uncapped)),
            "queries": None,
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    with own_database("bench_pages", keep=args.keep) as database_url:
        setup_django(tower_env(database_url, Path(tempfile.mkdtemp(prefix="bench-pages-"))))
        from django.db import connection

        started = time.perf_counter()
        run_id = generate()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
            cursor.execute("SELECT version()")
            server = cursor.fetchone()[0].split(" on ")[0]
        generated_s = round(time.perf_counter() - started, 1)
        rows = measure(run_id, args.repeat)
        connection.close()

    results = {
        "machine": f"{machine()} · {server}",
        "holds": ACCOUNTS * PER_ACCOUNT,
        "generation_seconds": generated_s,
        "repeat": args.repeat,
        "rows": rows,
    }
    print(f"{results['machine']}\n{results['holds']} holds generated and inserted in {generated_s} s\n")
    print("| what | median | body | queries |\n|---|---|---|---|")
    for row in rows:
        ms = "—" if row["ms"] is None else f"{row['ms']:,} ms"
        queries = "—" if row["queries"] is None else row["queries"]
        print(f"| {row['what']} | {ms} | {row['bytes'] / 1024:,.1f} KiB | {queries} |")
    save_results("campaign_pages.json", results)


if __name__ == "__main__":
    main()
