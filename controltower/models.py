"""The tower's records: runs (checks and commands), per-module health logs and its state; alerts and
their notifications; the emergency-stop ledger (CampaignHold); recovery attempts and each module's
recovery state; external modules and API tokens; named leases; fire drills and their canaries."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone


class NamedIndex(models.Index):
    """An index whose name may exceed Django's 30-character portability limit.

    The spec names two indices with 31–32 characters; PostgreSQL allows 63 and SQLite more.
    """

    max_name_length = 63


class Mode(models.TextChoices):
    STUB = "stub", "Stub (Meta sandbox)"
    LIVE = "live", "Live (graph.facebook.com)"


class SystemStatus(models.TextChoices):
    HEALTHY = "healthy", "HEALTHY"
    DEGRADED = "degraded", "DEGRADED"
    CRITICAL = "critical", "CRITICAL"
    EMERGENCY_STOP = "emergency_stop", "EMERGENCY_STOP"
    STARTING = "starting", "STARTING"  # a module has not had its first run yet (rules.system_status)
    UNKNOWN = "unknown", "UNKNOWN"  # before the first check


class ModuleStatus(models.TextChoices):
    ONLINE = "online", "ONLINE"
    DEGRADED = "degraded", "DEGRADED"
    OFFLINE = "offline", "OFFLINE"
    UNKNOWN = "unknown", "UNKNOWN"
    # Stopped on purpose by an operator: not a failure, never degrades the system.
    STOPPED = "stopped", "STOPPED"


class RunType(models.TextChoices):
    HEALTH_CHECK = "health_check", "Health check"
    COMMAND = "command", "Command"
    EMERGENCY_STOP = "emergency_stop", "Emergency stop"
    RESUME = "resume", "Resume"


class RunState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class ControlTowerRun(models.Model):
    """One health check or command execution (spec table `meta_control_tower_runs`)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run_type = models.CharField(max_length=32, choices=RunType.choices)
    # Progress of the run itself (a queued command shows here until a worker finishes it).
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.COMPLETED)
    command_type = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 - the spec's column is nullable
    system_status = models.CharField(max_length=32, choices=SystemStatus.choices, default=SystemStatus.UNKNOWN)
    total_modules_checked = models.PositiveIntegerField(default=0)
    online_modules = models.PositiveIntegerField(default=0)
    degraded_modules = models.PositiveIntegerField(default=0)
    offline_modules = models.PositiveIntegerField(default=0)
    # Start-up progress at a health check: modules expected to run (not stopped on purpose) and
    # how many of them had finished a run. Null on other runs and on checks made before they existed.
    modules_expected = models.PositiveIntegerField(null=True, blank=True)
    modules_run = models.PositiveIntegerField(null=True, blank=True)
    module_health_details = models.JSONField(default=dict, blank=True, help_text="module code → status")
    actions_executed = models.JSONField(default=list, blank=True)
    errors_encountered = models.JSONField(default=list, blank=True)
    recoveries_performed = models.JSONField(default=list, blank=True)
    total_api_calls_24h = models.PositiveIntegerField(default=0)
    total_errors_24h = models.PositiveIntegerField(default=0)
    total_campaigns_active = models.PositiveIntegerField(null=True, blank=True)
    total_daily_budget_usd = models.FloatField(null=True, blank=True)
    # Null where the database backend cannot say (SQLite has no pool or activity view).
    db_connection_pool_size = models.PositiveIntegerField(null=True, blank=True)
    db_active_connections = models.PositiveIntegerField(null=True, blank=True)
    db_query_avg_ms = models.FloatField(null=True, blank=True)
    execution_time_ms = models.PositiveIntegerField(null=True, blank=True)
    executed_by = models.CharField(max_length=150, help_text="scheduler, a user name, or api")
    executed_at = models.DateTimeField(default=timezone.now)
    recommendations = models.JSONField(default=list, blank=True)
    alerts = models.JSONField(default=list, blank=True)
    mode = models.CharField(max_length=8, choices=Mode.choices)
    # Why the run was made (commands, stops and resumes carry the operator's reason).
    reason = models.TextField(blank=True)
    parameters = models.JSONField(default=dict, blank=True, help_text="The command's request, as given")
    modules_affected = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True, help_text="One-line outcome for people")

    class Meta:
        db_table = "meta_control_tower_runs"
        ordering = ["-executed_at"]
        indexes = [
            NamedIndex(fields=["system_status", "executed_at"], name="ix_control_runs_status_executed"),
            NamedIndex(fields=["run_type", "system_status"], name="ix_control_runs_type_status"),
            NamedIndex(fields=["command_type", "executed_at"], name="ix_control_runs_command_executed"),
            # GET /status: the latest completed health check.
            models.Index(fields=["run_type", "state", "executed_at"], name="ix_control_runs_latest"),
        ]

    def __str__(self) -> str:
        label = self.command_type or self.run_type
        return f"{label} {self.system_status} @ {self.executed_at:%Y-%m-%d %H:%M:%S}"

    def result(self) -> dict[str, Any]:
        """What the run came to, as the API answers a command and the console shows a run."""
        errors = [
            e if isinstance(e, str) else f"{e.get('title', '')}: {e.get('detail', '')}".strip(": ")
            for e in self.errors_encountered
        ]
        # A health check's errors are what it observed (e.g. a dead worker), not failures of the command.
        failed = self.state != RunState.COMPLETED or (bool(errors) and self.run_type != RunType.HEALTH_CHECK)
        return {
            "command_id": self.pk,
            "command_type": self.command_type or self.run_type,
            "success": not failed,
            "state": self.state,
            "modules_affected": self.modules_affected,
            "actions_executed": self.actions_executed,
            "errors": errors,
            "execution_time_ms": self.execution_time_ms,
            "executed_at": self.executed_at,
            "executed_by": self.executed_by,
            "message": self.message,
        }

    # Transitions: one UPDATE each, by primary key; this instance is not refreshed.

    def start(self) -> None:
        """It is being carried out now."""
        ControlTowerRun.objects.filter(pk=self.pk).update(state=RunState.RUNNING)

    @classmethod
    def claim_queued(cls, pk: Any) -> bool:
        """Take a queued run to carry it out; False when a worker already took it (a redelivered message)."""
        return bool(cls.objects.filter(pk=pk, state=RunState.QUEUED).update(state=RunState.RUNNING))

    def finish(self, started: float | None = None, **outcome: Any) -> None:
        """It ended as it should: COMPLETED with its outcome (fields of this model), and how long it
        took since `started` (time.monotonic()) when given."""
        self._end(RunState.COMPLETED, started, outcome)

    def fail(self, started: float | None = None, **outcome: Any) -> None:
        """It ended in failure (refused, raised, overtaken): FAILED with why, as finish()."""
        self._end(RunState.FAILED, started, outcome)

    def interrupt(self, message: str) -> bool:
        """Its process died while it was running: FAILED with why. False when it was no longer running
        (it ended, or another watchdog closed it first)."""
        return bool(
            ControlTowerRun.objects.filter(pk=self.pk, state=RunState.RUNNING).update(
                state=RunState.FAILED,
                errors_encountered=[message],
                message=message,
                recommendations=ControlTowerRun.note(message, "critical"),
            )
        )

    @staticmethod
    def note(message: str, severity: str = "info") -> list[dict[str, str]]:
        """Recommendations that are one line for people (a stop's or a resume's outcome)."""
        return [{"severity": severity, "module": "", "message": message}]

    def _end(self, state: RunState, started: float | None, outcome: dict[str, Any]) -> None:
        if started is not None:
            outcome["execution_time_ms"] = round((time.monotonic() - started) * 1000)
        ControlTowerRun.objects.filter(pk=self.pk).update(state=state, **outcome)


