"""Shapes of the report, history, module and external-run endpoints, and their query parameters.

Query-parameter serializers validate every filter (a bad value is a 400 with field errors)
and turn it into ORM lookups; response serializers describe every field for the OpenAPI schema.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import serializers

from controltower import campaign_lists, rules
from controltower.api.serializers import RecommendationSerializer, StakesSerializer
from controltower.api.strict import (
    JsonCharField,
    JsonIntegerField,
    JsonObjectSerializer,
    JsonUUIDField,
    storable_json,
)
from controltower.commander import COMMANDS
from controltower.models import (
    CampaignHold,
    ControlTowerRun,
    ModuleStatus,
    RunState,
    RunType,
    SystemHealthLog,
    SystemStatus,
)
from meta_modules.models import MetaModule, ModuleRun

MAX_REPORT_DAYS = 366
DEFAULT_REPORT_DAYS = 7
MAX_PAGE_SIZE = 200
PG_INTEGER_MAX = 2_147_483_647  # PositiveIntegerField's upper bound on every backend
CLOCK_SKEW = timedelta(minutes=5)  # a reporting module's clock may run a little ahead of ours
SUMMARY_MAX_BYTES = 20_000
EARLIEST = datetime.min.replace(tzinfo=UTC)  # a report period starts no earlier


# --- GET report ------------------------------------------------------------------------------


def days_before(instant: datetime, days: int) -> datetime:
    """`days` before `instant`, or the first instant of the calendar when that would be before it."""
    try:
        return instant - timedelta(days=days)
    except OverflowError:
        return EARLIEST


class ReportQuerySerializer(serializers.Serializer):
    """The period: `days` back from `until` (default now), or `since`…`until`."""

    days = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_REPORT_DAYS,
        help_text=f"Length of the period in days, ending at `until` (default {DEFAULT_REPORT_DAYS}).",
    )
    since = serializers.DateTimeField(
        required=False, help_text="Start of the period (ISO 8601; naive = UTC). Not with days."
    )
    until = serializers.DateTimeField(
        required=False, help_text="End of the period (ISO 8601), default now; a future end is taken as now."
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        now = timezone.now()
        if "days" in data and "since" in data:
            raise serializers.ValidationError({"days": ["Give either days or since, not both."]})
        requested_until = data.get("until", now)
        if "since" in data and data["since"] >= requested_until:
            raise serializers.ValidationError({"since": ["since must be before until."]})
        until = min(requested_until, now)  # the future has no history yet
        since = data.get("since") or days_before(until, data.get("days", DEFAULT_REPORT_DAYS))
        if since >= until:  # without since, only an until at the calendar's first instant leaves nothing
            raise serializers.ValidationError(
                {"since": ["since is in the future."]}
                if "since" in data
                else {"until": [f"until must be after {EARLIEST.isoformat()}."]}
            )
        if until - since > timedelta(days=MAX_REPORT_DAYS):
            raise serializers.ValidationError({"since": [f"The period is at most {MAX_REPORT_DAYS} days."]})
        return {"since": since, "until": until}


class PeriodSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    seconds = serializers.FloatField(min_value=0)
    generated_at = serializers.DateTimeField()


class SystemShareSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SystemStatus.choices)
    seconds = serializers.FloatField(min_value=0)
    pct = serializers.FloatField(min_value=0, max_value=100, help_text="Share of the known time.")


class ModuleShareSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ModuleStatus.choices)
    seconds = serializers.FloatField(min_value=0)
    pct = serializers.FloatField(min_value=0, max_value=100, help_text="Share of the module's known time.")


def _pct(help_text: str) -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, min_value=0, max_value=100, help_text=help_text)


class SystemUptimeSerializer(serializers.Serializer):
    uptime_pct = _pct(
        "Share of the known time the system was HEALTHY, STARTING time left out (neither up nor "
        "down); null without any check in the period, or when it was starting throughout."
    )
    known_seconds = serializers.FloatField(min_value=0, help_text="From the first check of the period to its end.")
    unknown_seconds = serializers.FloatField(min_value=0, help_text="Before the first check: left out of the shares.")
    points = serializers.IntegerField(min_value=0, help_text="Completed health checks, emergency stops and resumes.")
    distribution = SystemShareSerializer(many=True)


class ModuleAvailabilitySerializer(serializers.Serializer):
    module = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    checks = serializers.IntegerField(min_value=0)
    availability_pct = _pct(
        "ONLINE share of the known time, time STOPPED on purpose or UNKNOWN (waiting for its "
        "first run) left out; null when it was stopped or waiting throughout."
    )
    counted_seconds = serializers.FloatField(
        min_value=0, help_text="Known time minus time stopped on purpose or waiting for its first run."
    )
    distribution = ModuleShareSerializer(many=True)


class AvailabilitySerializer(serializers.Serializer):
    overall_pct = _pct("ONLINE share of all modules' counted time.")
    modules = ModuleAvailabilitySerializer(many=True)


class ModuleMttrSerializer(serializers.Serializer):
    module = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    episodes = serializers.IntegerField(min_value=0, help_text="Closed episodes (back ONLINE within the period).")
    mean_seconds = serializers.FloatField(allow_null=True, min_value=0)
    longest_seconds = serializers.FloatField(allow_null=True, min_value=0)


class OpenEpisodeSerializer(serializers.Serializer):
    module = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    since = serializers.DateTimeField(help_text="First failing check of the episode (or of the period).")
    open_seconds = serializers.FloatField(min_value=0, help_text="From `since` to the end of the period.")


class MttrSerializer(serializers.Serializer):
    mean_seconds = serializers.FloatField(allow_null=True, min_value=0, help_text="Mean over every closed episode.")
    episodes = serializers.IntegerField(min_value=0)
    modules = ModuleMttrSerializer(many=True)
    open_episodes = OpenEpisodeSerializer(many=True)


class RecoveryActionSerializer(serializers.Serializer):
    action = serializers.CharField()
    attempts = serializers.IntegerField(min_value=0)
    verified = serializers.IntegerField(min_value=0)
    healed = serializers.IntegerField(min_value=0)
    success_pct = _pct("healed / verified.")


class AutoRecoverySerializer(serializers.Serializer):
    attempts = serializers.IntegerField(min_value=0, help_text="Automatic actions (escalations apart).")
    verified = serializers.IntegerField(min_value=0, help_text="Attempts judged at the check after them.")
    healed = serializers.IntegerField(min_value=0, help_text="Verified attempts after which the module was ONLINE.")
    success_pct = _pct("healed / verified; null before any verification.")
    escalations = serializers.IntegerField(min_value=0, help_text="Modules handed to a human (ALERT_ADMIN).")
    operator_attempts = serializers.IntegerField(min_value=0, help_text="Procedures run by hand (not in the rate).")
    by_action = RecoveryActionSerializer(many=True)


class EmergencyStopEntrySerializer(serializers.Serializer):
    run_id = serializers.UUIDField()
    stopped_at = serializers.DateTimeField()
    stopped_by = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)
    resumed_at = serializers.DateTimeField(allow_null=True, help_text="The completed resume that ended it.")
    resumed_by = serializers.CharField(allow_blank=True)
    still_active = serializers.BooleanField()
    duration_seconds = serializers.FloatField(min_value=0, help_text="Until the resume, or until now if still active.")


class WeekCountSerializer(serializers.Serializer):
    week = serializers.CharField(help_text="ISO week, e.g. 2025-W03 (UTC).")
    count = serializers.IntegerField(min_value=0)


class EmergencyStopsSerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=0, help_text="Halts begun in the period (re-sweeps are not new halts).")
    per_week = WeekCountSerializer(many=True)
    mean_per_week = serializers.FloatField(
        min_value=0,
        allow_null=True,
        help_text="count per 7 days; null over a period shorter than a week (not extrapolated: see count).",
    )
    stops = EmergencyStopEntrySerializer(many=True)


class DrillEntrySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    state = serializers.CharField(help_text="running, passed, failed or refused.")
    trigger = serializers.CharField(help_text="scheduled or operator.")
    executed_by = serializers.CharField()
    pause_ms = serializers.IntegerField(allow_null=True, help_text="The slowest confirmed pause.")
    resume_ms = serializers.IntegerField(allow_null=True, help_text="The slowest confirmed re-activation.")
    message = serializers.CharField(allow_blank=True)


class FireDrillsSerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=0, help_text="Drills started in the period.")
    running = serializers.IntegerField(min_value=0)
    passed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)
    refused = serializers.IntegerField(min_value=0, help_text="Asked for and not run (halted, busy, no canary).")
    latest = DrillEntrySerializer(many=True, help_text="The 10 latest, newest first.")


class AlertQualitySerializer(serializers.Serializer):
    opened = serializers.IntegerField(min_value=0, help_text="Alerts opened in the period (excluded kinds apart).")
    judged = serializers.IntegerField(min_value=0, help_text="Those whose next check has happened.")
    false_positives = serializers.IntegerField(
        min_value=0, help_text="Cleared by the next check with no action on their module."
    )
    false_positive_pct = _pct("false_positives / judged.")
    excluded_prefixes = serializers.ListField(child=serializers.CharField(), help_text="Alert kinds not judged.")


class RunTotalsSerializer(serializers.Serializer):
    module_runs = serializers.IntegerField(min_value=0)
    successes = serializers.IntegerField(min_value=0)
    failures = serializers.IntegerField(min_value=0)
    timeouts = serializers.IntegerField(min_value=0)
    skipped = serializers.IntegerField(min_value=0)
    running = serializers.IntegerField(min_value=0)
    errors = serializers.IntegerField(min_value=0, help_text="failures + timeouts.")
    api_calls = serializers.IntegerField(min_value=0)
    api_errors = serializers.IntegerField(min_value=0)


class TopErrorSerializer(serializers.Serializer):
    message = serializers.CharField(allow_blank=True)
    module = serializers.CharField()
    count = serializers.IntegerField(min_value=1)
    last_seen = serializers.DateTimeField()


class ReportSerializer(serializers.Serializer):
    """GET report: the spec's success metrics over one period, computed by the database."""

    period = PeriodSerializer()
    system_uptime = SystemUptimeSerializer()
    module_availability = AvailabilitySerializer()
    mttr = MttrSerializer()
    auto_recovery = AutoRecoverySerializer()
    emergency_stops = EmergencyStopsSerializer()
    fire_drills = FireDrillsSerializer(help_text="Fire drills on the canary campaigns (controltower/drills.py).")
    alerts = AlertQualitySerializer()
    totals = RunTotalsSerializer(help_text="Module runs started in the period.")
    top_errors = TopErrorSerializer(many=True, help_text="The 10 most frequent failure messages, per module.")
    recommendations = RecommendationSerializer(many=True, help_text="From a live evaluation now.")


