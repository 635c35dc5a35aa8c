"""runs/, health-logs/, modules/: filters (400 on a bad value), pagination, lookup by code, module actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from controltower.models import ControlTowerRun, ExternalModule, SystemHealthLog, TowerState
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from meta_modules.models import MetaModule, ModuleRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

BASE = "/meta/control-tower"


def _client(username: str, group: str) -> APIClient:
    user = User.objects.create_user(username, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def viewer() -> APIClient:
    return _client("victor", VIEWERS_GROUP)


@pytest.fixture
def operator() -> APIClient:
    return _client("olivia", OPERATORS_GROUP)


def _run(minutes_ago: int, **fields) -> ControlTowerRun:
    defaults = {"run_type": "health_check", "system_status": "healthy", "executed_by": "scheduler", "mode": "stub"}
    return ControlTowerRun.objects.create(
        executed_at=timezone.now() - timedelta(minutes=minutes_ago), **{**defaults, **fields}
    )


def _log(code: str, minutes_ago: int, status: str = "online", run: ControlTowerRun | None = None) -> SystemHealthLog:
    return SystemHealthLog.objects.create(
        module_name=code,
        module_full_name=code,
        health_status=status,
        run=run,
        checked_at=timezone.now() - timedelta(minutes=minutes_ago),
        mode="stub",
    )


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


# --- runs/ ----------------------------------------------------------------------------------------


@pytest.fixture
def runs() -> dict[str, ControlTowerRun]:
    return {
        "check": _run(10),
        "degraded": _run(70, system_status="degraded"),
        "skipped": _run(80, state="skipped"),
        "stop": _run(100, run_type="command", command_type="stop_all", executed_by="olivia"),
        "halt": _run(200, run_type="emergency_stop", command_type="emergency_stop", system_status="emergency_stop"),
        "old": _run(60 * 24 * 3),
    }


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, ["check", "degraded", "skipped", "stop", "halt", "old"]),
        ({"run_type": "health_check"}, ["check", "degraded", "skipped", "old"]),
        ({"system_status": "degraded"}, ["degraded"]),
        ({"command_type": "stop_all"}, ["stop"]),
        ({"state": "skipped"}, ["skipped"]),
        ({"run_type": "emergency_stop", "system_status": "emergency_stop"}, ["halt"]),
        ({"ordering": "executed_at"}, ["old", "halt", "stop", "skipped", "degraded", "check"]),
    ],
)
def test_runs_filters_and_ordering(viewer: APIClient, runs: dict, params: dict, expected: list[str]) -> None:
    assert _ids(viewer.get(f"{BASE}/runs", params)) == [str(runs[name].pk) for name in expected]


def test_runs_since_and_until_bound_executed_at(viewer: APIClient, runs: dict) -> None:
    now = timezone.now()
    params = {"since": (now - timedelta(minutes=150)).isoformat(), "until": (now - timedelta(minutes=60)).isoformat()}

    assert _ids(viewer.get(f"{BASE}/runs/", params)) == [str(runs[n].pk) for n in ("degraded", "skipped", "stop")]


def test_runs_are_paginated_by_page_number(viewer: APIClient) -> None:
    created = [_run(minutes) for minutes in range(5)]

    first = viewer.get(f"{BASE}/runs", {"page_size": 2}).json()
    last = viewer.get(f"{BASE}/runs", {"page_size": 2, "page": 3}).json()

    assert first["count"] == 5 and first["next"] and first["previous"] is None
    assert [r["id"] for r in first["results"]] == [str(r.pk) for r in created[:2]]
    assert [r["id"] for r in last["results"]] == [str(created[4].pk)] and last["next"] is None
    assert viewer.get(f"{BASE}/runs", {"page": 4, "page_size": 2}).status_code == 404  # past the end


@pytest.mark.parametrize(
    "params, field",
    [
        ({"run_type": "coffee_break"}, "run_type"),
        ({"system_status": "fine"}, "system_status"),
        ({"command_type": "rm_rf"}, "command_type"),
        ({"state": "sleeping"}, "state"),
        ({"since": "last tuesday"}, "since"),
        ({"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "since"),
        ({"ordering": "reason"}, "ordering"),
        ({"page_size": 201}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": "two"}, "page"),
    ],
)
def test_runs_bad_filter_values_are_400(viewer: APIClient, params: dict, field: str) -> None:
    response = viewer.get(f"{BASE}/runs", params)

    assert response.status_code == 400 and field in response.json()


# Found by schemathesis: DRF reads a QueryDict like a form, so an empty value, a misspelt name
# or the first of two values was dropped silently, answering an unfiltered page.
@pytest.mark.parametrize(
    "query, field",
    [
        ("until=", "until"),
        ("system_status=", "system_status"),
        ("since=2025-01-01T00:00:00Z&since=2025-02-01T00:00:00Z", "since"),
        ("sytem_status=healthy", "sytem_status"),
        ("command_type=stop_all%00", "command_type"),
    ],
)
def test_runs_query_parameters_are_declared_given_once_and_not_empty(
    viewer: APIClient, runs: dict, query: str, field: str
) -> None:
    response = viewer.get(f"{BASE}/runs?{query}")

    assert response.status_code == 400 and field in response.json(), response.content


def test_an_unknown_api_path_is_a_json_404_after_authentication(viewer: APIClient) -> None:
    # Found by schemathesis: runs/0.5 (not a UUID) got Django's HTML page, and on PostgreSQL a NUL
    # in a module code reached the database (a 500).
    for path in ("runs/0.5", "health-logs/0.5", "modules/10.7%00", "modules/%00/runs", "no-such-thing"):
        response = viewer.get(f"{BASE}/{path}")
        assert response.status_code == 404 and response["Content-Type"] == "application/json", path
        assert response.json() == {"detail": "No such endpoint."}, path
    assert APIClient().get(f"{BASE}/runs/0.5").status_code == 401


def test_one_run_by_id(viewer: APIClient, runs: dict) -> None:
    body = viewer.get(f"{BASE}/runs/{runs['stop'].pk}").json()

    assert body["command_type"] == "stop_all" and body["executed_by"] == "olivia" and body["run_type"] == "command"
    assert viewer.get(f"{BASE}/runs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert viewer.get(f"{BASE}/runs/not-a-uuid").status_code == 404


def test_history_is_for_staff_only(runs: dict) -> None:
    member = APIClient()
    member.force_login(User.objects.create_user("member"))
    for path in ("runs", "health-logs", "modules", "modules/10.1"):
        assert APIClient().get(f"{BASE}/{path}").status_code == 401
        assert member.get(f"{BASE}/{path}").status_code == 403


# --- health-logs/ -----------------------------------------------------------------------------------


def test_health_logs_filters(viewer: APIClient) -> None:
    check = _run(5)
    recent = _log("10.5", 5, "offline", run=check)
    other = _log("10.6", 5, "online", run=check)
    older = _log("10.5", 65, "online")

    assert _ids(viewer.get(f"{BASE}/health-logs", {"module": "10.5"})) == [str(recent.pk), str(older.pk)]
    assert _ids(viewer.get(f"{BASE}/health-logs", {"health_status": "offline"})) == [str(recent.pk)]
    assert _ids(viewer.get(f"{BASE}/health-logs", {"run": str(check.pk), "ordering": "checked_at"})) in (
        [str(recent.pk), str(other.pk)],
        [str(other.pk), str(recent.pk)],
    )
    since = (timezone.now() - timedelta(minutes=30)).isoformat()
    assert set(_ids(viewer.get(f"{BASE}/health-logs", {"since": since}))) == {str(recent.pk), str(other.pk)}
    assert _ids(viewer.get(f"{BASE}/health-logs", {"until": since})) == [str(older.pk)]
    body = viewer.get(f"{BASE}/health-logs/{recent.pk}").json()
    assert body["run"] == str(check.pk) and body["health_status"] == "offline"


@pytest.mark.parametrize(
    "params, field",
    [
        ({"health_status": "sad"}, "health_status"),
        ({"run": "42"}, "run"),
        ({"module": "x" * 17}, "module"),
        ({"until": "soon"}, "until"),
    ],
)
def test_health_logs_bad_filter_values_are_400(viewer: APIClient, params: dict, field: str) -> None:
    response = viewer.get(f"{BASE}/health-logs", params)

    assert response.status_code == 400 and field in response.json()


# --- modules/ ----------------------------------------------------------------------------------------


def test_modules_list_with_the_latest_health_status_in_one_query(viewer: APIClient) -> None:
    _log("10.5", 120, "online"), _log("10.5", 10, "offline"), _log("10.6", 10, "online")
    PeriodicTask.objects.filter(meta_module__code="10.6").update(enabled=False)

    with CaptureQueriesContext(connection) as queries:
        body = viewer.get(f"{BASE}/modules").json()

    modules = {m["code"]: m for m in body["results"]}
    assert body["count"] == 17 and list(modules)[:3] == ["10.1", "10.2", "10.3"]  # registry order
    assert modules["10.5"]["health_status"] == "offline" and modules["10.6"]["health_status"] == "online"
    assert modules["10.1"]["health_status"] is None and modules["10.1"]["health_checked_at"] is None
    assert modules["10.14"]["interval_seconds"] == 300 and modules["10.14"]["scheduler_enabled"] is True
    assert modules["10.6"]["scheduler_enabled"] is False and modules["10.6"]["external"] is False
    assert modules["10.7"]["name"] == "Autonomous System" and modules["10.7"]["desired_state"] == "running"
    # Session, user and permissions, then the count and the page: never one query per module.
    assert sum("meta_modules" in q["sql"] for q in queries.captured_queries) == 2


def test_modules_filters(viewer: APIClient) -> None:
    _log("10.5", 10, "offline")
    MetaModule.objects.filter(code="10.9").update(desired_state="stopped")
    external = MetaModule.objects.create(code="20.1", name="Partner feed", function="Catalog sync", position=99)
    ExternalModule.objects.create(module=external, expected_interval_seconds=900)

    def codes(params: dict) -> list[str]:
        response = viewer.get(f"{BASE}/modules", params)
        assert response.status_code == 200, response.content
        return [m["code"] for m in response.json()["results"]]

    assert codes({"health_status": "offline"}) == ["10.5"]
    assert codes({"desired_state": "stopped"}) == ["10.9"]
    assert codes({"external": "true"}) == ["20.1"]
    assert len(codes({"external": "false"})) == 17
    assert viewer.get(f"{BASE}/modules", {"external": "maybe"}).status_code == 400
    assert viewer.get(f"{BASE}/modules?external=").status_code == 400  # was "both kinds"
    assert viewer.get(f"{BASE}/modules", {"desired_state": "asleep"}).status_code == 400
    item = viewer.get(f"{BASE}/modules/20.1").json()
    assert item["external"] is True and item["interval_seconds"] == 900 and item["scheduler_enabled"] is None


def test_module_detail_by_code(viewer: APIClient) -> None:
    module = MetaModule.objects.get(code="10.7")
    latest = _log("10.7", 5, "degraded")
    _log("10.7", 65, "online")
    _log("10.7", 60 * 30, "offline")  # older than 24 h
    _log("10.17", 1, "offline")  # another module with a similar code
    now = timezone.now()
    ModuleRun.objects.bulk_create(
        ModuleRun(module=module, started_at=now - timedelta(minutes=i), outcome="success") for i in range(25)
    )

    body = viewer.get(f"{BASE}/modules/10.7").json()

    assert body["code"] == "10.7" and body["health_status"] == "degraded"
    assert body["latest_health"]["id"] == str(latest.pk)
    assert [log["health_status"] for log in body["health_24h"]] == ["degraded", "online"]
    assert (
        len(body["recent_runs"]) == 20 and body["recent_runs"][0]["started_at"] > body["recent_runs"][-1]["started_at"]
    )
    assert viewer.get(f"{BASE}/modules/10.7/").status_code == 200  # the trailing slash is optional
    assert viewer.get(f"{BASE}/modules/99.9").status_code == 404


def test_module_detail_before_any_check(viewer: APIClient) -> None:
    body = viewer.get(f"{BASE}/modules/10.2").json()

    assert body["latest_health"] is None and body["health_24h"] == [] and body["recent_runs"] == []


def test_module_detail_keeps_the_latest_log_even_if_older_than_a_day(viewer: APIClient) -> None:
    old = _log("10.3", 60 * 48, "online")

    body = viewer.get(f"{BASE}/modules/10.3").json()

    assert body["latest_health"]["id"] == str(old.pk) and body["health_24h"] == []


# --- module actions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_module_actions_need_an_operator(viewer: APIClient, action: str) -> None:
    assert viewer.post(f"{BASE}/modules/10.5/{action}", {}, format="json").status_code == 403
    assert APIClient().post(f"{BASE}/modules/10.5/{action}", {}, format="json").status_code == 401
    assert not ControlTowerRun.objects.exists()


def test_stop_then_start_one_module(operator: APIClient) -> None:
    task = PeriodicTask.objects.get(meta_module__code="10.5")

    stopped = operator.post(f"{BASE}/modules/10.5/stop", {"reason": "Maintenance"}, format="json")

    assert stopped.status_code == 200, stopped.content
    body = stopped.json()
    assert body["success"] and body["command_type"] == "stop_all" and body["modules_affected"] == ["10.5"]
    module = MetaModule.objects.get(code="10.5")
    assert module.desired_state == "stopped" and module.desired_state_by == "olivia"
    assert not PeriodicTask.objects.get(pk=task.pk).enabled
    assert PeriodicTask.objects.filter(meta_module__code="10.6", enabled=True).exists()  # only this one
    assert ControlTowerRun.objects.get(pk=body["command_id"]).reason == "Maintenance"

    started = operator.post(f"{BASE}/modules/10.5/start", format="json").json()

    assert started["success"] and started["modules_affected"] == ["10.5"]
    assert (
        MetaModule.objects.get(code="10.5").desired_state == "running" and PeriodicTask.objects.get(pk=task.pk).enabled
    )


def test_restart_one_module_runs_its_job_now(operator: APIClient) -> None:
    body = operator.post(f"{BASE}/modules/10.5/restart", format="json").json()

    assert body["command_type"] == "restart_module" and body["modules_affected"] == ["10.5"]
    assert ModuleRun.objects.filter(module__code="10.5", trigger="command", outcome="success").count() == 1


def test_restart_is_refused_while_halted_and_for_an_external_module(operator: APIClient) -> None:
    external = MetaModule.objects.create(code="20.1", name="Partner feed", function="Catalog sync", position=99)
    ExternalModule.objects.create(module=external, expected_interval_seconds=900)

    refused = operator.post(f"{BASE}/modules/20.1/restart", format="json")

    assert refused.status_code == 409 and "outside this codebase" in refused.json()["detail"]
    TowerState.get()
    TowerState.objects.filter(pk=1).update(emergency_stop_active=True)
    halted = operator.post(f"{BASE}/modules/10.5/restart", format="json")
    assert halted.status_code == 409 and "Emergency stop active" in halted.json()["detail"]
    assert operator.post(f"{BASE}/modules/99.9/stop", format="json").status_code == 404


def test_module_action_reason_is_validated(operator: APIClient) -> None:
    response = operator.post(f"{BASE}/modules/10.5/stop", {"reason": "x" * 2001}, format="json")

    assert response.status_code == 400 and "reason" in response.json()