class SystemHealthLog(models.Model):
    """One module's health at one check (spec table `meta_system_health_logs`)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(
        ControlTowerRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="health_logs"
    )
    module_name = models.CharField(max_length=16, help_text="Module code (10.1–10.17)")
    module_full_name = models.CharField(max_length=100)
    health_status = models.CharField(max_length=16, choices=ModuleStatus.choices)
    success_rate = models.FloatField(null=True, blank=True, help_text="0.0–1.0 over 24 h; null without runs")
    avg_execution_time_ms = models.PositiveIntegerField(null=True, blank=True)
    error_count_24h = models.PositiveIntegerField(default=0)
    api_calls_24h = models.PositiveIntegerField(default=0)
    is_scheduler_running = models.BooleanField(default=False)
    is_db_healthy = models.BooleanField(default=False)
    is_api_healthy = models.BooleanField(default=False)
    last_run = models.DateTimeField(null=True, blank=True)
    next_run = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_time = models.DateTimeField(null=True, blank=True)
    recovery_attempts = models.PositiveIntegerField(default=0)
    last_recovery_action = models.CharField(max_length=32, blank=True)
    recovery_successful = models.BooleanField(null=True, blank=True)
    db_connections = models.PositiveIntegerField(null=True, blank=True)
    memory_usage_mb = models.FloatField(null=True, blank=True)
    cpu_usage_pct = models.FloatField(null=True, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)
    mode = models.CharField(max_length=8, choices=Mode.choices)

    class Meta:
        db_table = "meta_system_health_logs"
        ordering = ["-checked_at"]
        indexes = [
            NamedIndex(fields=["module_name", "health_status"], name="ix_health_logs_module_status"),
            NamedIndex(fields=["module_name", "checked_at"], name="ix_health_logs_module_checked"),
            NamedIndex(fields=["is_scheduler_running", "is_db_healthy"], name="ix_health_logs_scheduler_db"),
            NamedIndex(fields=["error_count_24h", "checked_at"], name="ix_health_logs_errors"),
        ]

    def __str__(self) -> str:
        return f"{self.module_name} {self.health_status} @ {self.checked_at:%Y-%m-%d %H:%M:%S}"


class TowerState(models.Model):
    """The tower's current state: exactly one row (pk=1), created by migration."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    system_status = models.CharField(max_length=32, choices=SystemStatus.choices, default=SystemStatus.UNKNOWN)
    emergency_stop_active = models.BooleanField(default=False)
    halted_by = models.CharField(max_length=150, blank=True)
    halted_at = models.DateTimeField(null=True, blank=True)
    halt_reason = models.TextField(blank=True)
    halt_run = models.ForeignKey(ControlTowerRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Every stop (first or re-sweep) stamps this; a resume that sees it change keeps the halt.
    last_stop_at = models.DateTimeField(null=True, blank=True)
    # When the latest sweep that covered the whole halt (schedulers and every ACTIVE campaign in
    # scope) began and left nothing pending. Older than last_stop_at = the halt is not complete yet.
    halt_swept_at = models.DateTimeField(null=True, blank=True)
    # Periodic tasks that were enabled when the halt began: resume re-enables exactly these.
    held_task_ids = models.JSONField(default=list, blank=True)
    # Two-person rule: the first operator's resume request, waiting for a different approver.
    resume_requested_by = models.CharField(max_length=150, blank=True)
    resume_requested_at = models.DateTimeField(null=True, blank=True)
    resume_request = models.JSONField(default=dict, blank=True)
    last_health_check = models.DateTimeField(null=True, blank=True)
    # Written by the heartbeat task that Beat schedules and a worker executes.
    worker_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Latest results of the per-cycle probes (broker, Meta API, worker ping).
    probes = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "meta_control_tower_state"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="tower_state_singleton")]
        permissions = [("operate_tower", "Can run commands, emergency stop and resume")]

    def __str__(self) -> str:
        return f"Tower {self.get_system_status_display()}"

    @classmethod
    def get(cls) -> TowerState:
        # The migration creates the row; re-create it if a test flush (or a person) removed it.
        return cls.objects.get_or_create(pk=1)[0]

    @classmethod
    def locked(cls) -> TowerState:
        """The row, locked until the end of the transaction (serialises stops, resumes and commands)."""
        cls.get()
        return cls.objects.select_for_update().get(pk=1)

    @classmethod
    def set(cls, **fields: object) -> None:
        """Update some fields in one statement, without reading the row first."""
        if not cls.objects.filter(pk=1).update(**fields):
            cls.objects.get_or_create(pk=1, defaults=fields)

    # Halt transitions. Those on an instance are made on the row locked by locked(), in its transaction.

    def begin_halt(self, stop_run: ControlTowerRun) -> None:
        """An emergency stop was pressed: it begins the halt, or widens the one in force (whose start
        and first run stay). Either way a resume waiting for approval is withdrawn."""
        if not self.emergency_stop_active:
            self.emergency_stop_active = True
            self.halted_by, self.halted_at, self.halt_reason = (
                stop_run.executed_by,
                stop_run.executed_at,
                stop_run.reason,
            )
            self.halt_run = stop_run
            self.held_task_ids = []
        self.system_status = SystemStatus.EMERGENCY_STOP
        # A join moves this too: the halt counts as complete only after a sweep that began after it.
        self.last_stop_at = stop_run.executed_at
        self._withdraw_resume_request()
        self.save()

    @classmethod
    def halt_swept(cls, halt_run: ControlTowerRun, began: datetime) -> None:
        """A sweep of the whole halt that began at `began` left nothing pending (if that halt is still in force)."""
        cls.objects.filter(pk=1, emergency_stop_active=True, halt_run=halt_run).update(halt_swept_at=began)

    def request_resume(self, actor: str, options: dict[str, Any]) -> None:
        """A first operator's resume under the two-person rule: recorded until a different one approves it."""
        self.resume_requested_by, self.resume_requested_at, self.resume_request = actor, timezone.now(), options
        self.save(update_fields=["resume_requested_by", "resume_requested_at", "resume_request", "updated_at"])

    def resume_awaiting_approval(self, now: datetime | None = None) -> bool:
        """A first operator's resume is waiting for a second one (the two-person rule), not expired."""
        now = now or timezone.now()
        return bool(
            self.resume_requested_by
            and self.resume_requested_at
            and now - self.resume_requested_at <= timedelta(seconds=settings.RESUME_APPROVAL_TTL_SECONDS)
        )

    def end_halt(self) -> None:
        """Resume lifted the halt: nothing is held any more; the status is unknown until a check says."""
        self.emergency_stop_active = False
        self.held_task_ids = []
        self._withdraw_resume_request()
        self.system_status = SystemStatus.UNKNOWN
        self.save()

    @classmethod
    def health_checked(cls, checked_at: datetime, system_status: str, halted: bool) -> None:
        """A health check finished: it sets the status, except while halted (only resume clears EMERGENCY_STOP)."""
        updates: dict[str, object] = {"last_health_check": checked_at}
        if not halted:
            updates["system_status"] = system_status
        cls.set(**updates)

    def _withdraw_resume_request(self) -> None:
        self.resume_requested_by, self.resume_requested_at, self.resume_request = "", None, {}


