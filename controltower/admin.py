from __future__ import annotations

from django.contrib import admin

from controltower.models import Alert, CampaignHold, ControlTowerRun, Notification, SystemHealthLog, TowerState
from meta_modules.admin import ReadOnlyAdmin


@admin.register(ControlTowerRun)
class ControlTowerRunAdmin(ReadOnlyAdmin):
    list_display = ("executed_at", "run_type", "command_type", "system_status", "online_modules",
                    "degraded_modules", "offline_modules", "executed_by", "execution_time_ms", "mode")
    list_filter = ("run_type", "system_status", "command_type", "mode")
    search_fields = ("executed_by", "reason", "command_type")
    date_hierarchy = "executed_at"


@admin.register(SystemHealthLog)
class SystemHealthLogAdmin(ReadOnlyAdmin):
    list_display = ("checked_at", "module_name", "module_full_name", "health_status", "success_rate",
                    "error_count_24h", "api_calls_24h", "is_scheduler_running", "is_db_healthy", "is_api_healthy")
    list_filter = ("health_status", "module_name", "is_scheduler_running", "is_db_healthy", "is_api_healthy", "mode")
    search_fields = ("module_name", "module_full_name", "last_error")
    date_hierarchy = "checked_at"


@admin.register(TowerState)
class TowerStateAdmin(ReadOnlyAdmin):
    list_display = ("system_status", "emergency_stop_active", "halted_by", "halted_at", "last_health_check")


@admin.register(CampaignHold)
class CampaignHoldAdmin(ReadOnlyAdmin):
    """The emergency-stop ledger: what was paused, when, and what resume did with it."""

    list_display = ("campaign_id", "campaign_name", "account_id", "state", "prior_status", "paused_at",
                    "resumed_at", "attempts", "resume_note", "halt_run")
    list_filter = ("state", "account_id")
    search_fields = ("campaign_id", "campaign_name", "account_id", "last_error", "resume_note")
    date_hierarchy = "created_at"
    raw_id_fields = ("halt_run", "stop_run", "resume_run")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("opened_at", "severity", "title", "key", "last_seen_at", "notifications_sent", "resolved_at")
    list_filter = ("severity", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("key", "title", "detail", "module_code")
    date_hierarchy = "opened_at"
    raw_id_fields = ("opened_by_run",)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("sent_at", "channel", "kind", "subject", "ok", "error")
    list_filter = ("channel", "kind", "ok")
    search_fields = ("subject", "body", "error")
    date_hierarchy = "sent_at"
    raw_id_fields = ("run",)
