"""Emergency stop and resume against the Meta sandbox over HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request

import pytest
from django.core import mail
from django.db import connections
from django_celery_beat.models import PeriodicTask

from controltower import commander, killswitch
from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import CampaignHold, ControlTowerRun, SystemStatus, TowerState
from meta_modules import graph, jobs
from meta_modules.models import MetaModule, ModuleRun
from tests.support import broken_broker

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

MIX = {"ACTIVE": 12, "PAUSED": 4, "ARCHIVED": 2}


def _statuses(sandbox) -> dict[str, str]:
    return {c["id"]: c["status"] for c in sandbox.campaigns()}


def _graph_post(sandbox, object_id: str, **fields: str) -> dict:
    data = urllib.parse.urlencode({**fields, "access_token": "human"}).encode()
    with urllib.request.urlopen(f"{sandbox.url}/v26.0/{object_id}", data=data) as response:
        return json.loads(response.read())


def _stop(**kwargs) -> killswitch.StopResult:
    return killswitch.emergency_stop(StopRequest(reason="Budget spike: $10k in 1h", actor="alice", **kwargs))


@pytest.fixture
def mixed(meta_sandbox):
    meta_sandbox.reset(accounts=2, statuses=MIX, adsets_per_campaign=1, ads_per_adset=1)
    return meta_sandbox


def test_stop_pauses_every_active_campaign_and_resume_restores_exactly_them(mixed, settings) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    before = _statuses(mixed)
    active_before = {cid for cid, status in before.items() if status == "ACTIVE"}

    result = _stop()

    assert result.success and result.campaigns_paused == 24 and result.campaigns_pending == 0
    assert result.schedulers_stopped == 17 and result.alerts_sent == 1
    assert "EMERGENCY STOP by alice" in mail.outbox[0].subject and "Budget spike" in mail.outbox[0].body
    after_stop = _statuses(mixed)
    assert "ACTIVE" not in after_stop.values()
    assert {cid for cid, s in after_stop.items() if s == "ARCHIVED"} == {
        c for c, s in before.items() if s == "ARCHIVED"
    }
    assert not PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).exists()
    state = TowerState.get()
    assert state.emergency_stop_active and state.halted_by == "alice" and state.system_status == "emergency_stop"
    assert CampaignHold.objects.filter(state="paused").count() == 24

    resumed = commander.resume(ResumeRequest(actor="bob", reason="spike explained"))

    after_resume = _statuses(mixed)
    assert {cid for cid, s in after_resume.items() if s == "ACTIVE"} == active_before
    assert after_resume == before
    assert resumed.campaigns_resumed == 24 and resumed.schedulers_resumed == 17 and not resumed.campaigns_skipped
    assert PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).count() == 17
    state = TowerState.get()
    assert not state.emergency_stop_active and state.system_status == resumed.system_status != "emergency_stop"
    assert resumed.health_check_run_id is not None


def test_a_campaign_paused_by_a_human_before_the_stop_stays_paused(mixed) -> None:
    human_paused = next(cid for cid, s in _statuses(mixed).items() if s == "ACTIVE")
    _graph_post(mixed, human_paused, status="PAUSED")

    _stop()
    commander.resume(ResumeRequest(actor="bob"))

    assert _statuses(mixed)[human_paused] == "PAUSED"
    assert not CampaignHold.objects.filter(campaign_id=human_paused).exists()


def test_a_campaign_edited_between_stop_and_resume_is_skipped_and_reported(mixed) -> None:
    _stop()
    held = list(CampaignHold.objects.values_list("campaign_id", flat=True)[:3])
    _graph_post(mixed, held[0], daily_budget="12345")  # edited: budget changed
    _graph_post(mixed, held[1], status="ACTIVE")  # someone re-activated it
    _graph_post(mixed, held[1], status="PAUSED")  # ...and paused it again
    _graph_post(mixed, held[2], status="ARCHIVED")

    resumed = commander.resume(ResumeRequest(actor="bob"))

    skipped = {s["campaign_id"]: s["reason"] for s in resumed.campaigns_skipped}
    assert set(skipped) == set(held)
    assert "edited on Meta since the stop" in skipped[held[0]] and "edited on Meta" in skipped[held[1]]
    assert skipped[held[2]] == "ARCHIVED since the stop"
    statuses = _statuses(mixed)
    assert [statuses[c] for c in held] == ["PAUSED", "PAUSED", "ARCHIVED"]
    assert resumed.campaigns_resumed == 21
    assert CampaignHold.objects.filter(state="skipped").count() == 3


def test_faults_and_a_rate_limit_during_stop_and_resume_still_restore_exactly_what_ran(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=3, statuses={"ACTIVE": 40, "PAUSED": 5})
    before = _statuses(meta_sandbox)
    first = meta_sandbox.state()["accounts"][0]["id"]
    settings.META_TIMEOUT_SECONDS = 1  # a timed-out request answers (and applies) after 1.5 s
    meta_sandbox.faults(
        error_rate=0.2,
        timeout_rate=0.05,
        timeout_ms=1500,
        fault_seed=3,
        tier={first: "development"},
        tier_params={"development": {"decay_s": 1, "block_s": 1}},
    )

    result = _stop()

    assert result.success and result.campaigns_paused == 120, result
    assert "ACTIVE" not in _statuses(meta_sandbox).values()
    assert meta_sandbox.state()["accounts"][0]["rejected_while_blocked"] == 0

    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))  # the faults are still on

    assert resumed.campaigns_resumed == 120 and not resumed.campaigns_skipped, resumed.campaigns_skipped
    assert _statuses(meta_sandbox) == before  # the 120 held ones ACTIVE again, the 15 paused before still paused
    assert meta_sandbox.state()["accounts"][0]["rejected_while_blocked"] == 0


def test_the_stop_needs_no_task_queue(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 30})
    account = meta_sandbox.state()["accounts"][0]["id"]
    meta_sandbox.faults(tier={account: "development"}, tier_params={"development": {"decay_s": 30}})
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 2

    with broken_broker():  # no broker at all: the stop itself must not care
        result = _stop()

    assert TowerState.get().emergency_stop_active
    # 60 points a window on the development tier; writes stop at 90 %: 1 listing read + 17 pauses.
    assert result.campaigns_paused == 17 and result.campaigns_pending == 13
    assert len(meta_sandbox.campaigns(status="ACTIVE")) == 13  # left for the cycle's sweep, not lost
    assert killswitch.sweep_needed()
    # ... and the result says why.
    assert any(e.startswith(f"{account}: 13 campaigns still pending") and "rate-limited" in e for e in result.errors)


def test_a_dry_run_changes_nothing(mixed) -> None:
    before = _statuses(mixed)

    result = _stop(dry_run=True)

    assert result.dry_run and result.run_id is None
    assert result.would_stop == 17 and result.would_pause == 24
    assert result.schedulers_stopped == 0 and result.campaigns_paused == 0  # nothing was done
    assert sum(len(c) for c in result.preview["campaigns"].values()) == 24
    assert _statuses(mixed) == before
    assert not TowerState.get().emergency_stop_active
    assert not ControlTowerRun.objects.exists() and not CampaignHold.objects.exists()
    assert PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).count() == 17


def test_a_second_stop_is_idempotent_and_re_sweeps(mixed) -> None:
    first = _stop()
    straggler = CampaignHold.objects.first().campaign_id
    _graph_post(mixed, straggler, status="ACTIVE")  # something turned one back on during the halt

    second = _stop()

    assert second.already_halted and second.campaigns_paused == 1
    assert "re-swept" in second.message
    assert _statuses(mixed)[straggler] == "PAUSED"
    assert TowerState.get().halt_run_id == ControlTowerRun.objects.get(pk=first.run_id).pk
    assert CampaignHold.objects.count() == 24  # no duplicate ledger rows


def test_a_module_job_queued_before_the_stop_does_nothing(mixed) -> None:
    _stop()

    jobs.sync_campaigns.apply()  # the message was already in the queue: it runs after the halt

    run = ModuleRun.objects.get(module__code="10.2")
    assert run.outcome == "skipped" and run.api_calls == 0


def test_resume_without_a_stop_is_refused(mixed) -> None:
    with pytest.raises(killswitch.KillSwitchError, match="not halted"):
        commander.resume(ResumeRequest(actor="bob"))


def test_resume_keeps_modules_an_operator_stopped_during_the_halt(mixed) -> None:
    _stop()
    MetaModule.objects.filter(code="10.7").update(desired_state=MetaModule.DesiredState.STOPPED)

    resumed = commander.resume(ResumeRequest(actor="bob"))

    assert resumed.schedulers_resumed == 16
    assert not PeriodicTask.objects.get(meta_module__code="10.7").enabled


def test_resume_with_two_person_rule_needs_a_different_operator(mixed, settings) -> None:
    settings.RESUME_REQUIRES_SECOND_APPROVER = True
    _stop()

    first = commander.resume(ResumeRequest(actor="alice", reason="all clear"))
    assert first.awaiting_approval and TowerState.get().emergency_stop_active
    with pytest.raises(killswitch.KillSwitchError, match="different operator"):
        commander.resume(ResumeRequest(actor="alice"))

    approved = commander.resume(ResumeRequest(actor="bob"))

    assert approved.success and not TowerState.get().emergency_stop_active
    run = ControlTowerRun.objects.get(pk=approved.run_id)
    assert run.executed_by == "alice (approved by bob)" and run.reason == "all clear"


def test_resume_without_campaigns_leaves_them_paused_and_released(mixed) -> None:
    _stop()

    resumed = commander.resume(ResumeRequest(actor="bob", resume_campaigns=False))

    assert resumed.campaigns_resumed == 0 and "ACTIVE" not in _statuses(mixed).values()
    assert CampaignHold.objects.filter(state="released").count() == 24


def test_pending_campaigns_stay_in_the_ledger_and_a_sweep_finishes_them(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 30})
    account = meta_sandbox.state()["accounts"][0]["id"]
    # 30 pauses cost 90 points; the development tier allows 60 per 30 s window: half must wait.
    meta_sandbox.faults(tier={account: "development"}, tier_params={"development": {"decay_s": 30}})
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 2

    result = _stop()

    assert result.campaigns_paused == 17 and result.campaigns_pending == 13 and not result.success
    assert "13 still pending" in result.message
    assert meta_sandbox.state()["accounts"][0]["rejected_while_blocked"] == 0
    # The ledger is saved grouped by values (killswitch.ledger.save_holds): each row keeps its own outcome.
    updated = {c["id"]: c["updated_time"] for c in meta_sandbox.campaigns()}
    holds = list(CampaignHold.objects.all())
    assert all(h.attempts >= 1 and not h.claimed_by and h.claimed_until is None for h in holds)
    paused = [h for h in holds if h.state == "paused"]
    assert len(paused) == 17 and all(h.paused_updated_time == updated[h.campaign_id] and h.paused_at for h in paused)
    pending = [h for h in holds if h.state == "pending"]
    assert len(pending) == 13 and all(h.last_error and h.paused_at is None for h in pending)
    meta_sandbox.faults()
    graph.reset_clients()  # the background sweep runs in a worker process of its own
    assert killswitch.sweep_needed()
    outcome = killswitch.resweep(str(TowerState.get().halt_run_id), attempt=0)
    assert outcome["pending"] == 0 and outcome["paused"] == 13
    assert "ACTIVE" not in _statuses(meta_sandbox).values()
    assert CampaignHold.objects.filter(state="paused").count() == 30


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_stops_and_a_resume_give_one_consistent_outcome(postgres_db, synced, mixed) -> None:
    barrier = threading.Barrier(3)
    outcomes: list[object] = []

    def act(fn) -> None:
        try:
            barrier.wait()
            outcomes.append(fn())
        except killswitch.KillSwitchError as exc:
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=act, args=(fn,))
        for fn in (_stop, _stop, lambda: commander.resume(ResumeRequest(actor="carol")))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = _statuses(mixed)
    state = TowerState.get()
    if state.emergency_stop_active:  # the resume came first (nothing to resume) or was refused/overtaken
        assert "ACTIVE" not in statuses.values()
        assert CampaignHold.objects.filter(halt_run=state.halt_run, state="paused").count() == 24
    else:  # the resume came last and restored exactly the held campaigns
        assert sum(s == "ACTIVE" for s in statuses.values()) == 24
    assert state.system_status == (SystemStatus.EMERGENCY_STOP if state.emergency_stop_active else state.system_status)


def test_resume_leaves_unconfirmed_pauses_as_they_are(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 30})
    account = meta_sandbox.state()["accounts"][0]["id"]
    meta_sandbox.faults(tier={account: "development"}, tier_params={"development": {"decay_s": 30}})
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 2
    _stop()  # 17 paused, 13 pending
    meta_sandbox.faults()
    graph.reset_clients()

    resumed = commander.resume(ResumeRequest(actor="bob"))

    assert resumed.campaigns_resumed == 17
    unconfirmed = [s for s in resumed.campaigns_skipped if "never confirmed" in s["reason"]]
    assert len(unconfirmed) == 13
    assert not CampaignHold.objects.filter(state__in=["pending", "failed"]).exists()


def _leave_pending(sandbox, settings, **reset) -> str:
    """A stop that leaves 13 of an account's 30 campaigns pending (its rate budget runs out)."""
    sandbox.reset(**reset)
    account = sandbox.state()["accounts"][0]["id"]
    sandbox.faults(tier={account: "development"}, tier_params={"development": {"decay_s": 30}})
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 2
    return account


