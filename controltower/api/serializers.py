"""Request and response shapes of the endpoints in api/views.py, field by field for the OpenAPI schema.

Request serializers validate the write endpoints' bodies (strict JSON: api/strict.py). Response
serializers render what the tower's functions return (a health.ModuleHealth as it is, the kill
switch's results, dicts where the view composes the answer) and are the schema that clients (and
the schemathesis run) check responses against. Unknown values are null.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers

from controltower import campaign_lists, channels, rules
from controltower.api.strict import (
    JsonBooleanField,
    JsonCharField,
    JsonIntegerField,
    JsonObjectSerializer,
    JsonRegexField,
    ModuleCodeField,
)
from controltower.commander import ALIASES, COMMANDS, canonical
from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import Alert, Mode, ModuleStatus, Notification, ReadinessCheck, RunState, SystemStatus
from controltower.recovery_policy import Action
from controltower.rules import Leave, Liveness
from meta_modules.models import MetaModule, ModuleRun

RECOMMENDATION_SEVERITIES = [("critical", "Critical"), ("warning", "Warning"), ("info", "Info")]
LIVENESS = [liveness.value for liveness in Liveness]


def _count(help_text: str) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, help_text=help_text)


def _nullable_datetime(help_text: str) -> serializers.DateTimeField:
    return serializers.DateTimeField(allow_null=True, help_text=help_text)


class SchemaQuerySerializer(serializers.Serializer):
    """The parameters of GET /api/schema/."""

    format = serializers.ChoiceField(
        choices=sorted({r.format for r in SpectacularAPIView.renderer_classes}),
        required=False,
        help_text="Default: by the Accept header (YAML without one).",
    )
    lang = serializers.ChoiceField(
        choices=[code for code, _ in settings.LANGUAGES], required=False, help_text="Language of the descriptions."
    )


class ErrorSerializer(serializers.Serializer):
    """Body of a 401/403/404 (field errors of a 400 are an object of field name → messages)."""

    detail = serializers.CharField()


class HeadroomSerializer(serializers.Serializer):
    max_points = serializers.IntegerField(help_text="The tier's rate window in Meta's points.")
    used_points = serializers.FloatField(help_text="Used, as Meta last reported it.")
    list_pages = serializers.IntegerField(help_text="Pages of 100 the stop lists first (1 point each).")
    at_once = serializers.IntegerField(help_text="Campaigns a stop now would pause within its answer.")
    pending = serializers.IntegerField(help_text="Left for the background sweeps until Meta's window frees.")
    seconds = serializers.FloatField(allow_null=True, help_text="This account's part of the stop, estimated.")


class AccountReadinessSerializer(serializers.Serializer):
    account_id = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    verdict = serializers.ChoiceField(choices=ReadinessCheck.Verdict.choices)
    reasons = serializers.ListField(child=serializers.CharField())
    reachable = serializers.BooleanField(help_text="Meta answered a read of the account with this token.")
    error = serializers.CharField(allow_blank=True)
    account_status = serializers.IntegerField(allow_null=True, help_text="Meta's account_status (1 = ACTIVE).")
    account_status_name = serializers.CharField(allow_blank=True)
    disable_reason = serializers.IntegerField(allow_null=True)
    user_tasks = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text="The token's user's tasks in the account."
    )
    editable = serializers.BooleanField(help_text="The user may edit campaigns (MANAGE or ADVERTISE).")
    timezone_name = serializers.CharField(allow_blank=True)
    currency = serializers.CharField(allow_blank=True)
    tier = serializers.CharField(allow_blank=True, help_text="development_access / standard_access; '' unknown.")
    active_campaigns = serializers.IntegerField(help_text="Configured ACTIVE, from the campaign mirror.")
    mirror_synced_at = serializers.DateTimeField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True, help_text="The account read's round trip.")
    headroom = HeadroomSerializer(allow_null=True)
    frees_in_s = serializers.FloatField(allow_null=True, help_text="Until Meta's reported usage decays.")


class TokenReadinessSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=ReadinessCheck.Verdict.choices)
    reasons = serializers.ListField(child=serializers.CharField())
    problem = serializers.CharField(allow_blank=True)
    valid = serializers.BooleanField(allow_null=True)
    type = serializers.CharField(allow_blank=True, help_text="USER, SYSTEM_USER, ... (debug_token)")
    expires_at = serializers.DateTimeField(allow_null=True, help_text="null: never, or not known (source).")
    data_access_expires_at = serializers.DateTimeField(allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField(), allow_null=True)
    source = serializers.CharField(allow_blank=True, help_text="debug_token or permissions")
    error = serializers.CharField(allow_blank=True)


class ReadySerializer(serializers.Serializer):
    """The latest readiness check of the kill switch, in short."""

    verdict = serializers.ChoiceField(choices=ReadinessCheck.Verdict.choices)
    ready = serializers.BooleanField(help_text="verdict is ready.")
    summary = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())
    checked_at = serializers.DateTimeField()
    campaigns_active = serializers.IntegerField()
    paused_at_once = serializers.IntegerField()
    left_pending = serializers.IntegerField()
    out_of_reach = serializers.IntegerField()
    estimated_seconds = serializers.FloatField(
        allow_null=True, help_text="About how long a stop now would take: meta_seconds × stop_factor."
    )
    meta_seconds = serializers.FloatField(
        allow_null=True, help_text="Meta's part alone: each account's requests × its read latency, batch items."
    )
    stop_factor = serializers.FloatField(
        allow_null=True, help_text="The last real stop's time over the estimate before it (≥ 1); null before one."
    )
    token_expires_at = serializers.DateTimeField(allow_null=True)
    data_access_expires_at = serializers.DateTimeField(allow_null=True)


class ReadinessSerializer(ReadySerializer):
    """A readiness check in full: the token and every ad account."""

    executed_by = serializers.CharField()
    duration_ms = serializers.IntegerField()
    token = TokenReadinessSerializer()
    accounts = AccountReadinessSerializer(many=True)


class StatusSerializer(serializers.Serializer):
    """GET status: the spec's fields, plus unknown/stopped counts and, while halted, who/when/why."""

    is_operational = serializers.BooleanField(
        help_text="True when no emergency stop is active and system_status is healthy, degraded or starting."
    )
    emergency_stop_active = serializers.BooleanField()
    last_health_check = _nullable_datetime("When the latest completed health check ran; null before the first.")
    system_status = serializers.ChoiceField(choices=SystemStatus.choices)
    total_modules_monitored = _count("Modules covered by the latest check (all registered modules before the first).")
    online_modules = _count("ONLINE at the latest check.")
    degraded_modules = _count("DEGRADED at the latest check.")
    offline_modules = _count("OFFLINE at the latest check.")
    unknown_modules = _count("UNKNOWN (never finished a run) at the latest check.")
    stopped_modules = _count("Stopped on purpose by an operator at the latest check.")
    modules_run = serializers.IntegerField(
        allow_null=True,
        min_value=0,
        help_text="Of modules_expected, those that have finished a run (STARTING until all have: 'STARTING — "
        "modules_run of modules_expected modules have run'); null before the first check when not starting.",
    )
    modules_expected = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Modules expected to run: all but those stopped on purpose."
    )
    mode = serializers.ChoiceField(choices=Mode.choices)
    meta_access_tiers = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        help_text="Ad account → the Marketing API access tier Meta reported in its usage headers, as of the "
        "latest health check (development_access: about 20 pauses per 5 minutes per account; "
        "standard_access: about 3,000), '' until Meta has said.",
    )
    kill_switch_ready = ReadySerializer(
        allow_null=True, help_text="Would the kill switch work now: the latest readiness check; null before the first."
    )
    halted_by = serializers.CharField(required=False, help_text="Only while an emergency stop is active.")
    # Not nullable: DRF would render an absent nullable field as null instead of leaving it out.
    halted_at = serializers.DateTimeField(required=False, help_text="Only while an emergency stop is active.")
    halt_reason = serializers.CharField(
        required=False, allow_blank=True, help_text="Only while an emergency stop is active."
    )


