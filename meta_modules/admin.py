from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from meta_modules.models import MetaModule, ModuleRun


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records: viewable and searchable, never added, edited or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MetaModule)
class MetaModuleAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "function", "desired_state", "schedule", "scheduler_enabled", "calls_meta")
    list_filter = ("desired_state", "calls_meta")
    search_fields = ("code", "name", "function")
    readonly_fields = ("code", "name", "function", "task_name", "calls_meta", "position", "periodic_task",
                       "desired_state", "desired_state_by", "desired_state_at", "desired_state_reason",
                       "created_at", "updated_at")
    list_select_related = ("periodic_task__interval",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # modules come from the registry (`manage.py sync_modules`)

    @admin.display(description="Schedule")
    def schedule(self, module: MetaModule) -> str:
        task = module.periodic_task
        return str(task.interval) if task and task.interval else "—"

    @admin.display(description="Scheduler enabled", boolean=True)
    def scheduler_enabled(self, module: MetaModule) -> bool | None:
        return module.periodic_task.enabled if module.periodic_task else None


@admin.register(ModuleRun)
class ModuleRunAdmin(ReadOnlyAdmin):
    list_display = ("module", "started_at", "outcome", "trigger", "duration_ms", "api_calls", "api_errors",
                    "cpu_ms", "peak_rss_mb", "short_error")
    list_filter = ("outcome", "trigger", "module")
    search_fields = ("module__code", "module__name", "error_message", "celery_task_id")
    date_hierarchy = "started_at"
    list_select_related = ("module",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModuleRun]:
        return super().get_queryset(request).select_related("module")

    @admin.display(description="Error")
    def short_error(self, run: ModuleRun) -> str:
        return run.error_message[:80]
