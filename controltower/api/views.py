"""The endpoints at the top of /meta/control-tower/, over the tower's own functions.

Reads: GET status (cheap, from persisted state), GET health (live evaluation), the alert channels.
Writes (WriteView: operators only, throttled per user and scope): command, emergency stop, resume,
recovery and an alert channel's test. Also the API root, the JSON 404 under the prefix, the schema
view and the exception handler that keeps every error an object.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import APIView, exception_handler

from controltower import campaign_lists, channels, commander, findings, health, killswitch, recovery, rules
from controltower.api.permissions import IsTowerOperator, IsTowerViewer
from controltower.api.query import validated_query
from controltower.api.serializers import (
    AlertChannelSerializer,
    AlertTestSerializer,
    CommandRequestSerializer,
    EmergencyStopRequestSerializer,
    EmergencyStopResponseSerializer,
    ErrorSerializer,
    HealthSerializer,
    OrchestrationResultSerializer,
    PreviewPageSerializer,
    ReadinessSerializer,
    RecoveryAttemptSerializer,
    RecoveryRequestSerializer,
    ResumePreviewPageSerializer,
    ResumeRequestSerializer,
    ResumeResponseSerializer,
    SchemaQuerySerializer,
    StatusSerializer,
)
from controltower.api.strict import RequestTooLarge
from controltower.api.throttling import KillSwitchThrottle
from controltower.models import (
    ControlTowerRun,
    ModuleStatus,
    ReadinessCheck,
    RunState,
    RunType,
    SystemStatus,
    TowerState,
)
from controltower.rate_limits import TowerWriteThrottle
from meta_modules.models import MetaModule

# Starting: the schedulers run and nothing has failed; the modules are having their first runs.
OPERATIONAL = (SystemStatus.HEALTHY, SystemStatus.DEGRADED, SystemStatus.STARTING)
# No check yet, or the latest one said STARTING: GET status evaluates live (see status_payload).
STARTING_UP = (SystemStatus.UNKNOWN, SystemStatus.STARTING)
TAGS = ["control-tower"]
AUTH_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, "No or invalid credentials (WWW-Authenticate: Bearer)."),
    403: OpenApiResponse(ErrorSerializer, "Authenticated, but not allowed (staff required)."),
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: a Django ValidationError is bad input (400), a body over Django's upload
    limit is a 413, and every error body is an object."""
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(as_serializer_error(exc))
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, list):
        response.data = {"detail": response.data}
    return response


def _module_counts(statuses: Counter[str]) -> dict[str, int]:
    return {f"{status.value}_modules": statuses[status.value] for status in ModuleStatus}


def status_payload() -> dict[str, Any]:
    """Three queries: the tower's state, the latest completed health check and the latest readiness check.

    During start-up (no check yet, or the latest said STARTING) the status and counts are
    evaluated live instead, as the dashboard does: the first runs finish minutes apart, and the
    answer follows them rather than a check that is already behind (the watchdog records the
    change within a minute).
    """
    state = TowerState.get()
    latest = (
        ControlTowerRun.objects.filter(run_type=RunType.HEALTH_CHECK, state=RunState.COMPLETED)
        .order_by("-executed_at")
        .values("executed_at", "total_modules_checked", "module_health_details", "modules_run", "modules_expected")
        .first()
    )
    checked_at = latest["executed_at"] if latest else None
    status = state.system_status
    if status in STARTING_UP:
        report = health.evaluate()
        status, total, statuses = report.system_status, len(report.modules), Counter(report.counts)
        modules_run, modules_expected = report.first_runs.run, report.first_runs.expected
    elif latest is None:
        total, statuses, modules_run, modules_expected = MetaModule.objects.count(), Counter(), None, None
    else:
        total, statuses = latest["total_modules_checked"], Counter(latest["module_health_details"].values())
        modules_run, modules_expected = latest["modules_run"], latest["modules_expected"]
    payload = {
        "is_operational": not state.emergency_stop_active and status in OPERATIONAL,
        "emergency_stop_active": state.emergency_stop_active,
        "last_health_check": checked_at,
        "system_status": status,
        "total_modules_monitored": total,
        **_module_counts(statuses),
        "modules_run": modules_run,
        "modules_expected": modules_expected,
        "mode": settings.META_MODE,
        "meta_access_tiers": state.probes.get("meta_access_tiers", {}),
        "kill_switch_ready": ReadinessCheck.latest(detail=False),
    }
    if state.emergency_stop_active:
        payload.update(halted_by=state.halted_by, halt_reason=state.halt_reason)
        if state.halted_at:
            payload["halted_at"] = state.halted_at
    return payload