class Alert(models.Model):
    """One alert condition over its life: opened, repeated while it lasts, resolved.

    Identified by a dedup key (e.g. `module:10.5:offline`), so the same condition seen at
    every check is one alert, not one per check.
    """

    class Severity(models.TextChoices):
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.CharField(max_length=200)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    title = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    module_code = models.CharField(max_length=16, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    notifications_sent = models.PositiveIntegerField(default=0)
    resolved_at = models.DateTimeField(null=True, blank=True)
    opened_by_run = models.ForeignKey(
        ControlTowerRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "meta_control_tower_alerts"
        ordering = ["-opened_at"]
        constraints = [
            # At most one open alert per condition.
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(resolved_at__isnull=True), name="uq_alert_open_key"
            ),
        ]
        indexes = [models.Index(fields=["resolved_at", "opened_at"], name="ix_alerts_resolved_opened")]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"


class Notification(models.Model):
    """One message sent (or attempted) on one channel, with its error if it failed."""

    class Kind(models.TextChoices):
        ALERT = "alert", "Alert"  # new, repeated and resolved alerts of one check, grouped
        EMERGENCY = "emergency", "Emergency stop / resume"
        ESCALATION = "escalation", "Escalation"
        TEST = "test", "Test message"  # asked for by an operator to check a channel
        DRILL = "drill", "Fire drill failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    channel = models.CharField(max_length=16, help_text="email, slack or webhook")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ALERT)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    alert_keys = models.JSONField(default=list, blank=True)
    run = models.ForeignKey(
        ControlTowerRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    sent_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=150, blank=True, help_text="The operator who asked for a test message")

    class Meta:
        db_table = "meta_control_tower_notifications"
        ordering = ["-sent_at"]
        # The dashboard's last delivery per channel.
        indexes = [models.Index(fields=["channel", "sent_at"], name="ix_notifications_channel_sent")]

    def __str__(self) -> str:
        return f"{self.channel}: {self.subject}"


class TowerLock(models.Model):
    """A named lease that works on every backend: claimed by insert or by a conditional update
    of an expired lease, released by its holder. One health cycle at a time uses it."""

    name = models.CharField(primary_key=True, max_length=64)
    holder = models.CharField(max_length=64)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "meta_control_tower_locks"

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder} until {self.expires_at:%H:%M:%S}"


