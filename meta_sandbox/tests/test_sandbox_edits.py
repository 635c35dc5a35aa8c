"""What updated_time does not see: budget-only edits (daily_budget, lifetime_budget, spend_cap)
leave it alone, as Meta's campaign reference says; name and status edits bump it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import graph_get, graph_post

ACT = "act_1000000001"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=1, statuses={"ACTIVE": 5, "PAUSED": 2}, delivery_issues=[]) as running:
        yield running


def row(sandbox: RunningSandbox, campaign_id: str) -> dict[str, Any]:
    return next(c for c in sandbox.campaigns() if c["id"] == campaign_id)


def test_it_does_not_bump_updated_time_for_budget_only_campaign_edits(sandbox: RunningSandbox) -> None:
    campaign = sandbox.campaigns(status="ACTIVE")[0]
    assert (campaign["lifetime_budget"], campaign["spend_cap"], campaign["name"]) == (None, None, campaign["name"])
    for change in (
        {"daily_budget": "7000"},
        {"lifetime_budget": "900000"},
        {"spend_cap": "5000000"},
        {"daily_budget": "8000", "spend_cap": "6000000"},
    ):
        assert graph_post(sandbox, campaign["id"], **change).json() == {"success": True}
    after = row(sandbox, campaign["id"])
    assert (after["daily_budget"], after["lifetime_budget"], after["spend_cap"]) == ("8000", "900000", "6000000")
    assert after["updated_time"] == campaign["updated_time"]
    node = graph_get(sandbox, campaign["id"], fields="spend_cap,lifetime_budget,updated_time").json()
    assert node["spend_cap"] == "6000000" and node["updated_time"] == campaign["updated_time"]

    assert graph_post(sandbox, campaign["id"], daily_budget="9000", name="Renamed").json() == {"success": True}
    renamed = row(sandbox, campaign["id"])
    assert renamed["name"] == "Renamed" and renamed["updated_time"] > campaign["updated_time"]
    assert graph_post(sandbox, campaign["id"], status="PAUSED").json() == {"success": True}
    assert row(sandbox, campaign["id"])["updated_time"] > renamed["updated_time"]


def test_it_edits_ad_set_budgets_without_bumping_updated_time(sandbox: RunningSandbox) -> None:
    campaign_id = sandbox.campaigns(status="ACTIVE")[0]["id"]
    adset = graph_get(sandbox, f"{campaign_id}/adsets", fields="updated_time,daily_budget,lifetime_budget").json()[
        "data"
    ][0]
    assert adset["lifetime_budget"] == "0"
    assert graph_post(sandbox, adset["id"], lifetime_budget="300000").json() == {"success": True}
    edited = graph_get(sandbox, adset["id"], fields="updated_time,lifetime_budget").json()
    assert edited == {"id": adset["id"], "updated_time": adset["updated_time"], "lifetime_budget": "300000"}
    assert graph_post(sandbox, adset["id"], name="Ad set renamed").json() == {"success": True}
    assert graph_get(sandbox, adset["id"], fields="updated_time").json()["updated_time"] > adset["updated_time"]


def test_it_refuses_budget_fields_that_the_object_does_not_have(sandbox: RunningSandbox) -> None:
    campaign_id = sandbox.campaigns(status="ACTIVE")[0]["id"]
    adset_id = graph_get(sandbox, f"{campaign_id}/adsets").json()["data"][0]["id"]
    ad_id = graph_get(sandbox, f"{campaign_id}/ads").json()["data"][0]["id"]
    for target, change in (
        (adset_id, {"spend_cap": "100"}),
        (ad_id, {"daily_budget": "100"}),
        (campaign_id, {"spend_cap": "-1"}),
        (campaign_id, {"lifetime_budget": "abc"}),
    ):
        response = graph_post(sandbox, target, **change)
        assert response.status_code == 400 and response.json()["error"]["code"] == 100
