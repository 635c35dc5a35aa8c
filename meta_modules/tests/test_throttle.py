"""Rate limits learnt from what Meta reports: the header rules (pure), the budget that follows
Meta down as well as up, and blocks that every process sees (two processes, one cache)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from meta_modules.errors import ErrorKind, MetaError, Scope
from meta_modules.graph import BatchCall, GraphClient
from meta_modules.throttle import AccountThrottle, Budget, SharedBlocks, Usage, block_seconds, parse_usage
from meta_sandbox.tests.sandbox_http import exhaust_score
from tests.support import child_env

ACCOUNT = "act_1000000001"


def _buc(*entries: dict, key: str = "1000000001") -> dict[str, str]:
    return {"X-Business-Use-Case-Usage": json.dumps({key: list(entries)})}


def _entry(
    type_: str = "ads_management",
    calls: float = 0,
    cpu: float = 0,
    time_: float = 0,
    regain: float = 0,
    tier: str = "standard_access",
) -> dict:
    return {
        "type": type_,
        "call_count": calls,
        "total_cputime": cpu,
        "total_time": time_,
        "estimated_time_to_regain_access": regain,
        "ads_api_access_tier": tier,
    }


# --- what the headers say ------------------------------------------------------------------


def test_utilisation_is_the_highest_of_the_three_buc_percentages_of_the_scope() -> None:
    headers = _buc(_entry(calls=12, cpu=40, time_=33), _entry("ads_insights", calls=95))

    assert parse_usage(headers, ACCOUNT) == Usage(util_pct=40, tier="standard_access")
    assert parse_usage(headers, ACCOUNT, Scope.INSIGHTS).util_pct == 95


def test_buc_entries_of_the_account_win_over_other_business_objects() -> None:
    headers = {"x-business-use-case-usage": json.dumps({"1000000001": [_entry(calls=10)], "999": [_entry(calls=99)]})}

    assert parse_usage(headers, ACCOUNT).util_pct == 10
    assert parse_usage(headers, "act_555").util_pct == 99  # no entry of its own: the business's are all there is


def test_regain_is_in_minutes_and_a_block_lasts_the_longer_of_the_two_figures() -> None:
    headers = {
        **_buc(_entry(calls=100, regain=3)),
        "X-Ad-Account-Usage": json.dumps({"acc_id_util_pct": 100, "reset_time_duration": 20}),
    }

    usage = parse_usage(headers, ACCOUNT)

    assert usage.regain_seconds == 180 and usage.reset_seconds == 20
    assert block_seconds(usage) == 180
    assert block_seconds(Usage(reset_seconds=300, regain_seconds=60)) == 300
    assert block_seconds(Usage()) == 60  # nothing said: a minute


def test_the_insights_throttle_header_counts_for_insights_only() -> None:
    headers = {
        "X-FB-Ads-Insights-Throttle": json.dumps(
            {"app_id_util_pct": 20, "acc_id_util_pct": 91, "ads_api_access_tier": "development_access"}
        )
    }

    assert parse_usage(headers, ACCOUNT, Scope.INSIGHTS) == Usage(
        util_pct=91, tier="development_access", app_util_pct=20
    )
    assert parse_usage(headers, ACCOUNT).util_pct is None


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Business-Use-Case-Usage": "<html>"},
        {"X-Ad-Account-Usage": "[1]"},
        {"X-Business-Use-Case-Usage": json.dumps({"1": "x"})},
        None,
        [],
    ],
)
def test_unreadable_usage_headers_say_nothing(headers) -> None:
    assert parse_usage(headers, ACCOUNT) == Usage()


# --- the budget -----------------------------------------------------------------------------


def test_the_budget_follows_what_meta_reports_down_as_well_as_up() -> None:
    budget = Budget()
    budget.observe(Usage(util_pct=80, reset_seconds=300, tier="standard_access"), now=0)
    assert budget.used(now=1) == 7200

    budget.observe(Usage(util_pct=0.8, reset_seconds=300), now=2)

    assert budget.used(now=3) == 72


def test_what_is_in_flight_counts_until_its_answer_comes() -> None:
    budget = Budget(max_points=9000)
    budget.inflight = 150
    budget.observe(Usage(util_pct=1), now=0)

    assert budget.used(now=0) == 240


def test_a_tier_change_rescales_the_reported_score() -> None:
    budget = Budget()
    budget.observe(Usage(util_pct=50, tier="standard_access"), now=0)
    assert budget.used(now=0) == 4500

    budget.observe(Usage(tier="development_access"), now=1)

    assert budget.max_points == 60 and budget.used(now=1) == 30


def test_a_report_holds_until_the_score_has_decayed() -> None:
    budget = Budget(max_points=60)
    budget.observe(Usage(util_pct=90, reset_seconds=40), now=100)

    assert budget.wait_for(6, now=110, ceiling=0.9) == 30  # 54 of 54 used: room when the report has decayed
    assert budget.wait_for(6, now=141, ceiling=0.9) == 0


def test_writes_stop_at_ninety_percent_and_reads_go_on() -> None:
    throttle = AccountThrottle(sleep=lambda s: None, blocks=SharedBlocks())
    throttle.settle(ACCOUNT, Scope.ACCOUNT, 0, [Usage(util_pct=89, reset_seconds=300, tier="development_access")])

    with pytest.raises(MetaError) as refused:
        throttle.capacity(ACCOUNT, Scope.ACCOUNT, 3, write=True, max_wait=0)
    assert refused.value.kind == ErrorKind.RATE_LIMITED and refused.value.retry_after > 290
    assert throttle.capacity(ACCOUNT, Scope.ACCOUNT, 1, write=False, max_wait=0) == 6


def test_no_more_than_a_hundred_writes_a_second_go_to_one_account() -> None:
    throttle = AccountThrottle(sleep=lambda s: None, blocks=SharedBlocks())
    throttle.settle(ACCOUNT, Scope.ACCOUNT, 0, [Usage(util_pct=0, tier="standard_access")])

    assert throttle.capacity(ACCOUNT, Scope.ACCOUNT, 3, write=True, max_wait=0) == 100
    throttle.reserve(ACCOUNT, Scope.ACCOUNT, 300, write=True, max_wait=0, calls=100)

    with pytest.raises(MetaError) as paced:  # the 101st within the second waits for the next one
        throttle.reserve(ACCOUNT, Scope.ACCOUNT, 3, write=True, max_wait=0)
    assert paced.value.scope == Scope.MUTATIONS and "paced to Meta's mutation rate" in str(paced.value)


# --- over HTTP ------------------------------------------------------------------------------


@pytest.mark.django_db  # the write guard reads whether the tower is halted
def test_a_busy_account_is_not_mistaken_for_a_rate_limited_one(meta_sandbox) -> None:
    """The phantom limit: an estimate that only grew made a resume re-activate nothing while Meta
    had room. Here the account is read all the time (as module jobs do) while Meta's score decays."""
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 12}, adsets_per_campaign=1, ads_per_adset=1, delivery_issues=[])
    account = meta_sandbox.state()["accounts"][0]["id"]
    meta_sandbox.faults(tier={account: "development"}, tier_params={"development": {"decay_s": 3, "block_s": 3}})
    meta = GraphClient(max_wait=2)
    ids = [c["id"] for c in meta.campaigns(account, ["id"], ["ACTIVE"])]  # 1 point: the tier is learnt
    assert len(meta.batch(account, [_call(c, "PAUSED") for c in ids]).succeeded) == 12  # 36 of 60 points
    for _ in range(12):  # 3.6 s of steady reads: Meta forgets the pauses; a new reading comes each time
        meta.get(account, {"fields": "id"}, account)
        time.sleep(0.3)

    resume = meta.batch(account, [_call(c, "ACTIVE") for c in ids])  # 36 more points: Meta has room

    assert len(resume.succeeded) == 12 and not resume.failed
    assert meta_sandbox.state()["counters"]["rate_limited"] == 0