class CampaignHold(models.Model):
    """The emergency-stop ledger: one row per campaign the kill switch paused (or must pause).

    Written BEFORE the campaign is paused, so nothing paused is ever forgotten; resume
    re-activates only held campaigns still PAUSED with the updated_time our pause left.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending (not yet confirmed paused)"
        PAUSED = "paused", "Paused by the kill switch"
        FAILED = "failed", "Could not be paused"
        RESUMED = "resumed", "Re-activated by resume"
        RESUMING = "resuming", "Re-activation pending (retried in the background)"
        SKIPPED = "skipped", "Not re-activated (its note says why)"
        RELEASED = "released", "Left paused by resume (resume_campaigns=false)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    halt_run = models.ForeignKey(
        ControlTowerRun,
        on_delete=models.PROTECT,
        related_name="holds",
        help_text="The emergency stop that began the halt",
    )
    stop_run = models.ForeignKey(
        ControlTowerRun,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The stop (or re-sweep) that found the campaign ACTIVE",
    )
    campaign_id = models.CharField(max_length=40)
    account_id = models.CharField(max_length=40)
    campaign_name = models.CharField(max_length=400, blank=True)
    prior_status = models.CharField(max_length=32)
    prior_effective_status = models.CharField(max_length=32, blank=True)
    prior_updated_time = models.CharField(max_length=40, blank=True, help_text="As Meta reported it")
    paused_updated_time = models.CharField(max_length=40, blank=True, help_text="Meta's updated_time after our pause")
    snapshot = models.JSONField(
        default=dict,
        blank=True,
        help_text="Name and budgets as Meta answered our pause: edits Meta does not "
        "stamp in updated_time, compared at resume",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # A worker (request or retry task) claims pending rows for a while, so two never pause the same one.
    claimed_by = models.CharField(max_length=64, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    paused_at = models.DateTimeField(null=True, blank=True)
    resume_run = models.ForeignKey(ControlTowerRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    resumed_at = models.DateTimeField(null=True, blank=True)
    resume_note = models.TextField(blank=True)

    class Meta:
        db_table = "meta_control_tower_campaign_holds"
        ordering = ["account_id", "campaign_id"]
        constraints = [models.UniqueConstraint(fields=["halt_run", "campaign_id"], name="uq_hold_halt_campaign")]
        indexes = [
            models.Index(fields=["state", "claimed_until"], name="ix_holds_state_claim"),
            # The ledger counted by state within a halt (metrics, run pages) without reading every hold.
            models.Index(fields=["halt_run", "state"], name="ix_holds_halt_state"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} ({self.account_id}) {self.state}"


class AccountGroup(models.Model):
    """A share of a stop's or a resume's work on Meta: some ad accounts, worked on as one unit by
    whichever process takes it first — a Celery worker (from the front) or the web process that took
    the request (from the back). Taking is a conditional update, so each group is worked once; a
    group whose taker died is taken again once its claim lapses."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(ControlTowerRun, on_delete=models.CASCADE, related_name="account_groups")
    position = models.PositiveIntegerField()
    accounts = models.JSONField(default=list)
    taken_by = models.CharField(max_length=120, blank=True, help_text="web or worker, host and process")
    taken_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.JSONField(default=dict, blank=True, help_text="What working on these accounts did")

    class Meta:
        db_table = "meta_control_tower_account_groups"
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="uq_account_group_position")]
        indexes = [models.Index(fields=["finished_at", "taken_until"], name="ix_account_groups_open")]

    def __str__(self) -> str:
        return f"{self.run_id} group {self.position} ({len(self.accounts)} accounts)"

    def take(self, by: str) -> bool:
        """Claim the group for `by` unless it is finished or someone alive holds it; True if claimed."""
        now = timezone.now()
        until = now + timedelta(seconds=settings.HOLD_CLAIM_SECONDS)
        taken = (
            AccountGroup.objects.filter(pk=self.pk, finished_at__isnull=True)
            .filter(models.Q(taken_until__isnull=True) | models.Q(taken_until__lt=now))
            .update(taken_by=by, taken_until=until)
        )
        if taken:
            self.taken_by, self.taken_until = by, until
        return bool(taken)

    def close_untaken(self, outcome: dict[str, Any]) -> bool:
        """Nobody took the group in time: close it with `outcome` unless someone takes it first."""
        return bool(
            AccountGroup.objects.filter(pk=self.pk, finished_at__isnull=True, taken_until__isnull=True).update(
                finished_at=timezone.now(), outcome=outcome
            )
        )

    def finish(self, outcome: dict[str, Any]) -> bool:
        """Record what the taker did; False if its claim was lost (it lapsed and another took the group)."""
        now = timezone.now()
        done = AccountGroup.objects.filter(pk=self.pk, taken_by=self.taken_by, finished_at__isnull=True).update(
            finished_at=now, taken_until=None, outcome=outcome
        )
        if done:
            self.finished_at, self.outcome = now, outcome
        return bool(done)


