"""The client against the live API's habits, as the sandbox reproduces them (docs/meta-sandbox.md):
answers that are not JSON, usage learnt from BUC headers alone, each limit in its own scope,
errors as Meta marks them, async insights and expired versions. Over HTTP."""

from __future__ import annotations

import json

import pytest

from meta_modules.errors import ErrorKind, MetaError, Scope, classify
from meta_modules.graph import BatchCall, GraphClient, client, smaller_requests, wants_async

pytestmark = pytest.mark.django_db

RUNNING = ["ACTIVE", "IN_PROCESS", "WITH_ISSUES"]


def _noop(seconds: float) -> None:
    return None


def _account(sandbox) -> str:
    return sandbox.state()["accounts"][0]["id"]


def _pauses(campaigns: list[dict]) -> list[BatchCall]:
    return [BatchCall(c["id"], "POST", f"{c['id']}/", {"status": "PAUSED"}) for c in campaigns]


def _requests(sandbox) -> int:
    return sandbox.state()["counters"]["requests"]


# --- answers that are not JSON -------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_an_html_page_instead_of_an_answer_is_a_transient_error(meta_sandbox, status: int) -> None:
    account = _account(meta_sandbox)
    meta_sandbox.faults(html_error_rate=1.0, html_statuses=[status])

    with pytest.raises(MetaError) as failed:
        GraphClient(max_retries=2, sleep=_noop).get(account, {"fields": "id,name"}, account)

    assert failed.value.kind == ErrorKind.TRANSIENT and failed.value.http_status in (status, None)
    assert "<!DOCTYPE html>" in str(failed.value) or "unreadable answer" in str(failed.value)
    assert meta_sandbox.state()["counters"]["html_errors_injected"] == 3  # tried, then retried twice


def test_html_pages_in_paging_and_batch_items_are_transient_failures_retried_until_answered(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 120}, adsets_per_campaign=1, ads_per_adset=1)
    account = _account(meta_sandbox)
    meta_sandbox.faults(html_error_rate=0.15, html_item_rate=0.1, html_statuses=[500, 503], fault_seed=9)
    meta = GraphClient(sleep=_noop)

    campaigns = meta.campaigns(account, ["id", "status"], RUNNING)
    first = meta.batch(account, _pauses(campaigns))
    left = [c for c in campaigns if c["id"] in first.failed]
    second = meta.batch(account, _pauses(left))  # what a caller with time left does (the kill switch's rounds)

    assert len(campaigns) == 120 and len({c["id"] for c in campaigns}) == 120
    assert all(e.kind == ErrorKind.TRANSIENT and "not a Graph API object" in str(e) for e in first.failed.values())
    assert len(first.succeeded) + len(second.succeeded) == 120 and not second.failed
    assert meta_sandbox.state()["counters"]["html_errors_injected"] > 10
    assert meta_sandbox.campaigns(status="ACTIVE") == []


# --- rate limits from the headers Meta actually sends --------------------------------------


def test_with_buc_headers_alone_it_learns_the_tier_and_stops_writing_at_ninety_percent(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 30}, delivery_issues=[])
    account = _account(meta_sandbox)
    meta_sandbox.faults(usage_headers="buc_only", tier={account: "development"})
    meta = GraphClient(max_wait=5)
    campaigns = meta.campaigns(account, ["id"], ["ACTIVE"])  # 1 point: the tier comes from the BUC entry

    assert meta.throttle.tier(account) == "development_access"
    result = meta.batch(account, _pauses(campaigns))  # 90 points of 60: 17 writes fit under 90 %

    assert len(result.succeeded) == 17 and len(result.failed) == 13
    assert {(e.kind, e.deadline_only) for e in result.failed.values()} == {(ErrorKind.RATE_LIMITED, False)}
    assert all(e.retry_after > 60 for e in result.failed.values())  # held until Meta's figure has decayed
    state = meta_sandbox.state()
    assert state["counters"]["rate_limited"] == 0 and state["accounts"][0]["rejected_while_blocked"] == 0


# --- each limit in its own scope -----------------------------------------------------------


