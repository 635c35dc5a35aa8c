"""@module_job: every execution by a real Celery worker is recorded in ModuleRun."""

from __future__ import annotations

from pathlib import Path

import pytest

from controltower.models import TowerState
from controltower.schedules import sync_modules
from meta_modules import jobs
from meta_modules.models import MetaModule, ModuleRun
from tests import worker_jobs
from tests.support import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _finished_run(code: str) -> ModuleRun:
    return wait_for(
        lambda: ModuleRun.objects.filter(module__code=code).exclude(outcome=ModuleRun.Outcome.RUNNING).first(),
        message=f"a finished run of module {code}",
    )


def test_it_records_a_successful_run_with_duration_and_cpu_time(celery_worker_process) -> None:
    sync_modules()
    result = jobs.check_data_layer.delay()

    run = _finished_run("10.1")
    assert run.outcome == ModuleRun.Outcome.SUCCESS
    assert run.celery_task_id == result.id
    assert run.finished_at >= run.started_at
    assert run.duration_ms is not None and run.cpu_ms is not None
    assert run.peak_rss_mb and run.peak_rss_mb > 10
    assert run.error_message == ""


def test_it_records_a_failure_with_its_error(celery_worker_process) -> None:
    sync_modules()
    worker_jobs.failing_job.delay("10.2")

    run = _finished_run("10.2")
    assert run.outcome == ModuleRun.Outcome.FAILURE
    assert run.error_message == "RuntimeError: sandbox unreachable"
    assert run.duration_ms is not None


def test_it_skips_and_does_nothing_while_halted(celery_worker_process, tmp_path: Path) -> None:
    sync_modules()
    state = TowerState.get()
    state.emergency_stop_active = True
    state.save()
    marker = tmp_path / "job-ran"
    worker_jobs.marker_job.delay("10.3", str(marker))

    run = _finished_run("10.3")
    assert run.outcome == ModuleRun.Outcome.SKIPPED
    assert "Emergency stop" in run.error_message
    assert not marker.exists()


def test_it_skips_a_module_an_operator_stopped(celery_worker_process, tmp_path: Path) -> None:
    sync_modules()
    MetaModule.objects.filter(code="10.4").update(
        desired_state=MetaModule.DesiredState.STOPPED, desired_state_by="alice"
    )
    marker = tmp_path / "job-ran"
    worker_jobs.marker_job.delay("10.4", str(marker))

    run = _finished_run("10.4")
    assert run.outcome == ModuleRun.Outcome.SKIPPED
    assert run.error_message == "Module stopped by alice."
    assert not marker.exists()
