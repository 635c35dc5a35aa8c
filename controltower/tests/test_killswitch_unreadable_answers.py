"""Meta's edge (or a proxy) sometimes answers 5xx with an HTML page, which the SDK hands on as a
success. The stop and the resume treat such answers as transient failures and never let anything
escape: the halt stands, admins are alerted, the rest is handed to the background sweep."""

from __future__ import annotations

import pytest
from django.core import mail

from controltower import commander, fanout, killswitch
from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import CampaignHold, ControlTowerRun, RunState, TowerState
from meta_modules import graph

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]


def _statuses(sandbox) -> dict[str, str]:
    return {c["id"]: c["status"] for c in sandbox.campaigns()}


def _sweep_until_done(sandbox, result) -> None:
    """The background sweeps the stop left, run here until nothing is pending (faults off)."""
    sandbox.faults()
    for attempt in range(5):
        outcome = killswitch.resweep(str(TowerState.get().halt_run_id), attempt=attempt, follow_up=False)
        if not outcome["pending"] and not outcome["errors"]:
            return
    raise AssertionError(f"still pending after 5 sweeps: {outcome}")


def test_html_pages_instead_of_answers_slow_the_stop_but_every_campaign_ends_paused(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=2, statuses={"ACTIVE": 60, "PAUSED": 5}, adsets_per_campaign=1, ads_per_adset=1)
    running = {cid for cid, status in _statuses(meta_sandbox).items() if status == "ACTIVE"}
    meta_sandbox.faults(html_error_rate=0.3, html_item_rate=0.2, fault_seed=4)

    result = killswitch.emergency_stop(StopRequest(reason="drill", actor="alice", send_alerts=False))

    assert result.campaigns_paused + result.campaigns_pending == 120 and not result.campaigns_failed
    assert meta_sandbox.state()["counters"]["html_errors_injected"] > 0
    if result.campaigns_pending:
        _sweep_until_done(meta_sandbox, result)
    assert {cid for cid, status in _statuses(meta_sandbox).items() if status == "ACTIVE"} == set()
    assert CampaignHold.objects.filter(state="paused").count() == 120

    meta_sandbox.faults(html_error_rate=0.3, html_item_rate=0.2, fault_seed=5)
    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))

    meta_sandbox.faults()
    if resumed.campaigns_pending:
        killswitch.finish_resume(resumed.run_id, attempt=0, follow_up=False)
    assert {cid for cid, status in _statuses(meta_sandbox).items() if status == "ACTIVE"} == running


def test_a_stop_answered_only_with_html_still_halts_alerts_and_hands_over(meta_sandbox, settings) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 3  # room for a retry under a loaded CI machine
    settings.META_AD_ACCOUNT_IDS = [a["id"] for a in meta_sandbox.state()["accounts"]]
    meta_sandbox.faults(html_error_rate=1.0, html_statuses=[500, 503])  # nothing reaches Meta

    result = killswitch.emergency_stop(StopRequest(reason="Meta's edge is down", actor="alice"))

    assert TowerState.get().emergency_stop_active and result.schedulers_stopped == 17
    assert not result.success and result.campaigns_paused == 0
    assert result.errors and all("not a Graph API object" in e for e in result.errors)
    assert "EMERGENCY STOP by alice" in mail.outbox[0].subject and result.alerts_sent == 1
    run = ControlTowerRun.objects.get(pk=result.run_id)
    assert run.state == RunState.COMPLETED and run.errors_encountered == result.errors
    assert killswitch.sweep_needed()  # the watchdog and the cycle carry on (the queue here is the test's own)

    meta_sandbox.faults()
    graph.reset_clients()
    killswitch.finish_abandoned()

    assert "ACTIVE" not in _statuses(meta_sandbox).values()


def test_resume_answered_only_with_html_leaves_them_pending_and_the_background_finishes(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 8}, adsets_per_campaign=1, ads_per_adset=1)
    killswitch.emergency_stop(StopRequest(reason="drill", actor="alice", send_alerts=False))
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 3  # room for a retry under a loaded CI machine
    meta_sandbox.faults(html_error_rate=1.0)

    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))

    assert resumed.campaigns_resumed == 0 and resumed.campaigns_pending == 8 and not resumed.campaigns_skipped
    assert "not a Graph API object" in resumed.errors[0]
    meta_sandbox.faults()

    killswitch.finish_abandoned()  # no queue needed: the watchdog carries it on

    assert set(_statuses(meta_sandbox).values()) == {"ACTIVE"}
    assert set(CampaignHold.objects.values_list("state", flat=True)) == {CampaignHold.State.RESUMED}


def test_an_unexpected_failure_on_one_account_becomes_that_accounts_error() -> None:
    def fails_on_b(meta: graph.GraphClient, account: str) -> str:
        if account == "act_b":
            return {}.missing  # type: ignore[attr-defined]  # an AttributeError, like a string where a dict was due
        return "ok"

    outcome = fanout.parallel(fails_on_b, ["act_a", "act_b"], deadline=float("inf"))

    assert outcome["act_a"] == "ok"
    assert isinstance(outcome["act_b"], graph.MetaError) and outcome["act_b"].kind == graph.ErrorKind.TRANSIENT
    assert "unexpected AttributeError" in str(outcome["act_b"])


def test_a_pause_whose_read_after_write_failed_is_confirmed_by_a_read_not_sent_again(meta_sandbox) -> None:
    """Meta applied the pause but its read failed: the answer carries only the write's own answer.
    The campaign is paused, not failed; what resume compares is read back."""
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 6}, adsets_per_campaign=1, ads_per_adset=1)
    meta_sandbox.faults(errors=[{"preset": "read_after_write", "on": "batch_item", "times": 3}])

    result = killswitch.emergency_stop(StopRequest(reason="drill", actor="alice", send_alerts=False))

    assert result.success and result.campaigns_paused == 6
    truth = {c["id"]: c for c in meta_sandbox.campaigns()}
    for hold in CampaignHold.objects.all():
        assert hold.state == CampaignHold.State.PAUSED
        assert hold.paused_updated_time == truth[hold.campaign_id]["updated_time"]
        assert truth[hold.campaign_id]["status_writes"] == 1  # paused once, confirmed by a read
