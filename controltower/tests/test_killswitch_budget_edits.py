"""Edits while halted that Meta does not stamp: a campaign's updated_time does not move when its
budget or spend cap changes (campaign reference). Resume compares what the hold kept."""

from __future__ import annotations

import urllib.parse
import urllib.request

import pytest

from controltower import commander, killswitch
from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import CampaignHold

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]


def _edit(sandbox, campaign_id: str, **fields: str) -> None:
    data = urllib.parse.urlencode({**fields, "access_token": "human"}).encode()
    urllib.request.urlopen(f"{sandbox.url}/v26.0/{campaign_id}", data=data).close()


@pytest.mark.parametrize(
    "field, value", [("daily_budget", "98700"), ("lifetime_budget", "5000000"), ("spend_cap", "1234500")]
)
def test_a_budget_edit_during_the_halt_keeps_the_campaign_paused(meta_sandbox, field: str, value: str) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 4}, adsets_per_campaign=1, ads_per_adset=1)
    killswitch.emergency_stop(StopRequest(reason="drill", actor="alice", send_alerts=False))
    edited = CampaignHold.objects.order_by("campaign_id").first().campaign_id
    before = {c["id"]: c for c in meta_sandbox.campaigns()}[edited]

    _edit(meta_sandbox, edited, **{field: value})

    after = {c["id"]: c for c in meta_sandbox.campaigns()}[edited]
    assert after["updated_time"] == before["updated_time"] and after[field] == value  # Meta did not stamp it
    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))
    assert resumed.campaigns_resumed == 3
    [skipped] = resumed.campaigns_skipped
    assert skipped["campaign_id"] == edited and skipped["reason"].startswith("edited on Meta since the stop (")
    assert field in skipped["reason"]
    assert {c["id"]: c["status"] for c in meta_sandbox.campaigns()}[edited] == "PAUSED"


def test_a_rename_during_the_halt_is_stamped_and_keeps_the_campaign_paused(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 3}, adsets_per_campaign=1, ads_per_adset=1)
    killswitch.emergency_stop(StopRequest(reason="drill", actor="alice", send_alerts=False))
    edited = CampaignHold.objects.order_by("campaign_id").first().campaign_id

    _edit(meta_sandbox, edited, name="Renamed during the halt")

    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))
    [skipped] = resumed.campaigns_skipped
    assert skipped["campaign_id"] == edited and "updated_time" in skipped["reason"]


def test_the_hold_keeps_the_budgets_meta_answered_when_it_was_paused(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 3}, adsets_per_campaign=1, ads_per_adset=1)
    truth = {c["id"]: c for c in meta_sandbox.campaigns()}

    killswitch.emergency_stop(StopRequest(reason="drill", actor="alice", send_alerts=False))

    for hold in CampaignHold.objects.all():
        campaign = truth[hold.campaign_id]
        assert hold.snapshot["name"] == campaign["name"]
        assert hold.snapshot["daily_budget"] == (campaign["daily_budget"] or "")
        assert hold.snapshot["spend_cap"] == ""  # unset