class ModuleHealthSerializer(serializers.Serializer):
    """One module: every column of the spec's meta_system_health_logs, then the facts behind them."""

    # Reads a health.ModuleHealth as it is: `source` gives the record's own name where the spec's differs.

    module_name = serializers.CharField(source="code", help_text="Module code, e.g. 10.7.")
    module_full_name = serializers.CharField(source="name")
    health_status = serializers.ChoiceField(source="status", choices=ModuleStatus.choices)
    success_rate = serializers.FloatField(
        allow_null=True,
        min_value=0.0,
        max_value=1.0,
        help_text="Share of finished runs that succeeded in 24 h; null without runs.",
    )
    avg_execution_time_ms = serializers.IntegerField(allow_null=True, min_value=0)
    error_count_24h = _count("Failed or timed-out runs in 24 h.")
    api_calls_24h = _count("Meta Graph API requests made by its runs in 24 h.")
    is_scheduler_running = serializers.BooleanField(
        help_text="Its periodic task is enabled, Beat and a worker are alive, and it is not overdue."
    )
    is_db_healthy = serializers.BooleanField()
    is_api_healthy = serializers.BooleanField()
    last_run = _nullable_datetime("Start of its latest finished run.")
    next_run = _nullable_datetime("When its schedule fires next; null while its task is disabled.")
    last_error = serializers.CharField(allow_blank=True)
    last_error_time = _nullable_datetime("Start of its latest failed run.")
    recovery_attempts = _count("Auto-recovery attempts.")
    last_recovery_action = serializers.CharField(allow_blank=True)
    recovery_successful = serializers.BooleanField(allow_null=True)
    db_connections = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Active database connections (PostgreSQL only)."
    )
    memory_usage_mb = serializers.FloatField(allow_null=True, help_text="Peak worker RSS measured by its runs.")
    cpu_usage_pct = serializers.FloatField(allow_null=True, help_text="CPU time over wall time of its runs.")
    function = serializers.CharField()
    calls_meta = serializers.BooleanField()
    desired_state = serializers.ChoiceField(choices=MetaModule.DesiredState.choices)
    desired_state_by = serializers.CharField(allow_blank=True)
    desired_state_reason = serializers.CharField(allow_blank=True)
    desired_state_at = _nullable_datetime("When an operator last set desired_state.")
    runs_24h = _count("Finished runs in 24 h.")
    successes_24h = _count("Successful runs in 24 h.")
    failures_24h = _count("Failed or timed-out runs in 24 h.")
    skipped_24h = _count("Runs skipped in 24 h (e.g. while halted).")
    api_errors_24h = _count("Meta Graph API requests that failed in 24 h.")
    scheduler_enabled = serializers.BooleanField(help_text="Its django-celery-beat periodic task is enabled.")
    overdue = serializers.BooleanField()
    interval_seconds = serializers.IntegerField(allow_null=True, min_value=0)
    last_outcome = serializers.ChoiceField(choices=ModuleRun.Outcome.choices, allow_blank=True)


