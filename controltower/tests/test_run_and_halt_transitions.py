"""The named state transitions of a run (start, claim, finish, fail, interrupt) and of the tower's
halt (begin, sweep, resume request, end, health check while halted)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import ControlTowerRun, RunState, RunType, SystemStatus, TowerState

pytestmark = pytest.mark.django_db


def _run(state: str = RunState.RUNNING, actor: str = "alice", reason: str = "Budget spike") -> ControlTowerRun:
    return ControlTowerRun.objects.create(
        run_type=RunType.EMERGENCY_STOP, state=state, executed_by=actor, reason=reason, mode="stub"
    )


def _halted(actor: str = "alice") -> tuple[TowerState, ControlTowerRun]:
    run = _run(actor=actor)
    state = TowerState.get()
    state.begin_halt(run)
    return state, run


def test_a_queued_run_is_claimed_once() -> None:
    run = _run(RunState.QUEUED)

    assert ControlTowerRun.claim_queued(run.pk)
    assert not ControlTowerRun.claim_queued(run.pk)  # a redelivered message
    assert ControlTowerRun.objects.get(pk=run.pk).state == RunState.RUNNING


def test_finishing_a_run_records_its_outcome_and_how_long_it_took() -> None:
    run = _run(RunState.QUEUED)
    run.start()
    assert ControlTowerRun.objects.get(pk=run.pk).state == RunState.RUNNING

    run.finish(time.monotonic() - 1.5, message="done", actions_executed=[{"action": "x"}])

    run.refresh_from_db()
    assert (run.state, run.message, run.actions_executed) == (RunState.COMPLETED, "done", [{"action": "x"}])
    assert 1500 <= run.execution_time_ms < 60_000


def test_a_failed_run_says_why_and_keeps_its_time_untouched_when_none_is_given() -> None:
    run = _run()

    run.fail(message="refused", errors_encountered=["refused"])

    run.refresh_from_db()
    assert (run.state, run.errors_encountered, run.execution_time_ms) == (RunState.FAILED, ["refused"], None)


def test_an_interrupted_run_is_closed_once_with_a_critical_note() -> None:
    run = _run()

    assert run.interrupt("Interrupted: its process died.")
    assert not run.interrupt("Interrupted again.")  # another watchdog came second

    run.refresh_from_db()
    assert run.state == RunState.FAILED and run.message == "Interrupted: its process died."
    assert run.recommendations == ControlTowerRun.note("Interrupted: its process died.", "critical")


def test_the_first_stop_begins_the_halt_and_withdraws_a_waiting_resume() -> None:
    TowerState.get().request_resume("bob", {"reason": "stale"})

    state, run = _halted()

    state = TowerState.get()
    assert state.emergency_stop_active and state.halt_run_id == run.pk
    assert (state.halted_by, state.halted_at, state.halt_reason) == ("alice", run.executed_at, "Budget spike")
    assert state.system_status == SystemStatus.EMERGENCY_STOP and state.last_stop_at == run.executed_at
    assert (state.resume_requested_by, state.resume_requested_at, state.resume_request) == ("", None, {})


def test_a_stop_while_halted_widens_the_halt_without_moving_its_start() -> None:
    state, first = _halted("alice")
    state.held_task_ids = [7]
    state.save()

    second = _run(actor="bob")
    TowerState.get().begin_halt(second)

    state = TowerState.get()
    assert (state.halt_run_id, state.halted_by, state.held_task_ids) == (first.pk, "alice", [7])
    assert state.last_stop_at == second.executed_at


def test_a_sweep_completes_only_the_halt_still_in_force() -> None:
    _, run = _halted()
    began = timezone.now()

    TowerState.halt_swept(_run(), began)  # another halt's sweep
    assert TowerState.get().halt_swept_at is None
    TowerState.halt_swept(run, began)
    assert TowerState.get().halt_swept_at == began


def test_a_resume_request_waits_for_approval_until_it_expires(settings) -> None:
    state, _ = _halted()

    state.request_resume("bob", {"resume_campaigns": False})

    state = TowerState.get()
    assert state.resume_awaiting_approval() and state.resume_request == {"resume_campaigns": False}
    later = timezone.now() + timedelta(seconds=settings.RESUME_APPROVAL_TTL_SECONDS + 1)
    assert not state.resume_awaiting_approval(now=later)


def test_ending_the_halt_lets_go_of_everything_it_held() -> None:
    state, _ = _halted()
    state.held_task_ids = [1, 2]
    state.request_resume("bob", {})

    state.end_halt()

    state = TowerState.get()
    assert not state.emergency_stop_active and state.held_task_ids == [] and state.resume_requested_by == ""
    assert state.system_status == SystemStatus.UNKNOWN


def test_a_health_check_sets_the_status_except_while_halted() -> None:
    now = timezone.now()
    TowerState.health_checked(now, SystemStatus.HEALTHY, halted=False)
    assert TowerState.get().system_status == SystemStatus.HEALTHY

    _halted()
    TowerState.health_checked(now, SystemStatus.DEGRADED, halted=True)
    state = TowerState.get()
    assert state.system_status == SystemStatus.EMERGENCY_STOP and state.last_health_check == now


def test_requests_built_from_options_take_the_defaults_for_what_is_left_out() -> None:
    stop = StopRequest.from_options("alice", "spike", {"send_alerts": False, "dry_run": True, "other": 1})
    assert stop == StopRequest(reason="spike", actor="alice", send_alerts=False)  # a command never dry-runs

    resume = ResumeRequest.from_options("bob", "", {"resume_campaigns": False}, dry_run=True)
    assert resume == ResumeRequest(actor="bob", resume_campaigns=False, dry_run=True)
