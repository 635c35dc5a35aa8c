"""First run is STARTING, not CRITICAL: the start-up rule, liveness before the first heartbeat,
and GET status, the dashboard and the alerts telling the same story for every system status."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from controltower import commander, cycle, health, reports
from controltower.management.commands.watchdog import check_once
from controltower.models import Alert, ControlTowerRun, Notification, SystemHealthLog, SystemStatus, TowerState
from controltower.models import ModuleStatus as M
from controltower.models import SystemStatus as S
from controltower.rules import (
    FirstRuns,
    Liveness,
    first_run_overdue,
    first_runs,
    liveness,
    system_status,
    watchdog_should_run,
)
from meta_modules.models import MetaModule, ModuleRun
from tests.support import admin_client

STATUS = "/meta/control-tower/status"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


# --- pure rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statuses, halted, expected",
    [
        ([M.UNKNOWN] * 17, False, S.STARTING),
        ([M.ONLINE] * 3 + [M.UNKNOWN] * 14, False, S.STARTING),
        ([M.ONLINE] * 15 + [M.UNKNOWN, M.STOPPED], False, S.STARTING),
        ([M.ONLINE] * 16 + [M.STOPPED], False, S.HEALTHY),  # a module stopped on purpose needs no first run
        ([M.UNKNOWN] * 16 + [M.OFFLINE], False, S.CRITICAL),  # a real outage is not hidden by the start-up
        ([M.UNKNOWN] * 16 + [M.DEGRADED], False, S.DEGRADED),
        ([M.UNKNOWN] * 14 + [M.DEGRADED] * 3, False, S.CRITICAL),
        ([M.UNKNOWN] * 17, True, S.EMERGENCY_STOP),  # an emergency stop wins over STARTING
    ],
)
def test_it_says_starting_while_a_module_waits_for_its_first_run(statuses: list[M], halted: bool, expected: S) -> None:
    assert system_status(statuses, halted) == expected


@pytest.mark.parametrize(
    "has_run, since, expected",
    [
        (False, T0 - 30 * MINUTE, False),  # at the bound: still starting
        (False, T0 - 30 * MINUTE - timedelta(seconds=1), True),
        (True, T0 - 300 * MINUTE, False),  # it ran: the start-up rule has nothing to say
    ],
)
def test_it_bounds_the_wait_for_a_first_run(has_run: bool, since: datetime, expected: bool) -> None:
    assert first_run_overdue(has_run, since, 30 * MINUTE, T0) is expected


def test_it_counts_first_runs_of_the_modules_expected_to_run() -> None:
    # (stopped on purpose, has finished a run)
    modules = [(False, True)] * 3 + [(False, False)] * 13 + [(True, False)]

    assert first_runs(modules) == FirstRuns(run=3, expected=16)


@pytest.mark.parametrize(
    "seen, watched_since, expected",
    [
        (T0 - MINUTE, T0 - 60 * MINUTE, Liveness.ALIVE),
        (T0 - 5 * MINUTE, None, Liveness.ALIVE),  # at the stale bound
        (T0 - 6 * MINUTE, T0 - MINUTE, Liveness.DEAD),  # seen once, long ago: a newer watch does not excuse it
        (None, T0 - MINUTE, Liveness.WAITING),  # fresh install
        (None, T0 - 5 * MINUTE, Liveness.WAITING),
        (None, T0 - 6 * MINUTE, Liveness.DEAD),  # no first heartbeat within the stale limit
        (None, None, Liveness.DEAD),  # nothing sends a heartbeat
    ],
)
def test_it_waits_for_the_first_heartbeat_before_calling_beat_or_workers_dead(
    seen: datetime | None, watched_since: datetime | None, expected: Liveness
) -> None:
    assert liveness(seen, watched_since, 5 * MINUTE, T0) == expected


@pytest.mark.parametrize(
    "now, recorded, expected",
    [
        (S.HEALTHY, S.STARTING, True),  # the start-up ended: record it now, not in an hour
        (S.CRITICAL, S.STARTING, True),
        (S.STARTING, S.STARTING, False),
        (S.HEALTHY, S.HEALTHY, False),
        (S.STARTING, None, False),  # before the first check GET status evaluates live; Beat runs the first check
    ],
)
def test_the_watchdog_records_the_end_of_the_start_up(now: S, recorded: S | None, expected: bool) -> None:
    assert watchdog_should_run(T0, T0 - MINUTE, 60 * MINUTE, 10 * MINUTE, set(), set(), now, recorded) is expected


# --- a fresh install --------------------------------------------------------------------------------


fresh_install = pytest.mark.usefixtures("synced", "meta_sandbox")


def _ran(codes: Iterable[str]) -> None:
    now = timezone.now()
    ModuleRun.objects.bulk_create(
        ModuleRun(module=m, started_at=now - MINUTE, finished_at=now, duration_ms=5, outcome=ModuleRun.Outcome.SUCCESS)
        for m in MetaModule.objects.filter(code__in=list(codes))
    )


def _runs(code: str, successes: int, failures: int) -> None:
    module = MetaModule.objects.get(code=code)
    now = timezone.now()
    ModuleRun.objects.bulk_create(
        ModuleRun(
            module=module,
            started_at=now - (i + 2) * MINUTE,
            finished_at=now,
            duration_ms=5,
            outcome=ModuleRun.Outcome.SUCCESS if i < successes else ModuleRun.Outcome.FAILURE,
            error_message="" if i < successes else "boom",
        )
        for i in range(successes + failures)
    )


def _all_codes() -> list[str]:
    return list(MetaModule.objects.values_list("code", flat=True))


def _dashboard(client: Client) -> str:
    """The text of the dashboard's status banner (#system-status .status-text)."""
    page = client.get("/").content.decode()
    banner = re.search(r'<section id="system-status" class="banner st-(\w+)"', page)
    text = re.search(r'<strong class="status-text">(.*?)</strong>', page, re.S)
    assert banner and text
    return f"{banner.group(1)}|{text.group(1).strip()}"