class DatabaseSerializer(serializers.Serializer):
    healthy = serializers.BooleanField()
    probe_ms = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class _ProbeSerializer(serializers.Serializer):
    """Result of a per-cycle probe, as the latest cycle stored it."""

    error = serializers.CharField(allow_blank=True, required=False)
    at = serializers.DateTimeField(required=False, help_text="When the probe ran.")


class BrokerProbeSerializer(_ProbeSerializer):
    ok = serializers.BooleanField()
    ms = serializers.FloatField(allow_null=True, required=False)


class MetaApiProbeSerializer(_ProbeSerializer):
    ok = serializers.BooleanField()
    ms = serializers.FloatField(allow_null=True, required=False)
    kind = serializers.CharField(allow_blank=True, required=False, help_text="Kind of Meta error, empty on success.")


class WorkersProbeSerializer(_ProbeSerializer):
    ok = serializers.BooleanField(allow_null=True, help_text="Null where the broker cannot broadcast a ping.")
    names = serializers.ListField(child=serializers.CharField(), required=False)


class RecoveryRateSerializer(serializers.Serializer):
    """Automatic recovery over the last 24 h, verified at the check after each attempt."""

    attempts = serializers.IntegerField(min_value=0, help_text="Automatic actions run (escalations excluded).")
    verified = serializers.IntegerField(min_value=0, help_text="Attempts a later check has judged.")
    healed = serializers.IntegerField(min_value=0, help_text="Verified attempts after which the module was ONLINE.")
    success_rate = serializers.FloatField(
        allow_null=True, min_value=0.0, max_value=1.0, help_text="healed / verified; null before any verification."
    )
    escalations = serializers.IntegerField(min_value=0, help_text="Modules handed to a human (ALERT_ADMIN).")