class ReadinessCheck(models.Model):
    """One check of whether the kill switch would work right now (controltower.readiness): the
    token, each ad account, and what a stop pressed at that moment would do. Writes nothing to Meta."""

    class Verdict(models.TextChoices):
        READY = "ready", "READY"
        DEGRADED = "degraded", "DEGRADED"
        NOT_READY = "not_ready", "NOT READY"

    checked_at = models.DateTimeField(default=timezone.now)
    executed_by = models.CharField(max_length=150)
    mode = models.CharField(max_length=8, choices=Mode.choices)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    summary = models.TextField()
    reasons = models.JSONField(default=list, blank=True)
    token = models.JSONField(default=dict, blank=True, help_text="What Meta said about the access token")
    accounts = models.JSONField(default=list, blank=True, help_text="Per ad account: access, status, headroom")
    campaigns_active = models.PositiveIntegerField(default=0)
    paused_at_once = models.PositiveIntegerField(default=0, help_text="A stop now would pause these within its answer")
    left_pending = models.PositiveIntegerField(default=0, help_text="... and leave these for Meta's rate window")
    out_of_reach = models.PositiveIntegerField(default=0, help_text="... and could not pause these at all")
    estimated_seconds = models.FloatField(null=True, blank=True, help_text="Meta's part × stop_factor")
    meta_seconds = models.FloatField(null=True, blank=True, help_text="Meta's latencies and batch items alone")
    stop_factor = models.FloatField(
        null=True, blank=True, help_text="The last real stop's time over its estimate (null: no stop seen yet)"
    )
    token_expires_at = models.DateTimeField(null=True, blank=True)
    data_access_expires_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "meta_control_tower_readiness"
        ordering = ["-checked_at", "-id"]
        indexes = [models.Index(fields=["-checked_at"], name="ix_readiness_checked")]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} at {self.checked_at:%Y-%m-%d %H:%M}"

    @classmethod
    def latest(cls, detail: bool = True) -> ReadinessCheck | None:
        """The latest check; without `detail`, its token and per-account JSON are not read (polled paths)."""
        return (cls.objects if detail else cls.objects.defer("token", "accounts")).first()

    @property
    def ready(self) -> bool:
        return self.verdict == self.Verdict.READY


