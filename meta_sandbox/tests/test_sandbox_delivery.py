"""Configured vs effective status: Meta's delivery system shows IN_PROCESS / WITH_ISSUES over a
campaign's configured ACTIVE or PAUSED status (over HTTP, as the tower sees it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import graph_get, graph_post

ACT = "act_1000000001"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=2, campaigns_per_account=40, seed=7) as running:
        yield running


def by_status(sandbox: RunningSandbox, account: str, status: str) -> list[dict[str, Any]]:
    return sandbox.campaigns(account=account, status=status)


def test_it_seeds_harsh_delivery_states_in_every_account_by_default(sandbox: RunningSandbox) -> None:
    for account in (ACT, "act_1000000002"):
        paused, active = by_status(sandbox, account, "PAUSED"), by_status(sandbox, account, "ACTIVE")
        assert [c["effective_status"] for c in paused[:3]] == ["WITH_ISSUES", "IN_PROCESS", "PAUSED"]
        assert [c["effective_status"] for c in active[:2]] == ["WITH_ISSUES", "ACTIVE"]
        [issue] = paused[0]["issues_info"]
        assert issue["level"] == "CAMPAIGN" and issue["error_code"] == 1815869 and issue["error_summary"]
        assert paused[1]["issues_info"] == [] and paused[2]["issues_info"] == []

    node = graph_get(
        sandbox,
        by_status(sandbox, ACT, "PAUSED")[0]["id"],
        fields="status,configured_status,effective_status,issues_info",
    ).json()
    assert (node["status"], node["configured_status"], node["effective_status"]) == ("PAUSED", "PAUSED", "WITH_ISSUES")
    assert node["issues_info"][0]["error_message"]
    plain = graph_get(sandbox, by_status(sandbox, ACT, "ACTIVE")[1]["id"], fields="issues_info").json()
    assert plain["issues_info"] == []


def test_it_does_not_change_ids_names_budgets_or_statuses_of_a_seed(sandbox: RunningSandbox) -> None:
    def snapshot() -> list[tuple]:
        response = graph_get(
            sandbox,
            f"{ACT}/campaigns",
            fields="name,daily_budget,status,created_time",
            effective_status='["ACTIVE","PAUSED","ARCHIVED","IN_PROCESS","WITH_ISSUES"]',
            limit=500,
        )
        return [tuple(sorted(r.items())) for r in response.json()["data"]]

    harsh = snapshot()
    sandbox.reset(accounts=2, campaigns_per_account=40, seed=7, delivery_issues=[])
    assert {c["effective_status"] for c in sandbox.campaigns()} == {"ACTIVE", "PAUSED", "ARCHIVED"}
    assert [dict(r)["name"] for r in snapshot()] == [dict(r)["name"] for r in harsh]
    assert [(dict(r)["status"], dict(r)["daily_budget"]) for r in snapshot()] == [
        (dict(r)["status"], dict(r)["daily_budget"]) for r in harsh
    ]


def test_it_seeds_chosen_delivery_issues_per_account(sandbox: RunningSandbox) -> None:
    sandbox.reset(
        accounts=2,
        campaigns_per_account=40,
        delivery_issues=[
            {"account": 2, "nth_active": 3, "effective_status": "IN_PROCESS"},
        ],
    )
    marked = [c for c in sandbox.campaigns() if c["effective_status"] != c["status"]]
    assert len(marked) == 1 and marked[0]["account_id"] == "1000000002"
    assert marked[0]["id"] == by_status(sandbox, "act_1000000002", "ACTIVE")[2]["id"]
    for bad in (
        [{"nth_active": 0, "effective_status": "IN_PROCESS"}],
        [{"nth_active": 1, "nth_paused": 1, "effective_status": "IN_PROCESS"}],
        [{"nth_active": 1, "effective_status": "CAMPAIGN_PAUSED"}],
        {"nth_active": 1},
    ):
        with pytest.raises(ValueError, match="delivery_issues"):
            sandbox.reset(delivery_issues=bad)


def test_it_filters_edges_on_the_effective_status(sandbox: RunningSandbox) -> None:
    with_issues = {c["id"] for c in sandbox.campaigns(account=ACT) if c["effective_status"] == "WITH_ISSUES"}
    active = graph_get(sandbox, f"{ACT}/campaigns", effective_status='["ACTIVE"]', limit=500, fields="status").json()[
        "data"
    ]
    assert not with_issues & {c["id"] for c in active}  # a configured-ACTIVE WITH_ISSUES one is not "ACTIVE"
    listed = graph_get(
        sandbox, f"{ACT}/campaigns", effective_status='["WITH_ISSUES"]', limit=500, fields="status"
    ).json()["data"]
    assert {c["id"] for c in listed} == with_issues and {c["status"] for c in listed} == {"ACTIVE", "PAUSED"}
    unfiltered = {c["id"] for c in graph_get(sandbox, f"{ACT}/campaigns", limit=500).json()["data"]}
    assert with_issues <= unfiltered


def test_it_marks_delivery_without_touching_updated_time_and_edits_do_not_clear_it(sandbox: RunningSandbox) -> None:
    campaign = by_status(sandbox, ACT, "ACTIVE")[1]
    issue = {"level": "CAMPAIGN", "error_code": 2446173, "error_summary": "Payment failed", "error_message": "x"}
    row = sandbox.set_delivery(campaign["id"], "WITH_ISSUES", [issue])
    assert row["effective_status"] == "WITH_ISSUES" and row["issues_info"] == [issue]
    assert row["updated_time"] == campaign["updated_time"]  # Meta's delivery system, not an edit

    assert graph_post(sandbox, campaign["id"], status="PAUSED").json() == {"success": True}
    paused = graph_get(sandbox, campaign["id"], fields="status,effective_status,updated_time,issues_info").json()
    assert (paused["status"], paused["effective_status"]) == ("PAUSED", "WITH_ISSUES")
    assert paused["updated_time"] > campaign["updated_time"] and paused["issues_info"] == [issue]
    adsets = graph_get(sandbox, f"{campaign['id']}/adsets", fields="effective_status").json()["data"]
    assert {a["effective_status"] for a in adsets} <= {"CAMPAIGN_PAUSED", "PAUSED"}  # from the configured status

    assert sandbox.set_delivery(campaign["id"], "IN_PROCESS")["issues_info"] == []
    cleared = sandbox.set_delivery(campaign["id"], None)
    assert (cleared["effective_status"], cleared["issues_info"]) == ("PAUSED", [])


def test_it_lets_archived_and_deleted_win_over_a_delivery_state(sandbox: RunningSandbox) -> None:
    campaign = by_status(sandbox, ACT, "PAUSED")[0]  # WITH_ISSUES by default
    assert graph_post(sandbox, campaign["id"], status="ARCHIVED").json() == {"success": True}
    node = graph_get(sandbox, campaign["id"], fields="effective_status,issues_info").json()
    assert (node["effective_status"], node["issues_info"]) == ("ARCHIVED", [])
    archived = graph_get(sandbox, f"{ACT}/campaigns", effective_status='["ARCHIVED"]', limit=500).json()["data"]
    assert campaign["id"] in {c["id"] for c in archived}


def test_it_refuses_invalid_delivery_bodies(sandbox: RunningSandbox) -> None:
    campaign_id = by_status(sandbox, ACT, "ACTIVE")[1]["id"]
    with pytest.raises(ValueError, match="effective_status must be"):
        sandbox.set_delivery(campaign_id, "PAUSED")
    with pytest.raises(ValueError, match="issues_info"):
        sandbox.set_delivery(campaign_id, "WITH_ISSUES", [{"error_code": "1"}])
    with pytest.raises(ValueError, match="no campaign"):
        sandbox.set_delivery("1202199999999999", "WITH_ISSUES")
    with pytest.raises(ValueError, match="the body is"):
        sandbox._control("POST", f"/_sandbox/campaigns/{campaign_id}", {"status": "WITH_ISSUES"})