class SystemMetricsSerializer(serializers.Serializer):
    total_modules = _count("Modules evaluated.")
    online_modules = _count("ONLINE modules.")
    degraded_modules = _count("DEGRADED modules.")
    offline_modules = _count("OFFLINE modules.")
    unknown_modules = _count("UNKNOWN modules.")
    stopped_modules = _count("Modules stopped on purpose.")
    total_api_calls_24h = _count("Meta Graph API requests of all modules in 24 h.")
    total_errors_24h = _count("Failed runs of all modules in 24 h.")
    total_campaigns_active = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="ACTIVE campaigns in the mirror; null before any sync."
    )
    total_daily_budget_usd = serializers.FloatField(allow_null=True, help_text="Their daily budgets (USD accounts).")
    db_connection_pool_size = serializers.IntegerField(allow_null=True, min_value=0, help_text="PostgreSQL only.")
    db_active_connections = serializers.IntegerField(allow_null=True, min_value=0, help_text="PostgreSQL only.")
    db_query_avg_ms = serializers.FloatField(allow_null=True, help_text="PostgreSQL only.")
    database = DatabaseSerializer()
    modules_run = _count("Of modules_expected, those that have finished a run.")
    modules_expected = _count("Modules expected to run: all but those stopped on purpose.")
    beat_alive = serializers.BooleanField(help_text="beat_liveness is not dead.")
    workers_alive = serializers.BooleanField(help_text="workers_liveness is not dead.")
    beat_liveness = serializers.ChoiceField(
        choices=LIVENESS,
        help_text="From the heartbeat: waiting_for_first_heartbeat for HEARTBEAT_STALE_SECONDS "
        "after install, then alive or dead.",
    )
    workers_liveness = serializers.ChoiceField(choices=LIVENESS, help_text="As beat_liveness, for the workers.")
    beat_last_seen = _nullable_datetime("When Beat last sent the heartbeat task.")
    worker_last_seen = _nullable_datetime("When a worker last executed the heartbeat task.")
    broker = BrokerProbeSerializer(allow_null=True, help_text="Null until a health cycle has probed.")
    meta_api = MetaApiProbeSerializer(allow_null=True, help_text="Null until a health cycle has probed.")
    workers_ping = WorkersProbeSerializer(allow_null=True, help_text="Null until a health cycle has probed.")
    recovery_24h = RecoveryRateSerializer()


class RecommendationSerializer(serializers.Serializer):
    severity = serializers.ChoiceField(choices=RECOMMENDATION_SEVERITIES)
    module = serializers.CharField(allow_blank=True, help_text="Module code, empty for system-wide ones.")
    message = serializers.CharField()


class AlertConditionSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="Dedup key, e.g. module:10.5:offline.")
    severity = serializers.ChoiceField(choices=Alert.Severity.choices)
    title = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)


class HealthSerializer(serializers.Serializer):
    """GET health: a live evaluation of every module and the infrastructure."""

    timestamp = serializers.DateTimeField()
    mode = serializers.ChoiceField(choices=Mode.choices)
    system_status = serializers.ChoiceField(choices=SystemStatus.choices)
    emergency_stop_active = serializers.BooleanField()
    modules = ModuleHealthSerializer(many=True)
    system_metrics = SystemMetricsSerializer()
    recommendations = RecommendationSerializer(many=True)
    alerts = AlertConditionSerializer(many=True)
    kill_switch_readiness = ReadinessSerializer(
        allow_null=True, help_text="The latest readiness check in full (per ad account); null before the first."
    )


# --- Commands, emergency stop, resume -------------------------------------------------

REASON_MAX = 2000
COMMAND_CHOICES = (*COMMANDS, *ALIASES)
# ALERT_ADMIN is the engine's escalation, not something to run by hand.
OPERATOR_ACTIONS = [a for a in Action if a != Action.ALERT_ADMIN]
AD_ACCOUNT_ID = r"^(act_)?\d{1,20}$"


def _flag(default: bool, help_text: str) -> JsonBooleanField:
    return JsonBooleanField(default=default, help_text=help_text)


class StopParametersSerializer(JsonObjectSerializer):
    stop_schedulers = _flag(StopRequest.stop_schedulers, "Disable every module's periodic task.")
    pause_campaigns = _flag(StopRequest.pause_campaigns, "Pause every ACTIVE campaign on Meta.")
    send_alerts = _flag(StopRequest.send_alerts, "Alert admins by email / Slack / webhook.")
    ad_account_ids = serializers.ListField(
        child=JsonRegexField(AD_ACCOUNT_ID, max_length=24),
        required=False,
        max_length=500,
        allow_empty=False,
        min_length=1,  # allow_empty for its message, min_length for the schema's minItems
        help_text="Only these ad accounts (act_123 or 123); default: every account the token sees.",
    )