def test_an_insights_block_leaves_the_accounts_pauses_alone(meta_sandbox) -> None:
    account = _account(meta_sandbox)
    meta_sandbox.faults(insights_tier_params={"standard": {"max": 3, "block_s": 30}}, async_job_seconds=0)
    meta = GraphClient(max_wait=0, max_retries=0)
    with pytest.raises(MetaError) as blocked:
        for _ in range(5):
            meta.insights(account, {"level": "campaign", "date_preset": "today", "fields": "spend"}, account)
    assert blocked.value.kind == ErrorKind.RATE_LIMITED and blocked.value.scope == Scope.INSIGHTS

    campaigns = meta.campaigns(account, ["id"], RUNNING)
    result = meta.batch(account, _pauses(campaigns))

    assert len(result.succeeded) == len(campaigns) > 0


def test_the_app_limit_backs_off_every_account(meta_sandbox) -> None:
    first, second = (a["id"] for a in meta_sandbox.state()["accounts"])
    meta_sandbox.faults(app_limit={"calls": 3, "window_s": 60, "block_s": 30})
    meta = GraphClient(max_wait=0, max_retries=0)
    with pytest.raises(MetaError) as blocked:
        for _ in range(4):
            meta.get(first, {"fields": "id"}, first)
    assert blocked.value.scope == Scope.APP
    sent = _requests(meta_sandbox)

    with pytest.raises(MetaError) as refused:
        meta.get(second, {"fields": "id"}, second)

    assert refused.value.scope == Scope.APP and refused.value.retry_after > 20
    assert _requests(meta_sandbox) == sent  # nothing sent to the other account either


def test_the_mutation_rate_slows_the_writes_briefly_and_blocks_nothing(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 60}, adsets_per_campaign=1, ads_per_adset=1)
    account = _account(meta_sandbox)
    meta_sandbox.faults(mutation_rate_per_s=20)
    meta = GraphClient()
    campaigns = meta.campaigns(account, ["id"], RUNNING)

    result = meta.batch(account, _pauses(campaigns))

    assert len(result.succeeded) == 60 and not result.failed
    assert meta_sandbox.state()["accounts"][0]["rejected_while_blocked"] == 0
    assert meta.throttle.blocked_for(account) == 0  # the account itself was never blocked


def test_an_ad_sets_own_budget_limit_fails_that_change_only_with_when_to_retry(meta_sandbox) -> None:
    account = _account(meta_sandbox)
    adset = client().get(f"{account}/adsets", {"fields": "id,daily_budget", "limit": 1}, account)["data"][0]
    meta = GraphClient(sleep=_noop)
    for step in range(1, 5):  # Meta allows 4 budget changes an hour
        meta.update(adset["id"], account, daily_budget=int(adset["daily_budget"]) + step)
    sent = _requests(meta_sandbox)

    with pytest.raises(MetaError) as limited:
        meta.update(adset["id"], account, daily_budget=int(adset["daily_budget"]) + 5)

    assert limited.value.kind == ErrorKind.OBJECT_LIMITED and limited.value.retry_after == 3600
    assert "retry in 1 h; the account is not blocked" in str(limited.value)
    assert _requests(meta_sandbox) == sent + 1  # no retry loop
    assert meta.throttle.blocked_for(account) == 0
    assert meta.get(account, {"fields": "id"}, account)["id"] == account  # the account is not blocked


# --- errors as Meta marks them -------------------------------------------------------------


def test_an_error_meta_marks_not_transient_fails_at_once_with_its_explanation(meta_sandbox) -> None:
    account = _account(meta_sandbox)
    meta_sandbox.faults(errors=[{"preset": "not_linked_delegate_page", "times": 5}])

    with pytest.raises(MetaError) as failed:
        GraphClient(sleep=_noop).get(account, {"fields": "id"}, account)

    assert failed.value.kind == ErrorKind.INVALID and failed.value.code == 1
    assert "profile is not linked to delegate page" in str(failed.value)
    assert meta_sandbox.state()["counters"]["preset_errors"] == 1  # not retried


def test_a_transient_error_with_a_title_is_retried_and_keeps_its_explanation(meta_sandbox) -> None:
    account = _account(meta_sandbox)
    meta_sandbox.faults(errors=[{"preset": "transient_user_title", "times": 9}])

    with pytest.raises(MetaError) as failed:
        GraphClient(max_retries=2, sleep=_noop).get(account, {"fields": "id"}, account)

    assert failed.value.kind == ErrorKind.TRANSIENT and failed.value.user_title
    assert failed.value.user_title in str(failed.value)
    assert meta_sandbox.state()["counters"]["preset_errors"] == 3


