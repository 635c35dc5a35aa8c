"""Module and tower schedules in django-celery-beat: the only code that writes a PeriodicTask's
`enabled`/`last_run_at` or tells Beat to reload (`PeriodicTasks.update_changed()`).

- sync: one periodic task per registry module (`sync_modules`) and the tower's own tasks
  (`sync_tower_tasks`), created or updated, never re-enabled behind an operator's back;
- enable (staggered, so modules do not all fire at once), disable, hold for an emergency stop
  (remembered in TowerState.held_task_ids) and restore at resume, re-enable after recovery;
- run a module's job now, here, through the recorded path (`@module_job`), and cancel its runs
  in flight.
Who may do which, and when (refused while halted), is the orchestrator's call (commander).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from config.celery import app
from controltower.models import TowerState
from meta_modules import jobs, registry  # noqa: F401 (importing jobs registers the module tasks)
from meta_modules.models import MetaModule, ModuleRun
from meta_modules.registry import MODULES, ModuleSpec

HEALTH_CYCLE_TASK = "control tower · health cycle"
HEARTBEAT_TASK = "control tower · heartbeat"
RETENTION_TASK = "control tower · prune history"
DRILL_TASK = "control tower · fire drill"
DAY = 24 * 3600
DEFAULT_EVERY = 3600  # a module task without an interval (never made by sync) counts as hourly


# --- when a task runs first -------------------------------------------------------------


def first_run_at(delay_seconds: int, interval: int) -> datetime:
    """The `last_run_at` that makes an interval task due `delay_seconds` from now (at most one interval).

    Beat computes the next run from the last one; a task created or re-enabled without one
    waits a whole interval (a daily module: a day), and many re-enabled at once fire together.
    """
    return timezone.now() - timedelta(seconds=interval - min(delay_seconds, interval))


def stagger_delay(index: int, interval: int) -> int:
    """Seconds until module #index of a start first runs: START_STAGGER_SECONDS·(index+1), so first
    runs spread out rather than all at once, and never later than one interval."""
    return min(settings.START_STAGGER_SECONDS * (index + 1), interval)


def staggered_last_run(index: int, interval: int) -> datetime:
    """The `last_run_at` that makes module #index due in stagger_delay(index, interval) seconds."""
    return first_run_at(stagger_delay(index, interval), interval)


def every(task: PeriodicTask) -> int:
    return task.interval.every if task.interval else DEFAULT_EVERY


# --- sync with the registry and the settings --------------------------------------------


@dataclass
class SyncReport:
    created: list[str]
    updated: list[str]


def module_task_name(spec: ModuleSpec) -> str:
    return f"module {spec.code} · {spec.name}"


def ensure_periodic_task(
    name: str,
    task: str,
    every_seconds: int,
    description: str,
    enabled_if_new: bool = True,
    current: PeriodicTask | None = None,
    first_run_in: int | None = None,
) -> tuple[PeriodicTask, bool]:
    """Create or update one interval task; never changes `enabled` of an existing task.

    Operators disable tasks on purpose (stop commands, the admin): syncing must not undo that.
    A new task first runs `first_run_in` seconds from now (default: after one interval).
    Returns (task, created).
    """
    interval, _ = IntervalSchedule.objects.get_or_create(every=every_seconds, period=IntervalSchedule.SECONDS)
    # A message that waited most of an interval is stale: drop it rather than run a backlog.
    expire_seconds = max(1, int(every_seconds * settings.PERIODIC_TASK_EXPIRY_RATIO))
    periodic = current or PeriodicTask.objects.filter(name=name).first()
    if periodic is None:
        return PeriodicTask.objects.create(
            name=name,
            task=task,
            interval=interval,
            expire_seconds=expire_seconds,
            description=description,
            enabled=enabled_if_new,
            last_run_at=first_run_at(first_run_in, every_seconds) if first_run_in is not None else None,
        ), True
    wanted = {
        "name": name,
        "task": task,
        "interval_id": interval.pk,
        "crontab_id": None,
        "expire_seconds": expire_seconds,
        "description": description,
    }
    changed = {field: value for field, value in wanted.items() if getattr(periodic, field) != value}
    if changed:
        for field, value in changed.items():
            setattr(periodic, field, value)
        periodic.save()  # save() bumps PeriodicTasks so Beat reloads
    return periodic, False