class PreviewPageSerializer(JsonObjectSerializer):
    """Which page of a dry run's campaigns to answer (preview.campaigns), filtered and searched."""

    account = JsonRegexField(
        r"^act_\d{1,20}$", max_length=24, required=False, help_text="Only this ad account (act_123)."
    )
    q = JsonCharField(
        max_length=400, required=False, help_text="Only campaigns whose id or name contains this (any case)."
    )
    page = JsonIntegerField(required=False, default=1, min_value=1, help_text="Page number (from 1).")
    page_size = JsonIntegerField(
        required=False,
        default=campaign_lists.PAGE_SIZE,
        min_value=1,
        max_value=campaign_lists.MAX_PAGE_SIZE,
        help_text=f"Campaigns per page (at most {campaign_lists.MAX_PAGE_SIZE}).",
    )

    def search(self, data: dict[str, Any]) -> campaign_lists.Search:
        return campaign_lists.Search(**data)


class ResumePreviewPageSerializer(PreviewPageSerializer):
    action = serializers.ChoiceField(
        choices=list(campaign_lists.PREVIEW_ACTIONS), required=False, help_text="Only campaigns resume would treat so."
    )

    def search(self, data: dict[str, Any]) -> campaign_lists.Search:
        data = dict(data)
        return campaign_lists.Search(state=data.pop("action", ""), **data)


def _only_with_dry_run(data: dict[str, Any]) -> dict[str, Any]:
    if "campaigns" in data and not data["dry_run"]:
        raise serializers.ValidationError(
            {"campaigns": ["Only with dry_run: a run's campaigns are at GET runs/{id}/campaigns."]}
        )
    return data


PREVIEW_PAGE_HELP = (
    "Dry run only: which page of preview.campaigns to answer, filtered and searched (default: the first "
    f"{campaign_lists.PAGE_SIZE}); a page past the last is a 400."
)


class EmergencyStopRequestSerializer(StopParametersSerializer):
    reason = JsonCharField(
        max_length=REASON_MAX,
        allow_blank=False,
        trim_whitespace=True,
        help_text="Why money must stop now (required, recorded with who and when).",
    )
    dry_run = _flag(False, "List exactly what would be stopped and paused; change nothing.")
    campaigns = PreviewPageSerializer(required=False, help_text=PREVIEW_PAGE_HELP)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return _only_with_dry_run(data)


class ResumeParametersSerializer(JsonObjectSerializer):
    resume_schedulers = _flag(
        ResumeRequest.resume_schedulers, "Re-enable exactly the periodic tasks enabled before the stop."
    )
    resume_campaigns = _flag(
        ResumeRequest.resume_campaigns, "Re-activate the held campaigns still paused and unchanged since the stop."
    )
    run_health_check = _flag(
        ResumeRequest.run_health_check, "Run and persist a health check, and set the status from it."
    )


class ResumeRequestSerializer(ResumeParametersSerializer):
    reason = JsonCharField(max_length=REASON_MAX, required=False, allow_blank=True, default="")
    dry_run = _flag(
        False,
        "List exactly which campaigns would be re-activated or left (and why), which schedulers "
        "would restart and when, and the daily budget that would spend again; change nothing.",
    )
    campaigns = ResumePreviewPageSerializer(required=False, help_text=PREVIEW_PAGE_HELP)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return _only_with_dry_run(data)


class CampaignIssueSerializer(serializers.Serializer):
    campaign_id = serializers.CharField()
    account_id = serializers.CharField()
    reason = serializers.CharField()


class AccountCountsSerializer(serializers.Serializer):
    paused = serializers.IntegerField(required=False, min_value=0)
    pending = serializers.IntegerField(required=False, min_value=0)
    failed = serializers.IntegerField(required=False, min_value=0)
    active = serializers.IntegerField(required=False, min_value=0, help_text="Dry run: ACTIVE campaigns found.")


class TargetSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=Mode.choices)
    graph_url = serializers.CharField()
    api_version = serializers.CharField(help_text="The Graph API version every call uses (META_API_VERSION).")
    label = serializers.CharField(help_text='"STUB sandbox at <url>" or "LIVE Meta (<url>)".')
    tiers = serializers.DictField(
        child=serializers.CharField(),
        help_text="Ad account → Marketing API access tier learnt from Meta's answers "
        "(only accounts whose tier is known).",
    )


