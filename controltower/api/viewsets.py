"""History under /meta/control-tower/: runs/, health-logs/ and modules/ (read-only, staff), plus
start/stop/restart of one module (operators, through the commander like POST command).

Filters are query-parameter serializers (report_serializers): every value is validated, and a
bad one is a 400 with field errors, never an unfiltered page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from controltower import campaign_lists, commander, killswitch
from controltower.api.permissions import IsTowerOperator, IsTowerViewer
from controltower.api.query import validated_query
from controltower.api.report_serializers import (
    MAX_PAGE_SIZE,
    HealthLogQuerySerializer,
    HealthLogSerializer,
    HoldSerializer,
    ListQuerySerializer,
    ModuleActionSerializer,
    ModuleDetailSerializer,
    ModuleQuerySerializer,
    ModuleSerializer,
    RunCampaignQuerySerializer,
    RunDetailSerializer,
    RunQuerySerializer,
    RunSerializer,
)
from controltower.api.serializers import ErrorSerializer, OrchestrationResultSerializer
from controltower.api.views import AUTH_ERRORS, CONFLICT, TAGS, write_schema
from controltower.models import ControlTowerRun, RunType, SystemHealthLog
from controltower.rate_limits import TowerWriteThrottle
from meta_modules.models import MetaModule, ModuleRun

RECENT_RUNS = 20
BAD_FILTER = OpenApiResponse(description="Invalid filter or page parameter: field name → list of messages.")
NOT_FOUND = OpenApiResponse(ErrorSerializer, "No such item.")
LIST_ERRORS = {
    400: BAD_FILTER,
    404: OpenApiResponse(ErrorSerializer, "No such page: `page` is past the last one."),
    **AUTH_ERRORS,
}


class OptionalSlashRouter(SimpleRouter):
    """Routes that answer with or without the trailing slash, like the spec's endpoints."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "(?:/)?"


class TowerPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE


class FilteredListMixin:
    """list() applies the validated query parameters of `query_serializer_class`."""

    query_serializer_class: type[ListQuerySerializer]
    action: str
    request: Request

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        if self.action != "list":
            return queryset
        return validated_query(self.query_serializer_class, self.request).apply(queryset)


class ReadOnlyViewSet(FilteredListMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsTowerViewer]
    pagination_class = TowerPagination


def _list_and_retrieve(name: str, query: type[ListQuerySerializer], item: type, what: str) -> Any:
    label = name.replace("_", " ")
    return extend_schema_view(
        list=extend_schema(
            operation_id=f"control_tower_{name}_list",
            tags=TAGS,
            parameters=[query],
            summary=f"List {label} (filtered, paginated)",
            description=f"{what}, newest first by default.",
            responses={200: item(many=True), **LIST_ERRORS},
        ),
        retrieve=extend_schema(
            operation_id=f"control_tower_{name}_retrieve",
            tags=TAGS,
            summary=f"One of the {label}",
            description=f"{what}: one, by id.",
            responses={200: item, 404: NOT_FOUND, **AUTH_ERRORS},
        ),
    )


