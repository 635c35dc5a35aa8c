"""The supervised stack: its modules, their runs, the campaign mirror (accounts, campaigns, ad sets,
ads, daily insights) and what the module jobs produce (drafts, ROAS, budget proposals, spend
snapshots and spikes, copy variants, audience scores, creative ranks, fatigue, winners and briefs)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import reduce
from operator import or_
from zoneinfo import ZoneInfo

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from meta_modules import days


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
    # Set by a RESET_MODULE recovery: errors before it no longer count against the module.
    error_window_start = models.DateTimeField(null=True, blank=True)
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
    # A run done in parts (one task per group of ad accounts, meta_modules/parts.py): the parts and
    # the dispatch that have not reported yet, and when the run is closed whatever has not.
    parts_pending = models.PositiveIntegerField(
        null=True, blank=True, help_text="Parts (and the dispatch) yet to report; empty for a run done in one piece"
    )
    parts_deadline = models.DateTimeField(null=True, blank=True, help_text="When the run is closed without them")

    class Meta:
        db_table = "meta_module_runs"
        ordering = ["-started_at"]
        indexes = [
            # "This module, last 24 h" and "latest run of each module".
            models.Index(fields=["module", "started_at"], name="ix_module_runs_module_started"),
            models.Index(fields=["started_at"], name="ix_module_runs_started"),
            # "Latest failure of this module": without it, a module that rarely fails has its whole
            # history scanned at every health check (bench/health_scale.py).
            models.Index(
                fields=["module", "started_at"],
                name="ix_module_runs_failures",
                condition=models.Q(outcome__in=["failure", "timeout"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.module.code} {self.outcome} @ {self.started_at:%Y-%m-%d %H:%M:%S}"


class ModuleRunPart(models.Model):
    """One task's share of a module run that works per ad account: a few accounts, each with its
    result (done, failed, deferred, refused, lost) and counts. Written by meta_modules/parts.py."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        REFUSED = "refused", "Refused (halted or stopped)"
        LOST = "lost", "Lost (no report by its deadline)"

    OPEN = (State.PENDING, State.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(ModuleRun, on_delete=models.CASCADE, related_name="parts")
    accounts = models.JSONField(default=list, help_text="The ad accounts of this part")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    queued = models.BooleanField(default=False, help_text="Sent to the workers (else run inside the module task)")
    deadline_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    results = models.JSONField(default=dict, blank=True, help_text="Per account: status, error or reason, counts")
    error = models.TextField(blank=True)
    api_calls = models.PositiveIntegerField(default=0)
    api_errors = models.PositiveIntegerField(default=0)
    cpu_ms = models.PositiveIntegerField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "meta_module_run_parts"
        ordering = ["-deadline_at"]
        indexes = [
            # Open parts past their deadline, found by every dispatch (parts.close_overdue).
            models.Index(
                fields=["deadline_at"], name="ix_run_parts_open", condition=models.Q(state__in=["pending", "running"])
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} {', '.join(self.accounts)} {self.state}"


# --- The campaign mirror: synced from Meta, never the source of truth for the kill switch ---


class AdAccountQuerySet(models.QuerySet):
    def zones(self) -> dict[str, ZoneInfo]:
        """Each account's zone by id (one query)."""
        return {pk: days.zone(name) for pk, name in self.values_list("pk", "timezone_name")}

    def by_local_today(self, now: datetime) -> dict[date, list[str]]:
        """The accounts' ids grouped by their local today at `now` (one query, at most three groups)."""
        return days.group_by_local_today(self.zones().items(), now)


def per_local_today(groups: Mapping[date, list[str]], account: str, condition: Callable[[date], Q]) -> Q:
    """Rows of each account (`account`: the lookup to its id) that meet `condition` of that
    account's local today, for groups from `AdAccountQuerySet.by_local_today`. No group: no row."""
    parts = [Q(**{f"{account}__in": ids}) & condition(today) for today, ids in groups.items()]
    return reduce(or_, parts) if parts else Q(pk__in=[])


class AdAccount(models.Model):
    id = models.CharField(primary_key=True, max_length=40, help_text="act_<account id>")
    name = models.CharField(max_length=200, blank=True)
    currency = models.CharField(
        max_length=8, blank=True, help_text="ISO 4217; Meta's money fields are in its minor units"
    )
    timezone_name = models.CharField(
        max_length=64,
        blank=True,
        help_text="IANA zone of the account's days (its today, insights days, timestamps), e.g. "
        "America/Los_Angeles. Blank or unknown: UTC.",
    )
    timezone_offset_hours_utc = models.FloatField(
        null=True,
        blank=True,
        help_text="Offset from UTC in hours at the last sync, as Meta reports it; it changes with daylight "
        "saving, so days are computed from the zone, not from this.",
    )
    synced_at = models.DateTimeField(default=timezone.now)

    objects = AdAccountQuerySet.as_manager()

    class Meta:
        db_table = "meta_ad_accounts"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.id

    @property
    def zone(self) -> ZoneInfo:
        return days.zone(self.timezone_name)


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
    daily_budget_cents = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Minor units, as Meta sends it"
    )
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
    """One ad's delivery on one day (its account's local day), as Meta's insights report it."""

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

    def __str__(self) -> str:
        return f"{self.ad_id} {self.date}"


# --- What the module jobs produce ---


class CampaignDraft(models.Model):
    """A campaign to create on Meta (10.3, PAUSED) and to activate at its publish time (10.8)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        CREATED = "created", "Created on Meta (paused)"
        PUBLISHED = "published", "Published (active)"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="drafts")
    name = models.CharField(max_length=400)
    objective = models.CharField(max_length=64, default="OUTCOME_SALES")
    daily_budget_cents = models.PositiveBigIntegerField(help_text="Minor units of the account's currency")
    publish_at = models.DateTimeField(
        null=True, blank=True, help_text="When 10.8 activates it; empty = never automatically"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    meta_campaign_id = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True, help_text="Last Meta error for this draft")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "meta_campaign_drafts"
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "publish_at"], name="ix_drafts_status_publish")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class CampaignRoas(models.Model):
    """A campaign's return on ad spend over a window: sum of purchase value / sum of spend."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="roas_history")
    window_start = models.DateField()
    window_end = models.DateField()
    spend = models.DecimalField(max_digits=14, decimal_places=2)
    purchase_value = models.DecimalField(max_digits=14, decimal_places=2)
    roas = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True, help_text="Null when spend is 0")
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "meta_campaign_roas"
        ordering = ["-computed_at"]
        indexes = [models.Index(fields=["campaign", "computed_at"], name="ix_roas_campaign_computed")]

    def __str__(self) -> str:
        return f"{self.campaign_id} ROAS {self.roas} ({self.window_start}..{self.window_end})"