def test_the_background_sweep_of_a_stop_limited_to_some_accounts_stays_within_them(meta_sandbox, settings) -> None:
    account = _leave_pending(meta_sandbox, settings, accounts=2, statuses={"ACTIVE": 30})
    other = meta_sandbox.state()["accounts"][1]["id"]

    result = _stop(ad_account_ids=[account])
    meta_sandbox.faults()
    graph.reset_clients()
    killswitch.resweep(str(TowerState.get().halt_run_id), attempt=0)

    assert result.campaigns_pending == 13
    assert not meta_sandbox.campaigns(account=account, status="ACTIVE")
    assert len(meta_sandbox.campaigns(account=other, status="ACTIVE")) == 30
    assert not CampaignHold.objects.filter(account_id=other).exists()


def test_a_sweep_reads_a_pending_campaign_that_meta_already_paused_instead_of_pausing_it_again(
    meta_sandbox, settings
) -> None:
    _leave_pending(meta_sandbox, settings, accounts=1, statuses={"ACTIVE": 30})
    _stop()
    meta_sandbox.faults()
    graph.reset_clients()
    # A sweeper's batch reached Meta, then its process died before recording the answers.
    applied = list(CampaignHold.objects.filter(state="pending").values_list("campaign_id", flat=True)[:3])
    for campaign_id in applied:
        _graph_post(meta_sandbox, campaign_id, status="PAUSED")

    outcome = killswitch.resweep(str(TowerState.get().halt_run_id), attempt=0)

    truth = {c["id"]: c for c in meta_sandbox.campaigns()}
    assert outcome == {"paused": 13, "pending": 0, "failed": 0, "errors": []}
    assert {truth[c]["status_writes"] for c in applied} == {1}
    assert {c["status_writes"] for c in truth.values()} == {1}
    holds = {h.campaign_id: h for h in CampaignHold.objects.all()}
    assert all(holds[c].state == "paused" and holds[c].paused_updated_time == truth[c]["updated_time"] for c in applied)


