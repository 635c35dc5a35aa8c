"""Insights as Meta wants large reads: async report runs that progress over time, fail or are
skipped, and a limit on synchronous reads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adreportrun import AdReportRun
from facebook_business.api import FacebookAdsApi
from facebook_business.session import FacebookSession

from meta_sandbox.reports import ReportRun, progress
from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import TOKEN, graph_get, graph_post

ACT = "act_1000000001"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=1, statuses={"ACTIVE": 6}, delivery_issues=[]) as running:
        yield running


def test_it_progresses_from_not_started_to_completed() -> None:
    run = ReportRun(1, 1, [], "2026-12-01", "2026-12-01", 0, 0.0, 10.0, "Job Completed")
    seen = [progress(run, t) for t in (0, 1.5, 5, 9, 10)]
    assert seen == [
        ("Job Not Started", 0),
        ("Job Started", 0),
        ("Job Running", 50),
        ("Job Running", 90),
        ("Job Completed", 100),
    ]
    assert progress(ReportRun(1, 1, [], "", "", 0, 0.0, 0, "Job Skipped"), 0) == ("Job Skipped", 0)


def test_it_runs_a_report_whose_rows_match_the_synchronous_answer(sandbox: RunningSandbox) -> None:
    sandbox.faults(async_job_seconds=0.6)
    params = {"level": "ad", "fields": "ad_id,spend,impressions", "date_preset": "last_7d", "time_increment": 1}
    started = graph_post(sandbox, f"{ACT}/insights", **params)
    run_id = started.json()["report_run_id"]
    assert (
        run_id.isdigit()
        and json.loads(started.headers["X-Business-Use-Case-Usage"])["1000000001"][0]["type"] == "ads_insights"
    )
    first = graph_get(sandbox, run_id).json()
    assert first["async_status"] in ("Job Not Started", "Job Started") and first["async_percent_completion"] == 0
    assert (first["account_id"], first["date_start"]) == (
        "1000000001",
        graph_get(sandbox, f"{ACT}/insights", **params).json()["data"][0]["date_start"],
    )
    assert "time_completed" not in first and isinstance(first["time_ref"], int)
    early = graph_get(sandbox, f"{run_id}/insights")
    assert early.status_code == 400 and early.json()["error"]["code"] == 100
    time.sleep(0.65)
    done = graph_get(sandbox, run_id, fields="async_status,async_percent_completion,time_completed").json()
    assert (done["async_status"], done["async_percent_completion"]) == ("Job Completed", 100) and done["time_completed"]

    synchronous = graph_get(sandbox, f"{ACT}/insights", limit=5000, **params).json()["data"]
    pages, after = [], None
    while True:
        page = graph_get(sandbox, f"{run_id}/insights", limit=10, **({"after": after} if after else {})).json()
        pages += page["data"]
        if "next" not in page.get("paging", {}):
            break
        after = page["paging"]["cursors"]["after"]
    assert pages == synchronous and len(pages) > 10
    assert "X-FB-Ads-Insights-Throttle" in graph_get(sandbox, f"{run_id}/insights").headers


def test_it_works_with_the_sdks_async_insights(sandbox: RunningSandbox) -> None:
    sandbox.faults(async_job_seconds=0)
    session = FacebookSession(None, None, TOKEN, timeout=10)
    session.GRAPH = sandbox.url
    api = FacebookAdsApi(session, api_version="v25.0")
    job = AdAccount(ACT, api=api).get_insights(fields=["spend"], params={"date_preset": "last_7d"}, is_async=True)
    job = job.api_get()
    assert (
        job[AdReportRun.Field.async_status] == "Job Completed"
        and job[AdReportRun.Field.async_percent_completion] == 100
    )
    [row] = list(job.get_result())
    assert float(row["spend"]) > 0


def test_it_fails_and_skips_runs_with_the_error_since_v25(sandbox: RunningSandbox) -> None:
    sandbox.faults(async_job_seconds=0, async_fail_rate=1.0)
    run_id = graph_post(sandbox, f"{ACT}/insights").json()["report_run_id"]
    failed = graph_get(sandbox, run_id).json()
    assert failed["async_status"] == "Job Failed" and failed["error_code"] and failed["error_message"]
    sandbox.faults(async_job_seconds=0, async_skip_rate=1.0, min_version="v23.0")
    assert "error_code" not in graph_get(sandbox, run_id, version="v24.0").json()  # before v25.0: no error fields
    skipped = graph_post(sandbox, f"{ACT}/insights").json()["report_run_id"]
    assert graph_get(sandbox, skipped).json()["async_status"] == "Job Skipped"
    assert graph_get(sandbox, f"{skipped}/insights").status_code == 400


def test_it_counts_report_runs_against_the_insights_scope(sandbox: RunningSandbox) -> None:
    sandbox.faults(async_job_seconds=0, insights_tier_params={"standard": {"max": 2}})
    run_id = graph_post(sandbox, f"{ACT}/insights").json()["report_run_id"]
    assert graph_get(sandbox, run_id).status_code == 200
    assert graph_get(sandbox, f"{run_id}/insights").json()["error"]["code"] == 80000
    assert graph_get(sandbox, f"{ACT}/campaigns").status_code == 200


def test_it_refuses_too_large_synchronous_reads_but_not_report_runs(sandbox: RunningSandbox) -> None:
    sandbox.faults(sync_insights_max_rows=5, async_job_seconds=0)
    params = {"level": "ad", "date_preset": "last_7d", "time_increment": 1}
    refused = graph_get(sandbox, f"{ACT}/insights", **params)
    assert refused.status_code == 500
    assert (
        refused.json()["error"]["message"]
        == "Please reduce the amount of data you're asking for, then retry your request"
    )
    assert len(graph_get(sandbox, f"{ACT}/insights", date_preset="last_7d").json()["data"]) == 1  # small enough
    run_id = graph_post(sandbox, f"{ACT}/insights", **params).json()["report_run_id"]
    assert len(graph_get(sandbox, f"{run_id}/insights", limit=500).json()["data"]) > 5