class StakesSerializer(serializers.Serializer):
    account = serializers.CharField(allow_blank=True, help_text="The ad account; blank on a per-currency total.")
    currency = serializers.CharField(
        help_text="The ad account's currency; amounts of different currencies are never added together."
    )
    campaigns = serializers.IntegerField(min_value=0)
    daily_budget_minor = serializers.IntegerField(
        min_value=0, help_text="Sum of the campaigns' own daily budgets, in the currency's minor units (as Meta)."
    )
    daily_budget = serializers.CharField(help_text='The same, for people: "1,250.00 USD".')
    adset_budget_campaigns = serializers.IntegerField(
        min_value=0, help_text="Campaigns without a campaign budget: their ad sets' budgets spend (not counted above)."
    )
    lifetime_budget_campaigns = serializers.IntegerField(
        min_value=0, help_text="Campaigns on a lifetime budget (not counted above)."
    )


class StopStakesSerializer(serializers.Serializer):
    accounts = StakesSerializer(many=True, help_text="Per ad account: the campaigns the stop would pause.")
    totals = StakesSerializer(many=True, help_text="One total per currency.")


class CampaignsPageSerializer(serializers.Serializer):
    """Which page of a dry run's campaigns `campaigns` holds, of how many, and the search that found them."""

    count = serializers.IntegerField(min_value=0, help_text="Campaigns matching the search, over every page.")
    page = serializers.IntegerField(min_value=1)
    page_size = serializers.IntegerField(min_value=1)
    pages = serializers.IntegerField(min_value=1)
    account = serializers.CharField(allow_blank=True)
    state = serializers.CharField(allow_blank=True, help_text="Resume: the action searched for; blank for any.")
    q = serializers.CharField(allow_blank=True)


class StopPreviewSerializer(serializers.Serializer):
    schedulers = serializers.ListField(child=serializers.CharField(), help_text="Module codes whose task is enabled.")
    campaigns = serializers.DictField(
        child=serializers.ListField(child=serializers.DictField()),
        help_text="Ad account → ACTIVE campaigns ({id, name}): one page of them (campaigns_page); the counts "
        "and budgets per account of all of them are in stakes.accounts.",
    )
    campaigns_page = CampaignsPageSerializer()
    target = TargetSerializer()
    stakes = StopStakesSerializer()


class ResumeCampaignSerializer(serializers.Serializer):
    campaign_id = serializers.CharField()
    account_id = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    action = serializers.ChoiceField(
        choices=list(campaign_lists.PREVIEW_ACTIONS), help_text="unknown: Meta could not be read now (see errors)."
    )
    why = serializers.ChoiceField(choices=["", *Leave], help_text="Why it would be left; blank otherwise.")
    reason = serializers.CharField(allow_blank=True)


class ResumeSchedulerSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    every_seconds = serializers.IntegerField(min_value=1)
    first_run_in_seconds = serializers.IntegerField(min_value=0, help_text="After the resume (runs are staggered).")
    first_run_at = serializers.DateTimeField(help_text="When it would first run if resumed now.")


class ResumePreviewAccountSerializer(serializers.Serializer):
    account = serializers.CharField()
    campaigns = serializers.IntegerField(min_value=0, help_text="Its held campaigns.")
    reactivate = serializers.IntegerField(min_value=0, help_text="Resume would re-activate them.")
    leave = serializers.IntegerField(min_value=0, help_text="Resume would leave them as they are.")
    unknown = serializers.IntegerField(min_value=0, help_text="Meta could not be read now.")


class ResumePreviewSerializer(serializers.Serializer):
    target = TargetSerializer()
    campaigns = ResumeCampaignSerializer(
        many=True, help_text="Held campaigns and what resume would do with each: one page of them (campaigns_page)."
    )
    campaigns_page = CampaignsPageSerializer()
    accounts = ResumePreviewAccountSerializer(many=True, help_text="Per ad account, over every held campaign.")
    schedulers = ResumeSchedulerSerializer(many=True, help_text="The schedulers resume would re-enable, in order.")
    spend = StakesSerializer(many=True, help_text="Per currency: the daily budget that would start spending again.")


class AlertDeliverySerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=[(kind, kind) for kind in channels.KINDS])
    ok = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True, help_text="Why the delivery failed; empty when it was delivered.")


class LastDeliverySerializer(serializers.Serializer):
    sent_at = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=Notification.Kind.choices)
    ok = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)


class AlertChannelSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=[(kind, kind) for kind in channels.KINDS], source="kind")
    setting = serializers.CharField(help_text="The setting that configures it.")
    configured = serializers.BooleanField()
    target = serializers.CharField(
        allow_blank=True,
        help_text="Where it sends: the email recipients, or only the "
        "host of a webhook URL (its path is a secret); empty "
        "when not configured.",
    )
    last_delivery = LastDeliverySerializer(
        source="last", allow_null=True, help_text="Its latest delivery of any kind; null when none yet."
    )


class AlertTestSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=[(kind, kind) for kind in channels.KINDS])
    ok = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    sent_at = serializers.DateTimeField()
    requested_by = serializers.CharField()
    notification_id = serializers.UUIDField(source="id")


def _alerts_outcome() -> serializers.CharField:
    return serializers.CharField(
        help_text='Why as many alerts went out as did: "no alert channel configured", '
        '"alerts not requested", or per channel "<channel> delivered" / '
        '"<channel> failed: <error>" joined by "; ".'
    )


class EmergencyStopResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Everything requested is done (nothing pending, failed or in error).")
    run_id = serializers.UUIDField(allow_null=True, help_text="The run recording this stop; null for a dry run.")
    dry_run = serializers.BooleanField()
    already_halted = serializers.BooleanField(help_text="The tower was already halted: this stop re-swept.")
    schedulers_stopped = serializers.IntegerField(min_value=0)
    campaigns_paused = serializers.IntegerField(min_value=0)
    campaigns_pending = serializers.IntegerField(
        min_value=0, help_text="Not yet confirmed paused; retried in the background."
    )
    campaigns_failed = CampaignIssueSerializer(
        many=True,
        help_text=f"The first {rules.RUN_RECORD_ITEMS} campaigns that could not be paused (campaigns_failed_count "
        "says how many; all of them: campaigns_url?state=failed).",
    )
    campaigns_failed_count = serializers.IntegerField(min_value=0, help_text="Campaigns that could not be paused.")
    alerts_sent = serializers.IntegerField(min_value=0)
    errors = serializers.ListField(child=serializers.CharField())
    stopped_at = serializers.DateTimeField()
    message = serializers.CharField()
    campaigns_by_account = serializers.DictField(child=AccountCountsSerializer())
    preview = StopPreviewSerializer(allow_null=True)
    joined = serializers.BooleanField(
        help_text="A stop was already running: this one joined it (202; recorded as its "
        "own run) and run_id is the running stop's."
    )
    progress_url = serializers.CharField(
        allow_null=True, help_text="The stop's progress page in the console; null for a dry run."
    )
    campaigns_url = serializers.CharField(
        allow_null=True,
        help_text="The run's campaigns in the API (GET runs/{id}/campaigns: paged, filtered, searched); null for "
        "a dry run.",
    )
    would_stop = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Dry run: schedulers the stop would disable (null otherwise)."
    )
    would_pause = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Dry run: ACTIVE campaigns the stop would pause (null otherwise)."
    )
    alerts_outcome = _alerts_outcome()
    alert_deliveries = AlertDeliverySerializer(many=True, help_text="One per channel attempt.")


class ResumeResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    run_id = serializers.UUIDField(allow_null=True)
    awaiting_approval = serializers.BooleanField(
        help_text="Two-person rule: recorded, waiting for a different operator."
    )
    schedulers_resumed = serializers.IntegerField(min_value=0)
    campaigns_resumed = serializers.IntegerField(min_value=0)
    campaigns_skipped = CampaignIssueSerializer(
        many=True,
        help_text=f"The first {rules.RUN_RECORD_ITEMS} held campaigns left as they are, with why "
        "(campaigns_skipped_count says how many; all of them: campaigns_url?state=skipped).",
    )
    campaigns_skipped_count = serializers.IntegerField(min_value=0, help_text="Held campaigns left as they are.")
    campaigns_pending = serializers.IntegerField(
        min_value=0,
        help_text="Eligible for re-activation but not yet re-activated: still PAUSED, retried in the "
        "background until done (or given up with an alert). `errors` says why per account.",
    )
    errors = serializers.ListField(child=serializers.CharField())
    system_status = serializers.ChoiceField(choices=SystemStatus.choices)
    health_check_run_id = serializers.UUIDField(allow_null=True)
    campaigns_url = serializers.CharField(
        allow_null=True,
        help_text="The resume's campaigns in the API (GET runs/{id}/campaigns: paged, filtered, searched); null "
        "without a run (dry run, awaiting approval).",
    )
    resumed_at = serializers.DateTimeField()
    message = serializers.CharField()
    dry_run = serializers.BooleanField()
    would_restart = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Dry run: schedulers resume would re-enable (null otherwise)."
    )
    would_reactivate = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Dry run: campaigns resume would re-activate (null otherwise)."
    )
    preview = ResumePreviewSerializer(allow_null=True)
    alerts_sent = serializers.IntegerField(min_value=0)
    alerts_outcome = _alerts_outcome()
    alert_deliveries = AlertDeliverySerializer(many=True, help_text="One per channel attempt.")


