from __future__ import annotations

import math
from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import ngettext
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from controltower import commander, killswitch, roles
from controltower.models import (
    Alert,
    ApiToken,
    CampaignHold,
    Canary,
    ControlTowerRun,
    ExternalModule,
    FireDrill,
    Notification,
    RecoveryAttempt,
    RecoveryState,
    SystemHealthLog,
    TowerState,
)
from controltower.rate_limits import seconds_to_wait
from meta_modules.admin import MetaModuleAdmin, ReadOnlyAdmin, RefusesForbiddenActions
from meta_modules.models import MetaModule

# The admin's "View site" link leads to the operator console.
admin.site.site_header = "Control Tower"
admin.site.site_url = "/"


# Status colours (with the status as text, never colour alone).
STATUS_COLOURS = {
    "healthy": "#1b7f3b",
    "online": "#1b7f3b",
    "degraded": "#b26a00",
    "critical": "#c62828",
    "offline": "#c62828",
    "emergency_stop": "#8e0000",
    "unknown": "#6b7280",
    "stopped": "#455a64",
    "starting": "#1565c0",
}


def status_badge(value: str) -> str:
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 7px;border-radius:3px;font-weight:600">{}</span>',
        STATUS_COLOURS.get(value, "#6b7280"),
        value.upper(),
    )


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
    list_display = (
        "executed_at",
        "run_type",
        "command_type",
        "status",
        "state",
        "online_modules",
        "degraded_modules",
        "offline_modules",
        "executed_by",
        "execution_time_ms",
        "mode",
    )
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
    list_display = (
        "checked_at",
        "module_name",
        "module_full_name",
        "status",
        "success_rate",
        "error_count_24h",
        "api_calls_24h",
        "is_scheduler_running",
        "is_db_healthy",
        "is_api_healthy",
        "recovery_attempts",
        "last_recovery_action",
    )
    list_filter = (
        ProblemsFilter,
        "health_status",
        "module_name",
        "is_scheduler_running",
        "is_db_healthy",
        "is_api_healthy",
        "mode",
    )
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

    list_display = (
        "campaign_id",
        "campaign_name",
        "account_id",
        "state",
        "prior_status",
        "paused_at",
        "resumed_at",
        "attempts",
        "resume_note",
        "halt_run",
    )
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
    list_display = ("sent_at", "channel", "kind", "subject", "ok", "error", "requested_by")
    list_filter = ("channel", "kind", "ok")
    search_fields = ("subject", "body", "error")
    date_hierarchy = "sent_at"
    raw_id_fields = ("run",)


@admin.register(Canary)
class CanaryAdmin(ReadOnlyAdmin):
    """Fire drills' canaries: designated and removed through the API (checked on Meta), read here."""

    list_display = ("account_id", "campaign_id", "name", "designated_by", "designated_at", "reason")
    search_fields = ("account_id", "campaign_id", "name")


@admin.register(FireDrill)
class FireDrillAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "state", "trigger", "executed_by", "pause_ms", "resume_ms", "message")
    list_filter = ("state", "trigger")
    search_fields = ("executed_by", "reason", "message")
    date_hierarchy = "started_at"


@admin.register(RecoveryAttempt)
class RecoveryAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "module_code",
        "action",
        "confidence",
        "trigger",
        "outcome",
        "healed",
        "executed_by",
        "reason",
    )
    list_filter = ("action", "outcome", "trigger", "healed", "module_code")
    search_fields = ("module_code", "reason", "executed_by")
    date_hierarchy = "started_at"
    raw_id_fields = ("run",)


@admin.register(RecoveryState)
class RecoveryStateAdmin(ReadOnlyAdmin):
    list_display = ("module_code", "needs_human", "needs_human_since", "healthy_since", "counter_reset_at")
    list_filter = ("needs_human",)


class ReasonActionForm(helpers.ActionForm):
    """The action bar of the command-running admins: the operator says why (the run's reason)."""

    reason = forms.CharField(
        required=False,
        max_length=500,
        label="Reason",
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "why (recorded)"}),
    )