# --- list filters ----------------------------------------------------------------------------


class ListQuerySerializer(serializers.Serializer):
    """Pagination and the since/until window every history list has; subclasses add filters.

    `lookups` maps a parameter to its ORM lookup; `time_field` is what since/until bound.
    """

    lookups: dict[str, str] = {}
    time_field = ""
    default_ordering: tuple[str, ...] = ()

    page = serializers.IntegerField(required=False, min_value=1, help_text="Page number (from 1).")
    page_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_PAGE_SIZE, help_text=f"Items per page (at most {MAX_PAGE_SIZE})."
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if "since" in data and "until" in data and data["since"] >= data["until"]:
            raise serializers.ValidationError({"since": ["since must be before until."]})
        return data

    def apply(self, queryset: QuerySet) -> QuerySet:
        data = self.validated_data
        filters = {lookup: data[name] for name, lookup in self.lookups.items() if name in data}
        if self.time_field:
            filters.update(
                {
                    f"{self.time_field}__{op}": data[name]
                    for name, op in (("since", "gte"), ("until", "lt"))
                    if name in data
                }
            )
        ordering = [data["ordering"]] if "ordering" in data else list(self.default_ordering)
        # The primary key breaks ties, so pages never overlap or skip rows.
        return queryset.filter(**filters).order_by(*ordering, "pk")


