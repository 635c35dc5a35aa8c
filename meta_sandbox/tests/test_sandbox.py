"""The Meta sandbox over real HTTP: the official SDK unchanged, Meta's rules, limits and faults.

The sandbox itself needs no Django; these tests only talk to it over HTTP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.campaign import Campaign
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from meta_sandbox.store import SeedConfig, Store
from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import TOKEN, graph_batch, graph_get, graph_post

ACT = "act_1000000001"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=2, campaigns_per_account=40, seed=7) as running:
        yield running


def sdk_api(url: str, timeout: float = 10) -> FacebookAdsApi:
    session = FacebookSession(None, None, TOKEN, timeout=timeout)
    session.GRAPH = url
    return FacebookAdsApi(session, api_version="v25.0")


def error_of(response: requests.Response) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["error"]


def campaign_ids(sandbox: RunningSandbox, status: str | None = None, account: str = ACT) -> list[str]:
    return [c["id"] for c in sandbox.campaigns(account=account, status=status)]


def truth(sandbox: RunningSandbox, campaign_id: str) -> dict[str, Any]:
    return next(c for c in sandbox.campaigns() if c["id"] == campaign_id)


# --------------------------------------------------------------------------- the SDK, unchanged


def test_sdk_lists_every_active_campaign_once_across_pages() -> None:
    with start_sandbox(accounts=2, statuses={"ACTIVE": 500, "PAUSED": 30, "ARCHIVED": 20}) as sandbox:
        cursor = AdAccount(ACT, api=sdk_api(sandbox.url)).get_campaigns(
            fields=["id", "name", "status", "effective_status", "updated_time", "daily_budget"],
            params={"effective_status": ["ACTIVE"], "limit": 100},
        )
        seen = [c["id"] for c in cursor]
        # The filter sees effective statuses: the first ACTIVE campaign reads WITH_ISSUES by default.
        expected = sorted(c["id"] for c in sandbox.campaigns(account=ACT) if c["effective_status"] == "ACTIVE")
        assert cursor.total() == len(expected) == 499  # summary=true, added by the SDK
        assert len(seen) == len(set(seen)) and seen == expected
        assert sandbox.state()["counters"]["requests"] == 5  # 5 pages of 100, no 6th call


def test_unfiltered_edge_hides_archived_and_deleted(sandbox: RunningSandbox) -> None:
    archived = campaign_ids(sandbox, "ARCHIVED")[0]
    deleted = campaign_ids(sandbox, "PAUSED")[0]
    assert graph_post(sandbox, deleted, status="DELETED").json() == {"success": True}

    listed = graph_get(sandbox, f"{ACT}/campaigns", limit=500, fields="status").json()["data"]
    assert {c["status"] for c in listed} == {"ACTIVE", "PAUSED"}
    only_archived = graph_get(sandbox, f"{ACT}/campaigns", effective_status='["ARCHIVED"]', limit=500).json()["data"]
    assert archived in {c["id"] for c in only_archived}
    with_deleted = graph_get(sandbox, f"{ACT}/campaigns", effective_status='["DELETED","PAUSED"]', limit=500).json()[
        "data"
    ]
    assert deleted not in {c["id"] for c in with_deleted}
    assert graph_get(sandbox, deleted, fields="status").json() == {"status": "DELETED", "id": deleted}
    filtering = '[{"field":"effective_status","operator":"IN","value":["ARCHIVED"]}]'
    assert graph_get(sandbox, f"{ACT}/campaigns", filtering=filtering, limit=500).json()["data"] == only_archived


def test_paging_wire_format(sandbox: RunningSandbox) -> None:
    first = graph_get(
        sandbox,
        f"{ACT}/campaigns",
        limit=25,
        summary="true",
        effective_status='["ACTIVE","PAUSED","IN_PROCESS","WITH_ISSUES"]',
    )
    body = first.json()
    assert len(body["data"]) == 25 and body["data"][0] == {"id": body["data"][0]["id"]}
    assert set(body["paging"]["cursors"]) == {"before", "after"}
    second = requests.get(body["paging"]["next"], timeout=10).json()  # next is a full URL
    rest = len(campaign_ids(sandbox, "ACTIVE")) + len(campaign_ids(sandbox, "PAUSED")) - 25
    assert len(second["data"]) == rest and "next" not in second["paging"]
    assert body["summary"] == {"total_count": rest + 25}
    assert first.headers["facebook-api-version"] == "v25.0" and first.headers["x-fb-trace-id"]


def test_sdk_api_update_pauses_and_children_show_campaign_paused(sandbox: RunningSandbox) -> None:
    api = sdk_api(sandbox.url)
    campaign_id = next(c["id"] for c in sandbox.campaigns(account=ACT) if c["effective_status"] == "ACTIVE")
    before = truth(sandbox, campaign_id)
    Campaign(campaign_id, api=api).api_update(params={"status": Campaign.Status.paused})
    after = truth(sandbox, campaign_id)
    assert after["status"] == after["effective_status"] == "PAUSED"
    assert after["updated_time"] > before["updated_time"]

    adsets = graph_get(sandbox, f"{campaign_id}/adsets", fields="status,effective_status").json()["data"]
    assert adsets and all(a["effective_status"] in ("CAMPAIGN_PAUSED", "PAUSED") for a in adsets)
    assert any(a["status"] == "ACTIVE" and a["effective_status"] == "CAMPAIGN_PAUSED" for a in adsets)


def test_sdk_batches_report_exactly_the_campaigns_left_active() -> None:
    with start_sandbox(accounts=1, statuses={"ACTIVE": 150}) as sandbox:
        api = sdk_api(sandbox.url)
        targets = campaign_ids(sandbox, "ACTIVE")[:120]
        sandbox.faults(error_rate=0.1, fault_seed=5)
        succeeded: set[str] = set()
        failed: dict[str, FacebookRequestError] = {}
        for start in range(0, len(targets), 50):
            batch = api.new_batch()
            for campaign_id in targets[start : start + 50]:
                Campaign(campaign_id, api=api).api_update(
                    params={"status": "PAUSED"},
                    batch=batch,
                    success=lambda response, cid=campaign_id: succeeded.add(cid),
                    failure=lambda response, cid=campaign_id: failed.__setitem__(cid, response.error()),
                )
            assert batch.execute() is None  # no timed-out items

        still_active = set(campaign_ids(sandbox, "ACTIVE")) & set(targets)
        assert failed and set(failed) == still_active
        assert succeeded == set(targets) - still_active
        assert {e.api_error_code() for e in failed.values()} <= {1, 2}
        assert all(e.api_transient_error() and e.http_status() == 500 for e in failed.values())
        counters = sandbox.state()["counters"]
        assert counters["batch_items"] == 120 and counters["errors_injected"] == len(failed)
        assert counters["requests"] == 3


def test_sdk_insights_are_strings_and_roas_is_a_ratio_of_sums(sandbox: RunningSandbox) -> None:
    campaign = Campaign(campaign_ids(sandbox, "ACTIVE")[0], api=sdk_api(sandbox.url))
    fields = [
        "campaign_id",
        "spend",
        "impressions",
        "clicks",
        "ctr",
        "cpc",
        "reach",
        "actions",
        "action_values",
        "purchase_roas",
        "date_start",
        "date_stop",
    ]
    [total] = campaign.get_insights(fields=fields, params={"date_preset": "last_7d"})
    days = list(campaign.get_insights(fields=fields, params={"date_preset": "last_7d", "time_increment": 1}))

    assert len(days) == 7 and total["campaign_id"] == campaign["id"]
    assert all(isinstance(total[k], str) for k in ("spend", "impressions", "clicks", "ctr", "cpc", "reach"))
    assert total["date_stop"] == days[-1]["date_start"] and total["date_start"] == days[0]["date_start"]

    def purchase_value(row: Any) -> Decimal:
        return sum(Decimal(a["value"]) for a in row.get("action_values", []) if a["action_type"] == "omni_purchase")

    spend = sum(Decimal(d["spend"]) for d in days)
    value = sum(purchase_value(d) for d in days)
    assert Decimal(total["spend"]) == spend
    assert int(total["impressions"]) == sum(int(d["impressions"]) for d in days)
    assert purchase_value(total) == value
    [roas] = total["purchase_roas"]
    assert roas["action_type"] == "omni_purchase"
    assert float(roas["value"]) == pytest.approx(float(value / spend), abs=1e-6)


def test_insights_levels_are_exact_sums_of_ads(sandbox: RunningSandbox) -> None:
    params = {"fields": "spend,impressions,clicks,campaign_id,ad_id", "date_preset": "last_14d", "limit": 5000}
    account = graph_get(sandbox, f"{ACT}/insights", **params).json()["data"]
    campaigns = graph_get(sandbox, f"{ACT}/insights", level="campaign", **params).json()["data"]
    ads = graph_get(sandbox, f"{ACT}/insights", level="ad", **params).json()["data"]
    assert len(account) == 1 and "campaign_id" not in account[0]
    for metric in ("impressions", "clicks"):
        assert int(account[0][metric]) == sum(int(r[metric]) for r in campaigns) == sum(int(r[metric]) for r in ads)
    assert Decimal(account[0]["spend"]) == sum(Decimal(r["spend"]) for r in ads)
    assert {r["campaign_id"] for r in ads} == {r["campaign_id"] for r in campaigns}


def test_ads_differ_and_some_creatives_fatigue(sandbox: RunningSandbox) -> None:
    rows = graph_get(
        sandbox,
        f"{ACT}/insights",
        level="ad",
        fields="ad_id,ctr",
        date_preset="last_14d",
        time_increment=1,
        limit=5000,
    ).json()["data"]
    by_ad: dict[str, list[float]] = {}
    for row in rows:
        by_ad.setdefault(row["ad_id"], []).append(float(row["ctr"]))
    trends = {ad: sum(c[-3:]) / sum(c[:3]) for ad, c in by_ad.items() if len(c) == 14}
    assert any(t < 0.8 for t in trends.values()), "some ads lose >20% CTR over 14 days"
    assert any(t > 0.9 for t in trends.values()), "others hold steady"
    assert len({round(c[0], 2) for c in by_ad.values()}) > len(by_ad) // 2


def test_spend_multiplier_scales_todays_spend(sandbox: RunningSandbox) -> None:
    campaign_id = campaign_ids(sandbox, "ACTIVE")[0]
    before = graph_get(sandbox, f"{campaign_id}/insights", fields="spend", date_preset="today").json()["data"]
    if not before:
        pytest.skip("too early in the UTC day for any spend")
    sandbox.faults(spend_multiplier={campaign_id: 10})
    after = graph_get(sandbox, f"{campaign_id}/insights", fields="spend", date_preset="today").json()["data"]
    assert float(after[0]["spend"]) == pytest.approx(10 * float(before[0]["spend"]), rel=0.01)
    history = graph_get(sandbox, f"{campaign_id}/insights", fields="spend", date_preset="yesterday").json()["data"]
    sandbox.faults()
    again = graph_get(sandbox, f"{campaign_id}/insights", fields="spend", date_preset="yesterday").json()["data"]
    assert again == history


# --------------------------------------------------------------------------- Meta's status rules


def test_archived_cannot_be_reactivated_but_can_be_deleted(sandbox: RunningSandbox) -> None:
    archived = campaign_ids(sandbox, "ARCHIVED")[0]
    refused = graph_post(sandbox, f"{archived}/", status="ACTIVE")
    assert refused.status_code == 400
    assert error_of(refused)["code"] == 100 and "archived" in error_of(refused)["message"].lower()
    assert truth(sandbox, archived)["status"] == "ARCHIVED"
    assert graph_post(sandbox, f"{archived}/", status="DELETED").json() == {"success": True}
    assert truth(sandbox, archived)["status"] == "DELETED"


def test_deleted_is_final(sandbox: RunningSandbox) -> None:
    campaign_id = campaign_ids(sandbox, "PAUSED")[0]
    deleted = requests.delete(f"{sandbox.url}/v25.0/{campaign_id}", params={"access_token": TOKEN}, timeout=10)
    assert deleted.json() == {"success": True}
    for change in ({"status": "ACTIVE"}, {"status": "PAUSED"}, {"name": "again"}):
        response = graph_post(sandbox, campaign_id, **change)
        assert response.status_code == 400 and error_of(response)["code"] == 100
    assert truth(sandbox, campaign_id)["status"] == "DELETED"


def test_same_status_is_a_no_op_and_edits_strictly_increase_updated_time(sandbox: RunningSandbox) -> None:
    campaign_id = campaign_ids(sandbox, "PAUSED")[0]
    original = truth(sandbox, campaign_id)["updated_time"]
    assert graph_post(sandbox, f"{campaign_id}/", status="PAUSED").json() == {"success": True}
    assert truth(sandbox, campaign_id)["updated_time"] == original

    times = [original]
    for status in ("ACTIVE", "PAUSED", "ACTIVE"):  # within the same second
        assert graph_post(sandbox, campaign_id, status=status).json() == {"success": True}
        times.append(truth(sandbox, campaign_id)["updated_time"])
    assert times == sorted(set(times))

    assert graph_post(sandbox, campaign_id, name="renamed").json() == {"success": True}
    assert truth(sandbox, campaign_id)["updated_time"] > times[-1]


def test_bad_requests_get_meta_errors(sandbox: RunningSandbox) -> None:
    campaign_id = campaign_ids(sandbox, "ACTIVE")[0]
    unknown = error_of(graph_get(sandbox, "1202199999999999"))
    assert (unknown["code"], unknown["error_subcode"]) == (100, 33) and "does not exist" in unknown["message"]
    assert unknown["fbtrace_id"]
    # Found while fuzzing the emergency stop: ids past SQLite's INTEGER were a sandbox crash (code 1).
    for too_long in ("9" * 20, "act_" + "9" * 20):
        error = error_of(graph_get(sandbox, too_long))
        assert (error["code"], error["error_subcode"]) == (100, 33), too_long
    assert error_of(graph_get(sandbox, campaign_id, fields="id,colour"))["code"] == 100
    assert error_of(graph_post(sandbox, campaign_id, status="RUNNING"))["code"] == 100
    assert error_of(graph_post(sandbox, campaign_id, daily_budget="-5"))["code"] == 100
    assert error_of(graph_get(sandbox, f"{ACT}/campaigns", effective_status='["SLEEPING"]'))["code"] == 100
    missing = graph_get(sandbox, "me", token=None)
    assert missing.status_code == 400 and error_of(missing)["code"] == 104


def test_create_campaign_adset_and_ad(sandbox: RunningSandbox) -> None:
    campaign = graph_post(
        sandbox,
        f"{ACT}/campaigns",
        name="Launch",
        objective="OUTCOME_SALES",
        status="PAUSED",
        daily_budget="5000",
        special_ad_categories="[]",
    ).json()
    adset = graph_post(
        sandbox,
        f"{ACT}/adsets",
        name="Launch / US",
        campaign_id=campaign["id"],
        daily_budget="5000",
        targeting=json.dumps({"geo_locations": {"countries": ["US"]}}),
    ).json()
    ad = graph_post(
        sandbox,
        f"{ACT}/ads",
        name="Launch ad",
        adset_id=adset["id"],
        creative=json.dumps({"title": "Hi", "body": "Buy", "call_to_action_type": "SHOP_NOW"}),
    ).json()
    fetched = graph_get(sandbox, ad["id"], fields="campaign_id,adset_id,effective_status,creative").json()
    assert fetched["campaign_id"] == campaign["id"] and fetched["adset_id"] == adset["id"]
    assert fetched["effective_status"] == "CAMPAIGN_PAUSED" and fetched["creative"]["title"] == "Hi"
    assert graph_get(sandbox, campaign["id"], fields="daily_budget,special_ad_categories").json() == {
        "daily_budget": "5000",
        "special_ad_categories": [],
        "id": campaign["id"],
    }
    orphan = graph_post(sandbox, f"{ACT}/ads", name="x", adset_id="1", creative='{"creative_id": "1"}')
    assert error_of(orphan)["code"] == 100


# --------------------------------------------------------------------------- rate limits


def test_development_tier_blocks_counts_rejections_and_recovers(sandbox: RunningSandbox) -> None:
    sandbox.faults(tier={ACT: "development"}, tier_params={"development": {"max": 60, "decay_s": 300, "block_s": 1}})
    targets = campaign_ids(sandbox, "ACTIVE")
    for campaign_id in targets[:20]:  # 20 writes x 3 points = the whole budget
        response = graph_post(sandbox, campaign_id, status="PAUSED")
        assert response.status_code == 200
    usage = json.loads(response.headers["X-Ad-Account-Usage"])
    assert usage == {"acc_id_util_pct": 100.0, "reset_time_duration": 300, "ads_api_access_tier": "development_access"}

    blocked = graph_post(sandbox, targets[20], status="PAUSED")
    error = error_of(blocked)
    assert blocked.status_code == 400
    assert (error["code"], error["error_subcode"], error["type"]) == (80004, 2446079, "OAuthException")
    buc = json.loads(blocked.headers["X-Business-Use-Case-Usage"])["1000000001"][0]
    assert buc["estimated_time_to_regain_access"] == 1 and buc["type"] == "ads_management"
    assert json.loads(blocked.headers["X-Ad-Account-Usage"])["reset_time_duration"] == 1

    for campaign_id in targets[21:24]:  # a badly behaved client keeps calling
        assert error_of(graph_post(sandbox, campaign_id, status="PAUSED"))["code"] == 80004
    assert all(truth(sandbox, c)["status"] == "ACTIVE" for c in targets[20:24])  # none applied
    account = next(a for a in sandbox.state()["accounts"] if a["id"] == ACT)
    assert account["rejected_while_blocked"] == 3 and account["blocked_until"] is not None
    assert sandbox.state()["counters"]["rate_limited"] == 4
    assert graph_get(sandbox, "act_1000000002/campaigns").status_code == 200  # other accounts unaffected

    time.sleep(1.1)
    assert graph_post(sandbox, targets[20], status="PAUSED").json() == {"success": True}
    assert truth(sandbox, targets[20])["status"] == "PAUSED"


def test_rate_limit_code_17_option(sandbox: RunningSandbox) -> None:
    sandbox.faults(tier={ACT: "development"}, tier_params={"development": {"max": 2}}, rate_limit_code=17)
    graph_get(sandbox, ACT)
    graph_get(sandbox, ACT)
    error = error_of(graph_get(sandbox, ACT))
    assert (error["code"], error["error_subcode"], error["message"]) == (17, 2446079, "User request limit reached")


def test_unscored_calls_and_standard_headers(sandbox: RunningSandbox) -> None:
    me = graph_get(sandbox, "me")
    assert me.json() == {"id": "100000000000001", "name": "Sandbox User"}
    assert "X-Ad-Account-Usage" not in me.headers
    accounts = graph_get(sandbox, "me/adaccounts", fields="id,account_id,currency,account_status,timezone_name").json()
    assert accounts["data"][0] == {
        "id": ACT,
        "account_id": "1000000001",
        "currency": "USD",
        "account_status": 1,
        "timezone_name": "America/Los_Angeles",
    }
    read = graph_get(sandbox, f"{ACT}/campaigns")
    assert json.loads(read.headers["X-Ad-Account-Usage"])["ads_api_access_tier"] == "standard_access"
    assert set(json.loads(read.headers["X-App-Usage"])) == {"call_count", "total_time", "total_cputime"}


# --------------------------------------------------------------------------- batch


def test_batch_wire_format_and_per_item_errors(sandbox: RunningSandbox) -> None:
    active = campaign_ids(sandbox, "ACTIVE")[0]
    archived = campaign_ids(sandbox, "ARCHIVED")[0]
    response = graph_batch(
        sandbox,
        [
            {"method": "POST", "relative_url": f"{active}/", "body": "status=PAUSED"},
            {"method": "POST", "relative_url": f"v25.0/{archived}", "body": "status=ACTIVE"},
            {"method": "GET", "relative_url": "1202199999999999?fields=id"},
            {"method": "GET", "relative_url": f"/v25.0/{ACT}/campaigns?fields=status&limit=2"},
        ],
    )
    assert response.status_code == 200
    items = response.json()
    assert [item["code"] for item in items] == [200, 400, 400, 200]
    assert json.loads(items[0]["body"]) == {"success": True}
    assert {"name": "Content-Type", "value": "text/javascript; charset=UTF-8"} in items[0]["headers"]
    assert "X-Ad-Account-Usage" in {h["name"] for h in items[0]["headers"]}
    assert json.loads(items[1]["body"])["error"]["code"] == 100
    assert json.loads(items[2]["body"])["error"]["error_subcode"] == 33
    assert len(json.loads(items[3]["body"])["data"]) == 2
    assert truth(sandbox, active)["status"] == "PAUSED" and truth(sandbox, archived)["status"] == "ARCHIVED"
    assert (
        "headers"
        not in graph_batch(sandbox, items=[{"method": "GET", "relative_url": ACT}], include_headers="false").json()[0]
    )


def test_batch_limit_is_50(sandbox: RunningSandbox) -> None:
    items = [{"method": "GET", "relative_url": ACT}] * 51
    response = graph_batch(sandbox, items)
    assert response.status_code == 400
    assert error_of(response)["code"] == 100 and "Maximum batch size is 50" in error_of(response)["message"]
    assert len(graph_batch(sandbox, items[:50]).json()) == 50


def test_timed_out_batch_items_are_null_and_not_applied(sandbox: RunningSandbox) -> None:
    api = sdk_api(sandbox.url)
    targets = campaign_ids(sandbox, "ACTIVE")[:10]
    sandbox.faults(timeout_rate=1.0)
    batch = api.new_batch()
    for campaign_id in targets:
        Campaign(campaign_id, api=api).api_update(params={"status": "PAUSED"}, batch=batch)
    retry = batch.execute()
    assert retry is not None and len(retry) == 10  # the SDK hands back the null items
    assert all(truth(sandbox, c)["status"] == "ACTIVE" for c in targets)
    assert sandbox.state()["counters"]["timeouts_injected"] == 10
    sandbox.faults()
    assert retry.execute() is None
    assert all(truth(sandbox, c)["status"] == "PAUSED" for c in targets)


def test_batch_is_fast_and_paging_is_fast() -> None:
    with start_sandbox(accounts=1, statuses={"ACTIVE": 200}) as sandbox:
        targets = campaign_ids(sandbox, "ACTIVE")[:50]
        items = [{"method": "POST", "relative_url": f"{c}/", "body": "status=PAUSED"} for c in targets]
        graph_get(sandbox, "me")  # warm up
        started = time.perf_counter()
        assert all(item["code"] == 200 for item in graph_batch(sandbox, items).json())
        batch_s = time.perf_counter() - started
        started = time.perf_counter()
        first = graph_get(sandbox, f"{ACT}/campaigns", limit=100, fields="id,status")
        second = requests.get(first.json()["paging"]["next"], timeout=10)
        paging_s = time.perf_counter() - started
        assert len(first.json()["data"]) + len(second.json()["data"]) == 200
        assert batch_s < 0.5 and paging_s < 0.5, (batch_s, paging_s)


# --------------------------------------------------------------------------- tokens, faults


def test_expired_token_fault_gives_190(sandbox: RunningSandbox) -> None:
    sandbox.faults(expire_token=True)
    with pytest.raises(FacebookRequestError) as caught:
        AdAccount(ACT, api=sdk_api(sandbox.url)).api_get(fields=["name"])
    error = caught.value
    assert (error.api_error_code(), error.api_error_subcode(), error.api_error_type()) == (190, 463, "OAuthException")
    assert "Session has expired" in error.api_error_message()
    assert sandbox.state()["faults"]["expire_token"] is True
    sandbox.faults()
    assert AdAccount(ACT, api=sdk_api(sandbox.url)).api_get(fields=["name"])["name"] == "Sandbox Account 1"


def test_server_token_rejects_other_tokens() -> None:
    with start_sandbox(token=TOKEN, accounts=1, campaigns_per_account=1) as sandbox:
        assert graph_get(sandbox, "me").status_code == 200
        wrong = graph_get(sandbox, "me", token="other")
        assert wrong.status_code == 400 and error_of(wrong)["code"] == 190


def test_latency_and_slow_requests(sandbox: RunningSandbox) -> None:
    sandbox.faults(latency_ms=150)
    started = time.perf_counter()
    graph_get(sandbox, "me")
    assert time.perf_counter() - started >= 0.15
    sandbox.faults(timeout_rate=1.0, timeout_ms=2000)
    with pytest.raises(requests.Timeout):
        requests.get(f"{sandbox.url}/v25.0/me", params={"access_token": TOKEN}, timeout=0.3)
    assert sandbox.state()["counters"]["timeouts_injected"] == 1


def test_fault_config_is_validated_and_replaced(sandbox: RunningSandbox) -> None:
    assert sandbox.faults(error_rate=0.5, tier={"1000000002": "development"})["tier"] == {
        "act_1000000002": "development"
    }
    assert sandbox.faults(latency_ms=1)["error_rate"] == 0.0  # a body replaces the config
    with pytest.raises(ValueError, match="error_rate"):
        sandbox.faults(error_rate=2)
    with pytest.raises(ValueError, match="unknown_fault"):
        sandbox.faults(unknown_fault=True)
    with pytest.raises(ValueError, match="accounts"):
        sandbox.reset(accounts=0)


# --------------------------------------------------------------------------- store, seeding, CLI


def test_state_persists_across_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "meta.sqlite3"
    with start_sandbox(store, accounts=1, campaigns_per_account=10) as first:
        campaign_id = campaign_ids(first, "ACTIVE")[0]
        graph_post(first, campaign_id, status="PAUSED")
        before = first.campaigns()
    with start_sandbox(store) as second:
        after = second.campaigns()
        # Everything Meta stores survives; the write counter lives in memory only.
        assert [{**c, "status_writes": 0} for c in before] == after
        assert truth(second, campaign_id)["status"] == "PAUSED"


def test_status_writes_count_every_accepted_status_edit_including_no_ops(sandbox: RunningSandbox) -> None:
    paused, other = campaign_ids(sandbox, "ACTIVE")[:2]
    graph_post(sandbox, paused, status="PAUSED")
    graph_post(sandbox, paused, status="PAUSED")  # a no-op on Meta, but still a second pause request
    graph_post(sandbox, other, name="renamed")

    writes = {c["id"]: c["status_writes"] for c in sandbox.campaigns()}

    assert writes[paused] == 2 and writes[other] == 0
    sandbox.reset(accounts=1, campaigns_per_account=3)
    assert {c["status_writes"] for c in sandbox.campaigns()} == {0}


def test_reseed_with_the_same_seed_is_identical(sandbox: RunningSandbox) -> None:
    def snapshot() -> list[tuple]:
        rows = graph_get(
            sandbox,
            f"{ACT}/campaigns",
            fields="name,daily_budget,status,objective",
            effective_status='["ACTIVE","PAUSED","ARCHIVED"]',
            limit=5000,
        ).json()["data"]
        return [tuple(sorted(r.items())) for r in rows]

    sandbox.reset(accounts=2, campaigns_per_account=60, seed=11)
    first = snapshot()
    graph_post(sandbox, campaign_ids(sandbox, "ACTIVE")[0], status="PAUSED")
    state = sandbox.reset(accounts=2, campaigns_per_account=60, seed=11)
    assert snapshot() == first
    assert state["counters"]["writes"] == 0 and state["faults"]["error_rate"] == 0
    statuses = [c["status"] for c in sandbox.campaigns(account=ACT)]
    assert 0.5 < statuses.count("ACTIVE") / 60 < 0.9 and "ARCHIVED" in statuses
    sandbox.reset(accounts=2, campaigns_per_account=60, seed=12)
    assert snapshot() != first


def test_seed_does_not_depend_on_the_clock(tmp_path: Path) -> None:
    def seeded(at: float) -> list[tuple]:
        store = Store(tmp_path / f"{at}.sqlite3", clock=lambda: at)
        store.reset(SeedConfig(accounts=2, campaigns_per_account=30, seed=3))
        rows = store.compact_campaigns(None, None)
        store.close()
        return [(r["id"], r["status"], r["daily_budget"]) for r in rows]

    assert seeded(1_790_000_000) == seeded(1_790_000_000 + 7 * 86_400 + 12_345)


def test_seeding_5000_campaigns_is_fast() -> None:
    started = time.perf_counter()
    with start_sandbox(accounts=5, campaigns_per_account=1000) as sandbox:
        elapsed = time.perf_counter() - started
        assert sum(sum(a["campaigns"].values()) for a in sandbox.state()["accounts"]) == 5000
    assert elapsed < 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cli_starts_and_answers(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "meta_sandbox",
        "--port",
        str(port),
        "--store",
        str(tmp_path / "cli.sqlite3"),
        "--reset",
        "--accounts",
        "1",
        "--campaigns-per-account",
        "3",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert "listening on" in process.stdout.readline()
        response = requests.get(
            f"http://127.0.0.1:{port}/v25.0/{ACT}/campaigns",
            params={
                "access_token": "t",
                "effective_status": '["ACTIVE","PAUSED","ARCHIVED","IN_PROCESS","WITH_ISSUES"]',
            },
            timeout=10,
        )
        assert len(response.json()["data"]) == 3
        assert requests.get(f"http://127.0.0.1:{port}/_sandbox/state", timeout=10).json()["accounts"][0]["id"] == ACT
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def test_the_package_loads_neither_django_nor_the_tower() -> None:
    """It runs where only Python is installed (``python -m meta_sandbox``), so it stays standard library."""
    code = (
        "import sys, meta_sandbox, meta_sandbox.cli, meta_sandbox.testing;"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout.split()
    assert "meta_sandbox" in loaded
    assert not {"django", "config", "controltower", "meta_modules", "requests", "facebook_business"} & set(loaded)
