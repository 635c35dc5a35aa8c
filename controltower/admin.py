from __future__ import annotations

from django.contrib import admin

from controltower.models import ControlTowerRun, SystemHealthLog, TowerState
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