@pytest.mark.parametrize("preset", [{"preset": "reduce_data"}, {"preset": "insights_data_size", "subcode": 1487534}])
def test_asked_for_less_data_it_asks_in_smaller_pieces(meta_sandbox, preset: dict) -> None:
    account = _account(meta_sandbox)
    params = {
        "level": "campaign",
        "time_increment": "1",
        "fields": "campaign_id,spend",
        "time_range": json.dumps({"since": "2026-11-20", "until": "2026-11-26"}),
    }
    expected = client().insights(account, params, account)
    meta_sandbox.faults(errors=[{**preset, "on": "insights", "times": 5}])

    rows = GraphClient(sleep=_noop).insights(account, params, account)

    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, expected))
    assert meta_sandbox.state()["counters"]["preset_errors"] == 5  # each answered by a smaller request


def test_a_read_after_write_whose_read_failed_is_a_write_that_happened(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 4}, delivery_issues=[])
    account = _account(meta_sandbox)
    campaigns = meta_sandbox.campaigns()
    meta_sandbox.faults(errors=[{"preset": "read_after_write", "on": "batch_item", "times": 2}])
    calls = [
        BatchCall(c["id"], "POST", f"{c['id']}/", {"status": "PAUSED", "fields": "status,updated_time"})
        for c in campaigns
    ]

    result = GraphClient(max_retries=0).batch(account, calls)

    assert not result.failed and len(result.succeeded) == 4
    assert sum("updated_time" not in body for body in result.succeeded.values()) == 2  # only the write's answer
    assert meta_sandbox.campaigns(status="ACTIVE") == []


@pytest.mark.parametrize(
    "code, subcode, http, transient, title, message, kind, scope",
    [
        (1, 2853001, 400, False, "profile is not linked to delegate page", "", ErrorKind.INVALID, None),
        (1, None, 500, None, "", "Please reduce the amount of data you're asking for", ErrorKind.TOO_MUCH_DATA, None),
        (100, 1504018, 400, None, "", "", ErrorKind.TOO_MUCH_DATA, None),
        (2, None, 400, True, "Temporary problem", "", ErrorKind.TRANSIENT, None),
        (1, None, 500, None, "", "An unknown error occurred", ErrorKind.TRANSIENT, None),
        (80004, 2446079, 400, None, "", "", ErrorKind.RATE_LIMITED, Scope.ACCOUNT),
        (17, 2446079, 400, None, "", "", ErrorKind.RATE_LIMITED, Scope.ACCOUNT),
        (613, 1487742, 400, None, "", "", ErrorKind.RATE_LIMITED, Scope.ACCOUNT),
        (80000, 2446079, 400, None, "", "", ErrorKind.RATE_LIMITED, Scope.INSIGHTS),
        (4, None, 400, None, "", "", ErrorKind.RATE_LIMITED, Scope.APP),
        (4, 1504022, 400, None, "", "", ErrorKind.RATE_LIMITED, Scope.APP),
        (613, 5044001, 400, None, "", "", ErrorKind.RATE_LIMITED, Scope.MUTATIONS),
        (613, 1487632, 400, None, "", "", ErrorKind.OBJECT_LIMITED, None),
        (17, 1487632, 400, None, "", "", ErrorKind.OBJECT_LIMITED, None),
        (17, 1885172, 400, None, "", "", ErrorKind.OBJECT_LIMITED, None),
        (613, 1487225, 400, None, "", "", ErrorKind.OBJECT_LIMITED, None),
        (2635, None, 400, None, "", "", ErrorKind.DEPRECATED_VERSION, None),
        (190, 463, 400, None, "", "", ErrorKind.AUTH, None),
        (10, None, 400, None, "", "", ErrorKind.PERMISSION, None),
        (100, 33, 400, None, "", "", ErrorKind.INVALID, None),
    ],
)
def test_each_error_is_classified_as_meta_marks_it(code, subcode, http, transient, title, message, kind, scope) -> None:
    verdict = classify(code, subcode, http, transient, title, message)
    assert (verdict.kind, verdict.scope) == (kind, scope)


# --- insights as Meta wants large reads ----------------------------------------------------