class RecoveryAttempt(models.Model):
    """One recovery action on one module: what ran, why, what it did, and whether it healed."""

    class Trigger(models.TextChoices):
        AUTO = "auto", "Automatic (health cycle)"
        OPERATOR = "operator", "Operator"

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    module_code = models.CharField(max_length=16)
    action = models.CharField(max_length=32)
    confidence = models.FloatField()
    reason = models.TextField()
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.AUTO)
    executed_by = models.CharField(max_length=150)
    run = models.ForeignKey(
        ControlTowerRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="recoveries"
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.JSONField(default=dict, blank=True, help_text="What the action did and its immediate check")
    # Set at the next check: did the module come back ONLINE?
    verified_at = models.DateTimeField(null=True, blank=True)
    healed = models.BooleanField(null=True, blank=True)

    class Meta:
        db_table = "meta_control_tower_recoveries"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["module_code", "started_at"], name="ix_recoveries_module_started")]

    def __str__(self) -> str:
        return f"{self.action} on {self.module_code} ({self.outcome})"


class RecoveryState(models.Model):
    """Per module: the restart policy's memory beyond individual attempts."""

    module_code = models.CharField(primary_key=True, max_length=16)
    # Attempts before this instant no longer count (an operator acted, or it stayed healthy).
    counter_reset_at = models.DateTimeField(null=True, blank=True)
    needs_human = models.BooleanField(default=False)
    needs_human_since = models.DateTimeField(null=True, blank=True)
    healthy_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "meta_control_tower_recovery_state"

    def __str__(self) -> str:
        return f"{self.module_code}{' (needs a human)' if self.needs_human else ''}"