def _window(what: str) -> tuple[serializers.DateTimeField, serializers.DateTimeField]:
    return (
        serializers.DateTimeField(required=False, help_text=f"Only {what} at or after this instant (ISO 8601)."),
        serializers.DateTimeField(required=False, help_text=f"Only {what} before this instant (ISO 8601)."),
    )


def _ordering(field: str) -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=[field, f"-{field}"], required=False, help_text=f"Sort by {field}; '-' for newest first (default)."
    )


class RunQuerySerializer(ListQuerySerializer):
    lookups = {
        "run_type": "run_type",
        "system_status": "system_status",
        "command_type": "command_type",
        "state": "state",
    }
    time_field = "executed_at"
    default_ordering = ("-executed_at",)

    run_type = serializers.ChoiceField(choices=RunType.choices, required=False)
    system_status = serializers.ChoiceField(choices=SystemStatus.choices, required=False)
    command_type = serializers.ChoiceField(choices=list(COMMANDS), required=False)
    state = serializers.ChoiceField(choices=RunState.choices, required=False)
    since, until = _window("runs executed")
    ordering = _ordering("executed_at")


class HealthLogQuerySerializer(ListQuerySerializer):
    lookups = {"module": "module_name", "health_status": "health_status", "run": "run_id"}
    time_field = "checked_at"
    default_ordering = ("-checked_at",)

    module = serializers.CharField(required=False, max_length=16, help_text="Module code, e.g. 10.7.")
    health_status = serializers.ChoiceField(choices=ModuleStatus.choices, required=False)
    run = serializers.UUIDField(required=False, help_text="Only the logs of this health check.")
    since, until = _window("logs checked")
    ordering = _ordering("checked_at")