class CommandParametersSerializer(StopParametersSerializer, ResumeParametersSerializer):
    """The shape of a command's `parameters` in the schema: emergency_stop takes the stop's, resume the resume's."""


@extend_schema_field(CommandParametersSerializer)
class CommandParametersField(serializers.DictField):
    """The parameters as given; CommandRequestSerializer checks them against the command's own."""


class CommandRequestSerializer(JsonObjectSerializer):
    command_type = serializers.ChoiceField(choices=[*COMMAND_CHOICES])
    target_modules = serializers.ListField(
        child=ModuleCodeField(),
        required=False,
        default=list,
        max_length=100,
        help_text="Module codes (e.g. 10.7). start_all/stop_all: only these; restart_module: required.",
    )
    reason = JsonCharField(
        max_length=REASON_MAX,
        required=False,
        allow_blank=True,
        default="",
        help_text="Optional for commands; required for emergency_stop.",
    )
    execute_immediately = _flag(True, "false: queue on Celery and answer 202 with the run id.")
    parameters = CommandParametersField(
        required=False,
        default=dict,
        help_text="emergency_stop: stop_schedulers, pause_campaigns, send_alerts, "
        "ad_account_ids; resume: resume_schedulers, resume_campaigns, "
        "run_health_check; other commands take none.",
    )

    def validate_target_modules(self, codes: list[str]) -> list[str]:
        return list(dict.fromkeys(codes))

    def validate(self, data: dict) -> dict:
        command = canonical(data["command_type"])
        data["command_type"] = command
        if command == "restart_module" and not data["target_modules"]:
            raise serializers.ValidationError({"target_modules": "restart_module needs at least one module code."})
        if command == "emergency_stop" and not data["reason"].strip():
            raise serializers.ValidationError({"reason": "An emergency stop needs a reason."})
        schema = {"emergency_stop": StopParametersSerializer, "resume": ResumeParametersSerializer}.get(command)
        if schema is None:
            if data["parameters"]:
                raise serializers.ValidationError({"parameters": f"{command} takes no parameters."})
            return data
        nested = schema(data=data["parameters"])
        if not nested.is_valid():
            raise serializers.ValidationError({"parameters": nested.errors})
        data["parameters"] = dict(nested.validated_data)
        return data


class OrchestrationResultSerializer(serializers.Serializer):
    """The spec's OrchestrationResult, plus the run's progress. Per-campaign lists in actions_executed and
    errors are capped as in GET runs/{id} (rules.capped)."""

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["actions_executed"] = rules.capped_actions(data["actions_executed"])
        data["errors"] = rules.capped(data["errors"])
        return data

    command_id = serializers.UUIDField(help_text="The ControlTowerRun recording the command.")
    command_type = serializers.CharField()
    success = serializers.BooleanField()
    state = serializers.ChoiceField(choices=RunState.choices)
    modules_affected = serializers.ListField(child=serializers.CharField())
    actions_executed = serializers.ListField(child=serializers.JSONField())
    errors = serializers.ListField(child=serializers.CharField())
    execution_time_ms = serializers.IntegerField(allow_null=True, min_value=0)
    executed_at = serializers.DateTimeField()
    executed_by = serializers.CharField()
    message = serializers.CharField(allow_blank=True)


class RecoveryRequestSerializer(JsonObjectSerializer):
    module_code = ModuleCodeField(help_text="Module code, e.g. 10.7.")
    action = serializers.ChoiceField(choices=[a.value for a in OPERATOR_ACTIONS])
    reason = JsonCharField(max_length=REASON_MAX, required=False, allow_blank=True, default="")


class RecoveryAttemptSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    module_code = serializers.CharField(help_text="'database' for RECONNECT_DB, which acts on the whole tower.")
    action = serializers.CharField()
    confidence = serializers.FloatField()
    reason = serializers.CharField(allow_blank=True)
    trigger = serializers.CharField()
    executed_by = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    outcome = serializers.CharField()
    detail = serializers.JSONField()
    healed = serializers.BooleanField(allow_null=True, help_text="Set at the next check: ONLINE again or not.")