class ExternalModule(models.Model):
    """A module that runs outside this codebase and reports its runs through the API.

    It has no periodic task here, so the tower cannot know its schedule: it declares the
    interval it reports at, and it is overdue (OFFLINE) when no run has been reported for
    longer than that plus SCHEDULER_GRACE_SECONDS. Its report token is stored hashed.
    """

    module = models.OneToOneField(
        "meta_modules.MetaModule", primary_key=True, on_delete=models.CASCADE, related_name="external"
    )
    expected_interval_seconds = models.PositiveIntegerField(help_text="How often it reports a run")
    registered_at = models.DateTimeField(default=timezone.now)
    token_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of its report token; empty = none")
    token_issued_at = models.DateTimeField(null=True, blank=True)
    token_last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "meta_control_tower_external_modules"

    def __str__(self) -> str:
        return f"{self.module_id} (external, every {self.expected_interval_seconds} s)"

    @staticmethod
    def hash_token(key: str) -> str:
        # A random 256-bit key needs no slow hash: sha256 makes a stolen table useless.
        return hashlib.sha256(key.encode()).hexdigest()

    def issue_token(self) -> str:
        """A new report token (the previous one stops working at once); only its hash is kept."""
        key = secrets.token_urlsafe(32)
        self.token_hash, self.token_issued_at, self.token_last_used_at = self.hash_token(key), timezone.now(), None
        self.save(update_fields=["token_hash", "token_issued_at", "token_last_used_at"])
        return key

    def token_matches(self, key: str) -> bool:
        return bool(self.token_hash) and hmac.compare_digest(self.token_hash, self.hash_token(key))


class ApiToken(models.Model):
    """An API bearer token of a staff user. Only the sha256 of its random 256-bit key is stored
    (as for ExternalModule): the key is shown once, when issued. A user may hold several, each
    named, with its last use and an optional expiry; revoking one leaves the others working."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8, help_text="The key's first characters, to tell tokens apart")
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 of the key")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty = never expires")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    class Meta:
        db_table = "meta_control_tower_api_tokens"
        ordering = ["user", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=models.Q(revoked_at__isnull=True),
                name="api_token_name_unique_while_live",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def digest_of(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, user: Any, name: str, days: int | None, created_by: str) -> tuple[ApiToken, str]:
        token = cls(user=user, name=name)
        return token, token.save_with_new_key(days, created_by)

    def save_with_new_key(self, days: int | None, created_by: str) -> str:
        """Store a new token and return its key (hex, so it passes the header check); the key is not kept."""
        key = secrets.token_hex(32)
        now = timezone.now()
        self.prefix, self.digest, self.created_at, self.created_by = key[:8], self.digest_of(key), now, created_by
        self.expires_at = now + timedelta(days=days) if days else None
        self.save()
        return key

    def refusal(self, now: datetime) -> str | None:
        """Why this token no longer authenticates, or None."""
        if self.revoked_at is not None:
            return "Token revoked."
        if self.expires_at is not None and self.expires_at <= now:
            return "Token expired."
        return None

    @classmethod
    def live(cls) -> models.QuerySet[ApiToken]:
        return cls.objects.filter(revoked_at__isnull=True)


class Canary(models.Model):
    """A campaign an operator designated for fire drills (at most one per ad account): a drill
    pauses it and re-activates it through the kill switch's own calls, and touches nothing else."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account_id = models.CharField(max_length=40, unique=True, help_text="act_…")
    campaign_id = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=400, blank=True, help_text="The campaign's name on Meta when designated")
    designated_by = models.CharField(max_length=150)
    designated_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField(blank=True)

    class Meta:
        db_table = "meta_control_tower_canaries"
        ordering = ["account_id"]

    def __str__(self) -> str:
        return f"canary {self.campaign_id} ({self.account_id})"