class ModuleQuerySerializer(ListQuerySerializer):
    lookups = {"desired_state": "desired_state", "health_status": "health_status", "external": "is_external"}
    default_ordering = ("position", "code")  # registry order: 10.2 before 10.10

    desired_state = serializers.ChoiceField(choices=MetaModule.DesiredState.choices, required=False)
    health_status = serializers.ChoiceField(
        choices=ModuleStatus.choices, required=False, help_text="Status at the latest health check."
    )
    external = serializers.BooleanField(
        required=False, help_text="true: only modules reporting from outside; false: only ours (default: both)."
    )


# --- history rows ----------------------------------------------------------------------------


class RunSerializer(serializers.ModelSerializer):
    """One health check or command (the spec's meta_control_tower_runs row). Per-campaign lists in
    `actions_executed` and `errors_encountered` are capped (rules.capped): the first
    RUN_RECORD_ITEMS, then "… and N more — see the run's campaigns" (GET runs/{id}/campaigns)."""

    def to_representation(self, instance: ControlTowerRun) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["errors_encountered"] = rules.capped(data["errors_encountered"])
        data["actions_executed"] = rules.capped_actions(data["actions_executed"])
        return data

    class Meta:
        model = ControlTowerRun
        fields = [
            "id",
            "run_type",
            "state",
            "command_type",
            "system_status",
            "total_modules_checked",
            "online_modules",
            "degraded_modules",
            "offline_modules",
            "modules_expected",
            "modules_run",
            "module_health_details",
            "actions_executed",
            "errors_encountered",
            "recoveries_performed",
            "total_api_calls_24h",
            "total_errors_24h",
            "total_campaigns_active",
            "total_daily_budget_usd",
            "db_connection_pool_size",
            "db_active_connections",
            "db_query_avg_ms",
            "execution_time_ms",
            "executed_by",
            "executed_at",
            "recommendations",
            "alerts",
            "mode",
            "reason",
            "parameters",
            "modules_affected",
            "message",
        ]


class ReasonCountSerializer(serializers.Serializer):
    reason = serializers.CharField()
    count = serializers.IntegerField(min_value=1)


class AccountCampaignsSerializer(serializers.Serializer):
    account = serializers.CharField(help_text="The ad account (act_…).")
    campaigns = serializers.IntegerField(min_value=0, help_text="Its campaigns in the run's ledger.")
    by_state = serializers.DictField(
        child=serializers.IntegerField(min_value=0),
        help_text="Ledger state → how many of them (states with none left out).",
    )
    currency = serializers.CharField(
        allow_blank=True, help_text="The account's currency from the mirror; blank before it synced the account."
    )
    daily_budget_minor = serializers.IntegerField(
        min_value=0, help_text="Sum of the campaigns' own daily budgets as the stop found them, in minor units."
    )
    daily_budget = serializers.CharField(
        allow_null=True, help_text='The same, for people ("1,250.00 USD"); null without a currency.'
    )
    adset_budget_campaigns = serializers.IntegerField(
        min_value=0, help_text="Without a campaign budget (not counted above)."
    )
    lifetime_budget_campaigns = serializers.IntegerField(
        min_value=0, help_text="On a lifetime budget (not counted above)."
    )
    reasons = ReasonCountSerializer(
        many=True,
        help_text=f"Its {campaign_lists.REASONS_PER_ACCOUNT} commonest errors (a resume: its notes, why campaigns "
        "were left), commonest first.",
    )


