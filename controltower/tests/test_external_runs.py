"""External modules: registration, hashed tokens, run reports, and supervision like the built-in ones."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from controltower import commander, health
from controltower.models import Alert, ExternalModule, RecoveryAttempt, TowerState
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from meta_modules.models import MetaModule, ModuleRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

CODE = "20.1"
RUNS = f"/meta/control-tower/modules/{CODE}/runs"
INTERVAL = 900


def _register(code: str = CODE, every: int = INTERVAL) -> str:
    out = StringIO()
    call_command(
        "register_external_module",
        code,
        "Partner feed",
        "--function",
        "Catalog sync",
        "--every",
        str(every),
        stdout=out,
    )
    return out.getvalue()


def _issue(code: str = CODE, *flags: str) -> str:
    out = StringIO()
    call_command("issue_token", "--module", code, *flags, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


@pytest.fixture
def key() -> str:
    _register()
    return _issue()


def _module_client(key: str, header: str = "authorization") -> APIClient:
    client = APIClient()
    if header == "authorization":
        client.credentials(HTTP_AUTHORIZATION=f"Module {key}")
    else:
        client.credentials(HTTP_X_MODULE_TOKEN=key)
    return client


def _staff(username: str, group: str) -> APIClient:
    user = User.objects.create_user(username, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = APIClient()
    client.force_login(user)
    return client


def _success(minutes_ago: float = 1, **extra) -> dict:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return {"started_at": started.isoformat(), "outcome": "success", "duration_ms": 1200, "api_calls": 3, **extra}


def _status(code: str = CODE, now=None) -> health.ModuleHealth:
    return next(m for m in health.evaluate(now).modules if m.code == code)


# --- registration and tokens ---------------------------------------------------------------------------


def test_register_creates_the_module_and_its_expected_interval() -> None:
    assert "Registered external module 20.1" in _register()

    module = MetaModule.objects.get(code=CODE)
    assert (module.name, module.function, module.periodic_task, module.task_name) == (
        "Partner feed",
        "Catalog sync",
        None,
        "",
    )
    assert module.position == 17  # after the 17 built-in modules
    assert ExternalModule.objects.get(module=module).expected_interval_seconds == INTERVAL
    assert "Updated external module" in _register(every=1800)  # idempotent; updates the interval
    assert ExternalModule.objects.get(module=module).expected_interval_seconds == 1800


@pytest.mark.parametrize(
    "code, every, message",
    [
        ("10.7", 900, "built-in"),
        (CODE, 30, "at least 60"),
        ("a/b", 900, "without '/'"),
    ],
)
def test_register_refuses_bad_input(code: str, every: int, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        _register(code, every)


def test_the_token_is_printed_once_and_stored_hashed(key: str) -> None:
    external = ExternalModule.objects.get(module__code=CODE)

    assert len(key) >= 40 and external.token_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(ExternalModule.objects.filter(pk=external.pk).values().get())
    with pytest.raises(CommandError, match="already has a token"):
        _issue()
    with pytest.raises(CommandError, match="No external module"):
        _issue("10.5")


def test_token_rotation_replaces_the_old_token(key: str) -> None:
    rotated = _issue(CODE, "--rotate")

    assert rotated != key
    assert _module_client(key).post(RUNS, _success(), format="json").status_code == 401
    assert _module_client(rotated).post(RUNS, _success(), format="json").status_code == 201


# --- authentication ------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["authorization", "x-module-token"])
def test_the_module_reports_with_its_token(key: str, header: str) -> None:
    response = _module_client(key, header).post(RUNS, _success(summary={"items": 42}), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    run = ModuleRun.objects.get(pk=body["run"]["id"])
    assert (run.module.code, run.trigger, run.outcome, run.api_calls, run.duration_ms) == (
        CODE,
        "external",
        "success",
        3,
        1200,
    )
    assert run.finished_at == run.started_at + timedelta(milliseconds=1200) and run.summary == {"items": 42}
    assert body["module"] == CODE and body["may_act"] is True and body["refusal"] == ""
    assert ExternalModule.objects.get(module__code=CODE).token_last_used_at is not None


def test_wrong_missing_or_foreign_tokens_are_refused(key: str) -> None:
    _register("20.2")
    other = _issue("20.2")

    wrong = _module_client("not-the-key").post(RUNS, _success(), format="json")
    foreign = _module_client(other).post(RUNS, _success(), format="json")  # 20.2's token on 20.1
    anonymous = APIClient().post(RUNS, _success(), format="json")

    assert wrong.status_code == foreign.status_code == anonymous.status_code == 401
    assert wrong["WWW-Authenticate"] == "Module"
    assert not ModuleRun.objects.filter(module__code=CODE).exists()


def test_a_viewer_may_not_report_but_an_operator_may(key: str) -> None:
    assert _staff("victor", VIEWERS_GROUP).post(RUNS, _success(), format="json").status_code == 403
    assert _staff("olivia", OPERATORS_GROUP).post(RUNS, _success(), format="json").status_code == 201


def test_built_in_and_unknown_modules(key: str) -> None:
    operator = _staff("olivia", OPERATORS_GROUP)

    built_in = operator.post("/meta/control-tower/modules/10.5/runs", _success(), format="json")

    assert built_in.status_code == 409 and "scheduler" in built_in.json()["detail"]
    assert operator.post("/meta/control-tower/modules/99.9/runs", _success(), format="json").status_code == 404
    # A module token never opens another module's endpoint.
    assert (
        _module_client(key).post("/meta/control-tower/modules/10.5/runs", _success(), format="json").status_code == 401
    )


# --- the report itself ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, field",
    [
        ({"outcome": "success"}, "started_at"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "exploded"}, "outcome"),
        (
            {"started_at": "2025-01-01T00:00:00Z", "finished_at": "2024-12-31T00:00:00Z", "outcome": "success"},
            "finished_at",
        ),
        (
            {"started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:01:00Z", "outcome": "running"},
            "finished_at",
        ),
        ({"started_at": "2999-01-01T00:00:00Z", "outcome": "success"}, "started_at"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "success", "api_calls": 1, "api_errors": 2}, "api_errors"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "success", "duration_ms": -1}, "duration_ms"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "failure", "error_message": "x" * 5001}, "error_message"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "success", "summary": ["not", "an", "object"]}, "summary"),
        # Found by schemathesis: JSON types were coerced (5 became a UUID, "3" a count), and jsonb on
        # PostgreSQL refuses \u0000 (a 500 there). An undeclared field is refused, not ignored.
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "success", "run_id": 5}, "run_id"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "success", "api_calls": "3"}, "api_calls"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "success", "duration_ms": 1200.0}, "duration_ms"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "failure", "error_message": 502}, "error_message"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "success", "summary": {"rows\x00": 1}}, "summary"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "success", "summary": {"note": ["a\x00b"]}}, "summary"),
        ({"started_at": "2025-01-01T00:00:00Z", "outcome": "success", "apicalls": 3}, "apicalls"),
    ],
)
def test_bad_reports_are_400_with_field_errors(key: str, body: dict, field: str) -> None:
    response = _module_client(key).post(RUNS, body, format="json")

    assert response.status_code == 400 and field in response.json(), response.content
    assert not ModuleRun.objects.filter(module__code=CODE).exists()


def test_an_empty_module_token_header_is_a_wrong_token_even_beside_an_operator_token(key: str) -> None:
    # Found by schemathesis (ignored_auth): a present but empty X-Module-Token was skipped.
    operator = _staff("olivia", OPERATORS_GROUP)
    operator.credentials(HTTP_X_MODULE_TOKEN="")

    response = operator.post(RUNS, _success(), format="json")

    assert response.status_code == 401 and response["WWW-Authenticate"] == "Module"
    assert not ModuleRun.objects.filter(module__code=CODE).exists()


def test_running_then_finished_with_the_same_run_id(key: str) -> None:
    client = _module_client(key)
    started = timezone.now() - timedelta(seconds=30)

    opened = client.post(RUNS, {"started_at": started.isoformat(), "outcome": "running"}, format="json")
    run_id = opened.json()["run"]["id"]
    closed = client.post(
        RUNS,
        {"run_id": run_id, "started_at": started.isoformat(), "outcome": "failure", "error_message": "Upstream 502"},
        format="json",
    )
    again = client.post(
        RUNS, {"run_id": run_id, "started_at": started.isoformat(), "outcome": "success"}, format="json"
    )

    assert opened.status_code == 201 and opened.json()["run"]["outcome"] == "running"
    assert opened.json()["run"]["finished_at"] is None
    assert closed.status_code == 200 and closed.json()["run"]["id"] == run_id
    run = ModuleRun.objects.get(pk=run_id)
    assert run.outcome == "failure" and run.error_message == "Upstream 502" and run.duration_ms >= 30_000
    assert again.status_code == 409  # finished runs keep their verdict
    assert ModuleRun.objects.filter(module__code=CODE).count() == 1


def test_a_new_run_id_is_created_once(key: str) -> None:
    run_id = "6f1c1d1e-7a47-4c0e-9d8c-2b0d1c1e9f00"

    first = _module_client(key).post(RUNS, _success(run_id=run_id), format="json")

    assert first.status_code == 201 and first.json()["run"]["id"] == run_id
    assert _module_client(key).post(RUNS, _success(run_id=run_id), format="json").status_code == 409
    built_in_run = ModuleRun.objects.create(module=MetaModule.objects.get(code="10.5"))
    assert _module_client(key).post(RUNS, _success(run_id=str(built_in_run.pk)), format="json").status_code == 409


def test_the_answer_says_not_to_act_while_halted_or_stopped(key: str) -> None:
    TowerState.get()
    TowerState.objects.filter(pk=1).update(emergency_stop_active=True)

    halted = _module_client(key).post(RUNS, _success(), format="json").json()

    assert halted["may_act"] is False and "Emergency stop" in halted["refusal"]
    TowerState.objects.filter(pk=1).update(emergency_stop_active=False)
    MetaModule.objects.filter(code=CODE).update(desired_state="stopped", desired_state_by="olivia")
    stopped = _module_client(key).post(RUNS, _success(), format="json").json()
    assert stopped["may_act"] is False and "stopped by olivia" in stopped["refusal"]


# --- supervised like the built-in modules ----------------------------------------------------------------


def test_a_reporting_external_module_is_online_even_without_beat(key: str) -> None:
    """Its liveness is its own reports: Beat and our workers do not run it."""
    TowerState.objects.filter(pk=1).update(worker_heartbeat_at=None)
    _module_client(key).post(RUNS, _success(), format="json")

    module = _status()

    assert module.status == "online" and module.is_scheduler_running and not module.overdue
    assert module.interval_seconds == INTERVAL and module.runs_24h == 1 and module.api_calls_24h == 3
    assert module.next_run == module.last_run + timedelta(seconds=INTERVAL)


def test_an_external_module_is_offline_when_no_report_comes_past_its_interval_plus_grace(key: str) -> None:
    grace = settings.SCHEDULER_GRACE_SECONDS
    _module_client(key).post(RUNS, _success(), format="json")
    last = ModuleRun.objects.get(module__code=CODE).started_at

    just_in_time = _status(now=last + timedelta(seconds=INTERVAL + grace - 1))
    late = _status(now=last + timedelta(seconds=INTERVAL + grace + 1))

    assert just_in_time.status == "online"
    assert late.status == "offline" and late.overdue and not late.is_scheduler_running


def test_before_its_first_report_it_is_unknown_then_offline_once_overdue(key: str) -> None:
    registered = ExternalModule.objects.get(module__code=CODE).registered_at

    assert _status(now=registered + timedelta(seconds=60)).status == "unknown"
    overdue = registered + timedelta(seconds=INTERVAL + settings.SCHEDULER_GRACE_SECONDS + 1)
    assert _status(now=overdue).status == "offline"


def test_failing_reports_degrade_it_like_any_module(key: str) -> None:
    client = _module_client(key)
    for minutes in range(1, 9):
        client.post(RUNS, _success(minutes_ago=minutes), format="json")
    for minutes in range(9, 11):
        client.post(
            RUNS,
            {**_success(minutes_ago=minutes), "outcome": "failure", "error_message": "Upstream 502"},
            format="json",
        )

    module = _status()

    assert module.status == "degraded" and module.success_rate == pytest.approx(0.8)
    assert module.last_error == "Upstream 502"


def test_an_external_module_costs_no_extra_query_per_module(key: str, django_assert_max_num_queries) -> None:
    for code in ("20.2", "20.3", "20.4"):
        _register(code)
    with django_assert_max_num_queries(12):
        health.evaluate()


def test_the_cycle_alerts_on_an_overdue_external_module_without_restarting_it(key: str, meta_sandbox) -> None:
    ExternalModule.objects.update(registered_at=timezone.now() - timedelta(days=1))

    run = commander.health_cycle("test")

    assert run.module_health_details[CODE] == "offline"
    assert Alert.objects.filter(key=f"module:{CODE}:offline", resolved_at__isnull=True).exists()
    assert not RecoveryAttempt.objects.filter(module_code=CODE).exclude(action="alert_admin").exists()


def test_an_external_module_cannot_be_restarted_by_command_or_recovery(key: str) -> None:
    operator_client = _staff("olivia", "Tower operators")
    command = operator_client.post(
        "/meta/control-tower/command", {"command_type": "restart_module", "target_modules": [CODE]}, format="json"
    )
    reset = operator_client.post(
        "/meta/control-tower/recovery", {"module_code": CODE, "action": "reset_module"}, format="json"
    )

    assert command.status_code == 409 and "outside this codebase" in command.json()["detail"]
    assert reset.status_code == 409 and "outside this codebase" in reset.json()["detail"]
