"""The tower's Celery tasks."""
from __future__ import annotations

from celery import shared_task

from controltower import commander, cycle, killswitch, retention


@shared_task(name="controltower.tasks.run_health_cycle")
def run_health_cycle() -> str:
    """The scheduler cycle (spec: every hour): check every module, persist, alert."""
    cycle.heartbeat()  # a worker is executing this, so workers are alive
    return str(cycle.run_cycle(executed_by="scheduler").pk)


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
