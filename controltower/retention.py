"""Pruning of old history, in bounded batches so no single transaction grows with the backlog."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Model, QuerySet
from django.utils import timezone

from controltower.models import Alert, ControlTowerRun, Notification, ReadinessCheck, RecoveryAttempt, SystemHealthLog
from meta_modules.models import ModuleRun

BATCH = 5000


def _delete_in_batches(queryset: QuerySet[Model]) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[1].get(queryset.model._meta.label, 0)


def prune(now=None) -> dict[str, int]:
    now = now or timezone.now()
    tower_cutoff = now - timedelta(days=settings.RETENTION_DAYS)
    runs_cutoff = now - timedelta(days=settings.MODULE_RUN_RETENTION_DAYS)
    return {
        "health_logs": _delete_in_batches(SystemHealthLog.objects.filter(checked_at__lt=tower_cutoff)),
        "notifications": _delete_in_batches(Notification.objects.filter(sent_at__lt=tower_cutoff)),
        "alerts": _delete_in_batches(Alert.objects.filter(resolved_at__lt=tower_cutoff)),
        "recoveries": _delete_in_batches(RecoveryAttempt.objects.filter(started_at__lt=tower_cutoff)),
        # Emergency stops and resumes are the audit trail of the kill switch: kept.
        "runs": _delete_in_batches(
            ControlTowerRun.objects.filter(executed_at__lt=tower_cutoff, run_type__in=["health_check", "command"])
        ),
        "module_runs": _delete_in_batches(ModuleRun.objects.filter(started_at__lt=runs_cutoff)),
        # Each check keeps every account's detail: a short history is enough (the alerts keep the rest).
        "readiness_checks": _delete_in_batches(
            ReadinessCheck.objects.filter(checked_at__lt=now - timedelta(days=settings.READINESS_RETENTION_DAYS))
        ),
    }