def _status(client: Client) -> dict[str, Any]:
    return client.get(STATUS).json()


@pytest.fixture
def staff() -> Client:
    return admin_client("viewer")


@pytest.mark.django_db
@fresh_install
def test_a_fresh_install_reads_starting_in_the_api_and_on_the_dashboard(staff: Client) -> None:
    body = _status(staff)

    assert (body["system_status"], body["modules_run"], body["modules_expected"]) == ("starting", 0, 17)
    assert _dashboard(staff) == "starting|STARTING — 0 of 17 modules have run"


@pytest.mark.django_db
@fresh_install
def test_recorded_runs_move_the_count_until_all_have_run_and_it_is_healthy(staff: Client) -> None:
    _ran(["10.1", "10.2", "10.3"])
    assert _dashboard(staff) == "starting|STARTING — 3 of 17 modules have run"
    commander.health_cycle("scheduler")  # the first check, during the start-up
    _ran(["10.4", "10.5"])

    body = _status(staff)  # the latest check said STARTING: GET status follows the runs live
    assert (body["system_status"], body["modules_run"], body["modules_expected"]) == ("starting", 5, 17)

    _ran(set(_all_codes()) - {"10.1", "10.2", "10.3", "10.4", "10.5"})
    assert _dashboard(staff).startswith("healthy|HEALTHY")
    assert _status(staff)["system_status"] == "healthy"
    run = check_once()  # the watchdog records the end of the start-up at once
    assert run is not None and run.system_status == "healthy" and (run.modules_run, run.modules_expected) == (17, 17)
    body = _status(staff)  # from the recorded check again
    assert (body["system_status"], body["modules_run"], body["modules_expected"]) == ("healthy", 17, 17)
    assert body["last_health_check"] == run.executed_at.isoformat().replace("+00:00", "Z")


@pytest.mark.django_db
@fresh_install
def test_a_module_stopped_on_purpose_is_not_waited_for(staff: Client) -> None:
    MetaModule.objects.filter(code="10.17").update(desired_state=MetaModule.DesiredState.STOPPED)
    _ran(set(_all_codes()) - {"10.17", "10.16"})

    assert _dashboard(staff) == "starting|STARTING — 15 of 16 modules have run"
    _ran(["10.16"])
    assert _dashboard(staff).startswith("healthy|")


