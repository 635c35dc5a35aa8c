"""`manage.py sync_modules`: 17 modules with their periodic tasks, idempotent, respectful of operators."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from controltower.schedules import HEALTH_CYCLE_TASK
from meta_modules.models import MetaModule
from meta_modules.registry import MODULES

pytestmark = pytest.mark.django_db


def test_it_creates_17_modules_with_their_periodic_tasks() -> None:
    call_command("sync_modules")

    assert MetaModule.objects.count() == 17
    assert [m.code for m in MetaModule.objects.all()] == [spec.code for spec in MODULES]
    for spec in MODULES:
        module = MetaModule.objects.select_related("periodic_task__interval").get(code=spec.code)
        assert module.periodic_task.task == spec.task
        assert module.periodic_task.interval.every == spec.every_seconds
        assert module.periodic_task.enabled
        assert 0 < module.periodic_task.expire_seconds < spec.every_seconds


def test_running_it_twice_duplicates_nothing() -> None:
    call_command("sync_modules")
    call_command("sync_modules")

    assert MetaModule.objects.count() == 17
    assert PeriodicTask.objects.filter(task__startswith="meta_modules.jobs.").count() == 17
    assert PeriodicTask.objects.filter(name=HEALTH_CYCLE_TASK).count() == 1


def test_it_keeps_an_operator_disabled_task_disabled() -> None:
    call_command("sync_modules")
    task = MetaModule.objects.get(code="10.7").periodic_task
    task.enabled = False
    task.save()

    call_command("sync_modules")

    assert not PeriodicTask.objects.get(pk=task.pk).enabled


def test_it_creates_the_hourly_health_cycle_task(settings) -> None:
    call_command("sync_modules")

    task = PeriodicTask.objects.get(name=HEALTH_CYCLE_TASK)
    assert task.task == "controltower.tasks.run_health_cycle"
    assert task.interval.every == settings.HEALTH_CYCLE_INTERVAL_SECONDS == 3600
    assert task.enabled


def test_every_registered_task_exists_in_celery() -> None:
    from config.celery import app

    app.loader.import_default_modules()
    for spec in MODULES:
        assert spec.task in app.tasks, spec.task
    assert "controltower.tasks.run_health_cycle" in app.tasks


def test_new_modules_first_run_soon_and_one_after_another(settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    call_command("sync_modules")

    tasks = [
        MetaModule.objects.select_related("periodic_task__interval").get(code=s.code).periodic_task for s in MODULES
    ]
    due = [t.last_run_at + timedelta(seconds=t.interval.every) for t in tasks]
    now = timezone.now()
    assert all(now < d <= now + timedelta(seconds=settings.START_STAGGER_SECONDS * 17 + 1) for d in due)
    assert due == sorted(due) and len(set(due)) == 17