@extend_schema_view(
    retrieve=extend_schema(
        operation_id="control_tower_runs_retrieve",
        tags=TAGS,
        summary="One of the runs",
        description="Health checks and commands (the spec's meta_control_tower_runs): one, by id. An emergency "
        "stop or a resume adds `campaigns`: its campaigns summarised per ad account (counts per state, daily "
        "budget held, commonest errors); the campaigns themselves are at GET runs/{id}/campaigns.",
        responses={200: RunDetailSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
    ),
    campaigns=extend_schema(
        operation_id="control_tower_run_campaigns",
        tags=TAGS,
        parameters=[RunCampaignQuerySerializer],
        summary="A run's campaigns (filtered, paginated)",
        description="The emergency-stop ledger rows of a stop (the halt it began, or what it re-swept) or of a "
        "resume, by ad account then campaign id: filter by `account` and `state`, search by `q` (a fragment of "
        "the campaign's id or name). Every campaign appears on exactly one page. Empty for other runs.",
        responses={200: HoldSerializer(many=True), **LIST_ERRORS},
    ),
)
@_list_and_retrieve(
    "runs", RunQuerySerializer, RunSerializer, "Health checks and commands (the spec's meta_control_tower_runs)"
)
class RunViewSet(ReadOnlyViewSet):
    queryset = ControlTowerRun.objects.all()
    serializer_class = RunSerializer
    query_serializer_class = RunQuerySerializer

    def retrieve(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        run.campaign_summary = None
        if run.run_type in (RunType.EMERGENCY_STOP, RunType.RESUME):
            run.campaign_summary = {
                **vars(campaign_lists.summary(run)),
                "url": reverse("controltower_api:run-campaigns", args=[run.pk]),
            }
        return Response(RunDetailSerializer(run).data)

    @action(detail=True, methods=["get"], url_path="campaigns", url_name="campaigns")
    def campaigns(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        search = validated_query(RunCampaignQuerySerializer, request).search()
        page = self.paginate_queryset(campaign_lists.search_holds(campaign_lists.holds_of(run), search))
        return self.get_paginated_response(HoldSerializer(page, many=True).data)


@_list_and_retrieve(
    "health_logs",
    HealthLogQuerySerializer,
    HealthLogSerializer,
    "Per-module health at each check (the spec's meta_system_health_logs)",
)
class HealthLogViewSet(ReadOnlyViewSet):
    queryset = SystemHealthLog.objects.all()
    serializer_class = HealthLogSerializer
    query_serializer_class = HealthLogQuerySerializer


def modules_with_health() -> QuerySet[MetaModule]:
    """Modules with their schedule and their newest health log's status, in one query."""
    latest = SystemHealthLog.objects.filter(module_name=OuterRef("code")).order_by("-checked_at")
    return MetaModule.objects.annotate(
        is_external=ExpressionWrapper(Q(external__isnull=False), output_field=BooleanField()),
        interval_seconds=Coalesce("external__expected_interval_seconds", "periodic_task__interval__every"),
        scheduler_enabled=F("periodic_task__enabled"),
        health_status=Subquery(latest.values("health_status")[:1]),
        health_checked_at=Subquery(latest.values("checked_at")[:1]),
    )


MODULE_ACTION = {
    "request": ModuleActionSerializer,
    "responses": {200: OrchestrationResultSerializer, 404: NOT_FOUND, 409: CONFLICT},
}


@extend_schema_view(
    list=extend_schema(
        operation_id="control_tower_modules_list",
        tags=TAGS,
        parameters=[ModuleQuerySerializer],
        summary="List the supervised modules",
        description="Code, name, function, desired state, schedule and the status at the latest check.",
        responses={200: ModuleSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        operation_id="control_tower_modules_retrieve",
        tags=TAGS,
        summary="One module, by code",
        description="The module, its newest health log, its health logs of the last 24 h and "
        f"its last {RECENT_RUNS} runs.",
        responses={200: ModuleDetailSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
    ),
)
class ModuleViewSet(ReadOnlyViewSet):
    serializer_class = ModuleSerializer
    query_serializer_class = ModuleQuerySerializer
    lookup_field = "code"
    lookup_value_regex = r"[^/\x00]+"  # codes have dots (10.7); NUL cannot be in one (nor in PostgreSQL text)
    # start/stop/restart are commands: they share POST command's per-user budget (reads are not throttled).
    throttle_scope = "command"

    def get_queryset(self) -> QuerySet[MetaModule]:
        return modules_with_health()

    def retrieve(self, request: Request, code: str) -> Response:
        module = self.get_object()
        day = SystemHealthLog.objects.filter(module_name=code, checked_at__gte=timezone.now() - timedelta(hours=24))
        module.health_24h = list(day.order_by("-checked_at"))
        module.latest_health = (
            module.health_24h[0]
            if module.health_24h
            else (SystemHealthLog.objects.filter(module_name=code).order_by("-checked_at").first())
        )
        module.recent_runs = list(ModuleRun.objects.filter(module=module).order_by("-started_at")[:RECENT_RUNS])
        return Response(ModuleDetailSerializer(module).data)

    @write_schema(
        operation_id="control_tower_module_start",
        summary="Start one module (start_all on it)",
        description="Sets its desired state to running and enables its schedule.",
        **MODULE_ACTION,
    )
    @action(detail=True, methods=["post"], permission_classes=[IsTowerOperator], throttle_classes=[TowerWriteThrottle])
    def start(self, request: Request, code: str) -> Response:
        return self._command(request, "start_all")

    @write_schema(
        operation_id="control_tower_module_stop",
        summary="Stop one module (stop_all on it)",
        description="Sets its desired state to stopped and disables its schedule: not a failure, no "
        "alert, no auto-recovery.",
        **MODULE_ACTION,
    )
    @action(detail=True, methods=["post"], permission_classes=[IsTowerOperator], throttle_classes=[TowerWriteThrottle])
    def stop(self, request: Request, code: str) -> Response:
        return self._command(request, "stop_all")

    @write_schema(
        operation_id="control_tower_module_restart",
        summary="Restart one module (restart_module)",
        description="Cancels its in-flight run, starts it and runs its job once now. 409 for an "
        "external module (it runs elsewhere) and while halted.",
        **MODULE_ACTION,
    )
    @action(detail=True, methods=["post"], permission_classes=[IsTowerOperator], throttle_classes=[TowerWriteThrottle])
    def restart(self, request: Request, code: str) -> Response:
        return self._command(request, "restart_module")

    def _command(self, request: Request, command_type: str) -> Response:
        module = self.get_object()
        body = ModuleActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if command_type == "restart_module" and module.is_external:
            return Response(
                {
                    "detail": f"Module {module.code} runs outside this codebase: it cannot be restarted "
                    "from here (start/stop set what its run reports are answered)."
                },
                status=409,
            )
        command = commander.Command(
            command_type=command_type,
            actor=request.user.get_username(),
            reason=body.validated_data["reason"],
            target_modules=[module.code],
        )
        try:
            run = commander.execute(command)
        except (commander.CommandRefused, killswitch.KillSwitchError) as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(OrchestrationResultSerializer(run.result()).data)
