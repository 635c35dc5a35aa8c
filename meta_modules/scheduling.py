"""Periodic tasks of the stack in django-celery-beat, kept in step with the registry."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from meta_modules.models import MetaModule
from meta_modules.registry import MODULES, ModuleSpec


@dataclass
class SyncReport:
    created: list[str]
    updated: list[str]


def module_task_name(spec: ModuleSpec) -> str:
    return f"module {spec.code} · {spec.name}"


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


def ensure_periodic_task(name: str, task: str, every_seconds: int, description: str,
                         enabled_if_new: bool = True, current: PeriodicTask | None = None,
                         first_run_in: int | None = None) -> tuple[PeriodicTask, bool]:
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
            name=name, task=task, interval=interval, expire_seconds=expire_seconds,
            description=description, enabled=enabled_if_new,
            last_run_at=first_run_at(first_run_in, every_seconds) if first_run_in is not None else None,
        ), True
    wanted = {"name": name, "task": task, "interval_id": interval.pk, "crontab_id": None,
              "expire_seconds": expire_seconds, "description": description}
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
            defaults={"name": spec.name, "function": spec.function, "task_name": spec.task,
                      "calls_meta": spec.calls_meta, "position": position},
        )
        periodic, _ = ensure_periodic_task(
            module_task_name(spec), spec.task, spec.every_seconds, spec.job,
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
