"""The stop and resume dry runs against the Meta sandbox over HTTP: what is at stake and where,
and a resume preview that lists exactly what resume then does."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from controltower import commander, killswitch
from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import CampaignHold, ControlTowerRun, TowerState
from controltower.roles import OPERATORS_GROUP
from meta_modules import graph
from meta_modules.models import MetaModule
from tests.support import admin_client, api_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

BASE = "/meta/control-tower"


def _graph(sandbox, method: str, path: str, **fields: str) -> dict:
    query = urllib.parse.urlencode({**fields, "access_token": "human"})
    request = (
        urllib.request.Request(f"{sandbox.url}/v26.0/{path}?{query}", method=method)
        if method == "DELETE"
        else urllib.request.Request(f"{sandbox.url}/v26.0/{path}", data=query.encode(), method=method)
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def _truth(sandbox) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in sandbox.campaigns()}


def _currencies(sandbox) -> dict[str, str]:
    return {a["id"]: a["currency"] for a in sandbox.state()["accounts"]}


def _stop(**kwargs: Any) -> killswitch.StopResult:
    return killswitch.emergency_stop(StopRequest(reason="Budget spike", actor="alice", **kwargs))


def _operator_api() -> APIClient:
    return api_client("olivia", OPERATORS_GROUP)


@pytest.fixture
def two_currencies(meta_sandbox):
    """Two ad accounts, one in USD and one in JPY (no minor unit), ACTIVE campaigns with budgets."""
    meta_sandbox.reset(accounts=2, statuses={"ACTIVE": 6, "PAUSED": 2, "ARCHIVED": 1}, currencies=["USD", "JPY"])
    return meta_sandbox


# --- the stop's dry run --------------------------------------------------------------


def test_it_totals_the_daily_budget_at_stake_per_account_and_per_currency(two_currencies) -> None:
    account = two_currencies.state()["accounts"][0]["id"]
    # A campaign without a campaign budget spends through its ad sets: said, not counted as 0.
    _graph(
        two_currencies,
        "POST",
        f"{account}/campaigns",
        name="ABO test",
        objective="OUTCOME_SALES",
        status="ACTIVE",
        special_ad_categories="[]",
    )
    currencies = _currencies(two_currencies)
    expected: dict[str, Counter] = defaultdict(Counter)
    for c in _truth(two_currencies).values():
        if c["status"] == "ACTIVE":
            act = f"act_{c['account_id']}"
            expected[act]["campaigns"] += 1
            expected[act]["daily"] += int(c["daily_budget"] or 0)
            expected[act]["adset"] += not c["daily_budget"]

    result = _stop(dry_run=True)

    rows = {row["account"]: row for row in result.preview["stakes"]["accounts"]}
    assert set(rows) == set(expected)
    for act, row in rows.items():
        assert row["currency"] == currencies[act]
        assert (row["campaigns"], row["daily_budget_minor"], row["adset_budget_campaigns"]) == (
            expected[act]["campaigns"],
            expected[act]["daily"],
            expected[act]["adset"],
        )
    assert rows[account]["adset_budget_campaigns"] == 1
    totals = {row["currency"]: row for row in result.preview["stakes"]["totals"]}
    assert set(totals) == {"JPY", "USD"}  # never added together
    jpy = next(act for act, cur in currencies.items() if cur == "JPY")
    assert totals["JPY"]["daily_budget"] == f"{expected[jpy]['daily']:,} JPY"  # whole units: no cents
    usd = next(act for act, cur in currencies.items() if cur == "USD")
    assert totals["USD"]["daily_budget"] == f"{expected[usd]['daily'] / 100:,.2f} USD"
    assert "JPY" in result.message and "USD" in result.message
    assert "1 campaign on ad-set or lifetime budgets not counted" in result.message


def test_it_names_the_target_the_api_version_and_the_tier_meta_reported_per_account(meta_sandbox, settings) -> None:
    development, standard = [a["id"] for a in meta_sandbox.state()["accounts"]]
    meta_sandbox.faults(tier={development: "development"})

    target = _stop(dry_run=True).preview["target"]

    assert target["mode"] == "stub" and target["label"] == f"STUB sandbox at {meta_sandbox.url}"
    assert target["api_version"] == settings.META_API_VERSION
    assert set(target["tiers"]) == {development, standard}
    assert "development" in target["tiers"][development] and "standard" in target["tiers"][standard]


def test_it_says_a_dry_run_would_stop_and_would_pause_and_did_nothing(meta_sandbox) -> None:
    active = len(meta_sandbox.campaigns(status="ACTIVE"))

    body = _operator_api().post(f"{BASE}/emergency-stop", {"reason": "look", "dry_run": True}, format="json").json()

    assert body["dry_run"] and body["would_stop"] == 17 and body["would_pause"] == active
    assert body["schedulers_stopped"] == 0 and body["campaigns_paused"] == 0
    assert body["message"].startswith(f"Dry run: would stop 17 schedulers and pause {active} campaigns")
    assert set(body["preview"]) == {"schedulers", "campaigns", "campaigns_page", "target", "stakes"}


def test_a_real_stop_has_no_would_figures(meta_sandbox) -> None:
    result = _stop()
    assert result.would_stop is None and result.would_pause is None and result.schedulers_stopped == 17


def test_the_stop_page_shows_the_target_and_the_stakes_per_account(two_currencies) -> None:
    page = admin_client("root", superuser=True).get("/emergency-stop/").content.decode()

    assert 'id="stop-target"' in page and f"STUB sandbox at {two_currencies.url}" in page
    assert 'id="stop-stakes"' in page and 'id="stop-stakes-total"' in page
    for act in _currencies(two_currencies):
        assert f'data-account="{act}"' in page
    assert 'data-currency="JPY"' in page and 'data-currency="USD"' in page


# --- the resume's dry run ------------------------------------------------------------


def _disturb_the_holds(sandbox) -> dict[str, str]:
    """After a stop, people change five held campaigns on Meta; returns campaign → what was done."""
    held = list(CampaignHold.objects.order_by("campaign_id").values_list("campaign_id", flat=True)[:5])
    _graph(sandbox, "POST", held[0], daily_budget="12345")
    _graph(sandbox, "POST", held[1], status="ARCHIVED")
    _graph(sandbox, "POST", held[2], status="ACTIVE")  # a person re-activated it...
    _graph(sandbox, "POST", held[2], status="PAUSED")  # ...and paused it again
    _graph(sandbox, "DELETE", held[3])
    _graph(sandbox, "POST", held[4], status="ACTIVE")  # re-activated by a person during the halt
    return dict(zip(held, ["edited", "archived", "edited", "deleted", "active_again"]))


def test_the_resume_preview_lists_exactly_what_resume_then_re_activates_and_leaves(two_currencies) -> None:
    _stop()
    disturbed = _disturb_the_holds(two_currencies)

    preview = killswitch.resume(ResumeRequest(actor="bob", dry_run=True))
    resumed = commander.resume(ResumeRequest(actor="bob"))

    rows = {c["campaign_id"]: c for c in preview.preview["campaigns"]}
    assert set(rows) == set(CampaignHold.objects.values_list("campaign_id", flat=True))
    truth = _truth(two_currencies)
    back = {cid for cid, c in rows.items() if c["action"] == "reactivate"}
    assert back == {cid for cid in rows if truth[cid]["status"] == "ACTIVE"} - {
        next(cid for cid, why in disturbed.items() if why == "active_again")
    }
    assert preview.would_reactivate == len(back) == resumed.campaigns_resumed
    left = {cid: c for cid, c in rows.items() if c["action"] == "leave"}
    assert {cid: c["why"] for cid, c in left.items()} == disturbed
    assert {s["campaign_id"]: s["reason"] for s in resumed.campaigns_skipped} == {
        cid: c["reason"] for cid, c in left.items()
    }
    # The daily budget coming back, per currency, is what those campaigns now have on Meta.
    currencies = _currencies(two_currencies)
    spend: Counter[str] = Counter()
    for cid in back:
        spend[currencies[f"act_{truth[cid]['account_id']}"]] += int(truth[cid]["daily_budget"])
    assert {row["currency"]: row["daily_budget_minor"] for row in preview.preview["spend"]} == spend


def test_the_resume_preview_leaves_pauses_never_confirmed_as_resume_does(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 30})
    account = meta_sandbox.state()["accounts"][0]["id"]
    meta_sandbox.faults(tier={account: "development"}, tier_params={"development": {"decay_s": 30}})
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 2
    _stop()  # some paused, the rest pending when the account's rate budget runs out
    meta_sandbox.faults()
    graph.reset_clients()
    pending = set(CampaignHold.objects.filter(state="pending").values_list("campaign_id", flat=True))
    assert pending

    preview = killswitch.resume(ResumeRequest(actor="bob", dry_run=True))
    resumed = commander.resume(ResumeRequest(actor="bob"))

    left = {c["campaign_id"] for c in preview.preview["campaigns"] if c["why"] == "unconfirmed"}
    assert left == pending == {s["campaign_id"] for s in resumed.campaigns_skipped}
    assert preview.would_reactivate == resumed.campaigns_resumed == 30 - len(pending)


def test_a_resume_dry_run_writes_nothing(two_currencies) -> None:
    _stop()
    _disturb_the_holds(two_currencies)
    writes = two_currencies.state()["counters"].get("writes", 0)
    ledger = list(CampaignHold.objects.order_by("pk").values())
    runs = ControlTowerRun.objects.count()
    state = TowerState.get()
    enabled = set(PeriodicTask.objects.filter(enabled=True).values_list("pk", flat=True))

    body = _operator_api().post(f"{BASE}/resume", {"dry_run": True}, format="json")

    assert body.status_code == 200 and body.json()["dry_run"] and body.json()["run_id"] is None
    assert two_currencies.state()["counters"].get("writes", 0) == writes
    assert list(CampaignHold.objects.order_by("pk").values()) == ledger
    assert ControlTowerRun.objects.count() == runs
    after = TowerState.get()
    assert after.emergency_stop_active and after.updated_at == state.updated_at
    assert set(PeriodicTask.objects.filter(enabled=True).values_list("pk", flat=True)) == enabled


def test_the_resume_preview_lists_the_schedulers_resume_restarts_with_their_first_run(meta_sandbox, settings) -> None:
    settings.START_STAGGER_SECONDS = 20
    _stop()
    MetaModule.objects.filter(code="10.5").update(desired_state=MetaModule.DesiredState.STOPPED)

    preview = killswitch.resume(ResumeRequest(actor="bob", dry_run=True))
    resumed = commander.resume(ResumeRequest(actor="bob"))

    codes = [s["code"] for s in preview.preview["schedulers"]]
    assert "10.5" not in codes and len(codes) == preview.would_restart == resumed.schedulers_resumed == 16
    restarted = PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True)
    assert set(codes) == set(restarted.values_list("meta_module__code", flat=True))
    for index, scheduler in enumerate(preview.preview["schedulers"]):
        assert scheduler["first_run_in_seconds"] == min(20 * (index + 1), scheduler["every_seconds"])


def test_a_resume_dry_run_without_campaigns_or_schedulers_previews_that_too(meta_sandbox) -> None:
    _stop()

    preview = killswitch.resume(
        ResumeRequest(actor="bob", resume_campaigns=False, resume_schedulers=False, dry_run=True)
    )

    assert preview.would_restart == 0 and preview.would_reactivate == 0 and not preview.preview["spend"]
    assert {c["why"] for c in preview.preview["campaigns"]} == {"not_requested"}


def test_a_resume_dry_run_while_not_halted_is_refused_as_resume_is(meta_sandbox) -> None:
    with pytest.raises(killswitch.KillSwitchError, match="not halted"):
        killswitch.resume(ResumeRequest(actor="bob", dry_run=True))
    response = _operator_api().post(f"{BASE}/resume", {"dry_run": True}, format="json")
    assert response.status_code == 409 and "not halted" in response.json()["detail"]


def test_a_resume_dry_run_does_not_count_as_a_request_under_the_two_person_rule(meta_sandbox, settings) -> None:
    settings.RESUME_REQUIRES_SECOND_APPROVER = True
    _stop()

    body = _operator_api().post(f"{BASE}/resume", {"dry_run": True}, format="json").json()

    assert body["dry_run"] and not body["awaiting_approval"]
    assert TowerState.get().resume_requested_by == ""


def test_the_resume_page_shows_each_held_campaign_the_schedulers_and_the_spend(two_currencies) -> None:
    _stop()
    disturbed = _disturb_the_holds(two_currencies)

    page = admin_client("root", superuser=True).get("/resume/").content.decode()

    assert 'id="resume-preview"' in page and 'id="resume-schedulers"' in page and 'id="resume-spend"' in page
    for cid in disturbed:
        assert f'data-campaign-id="{cid}" data-action="leave"' in page
    assert page.count('data-action="reactivate"') == CampaignHold.objects.count() - len(disturbed)
    assert 'data-module="10.1"' in page and 'data-currency="JPY"' in page


def test_a_resume_preview_that_cannot_read_meta_says_so_and_re_activates_nothing(meta_sandbox, settings) -> None:
    _stop()
    settings.META_GRAPH_URL = "http://127.0.0.1:9"  # nothing listens: Meta unreachable
    settings.EMERGENCY_STOP_PREVIEW_SECONDS = 1
    graph.reset_clients()

    preview = killswitch.resume(ResumeRequest(actor="bob", dry_run=True))

    assert not preview.success and preview.errors and all("resume would try again" in e for e in preview.errors)
    assert {c["action"] for c in preview.preview["campaigns"]} == {"unknown"}
    assert preview.would_reactivate == 0 and preview.would_restart == 17
    assert f"{len(preview.preview['campaigns'])} could not be read from Meta now" in preview.message
