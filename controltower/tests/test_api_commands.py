"""POST command / emergency-stop / resume: validation, permissions, and that each does what it says."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from controltower.models import ControlTowerRun, RunState, TowerState
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from meta_modules.models import Campaign, MetaModule, ModuleRun
from tests.support import api_client, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced", "meta_sandbox")]

BASE = "/meta/control-tower"
SPEC_RESULT_FIELDS = {
    "command_id",
    "command_type",
    "success",
    "modules_affected",
    "actions_executed",
    "errors",
    "execution_time_ms",
    "executed_at",
    "executed_by",
    "message",
}


@pytest.fixture
def operator() -> APIClient:
    return api_client("olivia", OPERATORS_GROUP)


@pytest.fixture
def viewer() -> APIClient:
    return api_client("victor", VIEWERS_GROUP)


def _command(client: APIClient, **body) -> dict:
    response = client.post(f"{BASE}/command", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize(
    "path, body",
    [
        ("command", {"command_type": "stop_all"}),
        ("emergency-stop", {"reason": "spike"}),
        ("resume", {}),
    ],
)
def test_a_viewer_cannot_act(viewer: APIClient, path: str, body: dict) -> None:
    response = viewer.post(f"{BASE}/{path}", body, format="json")
    assert response.status_code == 403
    assert not ControlTowerRun.objects.exists() and not TowerState.get().emergency_stop_active


@pytest.mark.parametrize(
    "body, field",
    [
        ({"command_type": "launch_rockets"}, "command_type"),
        ({"command_type": "restart_module", "target_modules": ["10.99"]}, "target_modules"),
        ({"command_type": "restart_module"}, "target_modules"),
        ({"command_type": "stop_all", "target_modules": "10.7"}, "target_modules"),
        ({"command_type": "emergency_stop"}, "reason"),
        ({"command_type": "emergency_stop", "reason": "x", "parameters": {"pause_campaings": True}}, "parameters"),
        ({"command_type": "stop_all", "reason": "nul\x00byte"}, "reason"),
        ({"command_type": "stop_all", "execute_immediately": "sometimes"}, "execute_immediately"),
        ({"command_type": "sync_data", "parameters": {"x": 1}}, "parameters"),
        # Found by schemathesis: JSON types were coerced (0 was false, 7 the reason "7", " 10.7" was
        # 10.7) and an undeclared field was ignored. A code with NUL must not reach PostgreSQL.
        ({"command_type": "stop_all", "execute_immediately": 0}, "execute_immediately"),
        ({"command_type": "stop_all", "reason": 7}, "reason"),
        ({"command_type": "stop_all", "target_modules": ["10.7\x00"]}, "target_modules"),
        ({"command_type": "stop_all", "target_modules": [" 10.7"]}, "target_modules"),
        ({"command_type": "stop_all", "force": True}, "force"),
        ({"command_type": "resume", "parameters": {"pause_campaigns": True}}, "parameters"),
    ],
)
def test_bad_commands_get_400_with_field_errors(operator: APIClient, body: dict, field: str) -> None:
    response = operator.post(f"{BASE}/command", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ControlTowerRun.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "x", "ad_account_ids": ["act_x"]}, "ad_account_ids"),
        ({"reason": "x", "dry_run": "maybe"}, "dry_run"),
    ],
)
def test_an_emergency_stop_without_a_usable_reason_is_refused(operator: APIClient, body: dict, field: str) -> None:
    response = operator.post(f"{BASE}/emergency-stop", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not TowerState.get().emergency_stop_active


# Found by schemathesis: each of these was coerced or ignored, and most of them ran a real stop.
@pytest.mark.parametrize(
    "body, field",
    [
        ({"reason": "x", "dry_run": "true"}, "dry_run"),
        ({"reason": "x", "dry-run": True}, "dry-run"),
        ({"reason": "x", "ad_account_ids": [1000000001]}, "ad_account_ids"),
        ({"reason": 42}, "reason"),
    ],
)
def test_an_emergency_stop_body_of_wrong_types_or_unknown_fields_stops_nothing(
    operator: APIClient, body: dict, field: str
) -> None:
    response = operator.post(f"{BASE}/emergency-stop", body, format="json")

    assert response.status_code == 400 and field in response.json(), response.content
    assert not TowerState.get().emergency_stop_active and not ControlTowerRun.objects.exists()


def test_a_form_encoded_body_is_refused_with_415_not_coerced(operator: APIClient) -> None:
    # Found by schemathesis: a form turned every value into a string for DRF to coerce ("0" → false).
    response = operator.post(f"{BASE}/emergency-stop", {"reason": "x", "dry_run": "0"})  # multipart

    assert response.status_code == 415
    assert not TowerState.get().emergency_stop_active and not ControlTowerRun.objects.exists()


def test_stop_all_then_start_all_as_in_the_spec(operator: APIClient) -> None:
    stopped = _command(operator, command_type="stop_all", reason="Maintenance window", execute_immediately=True)

    assert set(stopped) >= SPEC_RESULT_FIELDS and stopped["success"] and stopped["command_type"] == "stop_all"
    assert len(stopped["modules_affected"]) == 17 and stopped["executed_by"] == "olivia"
    assert not PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).exists()
    module = MetaModule.objects.get(code="10.7")
    assert (module.desired_state, module.desired_state_by, module.desired_state_reason) == (
        "stopped",
        "olivia",
        "Maintenance window",
    )

    started = _command(operator, command_type="start_all", reason="Starting Meta Ads stack")

    assert started["success"] and len(started["modules_affected"]) == 17
    tasks = PeriodicTask.objects.filter(meta_module__isnull=False).select_related("interval")
    assert all(t.enabled for t in tasks)
    # Not all at once: each module's first run is due at a different time, none immediately.
    due = sorted(t.last_run_at + timedelta(seconds=t.interval.every) for t in tasks)
    assert len(set(due)) == 17 and due[0] > timezone.now()
    run = ControlTowerRun.objects.get(pk=started["command_id"])
    assert (run.run_type, run.command_type, run.reason) == ("command", "start_all", "Starting Meta Ads stack")


def test_stop_all_on_some_modules_only(operator: APIClient) -> None:
    result = _command(operator, command_type="stop_all", target_modules=["10.7", "10.8"])

    assert result["modules_affected"] == ["10.7", "10.8"]
    assert set(
        PeriodicTask.objects.filter(enabled=False, meta_module__isnull=False).values_list(
            "meta_module__code", flat=True
        )
    ) == {"10.7", "10.8"}


def test_restart_module_cancels_a_stuck_run_and_runs_it_now(operator: APIClient) -> None:
    module = MetaModule.objects.get(code="10.2")
    PeriodicTask.objects.filter(pk=module.periodic_task_id).update(enabled=False)
    stuck = ModuleRun.objects.create(module=module, started_at=timezone.now() - timedelta(hours=3))

    result = _command(operator, command_type="restart_module", target_modules=["10.2"], reason="Restart client")

    stuck.refresh_from_db()
    assert stuck.outcome == "timeout" and "Cancelled by restart (olivia)" in stuck.error_message
    assert PeriodicTask.objects.get(pk=module.periodic_task_id).enabled
    fresh = ModuleRun.objects.get(module=module, trigger="command")
    assert fresh.outcome == "success" and fresh.api_calls > 0
    assert result["success"] and "10.2 success" in result["message"]
    assert Campaign.objects.exists()  # the sync really ran against the sandbox


def test_sync_data_runs_the_three_sync_modules(operator: APIClient) -> None:
    result = _command(operator, command_type="sync_all_data")  # the spec's own spelling

    assert result["command_type"] == "sync_data" and result["success"]
    assert result["modules_affected"] == ["10.2", "10.4", "10.14"]
    assert set(
        ModuleRun.objects.filter(trigger="command", outcome="success").values_list("module__code", flat=True)
    ) == {"10.2", "10.4", "10.14"}


def test_optimize_runs_the_chain_in_order(operator: APIClient) -> None:
    _command(operator, command_type="sync_data")

    result = _command(operator, command_type="optimize_all")

    assert result["modules_affected"] == ["10.5", "10.6", "10.16"] and result["success"]
    codes = list(
        ModuleRun.objects.filter(module__code__in=["10.5", "10.6", "10.16"])
        .order_by("started_at")
        .values_list("module__code", flat=True)
    )
    assert codes == ["10.5", "10.6", "10.16"]


def test_health_check_command_persists_a_check(operator: APIClient) -> None:
    result = _command(operator, command_type="run_health_check", reason="on demand")

    run = ControlTowerRun.objects.get(pk=result["command_id"])
    assert run.run_type == "health_check" and run.command_type == "health_check"
    assert run.health_logs.count() == 17 and run.executed_by == "olivia"


def test_start_all_is_refused_while_halted(operator: APIClient) -> None:
    assert (
        operator.post(f"{BASE}/emergency-stop", {"reason": "Budget anomaly detected"}, format="json").status_code == 200
    )

    response = operator.post(f"{BASE}/command", {"command_type": "start_all"}, format="json")

    assert response.status_code == 409 and "Resume first" in response.json()["detail"]


def test_emergency_stop_and_resume_as_in_the_spec(operator: APIClient, meta_sandbox) -> None:
    stop = operator.post(
        f"{BASE}/emergency-stop",
        {"reason": "Budget anomaly detected", "stop_schedulers": True, "pause_campaigns": True, "send_alerts": True},
        format="json",
    )

    assert stop.status_code == 200
    body = stop.json()
    assert {
        "success",
        "schedulers_stopped",
        "campaigns_paused",
        "alerts_sent",
        "errors",
        "stopped_at",
        "message",
    } <= set(body)
    assert body["success"] and body["schedulers_stopped"] == 17 and body["campaigns_paused"] > 0
    assert meta_sandbox.campaigns(status="ACTIVE") == []
    status = operator.get(f"{BASE}/status").json()
    assert status["emergency_stop_active"] and status["system_status"] == "emergency_stop"
    assert status["halted_by"] == "olivia" and status["halt_reason"] == "Budget anomaly detected"

    resume = operator.post(
        f"{BASE}/resume", {"resume_schedulers": True, "resume_campaigns": True, "run_health_check": True}, format="json"
    )

    assert resume.status_code == 200, resume.content
    assert resume.json()["campaigns_resumed"] == body["campaigns_paused"]
    assert len(meta_sandbox.campaigns(status="ACTIVE")) == body["campaigns_paused"]
    assert not operator.get(f"{BASE}/status").json()["emergency_stop_active"]


def test_resume_without_a_stop_is_409(operator: APIClient) -> None:
    response = operator.post(f"{BASE}/resume", {}, format="json")
    assert response.status_code == 409 and "not halted" in response.json()["detail"]


def test_emergency_stop_through_the_command_endpoint(operator: APIClient, meta_sandbox) -> None:
    result = _command(
        operator, command_type="emergency_stop", reason="Budget spike: $10k in 1h", parameters={"pause_campaigns": True}
    )

    assert result["command_type"] == "emergency_stop" and result["success"]
    assert meta_sandbox.campaigns(status="ACTIVE") == []
    resumed = _command(operator, command_type="resume_operations")
    assert resumed["command_type"] == "resume" and resumed["success"]


def test_a_dry_run_through_the_api_lists_without_changing(operator: APIClient, meta_sandbox) -> None:
    active = {c["id"] for c in meta_sandbox.campaigns(status="ACTIVE")}

    body = operator.post(f"{BASE}/emergency-stop", {"reason": "preview", "dry_run": True}, format="json").json()

    listed = {c["id"] for campaigns in body["preview"]["campaigns"].values() for c in campaigns}
    assert body["dry_run"] and listed == active and body["run_id"] is None
    assert {c["id"] for c in meta_sandbox.campaigns(status="ACTIVE")} == active


def test_the_two_person_rule_answers_202_then_needs_another_operator(operator: APIClient, settings) -> None:
    settings.RESUME_REQUIRES_SECOND_APPROVER = True
    operator.post(f"{BASE}/emergency-stop", {"reason": "spike"}, format="json")
    second = api_client("oscar", OPERATORS_GROUP)

    first = operator.post(f"{BASE}/resume", {"reason": "clear"}, format="json")
    again = operator.post(f"{BASE}/resume", {}, format="json")
    approved = second.post(f"{BASE}/resume", {}, format="json")

    assert first.status_code == 202 and first.json()["awaiting_approval"]
    assert again.status_code == 409
    assert approved.status_code == 200 and not TowerState.get().emergency_stop_active


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_queued_command_is_answered_202_and_a_worker_completes_it(
    synced, meta_sandbox, celery_worker_process
) -> None:
    operator = api_client("quentin", OPERATORS_GROUP)
    response = operator.post(
        f"{BASE}/command",
        {"command_type": "stop_all", "target_modules": ["10.9"], "execute_immediately": False},
        format="json",
    )

    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "queued"
    run = wait_for(
        lambda: ControlTowerRun.objects.filter(pk=body["command_id"], state=RunState.COMPLETED).first(),
        message="the worker to complete the queued command",
    )
    assert run.modules_affected == ["10.9"] and run.executed_by == "quentin"
    assert not PeriodicTask.objects.get(meta_module__code="10.9").enabled


def test_the_schema_says_what_a_write_body_may_carry() -> None:
    # Found by schemathesis: the schema allowed what the API refuses (an empty account list, any
    # `parameters`, NUL in text, undeclared fields).
    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    stop, command = components["EmergencyStopRequestRequest"], components["CommandRequestRequest"]

    assert stop["additionalProperties"] is False and command["additionalProperties"] is False
    assert stop["properties"]["ad_account_ids"]["minItems"] == 1
    assert stop["properties"]["reason"]["pattern"] == "^[^\\u0000]+$"
    parameters = components["CommandParametersRequest"]
    assert parameters["additionalProperties"] is False
    assert set(parameters["properties"]) == {
        "stop_schedulers",
        "pause_campaigns",
        "send_alerts",
        "ad_account_ids",
        "resume_schedulers",
        "resume_campaigns",
        "run_health_check",
    }