@pytest.mark.django_db
@fresh_install
def test_a_cycle_during_the_start_up_raises_no_alert_and_sends_nothing(staff: Client, settings, http_receiver) -> None:
    settings.ALERT_WEBHOOK_URL = f"{http_receiver.url}/hook"
    _ran(["10.1", "10.2"])

    run = commander.health_cycle("scheduler")

    assert run.system_status == "starting" and (run.modules_run, run.modules_expected) == (2, 17)
    assert run.alerts == [] and not Alert.objects.exists() and not Notification.objects.exists()
    assert http_receiver.received == []
    assert not any(r["severity"] == "critical" for r in run.recommendations)


@pytest.mark.django_db
@fresh_install
def test_a_start_up_that_never_completes_turns_critical_after_the_grace(staff: Client, settings) -> None:
    settings.STARTING_GRACE_MINUTES = 30
    _ran(set(_all_codes()) - {"10.6", "10.12"})
    MetaModule.objects.filter(code__in=["10.6", "10.12"]).update(created_at=timezone.now() - 29 * MINUTE)
    assert health.evaluate().system_status == "starting"

    MetaModule.objects.filter(code__in=["10.6", "10.12"]).update(created_at=timezone.now() - 31 * MINUTE)
    MetaModule.objects.filter(code="10.12").update(desired_state_at=timezone.now())  # just started: a new grace
    assert {m.code: m.status for m in health.evaluate().modules if m.code in ("10.6", "10.12")} == {
        "10.6": "offline",
        "10.12": "unknown",
    }

    run = commander.health_cycle("scheduler")

    assert run.system_status == "critical"
    critical = Alert.objects.get(key="system:critical")
    assert critical.detail == "OFFLINE: 10.6 Optimization Loop."
    assert Alert.objects.get(key="module:10.6:offline").detail.startswith("no run has finished within 30 min")


@pytest.mark.django_db
@fresh_install
def test_liveness_reads_waiting_for_the_first_heartbeat_on_a_fresh_install(staff: Client) -> None:
    TowerState.set(worker_heartbeat_at=None)  # the synced fixture sent one: this install has none yet

    page = staff.get("/").content.decode()
    metrics = staff.get("/meta/control-tower/health").json()["system_metrics"]

    for element in ("beat-liveness", "worker-liveness"):
        cell = re.search(rf'<dd id="{element}">(.*?)</dd>', page, re.S).group(1)
        assert "waiting for the first heartbeat" in cell and "ALIVE" not in cell
    assert metrics["beat_liveness"] == metrics["workers_liveness"] == "waiting_for_first_heartbeat"
    assert metrics["beat_alive"] and metrics["workers_alive"]  # not dead yet: no infrastructure alert

    cycle.heartbeat()  # Beat has not saved its own record of sending it yet (it does every few minutes)
    page = staff.get("/").content.decode()
    worker = re.search(r'<dd id="worker-liveness">(.*?)</dd>', page, re.S).group(1)
    beat = re.search(r'<dd id="beat-liveness">(.*?)</dd>', page, re.S).group(1)
    assert "ALIVE" in worker and "last heartbeat" in worker
    assert "ALIVE" in beat and "last sent" in beat and "<time" in beat, beat  # when, never "last sent —"


# --- status, dashboard and alerts agree --------------------------------------------------------------


def _healthy() -> None:
    _ran(_all_codes())


def _degraded() -> None:  # 10.4: 9 of 10 runs succeed (90 %)
    _healthy()
    _runs("10.4", successes=8, failures=1)


def _critical() -> None:  # 10.5 OFFLINE: 1 of 4 runs succeeds
    _healthy()
    _runs("10.5", successes=0, failures=3)


def _halted() -> None:
    now = timezone.now()
    TowerState.set(
        emergency_stop_active=True,
        system_status=SystemStatus.EMERGENCY_STOP,
        halted_by="alice",
        halted_at=now,
        halt_reason="drill",
        last_stop_at=now - MINUTE,
        halt_swept_at=now,
    )


SITUATIONS = {
    "starting": lambda: None,
    "healthy": _healthy,
    "degraded": _degraded,
    "critical": _critical,
    "emergency_stop": _halted,
}