def _system_metrics(report: health.HealthReport) -> dict[str, Any]:
    infra, db = report.infrastructure, report.infrastructure.database
    return {
        "total_modules": len(report.modules),
        **_module_counts(Counter(report.counts)),
        "modules_run": report.first_runs.run,
        "modules_expected": report.first_runs.expected,
        "total_api_calls_24h": report.total_api_calls_24h,
        "total_errors_24h": report.total_errors_24h,
        "total_campaigns_active": report.total_campaigns_active,
        "total_daily_budget_usd": report.total_daily_budget_usd,
        "db_connection_pool_size": db.pool_size,
        "db_active_connections": db.active_connections,
        "db_query_avg_ms": db.query_avg_ms,
        "database": {"healthy": db.healthy, "probe_ms": db.probe_ms, "error": db.error},
        "beat_alive": infra.beat_alive,
        "workers_alive": infra.workers_alive,
        "beat_liveness": infra.beat,
        "workers_liveness": infra.workers,
        "beat_last_seen": infra.beat_last_seen,
        "worker_last_seen": infra.worker_last_seen,
        "broker": infra.broker,
        "meta_api": infra.meta_api,
        "workers_ping": infra.workers_ping,
        "recovery_24h": recovery.success_rate(report.checked_at - timedelta(hours=24)),
    }


def health_payload(report: health.HealthReport) -> dict[str, Any]:
    summaries = recovery.module_summaries([m.code for m in report.modules], report.checked_at)
    return {
        "timestamp": report.checked_at,
        "mode": report.mode,
        "system_status": report.system_status,
        "emergency_stop_active": report.halted,
        "modules": health.with_recovery(report.modules, summaries),
        "system_metrics": _system_metrics(report),
        "recommendations": findings.recommendations(report),
        "alerts": [condition.as_dict() for condition in findings.alert_conditions(report)],
        "kill_switch_readiness": ReadinessCheck.latest(),
    }


# Rendering is stateless, so one instance serves every request: building a serializer copies
# all its fields, which is a large share of this endpoint's cost (it is polled and load-tested).
_STATUS_SERIALIZER = StatusSerializer()


class StatusView(APIView):
    permission_classes = [IsTowerViewer]

    @extend_schema(
        operation_id="control_tower_status",
        responses={200: StatusSerializer, **AUTH_ERRORS},
        tags=TAGS,
        summary="Control Tower status",
        description="Cheap: the tower's state and the counts of the latest completed health check.",
    )
    def get(self, request: Request) -> Response:
        return Response(_STATUS_SERIALIZER.to_representation(status_payload()))


class HealthView(APIView):
    permission_classes = [IsTowerViewer]

    @extend_schema(
        operation_id="control_tower_health",
        responses={200: HealthSerializer, **AUTH_ERRORS},
        tags=TAGS,
        summary="System health (live)",
        description="Evaluates all modules and the infrastructure now, from recorded facts. Writes nothing.",
    )
    def get(self, request: Request) -> Response:
        return Response(HealthSerializer(health_payload(health.evaluate())).data)


# --- Commands, emergency stop, resume -------------------------------------------------

CONFLICT = OpenApiResponse(
    ErrorSerializer, "Not possible in the tower's current state (e.g. not halted, halted, busy)."
)
OPERATOR_ERRORS = {
    400: OpenApiResponse(description="Invalid input: an object of field name → list of messages."),
    401: AUTH_ERRORS[401],
    403: OpenApiResponse(ErrorSerializer, "Authenticated, but without the operate_tower permission."),
}
THROTTLED = {
    429: OpenApiResponse(
        ErrorSerializer,
        "Too many requests from this user (KILL_SWITCH_THROTTLE_RATE, "
        "KILL_SWITCH_PREVIEW_THROTTLE_RATE for dry runs, COMMAND_THROTTLE_RATE); "
        "Retry-After gives the seconds to wait.",
    ),
}