@pytest.mark.parametrize(
    "params, is_async",
    [
        ({"level": "ad", "time_range": json.dumps({"since": "2026-11-01", "until": "2026-11-07"})}, True),
        ({"level": "ad", "time_range": json.dumps({"since": "2026-11-07", "until": "2026-11-07"})}, False),
        ({"level": "ad", "date_preset": "today"}, False),
        ({"level": "ad"}, True),  # Meta's default range is the last 30 days
        ({"level": "campaign", "date_preset": "last_30d"}, False),
    ],
)
def test_large_reads_go_through_report_runs(params, is_async: bool) -> None:
    assert wants_async(params) is is_async


def test_a_page_size_is_halved_then_a_range_split_then_given_up() -> None:
    week = {"time_range": json.dumps({"since": "2026-11-01", "until": "2026-11-07"})}
    assert smaller_requests(week, 500) == [(week, 250)]
    halves = smaller_requests(week, 25)
    assert [json.loads(p["time_range"]) for p, _ in halves] == [
        {"since": "2026-11-01", "until": "2026-11-04"},
        {"since": "2026-11-05", "until": "2026-11-07"},
    ]
    assert smaller_requests({"time_range": json.dumps({"since": "2026-11-07", "until": "2026-11-07"})}, 25) is None


FIRST_REPORT_RUN = "1202500000000001"  # the sandbox numbers report runs from here


def _report_status(account: str, run_id: str) -> str:
    return GraphClient(max_retries=0).get(run_id, {"fields": "async_status"}, account)["async_status"]


def _ad_week(sandbox) -> dict[str, str]:
    return {
        "level": "ad",
        "time_increment": "1",
        "fields": "ad_id,date_start,spend,impressions",
        "time_range": json.dumps({"since": "2026-11-20", "until": "2026-11-26"}),
    }


def test_a_multi_day_ad_level_read_goes_through_a_report_run(meta_sandbox) -> None:
    account = _account(meta_sandbox)
    meta_sandbox.faults(async_job_seconds=1.5)
    params = _ad_week(meta_sandbox)

    rows = GraphClient().insights(account, params, account)

    direct = client()._insights_pages(account, dict(params), account, 500)  # the same rows, read synchronously
    assert rows and sorted(map(json.dumps, rows)) == sorted(map(json.dumps, direct))
    assert _report_status(account, FIRST_REPORT_RUN) == "Job Completed"
    with pytest.raises(MetaError):  # one run, no more
        _report_status(account, str(int(FIRST_REPORT_RUN) + 1))


def test_a_failed_report_run_is_started_again_once_then_given_up(meta_sandbox) -> None:
    account = _account(meta_sandbox)
    meta_sandbox.faults(async_job_seconds=0, async_fail_rate=1.0)

    with pytest.raises(MetaError) as failed:
        GraphClient(sleep=_noop).insights(account, _ad_week(meta_sandbox), account)

    assert failed.value.kind == ErrorKind.TRANSIENT and "did not complete (2 attempts" in str(failed.value)
    assert [_report_status(account, str(int(FIRST_REPORT_RUN) + n)) for n in (0, 1)] == ["Job Failed"] * 2


# --- versions --------------------------------------------------------------------------------


def test_an_expired_version_is_its_own_error_and_is_not_retried(meta_sandbox) -> None:
    account = _account(meta_sandbox)

    with pytest.raises(MetaError) as refused:
        GraphClient(api_version="v24.0", sleep=_noop).get(account, {"fields": "id"}, account)

    assert refused.value.kind == ErrorKind.DEPRECATED_VERSION and refused.value.code == 2635
    assert _requests(meta_sandbox) == 1


def test_a_meta_error_keeps_its_detail_through_pickling() -> None:
    """A Celery task's failure is pickled: the recorded error must still say what Meta said."""
    import pickle

    error = MetaError(
        ErrorKind.RATE_LIMITED,
        "too many calls",
        80004,
        2446079,
        400,
        "trace",
        None,
        60.0,
        Scope.ACCOUNT,
        "Title",
        "Message",
    )

    copy = pickle.loads(pickle.dumps(error))

    assert str(copy) == str(error) and (copy.kind, copy.scope, copy.retry_after) == (error.kind, error.scope, 60.0)
