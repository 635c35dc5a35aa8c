"""A stop pressed while another is still running joins it instead of sweeping Meta again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from controltower import killswitch
from controltower.killswitch import StopRequest
from controltower.models import ControlTowerRun, RunState, RunType, TowerState
from controltower.roles import OPERATORS_GROUP

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]


@pytest.fixture
def running_stop(meta_sandbox) -> ControlTowerRun:
    """A stop whose request is still working (recorded and committed, not finished)."""
    run, _, _ = killswitch.stop._begin_halt(StopRequest(reason="Budget spike", actor="alice"))
    return run


def _status_writes(meta_sandbox) -> int:
    return sum(c["status_writes"] for c in meta_sandbox.campaigns())


def test_a_second_stop_joins_the_running_one_records_who_and_does_not_touch_meta(running_stop, meta_sandbox) -> None:
    result = killswitch.emergency_stop(
        StopRequest(reason="Same spike, seen by me", actor="bob", ad_account_ids=["1000000001"])
    )

    assert result.joined and result.run_id == str(running_stop.pk) and "already running" in result.message
    assert _status_writes(meta_sandbox) == 0  # nothing was listed or paused by the joining press
    join = ControlTowerRun.objects.get(run_type=RunType.EMERGENCY_STOP, executed_by="bob")
    assert join.state == RunState.COMPLETED and join.reason == "Same spike, seen by me"
    assert join.actions_executed == [{"action": "joined", "run_id": str(running_stop.pk)}]
    state = TowerState.get()
    # The halt stays the first stop's; the join moves last_stop_at, so a sweep after it covers its scope.
    assert state.halt_run_id == running_stop.pk and state.last_stop_at == join.executed_at
    assert killswitch.stop._halt_scope(state).accounts is None  # alice asked for everything


def test_a_stop_whose_process_died_long_ago_is_not_joined(running_stop, settings, meta_sandbox) -> None:
    stale = timezone.now() - timedelta(
        seconds=settings.EMERGENCY_STOP_DEADLINE_SECONDS + settings.HOLD_CLAIM_SECONDS + 1
    )
    ControlTowerRun.objects.filter(pk=running_stop.pk).update(executed_at=stale)

    result = killswitch.emergency_stop(StopRequest(reason="Still spending", actor="bob"))

    assert not result.joined and result.run_id != str(running_stop.pk) and result.success
    assert _status_writes(meta_sandbox) > 0  # this one swept Meta itself


def test_the_console_sends_a_joining_operator_to_the_running_stops_page(running_stop) -> None:
    user = User.objects.create_user("bob", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    client = Client()
    client.force_login(user)

    response = client.post("/emergency-stop/", {"reason": "Same spike", "pause_campaigns": "on"}, follow=True)

    assert response.redirect_chain == [(f"/stops/{running_stop.pk}/", 302)]
    assert "already running" in response.content.decode() and "this stop joined it" in response.content.decode()
