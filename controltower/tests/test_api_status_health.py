"""GET status (cheap, from the latest persisted check) and GET health (live, writes nothing)."""

from __future__ import annotations

from copy import deepcopy
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from jsonschema import Draft7Validator
from rest_framework.test import APIClient

from controltower import commander
from controltower.api.views import status_payload
from controltower.models import ControlTowerRun, SystemHealthLog, SystemStatus, TowerState
from meta_modules import graph
from meta_modules.models import MetaModule, ModuleRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

STATUS, HEALTH = "/meta/control-tower/status", "/meta/control-tower/health"
# The spec's GET status example, key for key.
SPEC_STATUS_KEYS = {
    "is_operational",
    "emergency_stop_active",
    "last_health_check",
    "system_status",
    "total_modules_monitored",
    "online_modules",
    "degraded_modules",
    "offline_modules",
    "mode",
}
HALT_KEYS = {"halted_by", "halted_at", "halt_reason"}
# The spec's meta_system_health_logs columns that describe one module (id, checked_at and mode
# belong to the stored row: the report carries them once, as timestamp and mode).
SPEC_LOG_COLUMNS = {
    "module_name",
    "module_full_name",
    "health_status",
    "success_rate",
    "avg_execution_time_ms",
    "error_count_24h",
    "api_calls_24h",
    "is_scheduler_running",
    "is_db_healthy",
    "is_api_healthy",
    "last_run",
    "next_run",
    "last_error",
    "last_error_time",
    "recovery_attempts",
    "last_recovery_action",
    "recovery_successful",
    "db_connections",
    "memory_usage_mb",
    "cpu_usage_pct",
}


@pytest.fixture
def client() -> APIClient:
    api = APIClient()
    api.force_login(User.objects.create_user("staff", is_staff=True))
    return api


def _runs(code: str, successes: int, failures: int = 0) -> None:
    module = MetaModule.objects.get(code=code)
    now = timezone.now()
    ModuleRun.objects.bulk_create(
        [
            ModuleRun(
                module=module,
                started_at=now - timedelta(minutes=i + 1),
                finished_at=now,
                duration_ms=100,
                cpu_ms=40,
                peak_rss_mb=80.5,
                outcome=ModuleRun.Outcome.SUCCESS,
                api_calls=2,
            )
            for i in range(successes)
        ]
        + [
            ModuleRun(
                module=module,
                started_at=now - timedelta(minutes=successes + i + 1),
                finished_at=now,
                duration_ms=300,
                outcome=ModuleRun.Outcome.FAILURE,
                error_message=f"boom {i}",
            )
            for i in range(failures)
        ]
    )


@pytest.fixture
def mixed_stack() -> None:
    """15 modules healthy, 10.5 failing 40 % of its runs (OFFLINE), 10.14 never ran (UNKNOWN)."""
    for module in MetaModule.objects.exclude(code__in=["10.5", "10.14"]):
        _runs(module.code, successes=10)
    _runs("10.5", successes=6, failures=4)


