"""A stop and a resume over the sandbox's 3 ad accounts × 40 ACTIVE campaigns: the dry runs, the
result page, the run's page and the API summarise per account and page the campaigns; every
campaign appears exactly once across the pages and the counts match the ledger."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from rest_framework.test import APIClient

from controltower import rules
from controltower.models import CampaignHold, ControlTowerRun, RunType
from controltower.roles import OPERATORS_GROUP
from tests.support import admin_client, api_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

BASE = "/meta/control-tower"
ACCOUNTS, PER_ACCOUNT = 3, 40
ROW = re.compile(r'<tr data-campaign-id="([^"]+)"')


@pytest.fixture
def agency(meta_sandbox):
    meta_sandbox.reset(accounts=ACCOUNTS, statuses={"ACTIVE": PER_ACCOUNT, "PAUSED": 3}, seed=11)
    return meta_sandbox


@pytest.fixture
def operator() -> APIClient:
    return api_client("olivia", OPERATORS_GROUP)


def _active(sandbox) -> dict[str, dict]:
    return {c["id"]: c for c in sandbox.campaigns(status="ACTIVE")}


def _dry_stop(client: APIClient, **campaigns):
    body = {"reason": "look", "dry_run": True, **({"campaigns": campaigns} if campaigns else {})}
    return client.post(f"{BASE}/emergency-stop", body, format="json")


def test_the_stop_dry_run_pages_every_active_campaign_exactly_once(agency, operator: APIClient) -> None:
    active = _active(agency)

    pages = [_dry_stop(operator, page=n, page_size=50).json()["preview"] for n in (1, 2, 3)]

    listed = [c["id"] for page in pages for campaigns in page["campaigns"].values() for c in campaigns]
    assert len(active) == ACCOUNTS * PER_ACCOUNT and sorted(listed) == sorted(active)
    assert [p["campaigns_page"]["count"] for p in pages] == [120] * 3 and pages[0]["campaigns_page"]["pages"] == 3
    # The per-account counts and budgets are whole on every page: one row per account.
    per_account = Counter(f"act_{c['account_id']}" for c in active.values())
    assert {row["account"]: row["campaigns"] for row in pages[2]["stakes"]["accounts"]} == per_account
    # A page past the last, or a page of a real stop, is refused before anything is done.
    assert _dry_stop(operator, page=4).status_code == 400
    assert "page" in _dry_stop(operator, page=4).json()["campaigns"]
    refused = operator.post(f"{BASE}/emergency-stop", {"reason": "x", "campaigns": {"page": 1}}, format="json")
    assert refused.status_code == 400 and "campaigns" in refused.json()
    assert not ControlTowerRun.objects.filter(run_type=RunType.EMERGENCY_STOP).exists()


def test_the_stop_dry_run_filters_by_account_and_searches_by_id_or_name(agency, operator: APIClient) -> None:
    active = _active(agency)
    some = sorted(active)[17]
    account = f"act_{active[some]['account_id']}"

    by_account = _dry_stop(operator, account=account, page_size=200).json()["preview"]
    by_id = _dry_stop(operator, q=some).json()["preview"]["campaigns"]

    assert list(by_account["campaigns"]) == [account] and by_account["campaigns_page"]["count"] == PER_ACCOUNT
    assert [c["id"] for c in by_id[account]] == [some]
    assert _dry_stop(operator, page="2").status_code == 400  # a string is not a page number


def test_a_stop_s_campaigns_through_the_api_match_the_ledger(agency, operator: APIClient) -> None:
    stopped = operator.post(f"{BASE}/emergency-stop", {"reason": "Agency spike"}, format="json").json()
    run_id = stopped["run_id"]

    listed, url = [], f"{BASE}/runs/{run_id}/campaigns?page_size=50"
    while url:
        page = operator.get(url).json()
        listed += [(r["account_id"], r["campaign_id"], r["state"]) for r in page["results"]]
        url = page["next"]
    record = operator.get(f"{BASE}/runs/{run_id}").json()

    ledger = set(CampaignHold.objects.values_list("account_id", "campaign_id", "state"))
    assert len(listed) == len(set(listed)) == len(ledger) == ACCOUNTS * PER_ACCOUNT and set(listed) == ledger
    assert {a["account"]: a["by_state"] for a in record["campaigns"]["accounts"]} == {
        account: {"paused": PER_ACCOUNT} for account in {a for a, _, _ in ledger}
    }
    assert record["campaigns"]["by_state"] == {"paused": ACCOUNTS * PER_ACCOUNT}


def test_the_console_pages_the_confirmation_the_result_and_the_resume_preview(agency) -> None:
    active = _active(agency)
    console = admin_client("root", superuser=True)

    first, third = console.get("/emergency-stop/"), console.get("/emergency-stop/?page=3")
    past = console.get("/emergency-stop/?page=4")

    assert len(ROW.findall(first.content.decode())) == 50 and len(ROW.findall(third.content.decode())) == 20
    assert 'rel="next"' in first.content.decode() and 'id="confirm-stop"' in first.content.decode()
    # A bad page says why with no campaigns, and the STOP button is still there.
    assert past.status_code == 400 and 'id="campaign-search-error"' in past.content.decode()
    assert 'id="confirm-stop"' in past.content.decode() and not ROW.findall(past.content.decode())

    console.post("/emergency-stop/", {"reason": "Agency spike", "pause_campaigns": "on", "stop_schedulers": "on"})
    run = ControlTowerRun.objects.get(run_type=RunType.EMERGENCY_STOP)
    pages = [console.get(f"/stops/{run.pk}/?page={n}").content.decode() for n in (1, 2, 3)]
    account = f"act_{next(iter(active.values()))['account_id']}"
    filtered = console.get(f"/stops/{run.pk}/?account={account}&state=paused&page=1").content.decode()
    run_page = console.get(f"/runs/{run.pk}/?q={sorted(active)[5]}").content.decode()

    assert sorted(cid for page in pages for cid in ROW.findall(page)) == sorted(active)
    assert re.search(r'id="campaigns-paused"[^>]*>120<', pages[0])
    assert len(ROW.findall(filtered)) == PER_ACCOUNT and f'data-account="{account}"' in filtered
    assert ROW.findall(run_page) == [sorted(active)[5]]
    assert console.get(f"/stops/{run.pk}/?state=asleep").status_code == 400

    resume = console.get(f"/resume/?account={account}&state=reactivate").content.decode()
    assert len(ROW.findall(resume)) == PER_ACCOUNT and 'id="resume-accounts"' in resume
    assert re.search(rf'<tr data-account="{account}">.*?<td class="num">{PER_ACCOUNT}</td>', resume, re.S)


def test_the_resume_dry_run_pages_its_campaigns_with_per_account_counts(agency, operator: APIClient) -> None:
    operator.post(f"{BASE}/emergency-stop", {"reason": "Agency spike"}, format="json")

    def preview(**campaigns):
        return operator.post(f"{BASE}/resume", {"dry_run": True, "campaigns": campaigns}, format="json")

    pages = [preview(page=n, page_size=50).json()["preview"] for n in (1, 2, 3)]
    leaving = preview(action="leave").json()["preview"]

    held = Counter(CampaignHold.objects.values_list("account_id", flat=True))
    listed = [c["campaign_id"] for page in pages for c in page["campaigns"]]
    assert sorted(listed) == sorted(CampaignHold.objects.values_list("campaign_id", flat=True))
    assert {a["account"]: (a["campaigns"], a["reactivate"]) for a in pages[0]["accounts"]} == {
        account: (n, n) for account, n in held.items()
    }
    assert leaving["campaigns"] == [] and leaving["campaigns_page"]["count"] == 0
    assert preview(action="sleep").status_code == 400 and preview(page=9).status_code == 400


def test_a_resume_answers_the_first_campaigns_it_left_and_where_all_of_them_are(agency, operator: APIClient) -> None:
    stop = operator.post(f"{BASE}/emergency-stop", {"reason": "Agency spike"}, format="json").json()

    body = operator.post(f"{BASE}/resume", {"resume_campaigns": False}, format="json").json()

    assert stop["campaigns_failed"] == [] and stop["campaigns_failed_count"] == 0
    assert stop["campaigns_url"] == f"{BASE}/runs/{stop['run_id']}/campaigns"
    assert len(body["campaigns_skipped"]) == rules.RUN_RECORD_ITEMS
    assert body["campaigns_skipped_count"] == ACCOUNTS * PER_ACCOUNT
    left = operator.get(body["campaigns_url"], {"state": "released", "page_size": 200}).json()
    assert left["count"] == ACCOUNTS * PER_ACCOUNT
    record = operator.get(f"{BASE}/runs/{body['run_id']}").json()
    skipped = next(a for a in record["actions_executed"] if a["action"] == "resume_campaigns")["skipped"]
    assert len(skipped) == rules.RUN_RECORD_ITEMS + 1 and skipped[-1] == "… and 20 more — see the run's campaigns"
    assert record["campaigns"]["by_state"] == {"released": ACCOUNTS * PER_ACCOUNT}
