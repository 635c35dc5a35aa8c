"""The cycle's infrastructure facts, its lock, the watchdog and retention."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from controltower import commander, cycle, health, retention
from controltower.locks import lease
from controltower.management.commands.watchdog import check_once
from controltower.models import ControlTowerRun, RunState, SystemHealthLog, TowerState
from controltower.schedules import HEALTH_CYCLE_TASK, HEARTBEAT_TASK
from meta_modules.models import MetaModule, ModuleRun
from meta_modules.registry import MODULES

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced", "meta_sandbox")]


def _healthy_stack() -> None:
    now = timezone.now()
    ModuleRun.objects.bulk_create(
        ModuleRun(
            module=m,
            started_at=now - timedelta(minutes=1),
            finished_at=now,
            duration_ms=5,
            outcome=ModuleRun.Outcome.SUCCESS,
        )
        for m in MetaModule.objects.all()
    )


def _age_heartbeats(by: timedelta) -> None:
    TowerState.objects.filter(pk=1).update(worker_heartbeat_at=timezone.now() - by)
    PeriodicTask.objects.filter(name=HEARTBEAT_TASK).update(
        last_run_at=timezone.now() - by, date_changed=timezone.now() - by
    )


def test_a_dead_beat_marks_every_scheduler_not_running(settings) -> None:
    _healthy_stack()
    _age_heartbeats(timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 5))

    report = health.evaluate()

    assert not report.infrastructure.beat_alive
    assert not any(m.is_scheduler_running for m in report.modules)
    assert report.system_status == "critical"


def test_beat_alive_without_workers_is_told_apart(settings) -> None:
    _healthy_stack()
    _age_heartbeats(timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 5))
    PeriodicTask.objects.filter(name=HEARTBEAT_TASK).update(last_run_at=timezone.now())  # Beat keeps sending

    run = commander.health_cycle("test")

    assert [e["key"] for e in run.errors_encountered] == ["infra:workers"]
    # Inhibition: one infrastructure alert, not seventeen module alerts.
    assert {a["key"] for a in run.alerts} == {"infra:workers", "system:critical"}
    assert any("Start a Celery worker" in r["message"] for r in run.recommendations)


def test_the_cycle_probes_the_meta_api_and_remembers_it(meta_sandbox) -> None:
    _healthy_stack()
    meta_sandbox.faults(expire_token=True)

    run = commander.health_cycle("test")

    probes = TowerState.get().probes
    assert probes["meta_api"]["ok"] is False and probes["meta_api"]["kind"] == "auth"
    assert probes["broker"]["ok"] is True
    assert "infra:meta_token" in {a["key"] for a in run.alerts}
    meta_modules_on_meta = {s.code for s in MODULES if s.calls_meta}
    logs = SystemHealthLog.objects.filter(run=run)
    assert {log.module_name for log in logs if not log.is_api_healthy} == meta_modules_on_meta


def test_a_graph_api_version_meta_no_longer_serves_raises_its_own_alert(meta_sandbox, settings) -> None:
    _healthy_stack()
    settings.META_API_VERSION = "v24.0"  # older than the sandbox's (Meta's) oldest served version

    run = commander.health_cycle("test")

    alert = next(a for a in run.alerts if a["key"] == "infra:meta_version")
    assert alert["severity"] == "critical" and alert["title"] == "Meta refuses Graph API version v24.0"
    assert "2635" in alert["detail"] and "META_API_VERSION" in alert["detail"]
    assert any("META_API_VERSION=v24.0" in r["message"] for r in run.recommendations)


def test_database_figures_come_from_postgres_and_stay_null_where_unknown() -> None:
    run = commander.health_cycle("test")

    figures = (run.db_connection_pool_size, run.db_active_connections, run.db_query_avg_ms)
    if connection.vendor == "postgresql":
        assert run.db_connection_pool_size >= 1 and run.db_active_connections >= 1
        assert run.db_query_avg_ms is not None
    else:  # SQLite has no pool and no activity view: unknown, not invented
        assert figures == (None, None, None)


def test_a_second_cycle_exits_cleanly_while_one_holds_the_lock() -> None:
    with lease(cycle.CYCLE_LOCK, timedelta(minutes=5)) as held:
        assert held
        run = commander.health_cycle("second")

    assert run.state == RunState.SKIPPED and run.total_modules_checked == 0
    assert not SystemHealthLog.objects.exists()


def test_an_expired_lease_is_taken_over() -> None:
    with lease("x", timedelta(seconds=-1)) as first, lease("x", timedelta(minutes=1)) as second:
        assert first and second


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_cycles_on_postgres_give_one_run(postgres_db: None, synced, meta_sandbox) -> None:
    _healthy_stack()
    meta_sandbox.faults(latency_ms=400)  # each cycle's Meta probe takes 0.4 s: the two overlap
    barrier = threading.Barrier(2)
    results: list[ControlTowerRun] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(commander.health_cycle("concurrent"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r.state for r in results) == ["completed", "skipped"]
    assert SystemHealthLog.objects.count() == 17


def test_the_watchdog_runs_a_cycle_when_workers_die_and_again_when_they_return(settings) -> None:
    _healthy_stack()
    assert check_once() is None  # Beat's first check is scheduled and not late: leave it to Beat
    commander.health_cycle("scheduler")
    assert check_once() is None  # nothing changed: Beat's hourly cycle will do

    _age_heartbeats(timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 5))
    PeriodicTask.objects.filter(name=HEARTBEAT_TASK).update(last_run_at=timezone.now())
    dead = check_once()
    assert dead is not None and dead.executed_by == "watchdog" and dead.system_status == "critical"
    assert check_once() is None  # already recorded

    cycle.heartbeat()
    back = check_once()
    assert back is not None and back.system_status == "healthy"


def test_the_watchdog_runs_a_first_check_that_beat_never_ran(settings) -> None:
    late = timezone.now() - timedelta(
        seconds=settings.HEALTH_CYCLE_INTERVAL_SECONDS * 2 + settings.SCHEDULER_GRACE_SECONDS
    )
    PeriodicTask.objects.filter(name=HEALTH_CYCLE_TASK).update(last_run_at=late)

    run = check_once()

    assert run is not None and run.executed_by == "watchdog"


def test_retention_prunes_old_history_but_keeps_stops() -> None:
    old = timezone.now() - timedelta(days=400)
    ControlTowerRun.objects.create(run_type="health_check", executed_by="x", executed_at=old, mode="stub")
    ControlTowerRun.objects.create(run_type="emergency_stop", executed_by="alice", executed_at=old, mode="stub")
    recent = commander.health_cycle("test")
    ModuleRun.objects.create(module=MetaModule.objects.first(), started_at=old, outcome="success")

    counts = retention.prune()

    assert counts["runs"] == 1 and counts["module_runs"] == 1
    assert set(ControlTowerRun.objects.values_list("run_type", flat=True)) == {"emergency_stop", "health_check"}
    assert ControlTowerRun.objects.filter(pk=recent.pk).exists()
