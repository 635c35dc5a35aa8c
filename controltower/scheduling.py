"""The tower's own periodic tasks, created by `sync_modules` beside the modules' tasks."""
from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import PeriodicTasks

from meta_modules.scheduling import ensure_periodic_task

HEALTH_CYCLE_TASK = "control tower · health cycle"


def sync_tower_tasks() -> list[str]:
    ensure_periodic_task(
        HEALTH_CYCLE_TASK, "controltower.tasks.run_health_cycle", settings.HEALTH_CYCLE_INTERVAL_SECONDS,
        "Health check of every module, recovery, persistence and alerts (the spec's 1 h cycle).",
    )
    PeriodicTasks.update_changed()
    return [HEALTH_CYCLE_TASK]