def _call(campaign_id: str, status: str) -> BatchCall:
    return BatchCall(campaign_id, "POST", f"{campaign_id}/", {"status": status})


def test_a_block_learnt_by_one_process_stops_every_other_process_calling(meta_sandbox) -> None:
    """Calling during a block lengthens it: a block a web worker learnt keeps the Celery workers off."""
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 3})
    account = meta_sandbox.state()["accounts"][0]["id"]
    meta_sandbox.faults(tier={account: "development"}, tier_params={"development": {"block_s": 30}})
    exhaust_score(meta_sandbox, account)
    other_process = (
        "import django; django.setup()\n"
        "from meta_modules.graph import GraphClient, MetaError\n"
        f"try: GraphClient(graph_url={meta_sandbox.url!r}, max_wait=0)"
        f".get({account!r}, {{'fields': 'id'}}, {account!r})\n"
        "except MetaError as e: print(e.kind, e.scope)\n"
    )
    learnt = subprocess.run(
        [sys.executable, "-c", other_process], env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert learnt.stdout.strip() == "rate_limited ads_management", learnt.stderr
    requests_before = meta_sandbox.state()["counters"]["requests"]

    with pytest.raises(MetaError) as refused:
        GraphClient(max_wait=0).get(account, {"fields": "id"}, account)

    assert refused.value.kind == ErrorKind.RATE_LIMITED and refused.value.retry_after > 20
    assert meta_sandbox.state()["counters"]["requests"] == requests_before  # nothing sent


def test_an_app_wide_block_stops_calls_to_every_account() -> None:
    throttle = AccountThrottle(sleep=lambda s: None)
    throttle.block(None, Scope.APP, 30)

    for account in ("act_1", "act_2"):
        with pytest.raises(MetaError) as refused:
            throttle.reserve(account, Scope.ACCOUNT, 1, write=False, max_wait=0)
        assert refused.value.kind == ErrorKind.RATE_LIMITED and refused.value.retry_after > 25


def test_an_insights_block_leaves_the_accounts_other_calls_alone() -> None:
    throttle = AccountThrottle(sleep=lambda s: None)
    throttle.block(ACCOUNT, Scope.INSIGHTS, 30)

    throttle.reserve(ACCOUNT, Scope.ACCOUNT, 3, write=True, max_wait=0)  # a pause still goes
    with pytest.raises(MetaError):
        throttle.reserve(ACCOUNT, Scope.INSIGHTS, 1, write=False, max_wait=0)
