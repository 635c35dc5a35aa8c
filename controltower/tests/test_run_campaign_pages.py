"""A stop's or resume's campaigns at agency scale: GET runs/{id} summarises them per ad account and
GET runs/{id}/campaigns pages them (filtered, searched) from the ledger; the run record's
per-campaign lists are capped. Ledger rows are written directly here; a real stop through the
sandbox is in test_stop_pages_at_scale.py."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from controltower import rules
from controltower.models import CampaignHold, ControlTowerRun, RunType
from controltower.roles import VIEWERS_GROUP
from meta_modules.models import AdAccount

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

BASE = "/meta/control-tower"
STATES = [CampaignHold.State.PAUSED, CampaignHold.State.PENDING, CampaignHold.State.FAILED]


@pytest.fixture
def viewer() -> APIClient:
    user = User.objects.create_user("victor", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS_GROUP))
    client = APIClient()
    client.force_login(user)
    return client


def _stop(accounts: int, per_account: int, **fields) -> ControlTowerRun:
    """A stop whose ledger holds `accounts` × `per_account` campaigns: every third pending, every
    seventh failed (with one of two errors), daily budgets of 10.00 + n cents where n is even."""
    run = ControlTowerRun.objects.create(
        run_type=RunType.EMERGENCY_STOP, system_status="emergency_stop", executed_by="olivia", mode="stub", **fields
    )
    holds = []
    for a in range(1, accounts + 1):
        for n in range(per_account):
            state = STATES[2] if n % 7 == 0 else STATES[1] if n % 3 == 0 else STATES[0]
            holds.append(
                CampaignHold(
                    halt_run=run,
                    stop_run=run,
                    campaign_id=f"{a}{n:05d}",
                    account_id=f"act_{a}",
                    campaign_name=f"Spring sale {a}-{n}" if n % 10 == 0 else f"Evergreen {a}-{n}",
                    prior_status="ACTIVE",
                    snapshot={"daily_budget": str(1000 + n) if n % 2 == 0 else "", "lifetime_budget": ""},
                    state=state,
                    last_error=("Rate limit reached" if n % 2 else "Permission denied") if state == STATES[2] else "",
                )
            )
    CampaignHold.objects.bulk_create(holds)
    return run


def _all_pages(client: APIClient, run: ControlTowerRun, **params) -> list[dict]:
    rows, url = [], f"{BASE}/runs/{run.pk}/campaigns"
    response = client.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        rows += response.json()["results"]
        if not response.json()["next"]:
            return rows
        response = client.get(response.json()["next"])


def test_every_held_campaign_appears_on_exactly_one_page(viewer: APIClient) -> None:
    run = _stop(3, 40)

    rows = _all_pages(viewer, run, page_size=50)

    ids = [r["campaign_id"] for r in rows]
    assert len(ids) == 120 and set(ids) == set(CampaignHold.objects.values_list("campaign_id", flat=True))
    assert [(r["account_id"], r["campaign_id"]) for r in rows] == sorted(
        (r["account_id"], r["campaign_id"]) for r in rows
    )
    assert viewer.get(f"{BASE}/runs/{run.pk}/campaigns", {"page_size": 50}).json()["count"] == 120


def test_the_run_summarises_its_campaigns_per_account_as_the_ledger_holds_them(viewer: APIClient) -> None:
    run = _stop(3, 40)
    AdAccount.objects.create(id="act_1", name="One", currency="USD")
    AdAccount.objects.create(id="act_2", name="Two", currency="JPY")

    body = viewer.get(f"{BASE}/runs/{run.pk}").json()["campaigns"]

    ledger = Counter(CampaignHold.objects.values_list("account_id", "state"))
    assert body["total"] == 120 and body["url"] == f"{BASE}/runs/{run.pk}/campaigns"
    assert body["by_state"] == dict(Counter(CampaignHold.objects.values_list("state", flat=True)))
    assert [a["account"] for a in body["accounts"]] == ["act_1", "act_2", "act_3"]
    for account in body["accounts"]:
        assert account["by_state"] == {s: n for (a, s), n in ledger.items() if a == account["account"]}
        assert account["campaigns"] == 40
        assert account["daily_budget_minor"] == sum(1000 + n for n in range(0, 40, 2))
        assert account["adset_budget_campaigns"] == 20 and account["lifetime_budget_campaigns"] == 0
        failed = [n for n in range(40) if n % 7 == 0]
        assert account["reasons"] == sorted(
            [
                {"reason": "Permission denied", "count": sum(n % 2 == 0 for n in failed)},
                {"reason": "Rate limit reached", "count": sum(n % 2 == 1 for n in failed)},
            ],
            key=lambda r: -r["count"],
        )
    one, two, three = body["accounts"]
    assert (one["currency"], one["daily_budget"]) == ("USD", "203.80 USD")
    assert two["currency"] == "JPY" and (three["currency"], three["daily_budget"]) == ("", None)
    # One total per known currency, never added across currencies; the account of unknown currency apart.
    assert [(t["currency"], t["daily_budget_minor"]) for t in body["totals"]] == [("JPY", 20380), ("USD", 20380)]


def test_campaigns_are_filtered_by_account_and_state_and_searched_by_id_or_name(viewer: APIClient) -> None:
    run = _stop(3, 40)

    by_account = _all_pages(viewer, run, account="act_2", state="failed")
    named = _all_pages(viewer, run, q="spring SALE 3-")
    by_id = _all_pages(viewer, run, q="100012")

    assert {(r["account_id"], r["state"]) for r in by_account} == {("act_2", "failed")}
    assert len(by_account) == CampaignHold.objects.filter(account_id="act_2", state="failed").count()
    assert sorted(r["campaign_name"] for r in named) == sorted(f"Spring sale 3-{n}" for n in range(0, 40, 10))
    assert [r["campaign_id"] for r in by_id] == ["100012"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "asleep"}, "state"),
        ({"account": "123; drop"}, "account"),
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"page_size": "201"}, "page_size"),
        ({"q": ""}, "q"),
        ({"status": "paused"}, "status"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(viewer: APIClient, params: dict, field: str) -> None:
    run = _stop(1, 5)

    response = viewer.get(f"{BASE}/runs/{run.pk}/campaigns", params)

    assert response.status_code == 400 and field in response.json()


def test_a_page_past_the_last_is_a_404_as_on_every_list(viewer: APIClient) -> None:
    run = _stop(1, 5)

    assert viewer.get(f"{BASE}/runs/{run.pk}/campaigns", {"page": 2}).status_code == 404
    assert viewer.get(f"{BASE}/runs/00000000-0000-0000-0000-000000000000/campaigns").status_code == 404


def test_the_run_record_json_stays_bounded_as_campaigns_grow(viewer: APIClient) -> None:
    def body(per_account: int) -> str:
        failed = [f"{n}: Permission denied" for n in range(per_account * 4)]
        run = _stop(
            4,
            per_account,
            errors_encountered=failed,
            actions_executed=[
                {"action": "resume_campaigns", "skipped": [{"campaign_id": str(n)} for n in range(per_account * 4)]}
            ],
        )
        return viewer.get(f"{BASE}/runs/{run.pk}").content.decode()

    small, large = body(50), body(500)  # 200 and 2,000 held campaigns

    record = json.loads(large)
    assert len(record["errors_encountered"]) == rules.RUN_RECORD_ITEMS + 1
    assert record["errors_encountered"][-1] == "… and 1900 more — see the run's campaigns"
    assert len(record["actions_executed"][0]["skipped"]) == rules.RUN_RECORD_ITEMS + 1
    assert record["campaigns"]["total"] == 2000 and len(record["campaigns"]["accounts"]) == 4
    assert len(large) < 1.2 * len(small)


def test_the_summary_costs_the_same_queries_for_3_or_30_accounts(viewer: APIClient) -> None:
    few, many = _stop(3, 10), _stop(30, 10)

    counts = []
    for run in (few, many):
        with CaptureQueriesContext(connection) as queries:
            assert viewer.get(f"{BASE}/runs/{run.pk}").status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1]


def test_capped_keeps_short_lists_and_says_how_many_more_a_long_one_had() -> None:
    assert rules.capped(["a", "b"], limit=2) == ["a", "b"]
    assert rules.capped(["a", "b", "c"], limit=2) == ["a", "b", "… and 1 more — see the run's campaigns"]