@transaction.atomic
def sync_modules(specs: tuple[ModuleSpec, ...] = MODULES) -> SyncReport:
    """Create/update one MetaModule and its periodic task per registry entry (idempotent)."""
    report = SyncReport(created=[], updated=[])
    for position, spec in enumerate(specs):
        module, created = MetaModule.objects.update_or_create(
            code=spec.code,
            defaults={
                "name": spec.name,
                "function": spec.function,
                "task_name": spec.task,
                "calls_meta": spec.calls_meta,
                "position": position,
            },
        )
        periodic, _ = ensure_periodic_task(
            module_task_name(spec),
            spec.task,
            spec.every_seconds,
            spec.job,
            enabled_if_new=module.desired_state == MetaModule.DesiredState.RUNNING,
            current=module.periodic_task,
            first_run_in=settings.START_STAGGER_SECONDS * (position + 1),
        )
        if module.periodic_task_id != periodic.pk:
            module.periodic_task = periodic
            module.save(update_fields=["periodic_task", "updated_at"])
        (report.created if created else report.updated).append(spec.code)
    PeriodicTasks.update_changed()
    return report


def sync_tower_tasks() -> list[str]:
    """The tower's own periodic tasks, beside the modules' tasks."""
    ensure_periodic_task(
        HEALTH_CYCLE_TASK,
        "controltower.tasks.run_health_cycle",
        settings.HEALTH_CYCLE_INTERVAL_SECONDS,
        "Health check of every module, recovery, persistence and alerts (the spec's 1 h cycle).",
        # The first check comes once every module has had its first (staggered) run.
        first_run_in=settings.START_STAGGER_SECONDS * (len(MODULES) + 2),
    )
    ensure_periodic_task(
        HEARTBEAT_TASK,
        "controltower.tasks.heartbeat",
        settings.HEARTBEAT_INTERVAL_SECONDS,
        "Sent by Beat, executed by a worker: proves both alive.",
    )
    ensure_periodic_task(
        RETENTION_TASK,
        "controltower.tasks.prune_history",
        DAY,
        "Deletes health history and module runs older than the retention settings.",
    )
    drill = sync_drill_task(settings.DRILL_SCHEDULE)
    PeriodicTasks.update_changed()
    return [HEALTH_CYCLE_TASK, HEARTBEAT_TASK, RETENTION_TASK, *([DRILL_TASK] if drill else [])]


def sync_drill_task(expression: str) -> PeriodicTask | None:
    """The fire drill's crontab task (DRILL_SCHEDULE, "m h dom mon dow", validated at start); no
    task when it is empty. An existing task keeps its `enabled` (an operator may have disabled it)."""
    if not expression:
        PeriodicTask.objects.filter(name=DRILL_TASK).delete()
        return None
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=settings.CELERY_TIMEZONE,
    )
    task, _ = PeriodicTask.objects.update_or_create(
        name=DRILL_TASK,
        defaults={
            "task": "controltower.tasks.run_fire_drill",
            "crontab": schedule,
            "interval": None,
            "expire_seconds": 3600,  # a drill that waited an hour in the queue is dropped, not run late
            "description": f"Fire drill on the canary campaigns (DRILL_SCHEDULE={expression!r}).",
        },
    )
    return task


# --- enable and disable module schedules ------------------------------------------------


def module_tasks() -> QuerySet[PeriodicTask]:
    """Every module's periodic task (the tower's own tasks have no module)."""
    return PeriodicTask.objects.filter(meta_module__isnull=False)