class FireDrill(models.Model):
    """One fire drill: each canary paused and re-activated, both round trips measured.

    At most one runs at a time: `begin` claims by inserting the one `running` row a partial unique
    index allows; a drill whose process died is closed (failed, interrupted) once it cannot be alive.
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        REFUSED = "refused", "Refused (not run)"

    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled (DRILL_SCHEDULE)"
        OPERATOR = "operator", "Operator"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.OPERATOR)
    executed_by = models.CharField(max_length=150)
    reason = models.TextField(blank=True)
    mode = models.CharField(max_length=8, choices=Mode.choices)
    results = models.JSONField(
        default=list,
        blank=True,
        help_text="Per canary: account, campaign_id, name, paused_ms, resumed_ms, outcome, failed_at, error",
    )
    pause_ms = models.PositiveIntegerField(null=True, blank=True, help_text="The slowest confirmed pause")
    resume_ms = models.PositiveIntegerField(null=True, blank=True, help_text="The slowest confirmed re-activation")
    message = models.TextField(blank=True)

    class Meta:
        db_table = "meta_control_tower_fire_drills"
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["state"], condition=models.Q(state="running"), name="uq_one_running_drill")
        ]
        indexes = [models.Index(fields=["state", "started_at"], name="ix_fire_drills_state_started")]

    def __str__(self) -> str:
        return f"fire drill {self.state} @ {self.started_at:%Y-%m-%d %H:%M:%S}"

    @staticmethod
    def alive_for() -> timedelta:
        """The longest a live drill can run: four steps (read, pause, re-activate, re-pause) of one
        kill-switch deadline each, and a minute of margin."""
        return timedelta(seconds=4 * settings.EMERGENCY_STOP_DEADLINE_SECONDS + 60)

    @classmethod
    def running(cls) -> FireDrill | None:
        return cls.objects.filter(state=cls.State.RUNNING).first()

    @classmethod
    def begin(cls, actor: str, reason: str, trigger: str) -> FireDrill | None:
        """Claim the one running drill; None when another drill is running. A running one that
        cannot be alive any more is closed first (a conditional update: one closer wins)."""
        cls.objects.filter(state=cls.State.RUNNING, started_at__lt=timezone.now() - cls.alive_for()).update(
            state=cls.State.FAILED,
            finished_at=timezone.now(),
            message="Interrupted: the process running this drill ended before it finished.",
        )
        try:
            with transaction.atomic():
                return cls.objects.create(
                    executed_by=actor, reason=reason, trigger=trigger, mode=settings.META_MODE, state=cls.State.RUNNING
                )
        except IntegrityError:
            return None

    @classmethod
    def refused(cls, actor: str, reason: str, trigger: str, why: str) -> FireDrill:
        """A drill that was asked for and not run (halted, busy, no canary): recorded with why."""
        now = timezone.now()
        return cls.objects.create(
            executed_by=actor,
            reason=reason,
            trigger=trigger,
            mode=settings.META_MODE,
            state=cls.State.REFUSED,
            started_at=now,
            finished_at=now,
            message=why,
        )

    def finish(self, state: str, **outcome: Any) -> bool:
        """The drill ended (passed or failed) with its outcome (fields of this model); False when it
        was no longer running (closed as interrupted meanwhile)."""
        now = timezone.now()
        done = FireDrill.objects.filter(pk=self.pk, state=self.State.RUNNING).update(
            state=state, finished_at=now, **outcome
        )
        if done:
            self.state, self.finished_at = state, now
            for name, value in outcome.items():
                setattr(self, name, value)
        return bool(done)

    @classmethod
    def latest_verdict(cls) -> FireDrill | None:
        """The latest drill that came to a verdict (passed or failed; refused ones were not run)."""
        return cls.objects.filter(state__in=(cls.State.PASSED, cls.State.FAILED)).order_by("-finished_at").first()
