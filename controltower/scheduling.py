"""The tower's own periodic tasks, created by `sync_modules` beside the modules' tasks."""
from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import PeriodicTasks

from meta_modules.registry import MODULES
from meta_modules.scheduling import ensure_periodic_task

HEALTH_CYCLE_TASK = "control tower · health cycle"
HEARTBEAT_TASK = "control tower · heartbeat"
RETENTION_TASK = "control tower · prune history"
DAY = 24 * 3600


def sync_tower_tasks() -> list[str]:
    ensure_periodic_task(
        HEALTH_CYCLE_TASK, "controltower.tasks.run_health_cycle", settings.HEALTH_CYCLE_INTERVAL_SECONDS,
        "Health check of every module, recovery, persistence and alerts (the spec's 1 h cycle).",
        # The first check comes once every module has had its first (staggered) run.
        first_run_in=settings.START_STAGGER_SECONDS * (len(MODULES) + 2),
    )
    ensure_periodic_task(
        HEARTBEAT_TASK, "controltower.tasks.heartbeat", settings.HEARTBEAT_INTERVAL_SECONDS,
        "Sent by Beat, executed by a worker: proves both alive.",
    )
    ensure_periodic_task(
        RETENTION_TASK, "controltower.tasks.prune_history", DAY,
        "Deletes health history and module runs older than the retention settings.",
    )
    PeriodicTasks.update_changed()
    return [HEALTH_CYCLE_TASK, HEARTBEAT_TASK, RETENTION_TASK]