def test_a_stop_that_could_not_reach_meta_is_finished_by_the_watchdog_without_a_queue(mixed) -> None:
    mixed.faults(expire_token=True)
    with broken_broker():
        result = _stop()
        assert result.errors and not CampaignHold.objects.exists()
        mixed.faults()
        assert killswitch.sweep_needed()

        killswitch.finish_abandoned()

    assert "ACTIVE" not in _statuses(mixed).values()
    assert CampaignHold.objects.filter(state="paused").count() == 24
    assert not killswitch.sweep_needed()


# --- found by the fault drill (test_kill_switch_drill.py) ------------------------------------


def _truth_updated_times(sandbox) -> dict[str, str]:
    return {c["id"]: c["updated_time"] for c in sandbox.campaigns()}


def test_resume_keeps_retrying_re_activations_that_fail_transiently_within_its_deadline(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 30})
    _stop()
    settings.META_MAX_RETRIES = 1  # the client gives up after one retry: resume must not
    meta_sandbox.faults(error_rate=0.3, fault_seed=4)

    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))

    assert resumed.campaigns_resumed == 30 and not resumed.campaigns_skipped, resumed.campaigns_skipped
    assert len(meta_sandbox.campaigns(status="ACTIVE")) == 30
    assert CampaignHold.objects.filter(state="resumed").count() == 30