@pytest.mark.django_db
@fresh_install
@pytest.mark.parametrize("expected", list(SITUATIONS))
def test_status_dashboard_and_alert_text_agree(expected: str, staff: Client) -> None:
    SITUATIONS[expected]()
    commander.health_cycle("scheduler")

    body = _status(staff)
    banner, text = _dashboard(staff).split("|")
    system_alerts = list(Alert.objects.filter(resolved_at__isnull=True, key__startswith="system:"))
    module_alerts = {
        a.module_code: a for a in Alert.objects.filter(resolved_at__isnull=True, key__startswith="module:")
    }

    assert body["system_status"] == banner == expected
    assert text.startswith(expected.upper())
    assert ("of 17 modules have run" in text) is (expected == "starting")
    if expected == "critical":
        [alert] = system_alerts
        assert "CRITICAL" in alert.title and "OFFLINE: 10.5 ROAS Engine" in alert.detail
        assert "none" not in alert.detail and body["offline_modules"] == 1 and set(module_alerts) == {"10.5"}
    else:
        assert system_alerts == []
    if expected == "degraded":
        assert set(module_alerts) == {"10.4"} and "DEGRADED" in module_alerts["10.4"].title
        assert body["degraded_modules"] == 1
    if expected in ("starting", "healthy", "emergency_stop"):
        assert module_alerts == {}
    assert not Alert.objects.filter(detail__contains="none; degraded").exists()


# --- history: starting is neither up nor down --------------------------------------------------------


@pytest.mark.django_db
def test_the_report_leaves_starting_time_out_of_uptime_and_availability() -> None:
    def check(hours: int, system: str, module: str) -> None:
        run = ControlTowerRun.objects.create(
            run_type="health_check",
            system_status=system,
            executed_by="scheduler",
            executed_at=T0 + timedelta(hours=hours),
            mode="stub",
        )
        SystemHealthLog.objects.create(
            run=run,
            module_name="10.4",
            module_full_name="Insights Collector",
            health_status=module,
            checked_at=run.executed_at,
            mode="stub",
        )

    check(0, "starting", "unknown")  # 0–2 h: starting
    check(2, "healthy", "online")  # 2–5 h: up
    check(5, "critical", "offline")  # 5–6 h: down

    period = reports.Period(T0, T0 + timedelta(hours=6))
    uptime, availability = reports.system_uptime(period), reports.module_availability(period, {})

    assert uptime["uptime_pct"] == pytest.approx(75.0)  # 3 h up of 4 h up or down
    assert {row["status"]: row["seconds"] for row in uptime["distribution"]}["starting"] == pytest.approx(2 * 3600)
    [module] = availability["modules"]
    assert module["availability_pct"] == pytest.approx(75.0) and module["counted_seconds"] == pytest.approx(4 * 3600)


@pytest.mark.django_db
def test_availability_of_modules_online_only_briefly_after_their_start_stays_within_100_pct() -> None:
    for hours, status in ((0, "unknown"), (2, "online")):
        run = ControlTowerRun.objects.create(
            run_type="health_check",
            system_status="healthy",
            executed_by="scheduler",
            executed_at=T0 + timedelta(hours=hours),
            mode="stub",
        )
        SystemHealthLog.objects.bulk_create(
            SystemHealthLog(
                run=run,
                module_name=code,
                module_full_name=code,
                health_status=status,
                checked_at=run.executed_at,
                mode="stub",
            )
            for code in ("10.1", "10.2", "10.3")
        )

    # 1.0004 s ONLINE each: summing the rounded per-module times gave 100.04 %.
    availability = reports.module_availability(reports.Period(T0, T0 + timedelta(hours=2, seconds=1.0004)), {})

    assert availability["overall_pct"] == 100.0
    assert [m["availability_pct"] for m in availability["modules"]] == [100.0] * 3


@pytest.mark.django_db
@fresh_install
def test_metrics_say_starting_after_a_check_during_the_start_up(settings) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "scrape-" + "s" * 40, []
    commander.health_cycle("scheduler")

    exposition = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}").content.decode()

    assert 'tower_system_status{status="starting"} 1.0' in exposition
    assert 'tower_system_status{status="critical"} 0.0' in exposition
