"""Meta's usage headers and limits over HTTP: the BUC header alone, the hourly BUC quota, and
each limit in its own scope (ads_management, ads_insights, app, mutation rate, per object)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from meta_modules.sandbox.testing import RunningSandbox, start_sandbox

ACT = "act_1000000001"
OTHER = "act_1000000002"
TOKEN = "sandbox-token"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=2, statuses={"ACTIVE": 8, "PAUSED": 2}, delivery_issues=[]) as running:
        yield running


def get(sandbox: RunningSandbox, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sandbox.url}/v25.0/{path}", params={"access_token": TOKEN, **params}, timeout=10)


def post(sandbox: RunningSandbox, path: str, **data: Any) -> requests.Response:
    return requests.post(f"{sandbox.url}/v25.0/{path}", params={"access_token": TOKEN}, data=data, timeout=10)


def batch(sandbox: RunningSandbox, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return requests.post(f"{sandbox.url}/v25.0/", params={"access_token": TOKEN},
                         data={"batch": json.dumps(items)}, timeout=10).json()


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
    read = get(sandbox, f"{ACT}/campaigns")
    assert "X-Business-Use-Case-Usage" in read.headers
    assert "X-Ad-Account-Usage" not in read.headers and "X-App-Usage" not in read.headers
    [item] = batch(sandbox, [{"method": "GET", "relative_url": ACT}])
    names = {h["name"] for h in item["headers"]}
    assert "X-Business-Use-Case-Usage" in names and not names & {"X-Ad-Account-Usage", "X-App-Usage"}

    sandbox.faults(usage_headers="none")
    assert not {"X-Business-Use-Case-Usage", "X-Ad-Account-Usage", "X-App-Usage"} & set(get(sandbox, ACT).headers)
    with pytest.raises(ValueError, match="usage_headers"):
        sandbox.faults(usage_headers="some")


def test_it_reports_the_hourly_quota_as_call_count_and_the_score_as_time(sandbox: RunningSandbox) -> None:
    sandbox.faults(tier={ACT: "development"}, tier_params={"development": {"hourly_base": 20, "per_active_ad": 0}})
    for _ in range(4):
        response = get(sandbox, ACT)
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
    sandbox.faults(tier={ACT: "development"}, tier_params={"development": {"hourly_base": 3, "per_active_ad": 0}},
                   usage_headers="buc_only")
    targets = active(sandbox)
    for campaign_id in targets[:3]:
        assert post(sandbox, campaign_id, status="PAUSED").status_code == 200
    refused = post(sandbox, targets[3], status="PAUSED")
    assert (error_of(refused)["code"], error_of(refused)["error_subcode"]) == (80004, 2446079)
    entry = buc(refused)
    assert entry["call_count"] == 100 and entry["estimated_time_to_regain_access"] == 60
    assert next(c for c in sandbox.campaigns() if c["id"] == targets[3])["status"] == "ACTIVE"
    assert get(sandbox, OTHER).status_code == 200
