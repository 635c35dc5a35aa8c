"""The supervised stack: its modules, their runs, and the campaign mirror."""
from __future__ import annotations

import uuid
from django.db import models
from django.utils import timezone
from django_celery_beat.models import PeriodicTask


class MetaModule(models.Model):
    """One supervised module (10.1–10.17, or one reporting from outside)."""

    class DesiredState(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.CharField(max_length=16, unique=True, help_text="Module code, e.g. 10.7")
    name = models.CharField(max_length=100)
    function = models.CharField(max_length=200)
    task_name = models.CharField(max_length=200, blank=True, help_text="Celery task of the module's job")
    calls_meta = models.BooleanField(default=False, help_text="Whether the job talks to the Meta Graph API")
    # Registry order, so 10.2 sorts before 10.10.
    position = models.PositiveSmallIntegerField(default=0)
    # What operators want; recovery restores this, never its own guess.
    desired_state = models.CharField(max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING)
    desired_state_by = models.CharField(max_length=150, blank=True)
    desired_state_at = models.DateTimeField(null=True, blank=True)
    desired_state_reason = models.TextField(blank=True)
    periodic_task = models.OneToOneField(
        PeriodicTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="meta_module"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "meta_modules"
        ordering = ["position", "code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class ModuleRun(models.Model):
    """One execution of a module's job, written by @module_job (or reported from outside)."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        TIMEOUT = "timeout", "Timeout"
        SKIPPED = "skipped", "Skipped"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        COMMAND = "command", "Command"
        RECOVERY = "recovery", "Recovery"
        EXTERNAL = "external", "External report"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    module = models.ForeignKey(MetaModule, on_delete=models.CASCADE, related_name="runs")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    error_message = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    api_calls = models.PositiveIntegerField(default=0, help_text="Meta Graph API requests made by the run")
    api_errors = models.PositiveIntegerField(default=0, help_text="Meta Graph API requests that failed")
    cpu_ms = models.PositiveIntegerField(null=True, blank=True, help_text="CPU time of the job's thread")
    peak_rss_mb = models.FloatField(null=True, blank=True, help_text="Peak RSS of the worker process at the end")
    celery_task_id = models.CharField(max_length=64, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="What the job did, as it reported it")

    class Meta:
        db_table = "meta_module_runs"
        ordering = ["-started_at"]
        indexes = [
            # "This module, last 24 h" and "latest run of each module".
            models.Index(fields=["module", "started_at"], name="ix_module_runs_module_started"),
            models.Index(fields=["started_at"], name="ix_module_runs_started"),
        ]

    def __str__(self) -> str:
        return f"{self.module.code} {self.outcome} @ {self.started_at:%Y-%m-%d %H:%M:%S}"


# --- The campaign mirror: synced from Meta, never the source of truth for the kill switch ---


class AdAccount(models.Model):
    id = models.CharField(primary_key=True, max_length=40, help_text="act_<account id>")
    name = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=8, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "meta_ad_accounts"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.id


class _MetaObject(models.Model):
    """Fields every mirrored Meta object has."""

    id = models.CharField(primary_key=True, max_length=40)
    account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=400, blank=True)
    status = models.CharField(max_length=32, help_text="Configured status: ACTIVE, PAUSED, ARCHIVED, DELETED")
    effective_status = models.CharField(max_length=32, blank=True)
    updated_time = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Campaign(_MetaObject):
    objective = models.CharField(max_length=64, blank=True)
    daily_budget_cents = models.PositiveBigIntegerField(null=True, blank=True, help_text="Minor units, as Meta sends it")
    created_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "meta_campaigns"
        ordering = ["id"]
        indexes = [models.Index(fields=["account", "status"], name="ix_campaigns_account_status")]


class AdSet(_MetaObject):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="adsets")
    daily_budget_cents = models.PositiveBigIntegerField(null=True, blank=True)
    targeting = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "meta_adsets"
        ordering = ["id"]


class Ad(_MetaObject):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="ads")
    adset = models.ForeignKey(AdSet, on_delete=models.CASCADE, related_name="ads")
    creative = models.JSONField(default=dict, blank=True, help_text="id, name, title, body, call_to_action_type")

    class Meta:
        db_table = "meta_ads"
        ordering = ["id"]


class DailyInsight(models.Model):
    """One ad's delivery on one day (UTC), as Meta's insights report it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    ad = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="insights")
    date = models.DateField()
    impressions = models.PositiveBigIntegerField(default=0)
    clicks = models.PositiveBigIntegerField(default=0)
    spend = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    purchases = models.PositiveIntegerField(default=0)
    purchase_value = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    collected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "meta_daily_insights"
        ordering = ["-date"]
        constraints = [models.UniqueConstraint(fields=["ad", "date"], name="uq_insight_ad_date")]
        indexes = [models.Index(fields=["date"], name="ix_insights_date")]
