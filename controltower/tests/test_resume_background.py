"""What resume cannot re-activate within its request is never forgotten: it stays pending
(`resuming`), the background keeps re-activating it, a new stop wins, and giving up alerts."""

from __future__ import annotations

import urllib.parse
import urllib.request

import pytest
from django.core import mail

from controltower import commander, killswitch
from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import CampaignHold, ControlTowerRun, Notification

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]


def _active(sandbox) -> set[str]:
    return {c["id"] for c in sandbox.campaigns(status="ACTIVE")}


@pytest.fixture
def left_pending(meta_sandbox, settings):
    """A resume whose re-activations all failed (Meta answered 500 to everything): 6 left pending."""
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 6, "PAUSED": 2}, adsets_per_campaign=1, ads_per_adset=1)
    running = _active(meta_sandbox)
    killswitch.emergency_stop(StopRequest(reason="drill", actor="alice", send_alerts=False))
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 2
    settings.META_MAX_RETRIES = 0
    meta_sandbox.faults(error_rate=1.0)
    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))
    assert resumed.campaigns_pending == 6
    return meta_sandbox, running, resumed


def test_the_background_re_activates_what_resume_left_once_meta_answers(left_pending) -> None:
    sandbox, running, resumed = left_pending
    sandbox.faults()

    outcome = killswitch.finish_resume(resumed.run_id, attempt=0)

    assert outcome["resumed"] == 6 and outcome["pending"] == 0
    assert _active(sandbox) == running
    assert set(CampaignHold.objects.values_list("state", flat=True)) == {CampaignHold.State.RESUMED}
    record = ControlTowerRun.objects.get(pk=resumed.run_id).actions_executed[-1]
    assert record["action"] == "resume_campaigns_background" and record["resumed"] == 6


def test_the_background_still_honours_edits_made_meanwhile(left_pending) -> None:
    sandbox, running, resumed = left_pending
    sandbox.faults()
    edited = sorted(running)[0]
    data = urllib.parse.urlencode({"daily_budget": "777700", "access_token": "human"}).encode()
    urllib.request.urlopen(f"{sandbox.url}/v26.0/{edited}", data=data).close()  # a budget: no new updated_time

    outcome = killswitch.finish_resume(resumed.run_id, attempt=0)

    assert outcome["resumed"] == 5 and outcome["skipped"] == 1
    assert edited not in _active(sandbox)
    hold = CampaignHold.objects.get(campaign_id=edited)
    assert hold.state == CampaignHold.State.SKIPPED and "daily_budget changed" in hold.resume_note


def test_a_new_stop_wins_over_a_pending_re_activation(left_pending) -> None:
    sandbox, running, resumed = left_pending
    sandbox.faults()
    killswitch.emergency_stop(StopRequest(reason="again", actor="carol", send_alerts=False))

    outcome = killswitch.finish_resume(resumed.run_id, attempt=0)

    assert outcome["skipped"] == 6 and _active(sandbox) == set()
    notes = set(CampaignHold.objects.filter(resume_run_id=resumed.run_id).values_list("resume_note", flat=True))
    assert notes == {"left PAUSED: a new emergency stop began before it could be re-activated"}


def test_the_last_background_attempt_gives_up_with_an_alert_naming_the_campaigns(left_pending, settings) -> None:
    sandbox, running, resumed = left_pending
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.KILL_SWITCH_RETRY_ATTEMPTS = 2

    outcome = killswitch.finish_resume(resumed.run_id, attempt=1)  # the last one; Meta still fails

    assert outcome["pending"] == 6 and _active(sandbox) == set()
    holds = CampaignHold.objects.filter(resume_run_id=resumed.run_id)
    assert {h.state for h in holds} == {CampaignHold.State.SKIPPED}
    assert all(h.resume_note.startswith("gave up after 2 background attempts") for h in holds)
    alert = mail.outbox[-1]
    assert alert.subject.endswith("RESUME incomplete: 6 campaigns left PAUSED")
    assert all(cid in alert.body for cid in running) and "Meta transient error" in alert.body
    assert Notification.objects.filter(subject="RESUME incomplete: 6 campaigns left PAUSED").exists()


def test_without_a_queue_the_watchdog_carries_re_activations_on(left_pending) -> None:
    sandbox, running, _ = left_pending
    sandbox.faults()

    killswitch.finish_abandoned()

    assert _active(sandbox) == running
    assert not CampaignHold.objects.filter(state=CampaignHold.State.RESUMING).exists()