def test_resume_keeps_re_activations_still_failing_at_its_deadline_pending_and_says_why(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 5})
    _stop()
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 2
    settings.META_MAX_RETRIES = 0
    meta_sandbox.faults(error_rate=1.0)  # Meta fails every call

    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))

    assert resumed.campaigns_resumed == 0 and not resumed.success
    assert resumed.campaigns_skipped == [] and resumed.campaigns_pending == 5  # pending, not "skipped"
    account = meta_sandbox.state()["accounts"][0]["id"]
    assert resumed.errors == [resumed.errors[0]] and resumed.errors[0].startswith(
        f"{account}: 5 campaigns still pending — could not read its current state: Meta transient error"
    )
    holds = CampaignHold.objects.filter(resume_run_id=resumed.run_id)
    assert {h.state for h in holds} == {CampaignHold.State.RESUMING}
    assert all(h.resume_note.startswith("re-activation pending: could not read") for h in holds)
    assert len(meta_sandbox.campaigns(status="PAUSED")) == 5
    assert not TowerState.get().emergency_stop_active  # the halt is over: the background takes it from here


def test_a_slow_batch_whose_answer_was_lost_is_still_confirmed_paused(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 30})
    settings.META_TIMEOUT_SECONDS = 0.5
    meta_sandbox.faults(per_item_ms=30)  # a batch of 17 or more outlasts the client's timeout; Meta applies it anyway

    result = _stop()

    assert result.success and result.campaigns_paused == 30 and result.campaigns_pending == 0, result
    assert meta_sandbox.campaigns(status="ACTIVE") == []
    truth = _truth_updated_times(meta_sandbox)
    assert {h.campaign_id: h.paused_updated_time for h in CampaignHold.objects.all()} == truth
    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))
    assert resumed.campaigns_resumed == 30 and not resumed.campaigns_skipped