class RunCampaignsSerializer(serializers.Serializer):
    """A stop's or resume's campaigns in summary; the campaigns themselves: GET runs/{id}/campaigns."""

    url = serializers.CharField(help_text="The run's campaigns, paged and searchable.")
    total = serializers.IntegerField(min_value=0)
    by_state = serializers.DictField(child=serializers.IntegerField(min_value=0), help_text="Ledger state → count.")
    accounts = AccountCampaignsSerializer(many=True, help_text="One row per ad account, in account order.")
    totals = StakesSerializer(many=True, help_text="Daily budget held, one total per currency (never added across).")


class RunDetailSerializer(RunSerializer):
    """One run, and for an emergency stop or a resume its campaigns summarised per ad account."""

    campaigns = RunCampaignsSerializer(
        source="campaign_summary",
        allow_null=True,
        help_text="Emergency stops and resumes: counts per state, budget and commonest errors per ad account "
        "(from the ledger, so background sweeps show up); null for other runs.",
    )

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "campaigns"]


class RunCampaignQuerySerializer(serializers.Serializer):
    """GET runs/{id}/campaigns: which of the run's campaigns, and which page."""

    account = serializers.RegexField(
        r"^act_\d{1,20}$", required=False, max_length=24, help_text="Only this ad account (act_123)."
    )
    state = serializers.ChoiceField(
        choices=CampaignHold.State.choices, required=False, help_text="Only holds in this state."
    )
    q = serializers.CharField(
        required=False, max_length=400, help_text="Only campaigns whose id or name contains this (any case)."
    )
    page = serializers.IntegerField(required=False, min_value=1, help_text="Page number (from 1).")
    page_size = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_PAGE_SIZE,
        help_text=f"Campaigns per page (default {campaign_lists.PAGE_SIZE}, at most {MAX_PAGE_SIZE}).",
    )

    def search(self) -> campaign_lists.Search:
        return campaign_lists.Search(**{k: v for k, v in self.validated_data.items() if k not in ("page", "page_size")})


class HoldSerializer(serializers.ModelSerializer):
    """One campaign in the emergency-stop ledger."""

    class Meta:
        model = CampaignHold
        fields = [
            "campaign_id",
            "campaign_name",
            "account_id",
            "state",
            "prior_status",
            "prior_effective_status",
            "snapshot",
            "attempts",
            "last_error",
            "paused_at",
            "resumed_at",
            "resume_note",
        ]


class HealthLogSerializer(serializers.ModelSerializer):
    """One module at one check (the spec's meta_system_health_logs row)."""

    run = serializers.UUIDField(source="run_id", allow_null=True, help_text="The health check that wrote it.")

    class Meta:
        model = SystemHealthLog
        fields = [
            "id",
            "run",
            "module_name",
            "module_full_name",
            "health_status",
            "success_rate",
            "avg_execution_time_ms",
            "error_count_24h",
            "api_calls_24h",
            "is_scheduler_running",
            "is_db_healthy",
            "is_api_healthy",
            "last_run",
            "next_run",
            "last_error",
            "last_error_time",
            "recovery_attempts",
            "last_recovery_action",
            "recovery_successful",
            "db_connections",
            "memory_usage_mb",
            "cpu_usage_pct",
            "checked_at",
            "mode",
        ]


class ModuleRunSerializer(serializers.ModelSerializer):
    """One execution of a module's job (or one reported from outside)."""

    class Meta:
        model = ModuleRun
        fields = [
            "id",
            "started_at",
            "finished_at",
            "outcome",
            "trigger",
            "error_message",
            "duration_ms",
            "api_calls",
            "api_errors",
            "cpu_ms",
            "peak_rss_mb",
            "summary",
        ]