def admitted_reason(model_admin: admin.ModelAdmin, request: HttpRequest, scope: str) -> str | None:
    """The reason of an operating action, or None (and an error message) when it has none or the user
    is past the per-user budget of the API endpoint of `scope` (the same counter, see rate_limits)."""
    reason = request.POST.get("reason", "").strip()
    if not reason:
        model_admin.message_user(request, "Give a reason: it is recorded with what the action does.", messages.ERROR)
        return None
    wait = seconds_to_wait(request, scope)
    if wait is not None:
        model_admin.message_user(
            request,
            f"Too many requests of this kind from your account: try again in {math.ceil(wait)} s.",
            messages.ERROR,
        )
        return None
    return reason


def run_module_command(
    model_admin: admin.ModelAdmin, request: HttpRequest, codes: list[str], command_type: str
) -> None:
    """One admin action = one commander run, like POST command: recorded with who and why, refused
    while halted where the API refuses, and counted against the same per-user "command" budget."""
    reason = admitted_reason(model_admin, request, "command")
    if reason is None:
        return
    try:
        run = commander.execute(
            commander.Command(command_type, actor=request.user.get_username(), reason=reason, target_modules=codes)
        )
    except (commander.CommandRefused, killswitch.KillSwitchError) as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        return
    level = messages.ERROR if run.errors_encountered else messages.SUCCESS
    model_admin.message_user(request, run.message or f"{command_type}: {', '.join(codes)}", level)


class OperateActionsMixin:
    """Actions declared with permissions=["operate"] need controltower.operate_tower."""

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(roles.OPERATE_PERMISSION)


# Module actions go through the same commander and recovery engine as the API; the module
# admin itself lives in meta_modules, which must not depend on the tower.
admin.site.unregister(MetaModule)


@admin.register(MetaModule)
class TowerModuleAdmin(OperateActionsMixin, MetaModuleAdmin):
    actions = ["start_modules", "stop_modules", "restart_modules", "clear_module_cache", "reset_modules"]
    action_form = ReasonActionForm

    def view_on_site(self, module: MetaModule) -> str:
        return reverse("console:module", args=[module.code])

    def _command(self, request: HttpRequest, queryset: QuerySet[MetaModule], command_type: str) -> None:
        run_module_command(self, request, list(queryset.values_list("code", flat=True)), command_type)

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
        reason = admitted_reason(self, request, "recovery")
        if reason is None:
            return
        try:
            attempts = [commander.recover(m.code, action, request.user.get_username(), reason) for m in queryset]
        except commander.CommandRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        failed = [a.module_code for a in attempts if a.outcome != RecoveryAttempt.Outcome.SUCCEEDED]
        self.message_user(
            request,
            ngettext("%(action)s ran on %(n)d module.", "%(action)s ran on %(n)d modules.", len(attempts))
            % {"action": action, "n": len(attempts)}
            + (f" Failed: {', '.join(failed)}." if failed else ""),
            messages.ERROR if failed else messages.SUCCESS,
        )

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


# --- Schedules: django-celery-beat's stock admins would let anyone with change rights (or any
# superuser) flip, edit or run a schedule beside the tower's commands, unrecorded. Here every row
# is read-only; a module's schedule moves only through the module commands, and the tower's own
# tasks (every task without a module: health cycle, heartbeat, pruning, …) have no action at all.
for schedule_model in (PeriodicTask, IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule):
    admin.site.unregister(schedule_model)


@admin.register(IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule)
class ScheduleAdmin(ReadOnlyAdmin):
    """Schedules are written by `manage.py sync_modules` and the tower's settings, never by hand."""