def _openapi_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` → JSON Schema's null type, so responses can be checked."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _openapi_to_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if "type" in node:
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def _assert_matches_schema(body: dict[str, Any], path: str) -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    ref = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    document = _openapi_to_json_schema({"allOf": [deepcopy(ref)], "components": schema["components"]})
    errors = sorted(Draft7Validator(document).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


# --- status ----------------------------------------------------------------------------------------


def test_status_before_any_check(client: APIClient) -> None:
    body = client.get(STATUS).json()

    assert set(body) >= SPEC_STATUS_KEYS and not HALT_KEYS & set(body)
    # Evaluated live until the first check: a fresh install is starting (test_starting.py).
    assert body["last_health_check"] is None and body["system_status"] == "starting"
    assert body["total_modules_monitored"] == MetaModule.objects.count() == 17
    assert body["online_modules"] == body["degraded_modules"] == body["offline_modules"] == 0
    assert body["unknown_modules"] == 17 and body["stopped_modules"] == 0
    assert body["is_operational"] is True and body["emergency_stop_active"] is False and body["mode"] == "stub"
    _assert_matches_schema(body, STATUS)


def test_status_counts_are_those_of_the_latest_persisted_check(client: APIClient, meta_sandbox, mixed_stack) -> None:
    commander.health_cycle("test")
    ControlTowerRun.objects.create(
        run_type="health_check",
        state="skipped",
        executed_by="test",
        mode="stub",
        executed_at=timezone.now() + timedelta(minutes=1),
    )  # not a check: ignored
    run = ControlTowerRun.objects.get(state="completed")

    body = client.get(STATUS).json()

    assert set(body) >= SPEC_STATUS_KEYS
    assert body["total_modules_monitored"] == run.total_modules_checked == 17
    assert (
        (body["online_modules"], body["degraded_modules"], body["offline_modules"])
        == (run.online_modules, run.degraded_modules, run.offline_modules)
        == (15, 0, 1)
    )
    assert body["unknown_modules"] == 1 and body["stopped_modules"] == 0
    assert body["last_health_check"] == run.executed_at.isoformat().replace("+00:00", "Z")
    assert body["system_status"] == run.system_status == TowerState.get().system_status == SystemStatus.CRITICAL
    assert body["is_operational"] is False
    _assert_matches_schema(body, STATUS)


def test_status_is_operational_when_healthy_or_degraded(client: APIClient, meta_sandbox) -> None:
    for module in MetaModule.objects.exclude(code="10.14"):
        _runs(module.code, successes=10)
    _runs("10.14", successes=9, failures=1)  # 90 %: DEGRADED
    commander.health_cycle("test")

    body = client.get(STATUS).json()

    assert body["system_status"] == "degraded"
    assert body["is_operational"] is True and body["online_modules"] == 16 and body["degraded_modules"] == 1


def test_status_while_halted_says_who_when_and_why(client: APIClient) -> None:
    halted_at = timezone.now()
    TowerState.get()
    TowerState.objects.filter(pk=1).update(
        emergency_stop_active=True,
        system_status=SystemStatus.EMERGENCY_STOP,
        halted_by="alice",
        halted_at=halted_at,
        halt_reason="Budget anomaly",
    )

    body = client.get(STATUS).json()

    assert body["emergency_stop_active"] is True and body["is_operational"] is False
    assert body["system_status"] == "emergency_stop"
    assert (body["halted_by"], body["halt_reason"]) == ("alice", "Budget anomaly")
    assert body["halted_at"] == halted_at.isoformat().replace("+00:00", "Z")
    _assert_matches_schema(body, STATUS)


def test_status_shows_the_access_tier_meta_reported_per_account_as_of_the_latest_check(
    client: APIClient, meta_sandbox, settings
) -> None:
    first, second = (a["id"] for a in meta_sandbox.state()["accounts"])
    settings.META_AD_ACCOUNT_IDS = [first, second]
    meta_sandbox.faults(tier={first: "development"}, usage_headers="buc_only")
    graph.client().get(first, {"fields": "id"}, first)  # a call learns the tier from Meta's headers

    commander.health_cycle("test")
    body = client.get(STATUS).json()

    assert body["meta_access_tiers"] == {first: "development_access", second: ""}  # the second: not called yet
    _assert_matches_schema(body, STATUS)


def test_status_costs_three_queries(meta_sandbox, mixed_stack) -> None:
    commander.health_cycle("test")

    with CaptureQueriesContext(connection) as queries:
        status_payload()

    assert len(queries) == 3  # the state, the latest health check, the latest readiness check


# --- health ----------------------------------------------------------------------------------------


def test_health_reports_every_module_with_every_spec_column(client: APIClient, meta_sandbox, mixed_stack) -> None:
    commander.health_cycle("test")  # so the probe results are filled in too

    body = client.get(HEALTH).json()

    assert {
        "timestamp",
        "mode",
        "system_status",
        "emergency_stop_active",
        "modules",
        "system_metrics",
        "recommendations",
        "alerts",
    } <= set(body)
    assert [m["module_name"] for m in body["modules"]] == list(MetaModule.objects.values_list("code", flat=True))
    for module in body["modules"]:
        assert set(module) >= SPEC_LOG_COLUMNS, SPEC_LOG_COLUMNS - set(module)
    roas = next(m for m in body["modules"] if m["module_name"] == "10.5")
    # The cycle's auto-recovery restarted the OFFLINE module and ran its job once more (a success).
    assert roas["health_status"] == "offline" and roas["success_rate"] == pytest.approx(7 / 11)
    assert roas["error_count_24h"] == roas["failures_24h"] == 4 and roas["last_error"] == "boom 0"
    assert roas["api_calls_24h"] == 12 and roas["memory_usage_mb"] >= 80.5  # the highest peak, incl. the recovery run
    assert (roas["recovery_attempts"], roas["last_recovery_action"], roas["recovery_successful"]) == (
        1,
        "restart_scheduler",
        True,
    )
    assert body["system_status"] == "critical" and body["mode"] == "stub" and body["emergency_stop_active"] is False
    _assert_matches_schema(body, HEALTH)


def test_health_system_metrics_and_findings(client: APIClient, meta_sandbox, mixed_stack) -> None:
    commander.health_cycle("test")
    probes = TowerState.get().probes

    body = client.get(HEALTH).json()

    metrics = body["system_metrics"]
    assert metrics["total_modules"] == 17
    assert (metrics["online_modules"], metrics["offline_modules"], metrics["unknown_modules"]) == (15, 1, 1)
    assert metrics["total_errors_24h"] == 4 and metrics["total_api_calls_24h"] == 15 * 10 * 2 + 6 * 2
    assert metrics["database"]["healthy"] is True and metrics["beat_alive"] and metrics["workers_alive"]
    # The probe results pass through whole: the schema describes every key they have.
    assert (metrics["broker"], metrics["meta_api"], metrics["workers_ping"]) == (
        probes["broker"],
        probes["meta_api"],
        probes["workers"],
    )
    assert metrics["meta_api"]["ok"] is True
    assert "module:10.5:offline" in {alert["key"] for alert in body["alerts"]}
    assert any(r["module"] == "10.5" for r in body["recommendations"])


def test_health_before_any_cycle_has_null_probes(client: APIClient) -> None:
    body = client.get(HEALTH).json()

    metrics = body["system_metrics"]
    assert metrics["broker"] is None and metrics["meta_api"] is None and metrics["workers_ping"] is None
    assert {m["health_status"] for m in body["modules"]} == {"unknown"}
    _assert_matches_schema(body, HEALTH)


def test_health_writes_nothing(client: APIClient, meta_sandbox, mixed_stack) -> None:
    commander.health_cycle("test")
    before = (ControlTowerRun.objects.count(), SystemHealthLog.objects.count(), TowerState.get().updated_at)

    with CaptureQueriesContext(connection) as queries:
        assert client.get(HEALTH).status_code == 200

    assert (ControlTowerRun.objects.count(), SystemHealthLog.objects.count(), TowerState.get().updated_at) == before
    writes = [q["sql"] for q in queries if q["sql"].lstrip().split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}]
    assert not [sql for sql in writes if "django_session" not in sql]