class BudgetProposal(models.Model):
    """A daily-budget change proposed by 10.6 from ROAS, decided by policy or a human, applied by 10.7."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed (waiting for a human)"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        APPLIED = "applied", "Applied on Meta"
        FAILED = "failed", "Failed"

    OPEN = (Status.PROPOSED, Status.APPROVED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="budget_proposals")
    current_budget_cents = models.PositiveBigIntegerField()
    proposed_budget_cents = models.PositiveBigIntegerField()
    applied_budget_cents = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="What was sent to Meta, after guardrails"
    )
    roas = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED)
    created_at = models.DateTimeField(default=timezone.now)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "meta_budget_proposals"
        ordering = ["-created_at"]
        # Never two open proposals for one campaign, even if two runs overlap.
        constraints = [
            models.UniqueConstraint(
                fields=["campaign"],
                condition=models.Q(status__in=["proposed", "approved"]),
                name="uq_open_proposal_per_campaign",
            )
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="ix_proposals_status_created"),
            models.Index(fields=["campaign", "applied_at"], name="ix_proposals_campaign_applied"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.current_budget_cents} → {self.proposed_budget_cents} ({self.status})"


class SpendSnapshot(models.Model):
    """Today's spend of one campaign as Meta reported it at one moment (10.14)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="spend_snapshots")
    taken_at = models.DateTimeField(default=timezone.now)
    day = models.DateField(
        null=True,
        blank=True,
        help_text="Account-local day the spend is of (Meta's date_start); empty on snapshots "
        "taken before the day was recorded",
    )
    spend_today = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        db_table = "meta_spend_snapshots"
        ordering = ["-taken_at"]
        indexes = [
            # 10.9: the latest snapshot of each campaign for its account's local today.
            models.Index(fields=["campaign", "day", "taken_at"], name="ix_snapshots_campaign_day"),
            models.Index(fields=["taken_at"], name="ix_snapshots_taken"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.spend_today} @ {self.taken_at:%Y-%m-%d %H:%M}"


class SpendSpike(models.Model):
    """A campaign spending much faster today than its baseline (10.9); one row per campaign per day."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="spend_spikes")
    day = models.DateField(help_text="The account-local day of the spike")
    detected_at = models.DateTimeField(default=timezone.now, help_text="Last time the spike was measured")
    spend_today = models.DecimalField(max_digits=14, decimal_places=2)
    hourly_rate = models.DecimalField(max_digits=14, decimal_places=4)
    baseline_hourly_rate = models.DecimalField(max_digits=14, decimal_places=4)
    ratio = models.FloatField()
    acknowledged = models.BooleanField(default=False)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    requested_emergency_stop = models.BooleanField(
        default=False, help_text="Set when SPIKE_REQUESTS_EMERGENCY_STOP is on"
    )

    class Meta:
        db_table = "meta_spend_spikes"
        ordering = ["-detected_at"]
        constraints = [models.UniqueConstraint(fields=["campaign", "day"], name="uq_spike_campaign_day")]

    def __str__(self) -> str:
        return f"{self.campaign_id} ×{self.ratio:.1f} on {self.day}"


class CopyVariant(models.Model):
    """New ad copy for a top ad, from one fixed template (10.10)."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        BRIEFED = "briefed", "Briefed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source_ad = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="copy_variants")
    template_key = models.CharField(max_length=32)
    headline = models.CharField(max_length=255)
    body = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "meta_copy_variants"
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["source_ad", "template_key"], name="uq_variant_ad_template")]

    def __str__(self) -> str:
        return f"{self.source_ad_id}/{self.template_key}: {self.headline}"