@admin.register(PeriodicTask)
class TowerPeriodicTaskAdmin(OperateActionsMixin, ReadOnlyAdmin):
    list_display = ("name", "module", "enabled", "interval", "crontab", "last_run_at", "total_run_count")
    list_filter = ("enabled",)
    search_fields = ("name", "task", "meta_module__code")
    list_select_related = ("meta_module", "interval", "crontab")
    actions = ["enable_schedules", "disable_schedules", "run_now"]
    action_form = ReasonActionForm

    @admin.display(description="Module", ordering="meta_module__code")
    def module(self, task: PeriodicTask) -> str:
        module = getattr(task, "meta_module", None)
        return module.code if module else "— (tower task)"

    def _command(self, request: HttpRequest, queryset: QuerySet[PeriodicTask], command_type: str) -> None:
        codes = list(MetaModule.objects.filter(periodic_task__in=queryset).values_list("code", flat=True))
        tower_tasks = queryset.filter(meta_module__isnull=True).count()
        if tower_tasks:
            self.message_user(
                request,
                ngettext(
                    "%(n)d tower task left alone: the tower's own schedules cannot be changed or run from here.",
                    "%(n)d tower tasks left alone: the tower's own schedules cannot be changed or run from here.",
                    tower_tasks,
                )
                % {"n": tower_tasks},
                messages.WARNING,
            )
        if codes:
            run_module_command(self, request, codes, command_type)

    @admin.action(permissions=["operate"], description="Enable selected module schedules (start the modules)")
    def enable_schedules(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._command(request, queryset, "start_all")

    @admin.action(permissions=["operate"], description="Disable selected module schedules (stop the modules)")
    def disable_schedules(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._command(request, queryset, "stop_all")

    @admin.action(permissions=["operate"], description="Run selected modules now (restart: re-enable, run once)")
    def run_now(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._command(request, queryset, "restart_module")


# --- API tokens: listed without any secret; a superuser issues one (shown once) or revokes one.


class IssueTokenForm(forms.ModelForm):
    days = forms.IntegerField(min_value=0, label="Lifetime (days)", help_text="0 = never expires")

    class Meta:
        model = ApiToken
        fields = ("user", "name")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["days"].initial = settings.API_TOKEN_DAYS
        self.fields["user"].queryset = get_user_model().objects.filter(is_staff=True, is_active=True)
        self.fields["user"].help_text = "Active staff accounts only: the API serves no one else."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        user, name = data.get("user"), data.get("name")
        if user and name and ApiToken.live().filter(user=user, name=name).exists():
            self.add_error("name", "This user already has a live token of this name: revoke it or choose another.")
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(RefusesForbiddenActions):
    list_display = (
        "name",
        "shown_prefix",
        "user",
        "state",
        "created_at",
        "created_by",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    exclude = ("digest",)  # never shown, even hashed
    actions = ["revoke_tokens"]

    def get_form(self, request: HttpRequest, obj: ApiToken | None = None, **kwargs: Any) -> type[forms.ModelForm]:
        if obj is None:  # issuing; an existing token is only viewed
            kwargs["form"] = IssueTokenForm
        return super().get_form(request, obj, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked rows stay: who held what, and who ended it

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("controltower.change_apitoken")

    @admin.display(description="Key starts")
    def shown_prefix(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    @admin.display(description="State")
    def state(self, token: ApiToken) -> str:
        return token.refusal(timezone.now()) or "Live"

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm, change: bool) -> None:
        # The key lives only in this request: response_add shows it, nothing keeps it.
        request.issued_key = obj.save_with_new_key(form.cleaned_data["days"], request.user.get_username())

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        return TemplateResponse(
            request,
            "admin/controltower/apitoken/issued.html",
            {
                **self.admin_site.each_context(request),
                "token": obj,
                "key": request.issued_key,
                "opts": self.opts,
                "title": "API token issued",
            },
        )

    @admin.action(permissions=["revoke"], description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = queryset.filter(revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=request.user.get_username()
        )
        self.message_user(
            request,
            ngettext(
                "%(n)d token revoked: requests with it now get 401.",
                "%(n)d tokens revoked: requests with them now get 401.",
                revoked,
            )
            % {"n": revoked},
            messages.SUCCESS if revoked else messages.WARNING,
        )


# django-axes' "Clean up expired attempts" reads request.axes_attempt_time, which only its login
# signals set: from the admin it raised AttributeError (a 500). None means "now" to axes.
admin.site.unregister(AccessAttempt)


@admin.register(AccessAttempt)
class LoginAttemptAdmin(AccessAttemptAdmin):
    @admin.action(description="Clean up expired attempts")
    def cleanup_expired_attempts(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        request.axes_attempt_time = None
        super().cleanup_expired_attempts(request, queryset)