def write_schema(
    operation_id: str, summary: str, description: str, request: Any, responses: dict[int, Any], **extra: Any
) -> Callable[[Any], Any]:
    """The schema of a write endpoint: its own answers, then those every write can give (400, 401, 403, 429)."""
    return extend_schema(
        operation_id=operation_id,
        request=request,
        tags=TAGS,
        summary=summary,
        description=description,
        responses={**responses, **OPERATOR_ERRORS, **THROTTLED},
        **extra,
    )


class WriteView(APIView):
    """A write endpoint: operators only, each counted against the per-user budget of its throttle_scope."""

    permission_classes = [IsTowerOperator]
    throttle_classes = [TowerWriteThrottle]


def _actor(request: Request) -> str:
    return request.user.get_username()


class CommandView(WriteView):
    throttle_scope = "command"

    @write_schema(
        operation_id="control_tower_command",
        request=CommandRequestSerializer,
        summary="Execute a master orchestration command",
        description="start_all, stop_all, restart_module, emergency_stop, resume, sync_data, optimize, health_check "
        "(aliases optimize_all, sync_all_data, run_health_check, resume_operations). Every command is "
        "recorded as a run. execute_immediately=false queues it on Celery (202).",
        responses={
            200: OrchestrationResultSerializer,
            202: OpenApiResponse(OrchestrationResultSerializer, "Queued: the run id shows its progress."),
            409: CONFLICT,
            503: OpenApiResponse(ErrorSerializer, "The task queue is unavailable; nothing was queued."),
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(CommandRequestSerializer, request)
        command = commander.Command(
            command_type=data["command_type"],
            actor=_actor(request),
            reason=data["reason"],
            target_modules=data["target_modules"],
            parameters=data["parameters"],
        )
        if not data["execute_immediately"]:
            try:
                run = commander.enqueue(command)
            except commander.QueueUnavailable as exc:
                return Response({"detail": str(exc)}, status=503)
            return Response(OrchestrationResultSerializer(run.result()).data, status=202)
        try:
            run = commander.execute(command)
        except (commander.CommandRefused, killswitch.KillSwitchError) as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(OrchestrationResultSerializer(run.result()).data)


class EmergencyStopView(WriteView):
    throttle_classes = [KillSwitchThrottle]
    throttle_scope = "emergency_stop"

    @write_schema(
        operation_id="control_tower_emergency_stop",
        request=EmergencyStopRequestSerializer,
        summary="Emergency stop: halt every scheduler and pause every ACTIVE campaign now",
        description="Runs in the request (never waits on the task queue): records the halt first, disables the "
        "modules' schedules, pauses ACTIVE campaigns on Meta through the ledger, alerts admins. "
        "Campaigns not confirmed within the deadline stay pending and are retried in the background. "
        "A stop while halted re-sweeps; a stop while another is still running joins it (202, at once). "
        "dry_run=true changes nothing and answers 200 even when Meta cannot be listed (see errors): "
        "would_stop and would_pause say what the stop would do (schedulers_stopped and campaigns_paused "
        "stay 0), preview.target where (sandbox or live Meta, API version, tiers learnt) and "
        "preview.stakes the daily budget per ad account and per currency.",
        responses={
            200: EmergencyStopResponseSerializer,
            202: OpenApiResponse(EmergencyStopResponseSerializer, "Joined the stop already running (run_id)."),
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(EmergencyStopRequestSerializer, request)
        search = PreviewPageSerializer().search(data.pop("campaigns", {}))
        result = commander.emergency_stop(killswitch.StopRequest(actor=_actor(request), **data))
        progress = reverse("console:stop-result", args=[result.run_id]) if result.run_id else None
        answer = {
            **asdict(result),
            "progress_url": progress,
            **_capped_campaigns(result.run_id, "campaigns_failed", result.campaigns_failed, result.errors),
        }
        if result.preview is not None:
            answer["preview"] = _paged(campaign_lists.page_stop_preview, result.preview, search)
        return Response(EmergencyStopResponseSerializer(answer).data, status=202 if result.joined else 200)


class ResumeView(WriteView):
    throttle_classes = [KillSwitchThrottle]
    throttle_scope = "resume"

    @write_schema(
        operation_id="control_tower_resume",
        request=ResumeRequestSerializer,
        summary="Resume after an emergency stop",
        description="Re-enables exactly the schedules enabled before the stop and re-activates exactly the held "
        "campaigns still PAUSED and unchanged since; reports every one it skipped. With the two-person "
        "rule on, the first request is recorded (202) and a different operator's request carries it out. "
        "dry_run=true changes nothing and records nothing: it lists every held campaign with what resume "
        "would do (reactivate / leave, and why), the schedulers it would restart with their first run, "
        "and the daily budget per currency that would spend again; it is refused (409) exactly when "
        "resume would be.",
        responses={
            200: ResumeResponseSerializer,
            202: OpenApiResponse(ResumeResponseSerializer, "Recorded; waiting for a second operator."),
            409: CONFLICT,
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(ResumeRequestSerializer, request)
        search = ResumePreviewPageSerializer().search(data.pop("campaigns", {}))
        try:
            result = commander.resume(killswitch.ResumeRequest(actor=_actor(request), **data))
        except killswitch.KillSwitchError as exc:
            return Response({"detail": str(exc)}, status=409)
        answer = {
            **asdict(result),
            **_capped_campaigns(result.run_id, "campaigns_skipped", result.campaigns_skipped, result.errors),
        }
        if result.preview is not None:
            answer["preview"] = _paged(campaign_lists.page_resume_preview, result.preview, search)
        return Response(ResumeResponseSerializer(answer).data, status=202 if result.awaiting_approval else 200)


def _validated(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _capped_campaigns(
    run_id: str | None, name: str, campaigns: list[dict[str, str]], errors: list[str]
) -> dict[str, Any]:
    """A stop's or resume's per-campaign lists as answered: the first rules.RUN_RECORD_ITEMS, how many
    there are, and where every one of them is (the run's campaigns)."""
    return {
        name: campaigns[: rules.RUN_RECORD_ITEMS],
        f"{name}_count": len(campaigns),
        "errors": rules.capped(errors),
        "campaigns_url": reverse("controltower_api:run-campaigns", args=[run_id]) if run_id else None,
    }


def _paged(
    paging: Callable[[dict[str, Any], campaign_lists.Search], dict[str, Any]],
    preview: dict[str, Any],
    search: campaign_lists.Search,
) -> dict[str, Any]:
    """A dry run's preview with one page of its campaigns; a page past the last is a 400 on campaigns.page."""
    try:
        return paging(preview, search)
    except campaign_lists.PageNotFound as exc:
        raise ValidationError({"campaigns": {"page": [str(exc)]}}) from exc


class AlertChannelsView(APIView):
    permission_classes = [IsTowerViewer]

    @extend_schema(
        operation_id="control_tower_alert_channels",
        tags=TAGS,
        summary="Alert channels",
        description="Every channel kind (email, slack, webhook): configured or not, where it sends "
        "(webhook URLs reduced to their host) and its latest delivery. None configured: nobody "
        "is told of a stop, a resume or an outage.",
        responses={200: AlertChannelSerializer(many=True), **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(AlertChannelSerializer(channels.states(), many=True).data)


class AlertTestView(WriteView):
    throttle_scope = "command"

    @write_schema(
        operation_id="control_tower_alert_test",
        request=None,
        parameters=[OpenApiParameter("channel", str, OpenApiParameter.PATH, enum=list(channels.KINDS))],
        summary="Send a test message through one alert channel",
        description="A clearly marked test message, recorded as a notification of kind `test` with who "
        "asked. `ok` false with `error` when the channel refused it.",
        responses={
            200: AlertTestSerializer,
            404: OpenApiResponse(ErrorSerializer, "No such channel (email, slack, webhook)."),
            409: OpenApiResponse(ErrorSerializer, "The channel is not configured."),
        },
    )
    def post(self, request: Request, channel: str) -> Response:
        if channel not in channels.KINDS:
            raise NotFound("No such alert channel: email, slack or webhook.")
        try:
            sent = channels.send_test(channel, _actor(request))
        except channels.NotConfigured as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(AlertTestSerializer(sent).data)


class RecoveryView(WriteView):
    throttle_scope = "recovery"

    @write_schema(
        operation_id="control_tower_recovery",
        request=RecoveryRequestSerializer,
        summary="Run a recovery procedure by hand",
        description="restart_scheduler, clear_cache, reconnect_db or reset_module on one module — e.g. a "
        "recommendation below the auto-execute threshold. Recorded as an operator attempt; it also "
        "restarts the module's recovery counter. Refused while the tower is halted.",
        responses={200: RecoveryAttemptSerializer, 409: CONFLICT},
    )
    def post(self, request: Request) -> Response:
        data = _validated(RecoveryRequestSerializer, request)
        try:
            attempt = commander.recover(data["module_code"], data["action"], _actor(request), data["reason"])
        except commander.CommandRefused as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(RecoveryAttemptSerializer(attempt).data)


class ReadinessView(APIView):
    """Would the kill switch work right now: the latest check (viewers), or a new one (operators)."""

    throttle_scope = "command"

    def get_permissions(self) -> list[Any]:
        return [IsTowerOperator()] if self.request.method == "POST" else [IsTowerViewer()]

    def get_throttles(self) -> list[Any]:
        return [TowerWriteThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        operation_id="control_tower_readiness",
        tags=TAGS,
        summary="Kill-switch readiness (latest check)",
        description="The latest readiness check: READY / DEGRADED / NOT READY with the reasons, the token "
        "(validity, expiry, permissions), each ad account (reachable, status, editable, tier, ACTIVE "
        "campaigns, rate headroom) and what a stop now would do. Checked at every health cycle; 404 before the first.",
        responses={200: ReadinessSerializer, 404: OpenApiResponse(ErrorSerializer, "No check yet."), **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        found = ReadinessCheck.latest()
        if found is None:
            raise NotFound("No readiness check yet: POST here, or wait for the health cycle.")
        return Response(ReadinessSerializer(found).data)

    @write_schema(
        operation_id="control_tower_readiness_check",
        request=None,
        summary="Check kill-switch readiness now",
        description="Asks Meta now (debug_token or /me/permissions, one read per ad account; nothing is "
        "written there), records the check and answers it. Alerts follow at the next health cycle.",
        responses={200: ReadinessSerializer},
    )
    def post(self, request: Request) -> Response:
        return Response(ReadinessSerializer(commander.check_readiness(_actor(request))).data)


class ApiRootView(APIView):
    """Where each endpoint of the Control Tower API is, with the OpenAPI schema, its docs and the
    console. The browsable API's first breadcrumb."""

    name = "Control Tower API"  # the breadcrumb's text
    schema = None  # an index, not an operation of the API
    ENDPOINTS = (
        "status",
        "health",
        "command",
        "emergency-stop",
        "resume",
        "recovery",
        "readiness",
        "report",
        "canaries",
        "drills",
        "run-list",
        "health-log-list",
        "module-list",
    )

    def get(self, request: Request) -> Response:
        links = {name: reverse(f"controltower_api:{name}") for name in self.ENDPOINTS}
        links.update(schema=reverse("schema"), docs=reverse("docs"), console=reverse("console:dashboard"))
        return Response({name: request.build_absolute_uri(path) for name, path in links.items()})


class UnknownEndpointView(APIView):
    """Any other URL under /meta/control-tower/ (e.g. runs/not-a-uuid): a JSON 404 like the API's
    other errors, after authentication, instead of Django's HTML page."""

    schema = None  # not an operation of the API

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotFound("No such endpoint.")

    options = http_method_not_allowed


class SchemaView(SpectacularAPIView):
    """GET /api/schema/ with its parameters validated: drf-spectacular's view falls back to English for
    an unknown `lang`, and DRF's content negotiation answers an unknown `format` with a 404."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        # An unknown format gets the default renderer, so that authentication runs and get() says 400.
        return super().perform_content_negotiation(request, force=True)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        if response.exception:  # errors in JSON, like the API's (the YAML renderer cannot write them)
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        parameters=[SchemaQuerySerializer],
        description="The OpenAPI 3 document of this API: YAML (application/vnd.oai.openapi) or JSON "
        "(application/vnd.oai.openapi+json), by `format` or the Accept header.",
        responses={
            200: OpenApiTypes.OBJECT,
            400: OpenApiResponse(description="Invalid parameter: field name → list of messages."),
            **AUTH_ERRORS,
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        validated_query(SchemaQuerySerializer, request)
        return super().get(request, *args, **kwargs)