class ModuleSerializer(serializers.Serializer):
    """A supervised module with its schedule and its status at the latest health check."""

    code = serializers.CharField()
    name = serializers.CharField()
    function = serializers.CharField()
    calls_meta = serializers.BooleanField()
    desired_state = serializers.ChoiceField(choices=MetaModule.DesiredState.choices)
    desired_state_by = serializers.CharField(allow_blank=True)
    desired_state_at = serializers.DateTimeField(allow_null=True)
    desired_state_reason = serializers.CharField(allow_blank=True)
    external = serializers.BooleanField(
        source="is_external", help_text="Runs outside this codebase and reports its runs."
    )
    interval_seconds = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Its schedule (external: the interval it reports at)."
    )
    scheduler_enabled = serializers.BooleanField(
        allow_null=True, help_text="Its periodic task is enabled; null without one (external)."
    )
    health_status = serializers.ChoiceField(
        choices=ModuleStatus.choices, allow_null=True, help_text="At the latest health check; null before the first."
    )
    health_checked_at = serializers.DateTimeField(allow_null=True)


class ModuleDetailSerializer(ModuleSerializer):
    latest_health = HealthLogSerializer(allow_null=True, help_text="Its newest health log.")
    health_24h = HealthLogSerializer(many=True, help_text="Its health logs of the last 24 h, newest first.")
    recent_runs = ModuleRunSerializer(many=True, help_text="Its last 20 runs, newest first.")


class ModuleActionSerializer(JsonObjectSerializer):
    reason = JsonCharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="Recorded with the command."
    )


# --- external run reports --------------------------------------------------------------------


class ExternalRunSerializer(JsonObjectSerializer):
    """A run reported by a module that runs outside this codebase (like a heartbeat)."""

    run_id = JsonUUIDField(
        required=False,
        help_text="Report the same run again (e.g. `running`, then its end) or retry "
        "safely: created once, then updated while running.",
    )
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Default for a finished run: started_at + duration_ms, else now."
    )
    outcome = serializers.ChoiceField(choices=ModuleRun.Outcome.choices)
    duration_ms = JsonIntegerField(required=False, allow_null=True, min_value=0, max_value=PG_INTEGER_MAX)
    api_calls = JsonIntegerField(required=False, default=0, min_value=0, max_value=PG_INTEGER_MAX)
    api_errors = JsonIntegerField(required=False, default=0, min_value=0, max_value=PG_INTEGER_MAX)
    error_message = JsonCharField(required=False, allow_blank=True, default="", max_length=5000)
    summary = serializers.DictField(required=False, default=dict, help_text="What the run did (a JSON object).")

    def validate_summary(self, summary: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(summary)) > SUMMARY_MAX_BYTES:
            raise serializers.ValidationError(f"At most {SUMMARY_MAX_BYTES} bytes of JSON.")
        if not storable_json(summary):
            raise serializers.ValidationError("Null characters and lone surrogates are not allowed.")
        return summary

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        now = timezone.now()
        started, finished, duration = data["started_at"], data.get("finished_at"), data.get("duration_ms")
        if started > now + CLOCK_SKEW:
            raise serializers.ValidationError({"started_at": ["started_at is in the future."]})
        if data["api_errors"] > data["api_calls"]:
            raise serializers.ValidationError({"api_errors": ["More failed calls than calls."]})
        if data["outcome"] == ModuleRun.Outcome.RUNNING:
            if finished is not None:
                raise serializers.ValidationError({"finished_at": ["A running run has not finished."]})
            return {**data, "finished_at": None, "duration_ms": duration}
        if finished is None:
            finished = started + timedelta(milliseconds=duration) if duration is not None else max(now, started)
        if finished < started:
            raise serializers.ValidationError({"finished_at": ["finished_at is before started_at."]})
        if duration is None:
            duration = min(round((finished - started).total_seconds() * 1000), PG_INTEGER_MAX)
        return {**data, "finished_at": finished, "duration_ms": duration}


class ExternalRunResultSerializer(serializers.Serializer):
    module = serializers.CharField()
    run = ModuleRunSerializer()
    may_act = serializers.BooleanField(
        help_text="false while the tower is halted or the module is stopped: "
        "the module must not act until this turns true again."
    )
    refusal = serializers.CharField(allow_blank=True, help_text="Why it may not act ('' when it may).")
