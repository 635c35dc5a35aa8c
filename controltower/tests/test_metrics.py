"""GET /metrics: Prometheus text format read from the database, never open by default."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from controltower.metrics import address_allowed
from controltower.models import (
    Alert,
    CampaignHold,
    ControlTowerRun,
    RecoveryAttempt,
    SystemHealthLog,
    TowerState,
)
from meta_modules.models import MetaModule, ModuleRun

pytestmark = pytest.mark.django_db

TOKEN = "scrape-" + "s" * 40
EXPECTED = {
    "tower_system_status",
    "tower_emergency_stop_active",
    "tower_module_status",
    "tower_module_success_rate",
    "tower_module_errors_24h",
    "tower_module_last_run_age_seconds",
    "tower_campaigns_held",
    "tower_recovery_attempts_24h",
    "tower_health_cycle_duration_seconds",
    "tower_last_health_check_timestamp_seconds",
}


@pytest.fixture
def scrape_token(settings) -> str:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = TOKEN, []
    return TOKEN


def _scrape(token: str = TOKEN, **extra) -> dict[str, dict[tuple, float]]:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        family.name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        for family in text_string_to_metric_families(response.content.decode())
    }


@pytest.fixture
def tower() -> dict:
    """One persisted check (10.5 OFFLINE), a halt with its ledger, recoveries, an open alert, module runs."""
    now = timezone.now()
    modules = {
        code: MetaModule.objects.create(code=code, name=name, function="test", position=i)
        for i, (code, name) in enumerate([("10.5", "ROAS Engine"), ("10.6", "Optimization Loop")])
    }
    ControlTowerRun.objects.create(
        run_type="health_check",
        system_status="healthy",
        executed_at=now - timedelta(hours=2),
        executed_by="scheduler",
        mode="stub",
        execution_time_ms=900,
    )
    check = ControlTowerRun.objects.create(
        run_type="health_check",
        system_status="critical",
        executed_by="scheduler",
        executed_at=now - timedelta(minutes=5),
        mode="stub",
        execution_time_ms=1500,
    )
    ControlTowerRun.objects.create(
        run_type="health_check", state="skipped", executed_at=now, executed_by="s", mode="stub"
    )
    for code, status, rate, errors in (("10.5", "offline", 0.5, 4), ("10.6", "online", None, 0)):
        SystemHealthLog.objects.create(
            run=check,
            module_name=code,
            module_full_name=modules[code].name,
            mode="stub",
            health_status=status,
            success_rate=rate,
            error_count_24h=errors,
            api_calls_24h=7,
            checked_at=check.executed_at,
        )
    ModuleRun.objects.create(module=modules["10.5"], started_at=now - timedelta(minutes=30), outcome="failure")
    ModuleRun.objects.create(module=modules["10.5"], started_at=now - timedelta(minutes=1), outcome="skipped")
    halt = ControlTowerRun.objects.create(
        run_type="emergency_stop", system_status="emergency_stop", executed_by="alice", mode="stub"
    )
    for i, state in enumerate(["paused", "paused", "pending"]):
        CampaignHold.objects.create(
            halt_run=halt, stop_run=halt, campaign_id=str(i), account_id="act_1", prior_status="ACTIVE", state=state
        )
    TowerState.get()
    TowerState.objects.filter(pk=1).update(system_status="emergency_stop", emergency_stop_active=True, halt_run=halt)
    for outcome in ("succeeded", "succeeded", "failed"):
        RecoveryAttempt.objects.create(
            module_code="10.5",
            action="restart_scheduler",
            confidence=0.9,
            reason="x",
            executed_by="engine",
            outcome=outcome,
        )
    RecoveryAttempt.objects.create(
        module_code="10.5",
        action="restart_scheduler",
        confidence=0.9,
        reason="old",
        executed_by="engine",
        outcome="failed",
        started_at=now - timedelta(days=2),
    )
    Alert.objects.create(key="module:10.5:offline", severity="critical", title="x", module_code="10.5")
    return {"check": check, "now": now}


def test_metrics_parse_and_carry_the_tower_state(scrape_token: str, tower: dict) -> None:
    metrics = _scrape()

    assert set(metrics) >= EXPECTED
    assert metrics["tower_system_status"][(("status", "emergency_stop"),)] == 1
    assert metrics["tower_system_status"][(("status", "healthy"),)] == 0
    assert metrics["tower_emergency_stop_active"][()] == 1
    status = metrics["tower_module_status"]
    assert status[(("module", "10.5"), ("name", "ROAS Engine"), ("status", "offline"))] == 1
    assert status[(("module", "10.5"), ("name", "ROAS Engine"), ("status", "online"))] == 0
    assert status[(("module", "10.6"), ("name", "Optimization Loop"), ("status", "online"))] == 1
    assert metrics["tower_module_success_rate"] == {(("module", "10.5"),): 0.5}  # 10.6 has no runs: absent
    assert metrics["tower_module_errors_24h"][(("module", "10.5"),)] == 4
    # The skipped run does not count: the last real run began 30 minutes ago.
    assert metrics["tower_module_last_run_age_seconds"][(("module", "10.5"),)] == pytest.approx(1800, abs=60)
    assert (("module", "10.6"),) not in metrics["tower_module_last_run_age_seconds"]
    held = metrics["tower_campaigns_held"]
    assert (
        held[(("state", "paused"),)] == 2 and held[(("state", "pending"),)] == 1 and held[(("state", "resumed"),)] == 0
    )
    attempts = metrics["tower_recovery_attempts_24h"]
    assert attempts[(("action", "restart_scheduler"), ("module", "10.5"), ("outcome", "succeeded"))] == 2
    assert attempts[(("action", "restart_scheduler"), ("module", "10.5"), ("outcome", "failed"))] == 1
    assert metrics["tower_health_cycle_duration_seconds"][()] == 1.5
    checked_at = tower["check"].executed_at.timestamp()
    assert metrics["tower_last_health_check_timestamp_seconds"][()] == pytest.approx(checked_at)
    assert metrics["tower_alerts_open"][(("severity", "critical"),)] == 1


def test_before_any_check_there_are_no_check_figures(scrape_token: str) -> None:
    metrics = _scrape()

    assert metrics["tower_system_status"][(("status", "unknown"),)] == 1
    assert not {"tower_last_health_check_timestamp_seconds", "tower_module_status"} & set(metrics)


def test_a_scrape_costs_a_fixed_handful_of_queries(scrape_token: str, tower: dict) -> None:
    with CaptureQueriesContext(connection) as queries:
        _scrape()

    assert len(queries) <= 8


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Token {TOKEN}", f"Bearer {TOKEN}x"])
def test_refused_without_the_right_token(scrape_token: str, header: str | None) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    assert Client().get("/metrics", **extra).status_code == 403


def test_never_open_by_default(settings) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", []

    assert Client().get("/metrics").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_allowed_addresses_need_no_token(settings) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", ["10.0.0.0/8", "192.168.1.7"]

    assert Client(REMOTE_ADDR="10.20.30.40").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.168.1.7").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.168.1.8").get("/metrics").status_code == 403
    assert Client().get("/metrics").status_code == 403  # the test client's 127.0.0.1


def test_a_token_works_from_any_address_when_both_are_set(settings) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = TOKEN, ["10.0.0.0/8"]

    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 403


@pytest.mark.parametrize(
    "address, allowed, expected",
    [
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),  # IPv4 seen through a dual-stack socket
        ("2001:db8::1", ["2001:db8::/32"], True),
        ("11.1.2.3", ["10.0.0.0/8", "not-an-address"], False),
        ("", ["10.0.0.0/8"], False),
        ("10.1.2.3", [], False),
    ],
)
def test_address_allowed(address: str, allowed: list[str], expected: bool) -> None:
    assert address_allowed(address, allowed) is expected


def test_only_get(scrape_token: str) -> None:
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405