def test_a_re_activation_whose_answer_was_lost_but_applied_counts_as_resumed(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 3})
    _stop()
    settings.META_TIMEOUT_SECONDS = 0.3
    settings.META_MAX_RETRIES = 0
    meta_sandbox.faults(per_item_ms=500)  # even a batch of one outlasts the client's timeout; Meta applies it after

    resumed = commander.resume(ResumeRequest(actor="bob", run_health_check=False))

    assert resumed.campaigns_resumed == 3 and not resumed.campaigns_skipped, resumed.campaigns_skipped
    assert len(meta_sandbox.campaigns(status="ACTIVE")) == 3
    assert set(CampaignHold.objects.values_list("resume_note", flat=True)) == {
        "ACTIVE again after a re-activation whose answer was lost"
    }


def test_the_stop_keeps_retrying_pauses_that_fail_transiently_within_its_deadline(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 30})
    settings.META_MAX_RETRIES = 0  # the client gives up at the first failure: the stop must not
    meta_sandbox.faults(error_rate=0.3, fault_seed=8)

    result = _stop()

    assert result.success and result.campaigns_paused == 30 and result.campaigns_pending == 0, result
    assert meta_sandbox.campaigns(status="ACTIVE") == []
    assert max(CampaignHold.objects.values_list("attempts", flat=True)) > 1  # some took more than one round


def test_the_deadline_bounds_the_clients_own_waits(meta_sandbox, settings) -> None:
    """Meta holds every answer far longer than the stop's deadline: the client's own timeout and
    retries must not carry the stop past it (it used to answer at 27 s against 20 s)."""
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 2
    settings.META_TIMEOUT_SECONDS = 10
    settings.META_AD_ACCOUNT_IDS = [a["id"] for a in meta_sandbox.state()["accounts"]]
    meta_sandbox.faults(timeout_rate=1.0, timeout_ms=8000)
    started = time.monotonic()

    result = _stop(send_alerts=False)

    assert time.monotonic() - started < 6  # the deadline plus the stop's own bookkeeping, not 10 s per try
    assert result.errors and TowerState.get().emergency_stop_active
