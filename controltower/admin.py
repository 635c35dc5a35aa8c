from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import ngettext

from controltower import commander, killswitch, recovery
from controltower.api.permissions import OPERATE_PERMISSION
from controltower.models import (
    Alert, CampaignHold, ControlTowerRun, ExternalModule, Notification, RecoveryAttempt, RecoveryState, SystemHealthLog,
    TowerState,
)
from meta_modules.admin import MetaModuleAdmin, ReadOnlyAdmin
from meta_modules.models import MetaModule


# The admin's "View site" link leads to the operator console.
admin.site.site_header = "Control Tower"
admin.site.site_url = "/"


# Status colours (with the status as text, never colour alone).
STATUS_COLOURS = {
    "healthy": "#1b7f3b", "online": "#1b7f3b", "degraded": "#b26a00", "critical": "#c62828", "offline": "#c62828",
    "emergency_stop": "#8e0000", "unknown": "#6b7280", "stopped": "#455a64",
}


def status_badge(value: str) -> str:
    return format_html('<span style="background:{};color:#fff;padding:1px 7px;border-radius:3px;font-weight:600">'
                       "{}</span>", STATUS_COLOURS.get(value, "#6b7280"), value.upper())


class ProblemsFilter(admin.SimpleListFilter):
    """Only the checks worth a look: a module not ONLINE (stopped on purpose excluded)."""

    title = "problems"
    parameter_name = "problems"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Not ONLINE"), ("no", "ONLINE or stopped")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        trouble = ("offline", "degraded", "unknown")
        if self.value() == "yes":
            return queryset.filter(health_status__in=trouble)
        if self.value() == "no":
            return queryset.exclude(health_status__in=trouble)
        return None


@admin.register(ControlTowerRun)
class ControlTowerRunAdmin(ReadOnlyAdmin):
    list_display = ("executed_at", "run_type", "command_type", "status", "state", "online_modules",
                    "degraded_modules", "offline_modules", "executed_by", "execution_time_ms", "mode")
    list_filter = ("run_type", "system_status", "state", "command_type", "mode")

    @admin.display(description="System status", ordering="system_status")
    def status(self, run: ControlTowerRun) -> str:
        return status_badge(run.system_status)
    search_fields = ("executed_by", "reason", "command_type")
    date_hierarchy = "executed_at"

    def view_on_site(self, run: ControlTowerRun) -> str:
        return reverse("console:run", args=[run.pk])


@admin.register(SystemHealthLog)
class SystemHealthLogAdmin(ReadOnlyAdmin):
    list_display = ("checked_at", "module_name", "module_full_name", "status", "success_rate",
                    "error_count_24h", "api_calls_24h", "is_scheduler_running", "is_db_healthy", "is_api_healthy",
                    "recovery_attempts", "last_recovery_action")
    list_filter = (ProblemsFilter, "health_status", "module_name", "is_scheduler_running", "is_db_healthy",
                   "is_api_healthy", "mode")
    search_fields = ("module_name", "module_full_name", "last_error")
    date_hierarchy = "checked_at"

    @admin.display(description="Health", ordering="health_status")
    def status(self, log: SystemHealthLog) -> str:
        return status_badge(log.health_status)


@admin.register(TowerState)
class TowerStateAdmin(ReadOnlyAdmin):
    list_display = ("status", "emergency_stop_active", "halted_by", "halted_at", "halt_reason", "last_health_check")

    @admin.display(description="System status")
    def status(self, state: TowerState) -> str:
        return status_badge(state.system_status)


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


@admin.register(RecoveryAttempt)
class RecoveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "module_code", "action", "confidence", "trigger", "outcome", "healed",
                    "executed_by", "reason")
    list_filter = ("action", "outcome", "trigger", "healed", "module_code")
    search_fields = ("module_code", "reason", "executed_by")
    date_hierarchy = "started_at"
    raw_id_fields = ("run",)


@admin.register(RecoveryState)
class RecoveryStateAdmin(ReadOnlyAdmin):
    list_display = ("module_code", "needs_human", "needs_human_since", "healthy_since", "counter_reset_at")
    list_filter = ("needs_human",)


# Module actions go through the same commander and recovery engine as the API; the module
# admin itself lives in meta_modules, which must not depend on the tower.
admin.site.unregister(MetaModule)


@admin.register(MetaModule)
class TowerModuleAdmin(MetaModuleAdmin):
    actions = ["start_modules", "stop_modules", "restart_modules", "clear_module_cache", "reset_modules"]

    def view_on_site(self, module: MetaModule) -> str:
        return reverse("console:module", args=[module.code])

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OPERATE_PERMISSION)

    def _command(self, request: HttpRequest, queryset: QuerySet[MetaModule], command_type: str) -> None:
        codes = list(queryset.values_list("code", flat=True))
        try:
            run = commander.execute(commander.Command(command_type, actor=request.user.get_username(),
                                                      reason="admin action", target_modules=codes))
        except (commander.CommandRefused, killswitch.KillSwitchError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        level = messages.ERROR if run.errors_encountered else messages.SUCCESS
        self.message_user(request, run.message or f"{command_type}: {', '.join(codes)}", level)

    @admin.action(permissions=["operate"], description="Start selected modules")
    def start_modules(self, request: HttpRequest, queryset: QuerySet[MetaModule]) -> None:
        self._command(request, queryset, "start_all")

    @admin.action(permissions=["operate"], description="Stop selected modules")
    def stop_modules(self, request: HttpRequest, queryset: QuerySet[MetaModule]) -> None:
        self._command(request, queryset, "stop_all")

    @admin.action(permissions=["operate"], description="Restart selected modules (re-enable, run now)")
    def restart_modules(self, request: HttpRequest, queryset: QuerySet[MetaModule]) -> None:
        self._command(request, queryset, "restart_module")

    def _recover(self, request: HttpRequest, queryset: QuerySet[MetaModule], action: str) -> None:
        attempts = [recovery.operator_action(m.code, action, request.user.get_username(), "admin action")
                    for m in queryset]
        failed = [a.module_code for a in attempts if a.outcome != RecoveryAttempt.Outcome.SUCCEEDED]
        self.message_user(request, ngettext("%(action)s ran on %(n)d module.", "%(action)s ran on %(n)d modules.",
                                            len(attempts)) % {"action": action, "n": len(attempts)}
                          + (f" Failed: {', '.join(failed)}." if failed else ""),
                          messages.ERROR if failed else messages.SUCCESS)

    @admin.action(permissions=["operate"], description="Recovery: clear the modules' cache")
    def clear_module_cache(self, request: HttpRequest, queryset: QuerySet[MetaModule]) -> None:
        self._recover(request, queryset, "clear_cache")

    @admin.action(permissions=["operate"], description="Recovery: reset selected modules (state, errors, restart)")
    def reset_modules(self, request: HttpRequest, queryset: QuerySet[MetaModule]) -> None:
        self._recover(request, queryset, "reset_module")


@admin.register(ExternalModule)
class ExternalModuleAdmin(ReadOnlyAdmin):
    """Modules that report their runs through the API (`manage.py register_external_module`)."""

    list_display = ("module", "expected_interval_seconds", "registered_at", "token_issued_at", "token_last_used_at")
    exclude = ("token_hash",)  # never shown, even hashed
    list_select_related = ("module",)