def enable_staggered(tasks: list[PeriodicTask | None]) -> None:
    """Enable the disabled ones of `tasks`, task #i first due stagger_delay(i) from now."""
    for index, task in enumerate(tasks):
        if task is not None and not task.enabled:
            PeriodicTask.objects.filter(pk=task.pk).update(
                enabled=True, last_run_at=staggered_last_run(index, every(task))
            )
    PeriodicTasks.update_changed()


def disable(modules: list[MetaModule]) -> None:
    PeriodicTask.objects.filter(meta_module__in=modules).update(enabled=False)
    PeriodicTasks.update_changed()


def hold_for_halt() -> list[str]:
    """An emergency stop: disable every enabled module task and remember it for resume. The codes held now."""
    with transaction.atomic():
        state = TowerState.locked()
        enabled = list(module_tasks().filter(enabled=True).values_list("pk", "meta_module__code"))
        if not enabled:  # already done (a re-sweep): nothing for Beat to reload
            return []
        module_tasks().filter(pk__in=[pk for pk, _ in enabled]).update(enabled=False)
        state.held_task_ids = sorted(set(state.held_task_ids) | {pk for pk, _ in enabled})
        state.save(update_fields=["held_task_ids", "updated_at"])
    PeriodicTasks.update_changed()
    return [code for _, code in enabled]


def held_to_restore(held_task_ids: list[int]) -> list[PeriodicTask]:
    """The tasks enabled before the stop of modules operators still want running, in the order they restart."""
    return list(
        module_tasks()
        .filter(pk__in=held_task_ids, meta_module__desired_state=MetaModule.DesiredState.RUNNING)
        .select_related("interval", "meta_module")
        .order_by("meta_module__position")
    )


def restore_after_halt(held_task_ids: list[int], resume_schedulers: bool, actor: str) -> list[str]:
    """Resume: re-enable exactly the tasks enabled before the stop, of modules operators still want
    running, staggered; without `resume_schedulers`, those modules are marked stopped instead."""
    if not resume_schedulers:
        MetaModule.objects.filter(periodic_task__in=module_tasks().filter(pk__in=held_task_ids)).update(
            desired_state=MetaModule.DesiredState.STOPPED,
            desired_state_by=actor,
            desired_state_at=timezone.now(),
            desired_state_reason="Resumed without schedulers",
        )
        return []
    wanted = held_to_restore(held_task_ids)
    enable_staggered(wanted)  # all disabled by the stop: every one is enabled
    return [task.meta_module.code for task in wanted]


def re_enable(module: MetaModule) -> bool:
    """Recovery: enable the task of a module operators want running (due one interval from now).
    Whether it was disabled."""
    task = module.periodic_task
    if module.desired_state != MetaModule.DesiredState.RUNNING or task is None or task.enabled:
        return False
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=True, last_run_at=timezone.now())
    PeriodicTasks.update_changed()
    return True


# --- run now and cancel -----------------------------------------------------------------


def is_builtin(code: str) -> bool:
    """A registry module, whose job runs here (external modules only report their runs)."""
    return code in registry.BY_CODE


def run_module_now(code: str, trigger: str = ModuleRun.Trigger.COMMAND) -> dict[str, Any]:
    """Run one module's job here, through @module_job, and report its recorded outcome."""
    since = timezone.now()
    result = app.tasks[registry.get(code).task].apply(kwargs={"trigger": trigger})
    run = (
        ModuleRun.objects.filter(module__code=code, trigger=trigger, started_at__gte=since)
        .order_by("-started_at")
        .first()
    )
    return {
        "module": code,
        "outcome": run.outcome if run else "unknown",
        "run_id": str(run.pk) if run else None,
        "error": run.error_message if run else str(result.result),
    }


def cancel_in_flight(module: MetaModule, why: str) -> int:
    """Cooperative cancel: close the module's running runs as timeouts. The job's own final
    update is conditional on `running`, so it cannot overwrite this verdict."""
    return ModuleRun.objects.filter(module=module, outcome=ModuleRun.Outcome.RUNNING).update(
        outcome=ModuleRun.Outcome.TIMEOUT, finished_at=timezone.now(), error_message=why
    )
