"""Meta's usage headers and limits over HTTP: the BUC header alone, the hourly BUC quota, and
each limit in its own scope (ads_management, ads_insights, app, mutation rate, per object)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import graph_batch, graph_get, graph_post

ACT = "act_1000000001"
OTHER = "act_1000000002"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=2, statuses={"ACTIVE": 8, "PAUSED": 2}, delivery_issues=[]) as running:
        yield running


def error_of(response: requests.Response) -> dict[str, Any]:
    return response.json()["error"]


def buc(response: requests.Response, account: str = ACT) -> dict[str, Any]:
    [entry] = json.loads(response.headers["X-Business-Use-Case-Usage"])[account[4:]]
    return entry


def active(sandbox: RunningSandbox, account: str = ACT) -> list[str]:
    return [c["id"] for c in sandbox.campaigns(account=account, status="ACTIVE")]


def scope_state(sandbox: RunningSandbox, scope: str, account: str = ACT) -> dict[str, Any]:
    return next(a for a in sandbox.state()["accounts"] if a["id"] == account)["scopes"][scope]


# --------------------------------------------------------------------------- usage headers (BUC-only)


def test_it_sends_only_the_buc_header_in_buc_only_mode_also_in_batch_items(sandbox: RunningSandbox) -> None:
    sandbox.faults(usage_headers="buc_only")
    read = graph_get(sandbox, f"{ACT}/campaigns")
    assert "X-Business-Use-Case-Usage" in read.headers
    assert "X-Ad-Account-Usage" not in read.headers and "X-App-Usage" not in read.headers
    [item] = graph_batch(sandbox, [{"method": "GET", "relative_url": ACT}]).json()
    names = {h["name"] for h in item["headers"]}
    assert "X-Business-Use-Case-Usage" in names and not names & {"X-Ad-Account-Usage", "X-App-Usage"}

    sandbox.faults(usage_headers="none")
    assert not {"X-Business-Use-Case-Usage", "X-Ad-Account-Usage", "X-App-Usage"} & set(graph_get(sandbox, ACT).headers)
    with pytest.raises(ValueError, match="usage_headers"):
        sandbox.faults(usage_headers="some")


def test_it_reports_the_hourly_quota_as_call_count_and_the_score_as_time(sandbox: RunningSandbox) -> None:
    sandbox.faults(tier={ACT: "development"}, tier_params={"development": {"hourly_base": 20, "per_active_ad": 0}})
    for _ in range(4):
        response = graph_get(sandbox, ACT)
    entry = buc(response)
    assert entry["type"] == "ads_management" and entry["ads_api_access_tier"] == "development_access"
    assert entry["call_count"] == 20  # 4 of 20 calls this hour
    assert entry["total_cputime"] == entry["total_time"] == 7  # 4 of 60 points
    assert entry["estimated_time_to_regain_access"] == 0
    assert scope_state(sandbox, "ads_management")["calls_this_hour"] == 4


def test_it_grows_the_hourly_quota_with_active_ads(sandbox: RunningSandbox) -> None:
    active_ads = next(a for a in sandbox.state()["accounts"] if a["id"] == ACT)["active_ads"]
    assert active_ads > 0
    assert scope_state(sandbox, "ads_management")["hourly_quota"] == 100_000 + 40 * active_ads
    sandbox.faults(tier={ACT: "development"})
    assert scope_state(sandbox, "ads_management")["hourly_quota"] == 300 + 40 * active_ads


def test_it_rejects_calls_beyond_the_hourly_quota_with_regain_in_minutes(sandbox: RunningSandbox) -> None:
    sandbox.faults(
        tier={ACT: "development"},
        tier_params={"development": {"hourly_base": 3, "per_active_ad": 0}},
        usage_headers="buc_only",
    )
    targets = active(sandbox)
    for campaign_id in targets[:3]:
        assert graph_post(sandbox, campaign_id, status="PAUSED").status_code == 200
    refused = graph_post(sandbox, targets[3], status="PAUSED")
    assert (error_of(refused)["code"], error_of(refused)["error_subcode"]) == (80004, 2446079)
    entry = buc(refused)
    assert entry["call_count"] == 100 and entry["estimated_time_to_regain_access"] == 60
    assert next(c for c in sandbox.campaigns() if c["id"] == targets[3])["status"] == "ACTIVE"
    assert graph_get(sandbox, OTHER).status_code == 200


# --------------------------------------------------------------------------- each limit in its own scope


@pytest.mark.parametrize(
    ("code", "subcode", "message"),
    [
        (80004, 2446079, "There have been too many calls to this ad-account. Wait a bit and try again."),
        (17, 2446079, "User request limit reached"),
        (613, 1487742, "There have been too many calls from this ad-account. Please wait a bit and try again."),
    ],
)
def test_it_blocks_reads_and_writes_of_one_account_with_the_chosen_code(
    sandbox: RunningSandbox,
    code: int,
    subcode: int,
    message: str,
) -> None:
    sandbox.faults(tier={ACT: "development"}, tier_params={"development": {"max": 3}}, rate_limit_code=code)
    assert graph_post(sandbox, active(sandbox)[0], status="PAUSED").status_code == 200
    for call in (lambda: graph_get(sandbox, ACT), lambda: graph_post(sandbox, active(sandbox)[0], status="PAUSED")):
        error = error_of(call())
        assert (error["code"], error["error_subcode"], error["message"]) == (code, subcode, message)
    assert graph_get(sandbox, OTHER).status_code == 200


def test_it_keeps_insights_in_their_own_scope(sandbox: RunningSandbox) -> None:
    sandbox.faults(insights_tier_params={"standard": {"max": 2, "block_s": 30}})
    for _ in range(2):
        ok = graph_get(sandbox, f"{ACT}/insights")
        assert ok.status_code == 200 and buc(ok)["type"] == "ads_insights"
    throttle = json.loads(ok.headers["X-FB-Ads-Insights-Throttle"])
    assert throttle == {"app_id_util_pct": 0.0, "acc_id_util_pct": 100.0, "ads_api_access_tier": "standard_access"}
    blocked = graph_get(sandbox, f"{ACT}/insights")
    assert (error_of(blocked)["code"], error_of(blocked)["error_subcode"]) == (80000, 2446079)
    assert buc(blocked)["estimated_time_to_regain_access"] == 1
    campaign = active(sandbox)[0]
    assert graph_get(sandbox, f"{campaign}/insights").status_code == 400  # every insights call of the account
    assert graph_get(sandbox, f"{ACT}/campaigns").status_code == 200  # ads_management is untouched ...
    assert graph_post(sandbox, campaign, status="PAUSED").status_code == 200
    assert graph_get(sandbox, f"{OTHER}/insights").status_code == 200  # ... and so are other accounts
    insights, management = scope_state(sandbox, "ads_insights"), scope_state(sandbox, "ads_management")
    assert insights["blocked_until"] and insights["rejected_while_blocked"] == 1
    assert management["score"] == 1 + 3 and management["blocked_until"] is None  # insights spend none of it


def test_it_limits_the_whole_app_then_lets_every_account_back(sandbox: RunningSandbox) -> None:
    sandbox.faults(app_limit={"calls": 4, "window_s": 60, "block_s": 0.5})
    for path in (ACT, OTHER, ACT):
        response = graph_get(sandbox, path)
    assert json.loads(response.headers["X-App-Usage"]) == {"call_count": 75, "total_time": 75, "total_cputime": 75}
    items = graph_batch(sandbox, [{"method": "GET", "relative_url": ACT}] * 2).json()  # batch items count
    assert [item["code"] for item in items] == [200, 400]
    assert json.loads(items[1]["body"])["error"]["message"] == "(#4) Application request limit reached"
    for path in (OTHER, "me"):
        assert error_of(graph_get(sandbox, path))["code"] == 4
    insights = error_of(graph_get(sandbox, f"{OTHER}/insights"))
    assert (insights["code"], insights["error_subcode"]) == (4, 1504022)
    app = sandbox.state()["app"]
    assert app["blocked_until"] and app["rejected_while_blocked"] == 3
    time.sleep(0.6)
    assert graph_get(sandbox, OTHER).status_code == 200


def test_it_refuses_writes_beyond_the_mutation_rate_without_a_block(sandbox: RunningSandbox) -> None:
    sandbox.faults(mutation_rate_per_s=3)
    targets = active(sandbox)
    for _ in range(3):  # stay within one second of the clock
        if time.time() % 1 < 0.7:
            break
        time.sleep(0.3)
    writes = [{"method": "POST", "relative_url": c, "body": "status=PAUSED"} for c in targets[:5]]
    items = graph_batch(sandbox, writes).json()
    assert [item["code"] for item in items] == [200, 200, 200, 400, 400]
    error = json.loads(items[3]["body"])["error"]
    assert (error["code"], error["error_subcode"]) == (613, 5044001)
    assert {c["id"]: c["status"] for c in sandbox.campaigns()}[targets[4]] == "ACTIVE"  # not applied
    assert graph_get(sandbox, ACT).status_code == 200  # reads pass; no block
    time.sleep(1.0)
    assert graph_post(sandbox, targets[4], status="PAUSED").status_code == 200
    assert sandbox.state()["counters"]["mutation_limited"] == 2


def test_it_limits_ad_set_budget_changes_per_ad_set_for_an_hour(sandbox: RunningSandbox) -> None:
    sandbox.faults(object_limits={"adset_budget_changes": 2, "adset_budget_block_s": 0.5})
    adsets = graph_get(sandbox, f"{active(sandbox)[0]}/adsets").json()["data"]
    first, second = adsets[0]["id"], adsets[1]["id"]
    for budget in ("1000", "2000"):
        assert graph_post(sandbox, first, daily_budget=budget).status_code == 200
    assert graph_post(sandbox, first, daily_budget="2000").status_code == 200  # not a change: not counted
    refused = graph_post(sandbox, first, lifetime_budget="900000", name="renamed too")
    assert (error_of(refused)["code"], error_of(refused)["error_subcode"]) == (613, 1487632)
    assert graph_get(sandbox, first, fields="name,lifetime_budget").json()["lifetime_budget"] == "0"  # nothing applied
    assert graph_post(sandbox, first, name="renamed").status_code == 200  # other edits pass
    assert graph_post(sandbox, second, daily_budget="3000").status_code == 200  # other ad sets too
    assert scope_state(sandbox, "ads_management")["blocked_until"] is None
    time.sleep(0.6)
    assert graph_post(sandbox, first, daily_budget="4000").status_code == 200


def test_it_limits_spend_cap_changes_of_an_ad_account(sandbox: RunningSandbox) -> None:
    sandbox.faults(object_limits={"spend_cap_changes": 2})
    for cap in ("100000", "200000"):
        assert graph_post(sandbox, ACT, spend_cap=cap).json() == {"success": True}
    refused = graph_post(sandbox, ACT, spend_cap="300000")
    assert (error_of(refused)["code"], error_of(refused)["error_subcode"]) == (17, 1885172)
    assert graph_get(sandbox, ACT, fields="spend_cap").json()["spend_cap"] == "200000"
    assert graph_post(sandbox, OTHER, spend_cap="300000").status_code == 200
    assert graph_post(sandbox, ACT, name="x").json()["error"]["code"] == 100


def test_it_limits_ad_creation_per_account(sandbox: RunningSandbox) -> None:
    sandbox.faults(ad_creation_limit={ACT: 1})
    adset = graph_get(sandbox, f"{active(sandbox)[0]}/adsets").json()["data"][0]["id"]
    creative = json.dumps({"title": "Hi", "body": "Buy", "call_to_action_type": "SHOP_NOW"})
    assert "id" in graph_post(sandbox, f"{ACT}/ads", name="one", adset_id=adset, creative=creative).json()
    refused = graph_post(sandbox, f"{ACT}/ads", name="two", adset_id=adset, creative=creative)
    assert (error_of(refused)["code"], error_of(refused)["error_subcode"]) == (613, 1487225)
    assert sandbox.state()["counters"]["object_limited"] == 1


def test_it_validates_the_limit_faults(sandbox: RunningSandbox) -> None:
    for bad, field in (
        ({"rate_limit_code": 4}, "rate_limit_code"),
        ({"app_limit": {"calls": 1}}, "app_limit"),
        ({"object_limits": {"budget": 1}}, "object_limits"),
        ({"insights_tier_params": {"gold": {}}}, "tier"),
        ({"mutation_rate_per_s": -1}, "mutation_rate_per_s"),
    ):
        with pytest.raises(ValueError, match=field):
            sandbox.faults(**bad)