class AudienceScore(models.Model):
    """An ad set's cost per purchase over 14 days against its account's (10.12)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    adset = models.ForeignKey(AdSet, on_delete=models.CASCADE, related_name="audience_scores")
    computed_at = models.DateTimeField(default=timezone.now)
    spend = models.DecimalField(max_digits=14, decimal_places=2)
    purchases = models.PositiveIntegerField()
    cost_per_purchase = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, help_text="Null when there were no purchases"
    )
    account_cost_per_purchase = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    flagged_weak = models.BooleanField(default=False)

    class Meta:
        db_table = "meta_audience_scores"
        ordering = ["-computed_at"]
        indexes = [models.Index(fields=["adset", "computed_at"], name="ix_audience_adset_computed")]

    def __str__(self) -> str:
        return f"{self.adset_id} CPP {self.cost_per_purchase}{' (weak)' if self.flagged_weak else ''}"


class CreativeRank(models.Model):
    """An ad's place within its ad set by 14-day CTR, ties broken by conversion rate (10.13)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    ad = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="ranks")
    computed_at = models.DateTimeField(default=timezone.now)
    impressions = models.PositiveBigIntegerField()
    clicks = models.PositiveBigIntegerField()
    purchases = models.PositiveIntegerField()
    ctr = models.FloatField()
    cvr = models.FloatField()
    rank_in_adset = models.PositiveSmallIntegerField(help_text="1 = best")

    class Meta:
        db_table = "meta_creative_ranks"
        ordering = ["-computed_at", "rank_in_adset"]
        indexes = [models.Index(fields=["ad", "computed_at"], name="ix_ranks_ad_computed")]

    def __str__(self) -> str:
        return f"{self.ad_id} #{self.rank_in_adset}"


class CreativeFatigue(models.Model):
    """An ad whose CTR of the last 7 days fell well below the 7 days before (10.15); one row per ad per day."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    ad = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="fatigue")
    day = models.DateField(help_text="The account-local day of detection")
    detected_at = models.DateTimeField(default=timezone.now)
    ctr_previous_7d = models.FloatField()
    ctr_last_7d = models.FloatField()
    drop_pct = models.FloatField(help_text="Relative CTR drop in percent")

    class Meta:
        db_table = "meta_creative_fatigue"
        ordering = ["-detected_at"]
        constraints = [models.UniqueConstraint(fields=["ad", "day"], name="uq_fatigue_ad_day")]

    def __str__(self) -> str:
        return f"{self.ad_id} CTR −{self.drop_pct:.0f}% on {self.day}"


class CreativeWinner(models.Model):
    """The ad that converts significantly better than the runner-up in its ad set (10.16)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    adset = models.ForeignKey(AdSet, on_delete=models.CASCADE, related_name="winners")
    ad = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="wins")
    runner_up = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="runner_up_in")
    computed_at = models.DateTimeField(default=timezone.now)
    conversions = models.PositiveIntegerField(help_text="The winner's purchases")
    clicks = models.PositiveBigIntegerField(help_text="The winner's clicks")
    cvr = models.FloatField()
    z_score = models.FloatField()
    p_value = models.FloatField()

    class Meta:
        db_table = "meta_creative_winners"
        ordering = ["-computed_at"]
        indexes = [models.Index(fields=["adset", "computed_at"], name="ix_winners_adset_computed")]

    def __str__(self) -> str:
        return f"{self.adset_id}: {self.ad_id} (p={self.p_value:.3g})"


class CreativeBrief(models.Model):
    """A production brief made from one copy variant (10.17)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    variant = models.OneToOneField(CopyVariant, on_delete=models.CASCADE, related_name="brief")
    created_at = models.DateTimeField(default=timezone.now)
    brief = models.JSONField(help_text="headline, body, source_ad, call_to_action, format")

    class Meta:
        db_table = "meta_creative_briefs"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Brief for {self.variant_id}"
