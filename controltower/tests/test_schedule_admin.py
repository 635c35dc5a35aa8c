"""The schedules in the admin: read-only rows; a module's schedule moves only through the module
commands (who, why, refusal while halted, the command throttle); the tower's own tasks never move."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from controltower import killswitch
from controltower.models import ControlTowerRun, RecoveryAttempt
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from controltower.schedules import HEALTH_CYCLE_TASK, HEARTBEAT_TASK, RETENTION_TASK
from meta_modules.models import MetaModule, ModuleRun
from tests.support import admin_client

pytestmark = pytest.mark.django_db

TASKS = "/admin/django_celery_beat/periodictask/"


def _task(code: str) -> PeriodicTask:
    return PeriodicTask.objects.get(meta_module__code=code)


def _act(client: Client, action: str, tasks: list[PeriodicTask], reason: str = "maintenance window") -> str:
    response = client.post(
        TASKS, {"action": action, "_selected_action": [t.pk for t in tasks], "index": 0, "reason": reason}, follow=True
    )
    assert response.status_code == 200
    return "\n".join(str(m) for m in response.context["messages"])


def test_an_operator_disables_a_module_schedule_as_a_recorded_stop(synced) -> None:
    olivia = admin_client("olivia", OPERATORS_GROUP)
    page = olivia.get(TASKS).content.decode()
    assert 'name="reason"' in page and 'value="disable_schedules"' in page

    messages = _act(olivia, "disable_schedules", [_task("10.7")], "budget freeze")

    assert "Stopped 1 modules" in messages
    assert not _task("10.7").enabled
    module = MetaModule.objects.get(code="10.7")
    assert (module.desired_state, module.desired_state_by, module.desired_state_reason) == (
        "stopped",
        "olivia",
        "budget freeze",
    )
    run = ControlTowerRun.objects.get(command_type="stop_all")
    assert (run.executed_by, run.reason, run.modules_affected) == ("olivia", "budget freeze", ["10.7"])


def test_an_operator_runs_a_module_now_through_the_restart_command(synced, meta_sandbox) -> None:
    messages = _act(admin_client("olivia", OPERATORS_GROUP), "run_now", [_task("10.9")], "check the new threshold")

    assert "Restarted 10.9" in messages
    assert ModuleRun.objects.filter(module__code="10.9", trigger="command").exists()
    assert ControlTowerRun.objects.get(command_type="restart_module").executed_by == "olivia"


def test_a_viewer_can_neither_disable_nor_run_a_schedule(synced) -> None:
    vera = admin_client("vera", VIEWERS_GROUP)
    assert vera.get(TASKS).status_code == 200  # she may look

    for action in ("disable_schedules", "run_now"):
        response = vera.post(
            TASKS, {"action": action, "_selected_action": [_task("10.7").pk], "index": 0, "reason": "curious"}
        )
        assert response.status_code == 403
    assert _task("10.7").enabled
    assert not ControlTowerRun.objects.exists()


def test_re_enabling_a_schedule_is_refused_while_halted(synced, meta_sandbox) -> None:
    killswitch.emergency_stop(killswitch.StopRequest(reason="spend spike", actor="alice"))
    assert not _task("10.7").enabled

    messages = _act(admin_client("root", superuser=True), "enable_schedules", [_task("10.7")])

    assert "Emergency stop active" in messages
    assert not _task("10.7").enabled


def test_recovering_modules_from_the_admin_is_refused_while_halted_as_the_api_refuses_it(synced, meta_sandbox) -> None:
    killswitch.emergency_stop(killswitch.StopRequest(reason="spend spike", actor="alice"))

    page = admin_client("root", superuser=True).post(
        "/admin/meta_modules/metamodule/",
        {
            "action": "reset_modules",
            "_selected_action": [MetaModule.objects.get(code="10.7").pk],
            "index": 0,
            "reason": "stale",
        },
        follow=True,
    )

    assert "Emergency stop active: resume before recovering modules." in "\n".join(
        str(m) for m in page.context["messages"]
    )
    assert not RecoveryAttempt.objects.exists()


def test_the_tower_tasks_cannot_be_disabled_or_run(synced) -> None:
    tower = list(PeriodicTask.objects.filter(name__in=[HEALTH_CYCLE_TASK, HEARTBEAT_TASK, RETENTION_TASK]))
    assert len(tower) == 3

    for action in ("disable_schedules", "run_now"):
        messages = _act(admin_client(f"root-{action}", superuser=True), action, tower)
        assert "3 tower tasks left alone" in messages
    assert all(task.enabled for task in PeriodicTask.objects.filter(pk__in=[t.pk for t in tower]))
    assert not ControlTowerRun.objects.exists()


def test_an_action_without_a_reason_does_nothing(synced) -> None:
    messages = _act(admin_client("olivia", OPERATORS_GROUP), "disable_schedules", [_task("10.7")], reason="  ")

    assert "Give a reason" in messages
    assert _task("10.7").enabled and not ControlTowerRun.objects.exists()


def test_not_even_a_superuser_adds_edits_or_deletes_schedules_by_hand(synced) -> None:
    root = admin_client("root", superuser=True)
    task, interval = _task("10.7"), IntervalSchedule.objects.first()

    assert root.get(f"{TASKS}add/").status_code == 403
    assert root.post(f"{TASKS}{task.pk}/change/", {"name": task.name, "enabled": ""}).status_code == 403
    assert root.post(f"{TASKS}{task.pk}/delete/", {"post": "yes"}).status_code == 403
    intervals = "/admin/django_celery_beat/intervalschedule/"
    assert root.post(f"{intervals}{interval.pk}/change/", {"every": 1, "period": "seconds"}).status_code == 403
    assert root.get(f"{intervals}add/").status_code == 403
    assert _task("10.7").enabled and IntervalSchedule.objects.get(pk=interval.pk).every == interval.every


def test_admin_module_commands_share_the_api_command_budget(synced, settings) -> None:
    from rest_framework.test import APIClient

    from tests.support import api_token

    settings.COMMAND_THROTTLE_RATE = "2/min"
    olivia = User.objects.create_user("olivia", is_staff=True)
    olivia.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    console = Client()
    console.force_login(olivia)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(olivia)}")

    assert api.post("/meta/control-tower/modules/10.7/stop", {"reason": "one"}, format="json").status_code == 200
    assert "Stopped 1 modules" in _act(console, "disable_schedules", [_task("10.8")])

    assert "Too many requests" in _act(console, "enable_schedules", [_task("10.8")])
    module_admin = console.post(
        "/admin/meta_modules/metamodule/",
        {
            "action": "start_modules",
            "_selected_action": [MetaModule.objects.get(code="10.8").pk],
            "index": 0,
            "reason": "three",
        },
        follow=True,
    )
    assert "Too many requests" in "\n".join(str(m) for m in module_admin.context["messages"])
    throttled = api.post("/meta/control-tower/modules/10.7/start", {"reason": "four"}, format="json")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    assert not _task("10.8").enabled  # the refused enable changed nothing
    assert ControlTowerRun.objects.filter(command_type="stop_all").count() == 2
    assert not ControlTowerRun.objects.filter(command_type="start_all").exists()


def test_a_superuser_cannot_edit_a_module_around_the_commands(synced) -> None:
    module = MetaModule.objects.get(code="10.7")

    admin_client("root", superuser=True).post(
        f"/admin/meta_modules/metamodule/{module.pk}/change/",
        {
            "desired_state": "stopped",
            "periodic_task": "",
            "error_window_start_0": "2030-01-01",
            "error_window_start_1": "00:00:00",
        },
    )

    module.refresh_from_db()
    assert (module.desired_state, module.periodic_task_id, module.error_window_start) == (
        "running",
        _task("10.7").pk,
        None,
    )
