"""The tower's Celery tasks: thin adapters over the orchestrator (commander) and the kill switch's
background passes. Services queue them by name (queue.send), never by importing this module."""

from __future__ import annotations

from celery import shared_task
from celery.signals import task_prerun
from django.core.cache import cache
from django.db import connections

from controltower import commander, cycle, killswitch, retention
from controltower.models import FireDrill
from controltower.recovery import DB_GENERATION_KEY

_db_generation: dict[str, object] = {"seen": None}


@task_prerun.connect
def _reconnect_if_asked(**kwargs: object) -> None:
    """RECONNECT_DB reaches every worker process: before its next task, each one compares the
    generation the recovery published and drops its database connections if it moved."""
    generation = cache.get(DB_GENERATION_KEY)
    if generation is not None and generation != _db_generation["seen"]:
        if _db_generation["seen"] is not None:
            connections.close_all()
        _db_generation["seen"] = generation


@shared_task(name="controltower.tasks.run_health_cycle")
def run_health_cycle() -> str:
    """The scheduler cycle (spec: every hour): check every module, persist, alert."""
    cycle.heartbeat()  # a worker is executing this, so workers are alive
    return str(commander.health_cycle(executed_by="scheduler").pk)


@shared_task(name="controltower.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    cycle.heartbeat()


@shared_task(name="controltower.tasks.prune_history")
def prune_history() -> dict[str, int]:
    return retention.prune()


@shared_task(name="controltower.tasks.resweep_halt", acks_late=True, reject_on_worker_lost=True)
def resweep_halt(halt_run_id: str, attempt: int = 0) -> dict:
    """Keep pausing a halt's pending campaigns (idempotent: the ledger says what is left)."""
    return killswitch.resweep(halt_run_id, attempt)


@shared_task(name="controltower.tasks.execute_command")
def execute_command(run_id: str) -> None:
    """A command queued with execute_immediately=false; its run row shows progress and result."""
    commander.execute_queued(run_id)


@shared_task(name="controltower.tasks.finish_resume", acks_late=True, reject_on_worker_lost=True)
def finish_resume(resume_run_id: str, attempt: int = 0) -> dict:
    """Keep re-activating what a resume left pending (idempotent: the ledger says what is left)."""
    return killswitch.finish_resume(resume_run_id, attempt)


@shared_task(name="controltower.tasks.work_account_group")
def work_account_group(group_id: str) -> dict:
    """A worker's share of a stop or a resume (an account group), unless the web process took it first."""
    return killswitch.work_group(group_id)


@shared_task(name="controltower.tasks.run_fire_drill")
def run_fire_drill() -> dict:
    """DRILL_SCHEDULE's fire drill on the canary campaigns (refused while halted, recorded either way)."""
    try:
        drill = commander.fire_drill("scheduler", "Scheduled fire drill (DRILL_SCHEDULE)", FireDrill.Trigger.SCHEDULED)
    except commander.CommandRefused as exc:
        return {"state": FireDrill.State.REFUSED, "message": str(exc)}
    return {"drill_id": str(drill.pk), "state": drill.state, "message": drill.message}
