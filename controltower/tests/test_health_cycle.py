"""The health cycle: facts from recorded runs, 1 run + one log per module, tower state updated."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from controltower import cycle, health
from controltower.models import ControlTowerRun, ModuleStatus, SystemHealthLog, SystemStatus, TowerState
from controltower.schedules import sync_modules
from controltower.tasks import run_health_cycle
from meta_modules.models import MetaModule, ModuleRun
from meta_modules.registry import MODULES, ModuleSpec

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced", "meta_sandbox")]


def _runs(code: str, successes: int, failures: int, api_calls: int = 0) -> None:
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
                outcome=ModuleRun.Outcome.SUCCESS,
                api_calls=api_calls,
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


def _all_ran() -> None:
    for spec in MODULES:
        _runs(spec.code, successes=10, failures=0)


def test_the_cycle_writes_one_run_and_one_log_per_module() -> None:
    _all_ran()

    run_id = run_health_cycle()

    run = ControlTowerRun.objects.get(pk=run_id)
    assert ControlTowerRun.objects.count() == 1
    assert SystemHealthLog.objects.filter(run=run).count() == 17 == SystemHealthLog.objects.count()
    assert run.system_status == SystemStatus.HEALTHY and run.online_modules == 17
    assert run.executed_by == "scheduler" and run.mode == "stub"
    assert set(run.module_health_details) == {spec.code for spec in MODULES}
    assert TowerState.get().system_status == SystemStatus.HEALTHY
    assert TowerState.get().last_health_check == run.executed_at


def test_every_log_column_is_a_field_of_the_module_health_record() -> None:
    """The log row is the evaluated record under the spec's names: no column is left to its default."""
    named = {health.SPEC_NAMES.get(f.name, f.name) for f in fields(health.ModuleHealth)}
    assert cycle.LOGGED and named >= cycle.LOGGED


def test_a_module_with_40_percent_failures_is_offline_and_the_system_critical() -> None:
    _all_ran()
    ModuleRun.objects.filter(module__code="10.5").delete()
    _runs("10.5", successes=6, failures=4)

    report = health.evaluate()

    module = next(m for m in report.modules if m.code == "10.5")
    assert module.status == ModuleStatus.OFFLINE
    assert module.success_rate == pytest.approx(0.6)
    assert module.error_count_24h == 4 and module.last_error == "boom 0"
    assert module.avg_execution_time_ms == 180
    assert report.system_status == SystemStatus.CRITICAL


def test_an_overdue_module_is_not_running() -> None:
    _all_ran()
    ModuleRun.objects.filter(module__code="10.14").update(started_at=timezone.now() - timedelta(minutes=30))

    report = health.evaluate()

    module = next(m for m in report.modules if m.code == "10.14")  # every 5 min, grace 10 min
    assert module.overdue and not module.is_scheduler_running
    assert module.status == ModuleStatus.OFFLINE


def test_a_stopped_module_is_reported_stopped_and_does_not_degrade_the_system() -> None:
    _all_ran()
    MetaModule.objects.filter(code="10.8").update(
        desired_state=MetaModule.DesiredState.STOPPED, desired_state_by="alice", desired_state_reason="maintenance"
    )
    PeriodicTask.objects.filter(meta_module__code="10.8").update(enabled=False)

    report = health.evaluate()

    module = next(m for m in report.modules if m.code == "10.8")
    assert module.status == ModuleStatus.STOPPED
    assert (module.desired_state_by, module.desired_state_reason) == ("alice", "maintenance")
    assert report.system_status == SystemStatus.HEALTHY


def test_the_query_count_does_not_grow_with_the_number_of_modules() -> None:
    _all_ran()
    with CaptureQueriesContext(connection) as with_17:
        health.evaluate()
    extra = tuple(
        ModuleSpec(f"99.{i}", f"Extra {i}", "test", "meta_modules.jobs.check_data_layer", 3600, False, "")
        for i in range(33)
    )
    sync_modules(MODULES + extra)
    for spec in extra:
        _runs(spec.code, successes=3, failures=1)
    with CaptureQueriesContext(connection) as with_50:
        report = health.evaluate()

    assert len(report.modules) == 50
    assert len(with_50) == len(with_17) <= 8


def test_a_cycle_closes_a_module_run_whose_parts_never_reported() -> None:
    from controltower import commander
    from meta_modules.models import ModuleRunPart

    past = timezone.now() - timedelta(minutes=1)
    run = ModuleRun.objects.create(
        module=MetaModule.objects.get(code="10.4"),
        started_at=past - timedelta(minutes=10),
        parts_pending=1,
        parts_deadline=past,
    )
    ModuleRunPart.objects.create(run=run, accounts=["act_1"], state=ModuleRunPart.State.RUNNING, deadline_at=past)

    commander.health_cycle("scheduler")

    run.refresh_from_db()
    assert run.outcome != ModuleRun.Outcome.RUNNING and run.finished_at is not None
    assert run.parts.get().state == ModuleRunPart.State.LOST
