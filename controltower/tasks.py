"""The tower's Celery tasks."""
from __future__ import annotations

from celery import shared_task

from controltower import health


@shared_task(name="controltower.tasks.run_health_cycle")
def run_health_cycle() -> str:
    """The scheduler cycle (spec: every hour): check every module and persist the result."""
    return str(health.run_check(executed_by="scheduler").pk)
