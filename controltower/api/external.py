"""POST modules/{code}/runs: a module running outside this codebase reports a run, like a heartbeat.

Who may report: an operator (operate_tower), or the module itself with its own token
(`Authorization: Module <key>` or `X-Module-Token: <key>`, from `manage.py issue_token --module`),
which is good for that module only. Reported runs are ordinary ModuleRuns (trigger `external`),
so the module is supervised like ours: success rate, errors, overdue → OFFLINE, alerts. The
answer says whether the module may act (not while the tower is halted or the module stopped).
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controltower.api.authentication import BearerTokenAuthentication
from controltower.api.permissions import IsTowerOperator
from controltower.api.report_serializers import ExternalRunResultSerializer, ExternalRunSerializer
from controltower.api.serializers import ErrorSerializer
from controltower.api.views import TAGS
from controltower.models import ExternalModule
from meta_modules.models import MetaModule, ModuleRun
from meta_modules.runs import refusal_reason

KEYWORD = "Module"
HEADER = "HTTP_X_MODULE_TOKEN"


class ModuleClient:
    """Who a module token authenticates: that module, never a person (no staff, no permissions)."""

    is_authenticated = True
    is_active = True
    is_staff = False

    def __init__(self, code: str) -> None:
        self.code = code

    def get_username(self) -> str:
        return f"module {self.code}"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


def presented_key(request: Request) -> str | None:
    """The module token of the request, or None when it carries none (other schemes may apply)."""
    header = request.META.get(HEADER)
    if header is not None:  # present, even empty: a credential that must be valid, not one to skip
        return header.strip()
    parts = get_authorization_header(request).split()
    if not parts or parts[0].lower() != KEYWORD.lower().encode():
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("Invalid module token header: expected 'Module <key>'.")
    try:
        return parts[1].decode("ascii")
    except UnicodeError:
        raise exceptions.AuthenticationFailed("Invalid module token: it has invalid characters.") from None


class ModuleTokenAuthentication(BaseAuthentication):
    """A module's report token, checked against the module named in the URL."""

    def authenticate(self, request: Request) -> tuple[ModuleClient, ExternalModule] | None:
        key = presented_key(request)
        if key is None:
            return None
        code = request.parser_context["kwargs"].get("code", "")
        external = ExternalModule.objects.filter(module__code=code).first()
        if external is None or not external.token_matches(key):
            raise exceptions.AuthenticationFailed("Invalid module token for this module.")
        return ModuleClient(code), external

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class ModuleTokenScheme(OpenApiAuthenticationExtension):
    target_class = ModuleTokenAuthentication
    name = ["moduleToken", "moduleTokenHeader"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": (
                    "`Authorization: Module <key>`: the module's own token (manage.py issue_token --module)."
                ),
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-Module-Token",
                "description": "The same module token in its own header.",
            },
        ]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[str]]]:
        return [{"moduleToken": []}, {"moduleTokenHeader": []}]


class IsOperatorOrTheModule(BasePermission):
    message = "An operator (operate_tower) or this module's own token is required."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, ExternalModule) or IsTowerOperator().has_permission(request, view)


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "The run cannot be recorded in its current state."
    default_code = "conflict"


def record_run(module: MetaModule, data: dict[str, Any]) -> tuple[ModuleRun, bool]:
    """Create the run, or update it while it is still running when its id is given again.
    Returns (run, created)."""
    run_id = data.pop("run_id", None)
    fields = {"trigger": ModuleRun.Trigger.EXTERNAL, **data}
    if run_id is None:
        return ModuleRun.objects.create(module=module, **fields), True
    existing = ModuleRun.objects.filter(pk=run_id).first()
    if existing is None:
        try:
            with transaction.atomic():
                return ModuleRun.objects.create(pk=run_id, module=module, **fields), True
        except IntegrityError:  # the same id reported twice at once: the other request made it
            raise Conflict("This run was recorded by a concurrent report; report it again.") from None
    if existing.module_id != module.pk or existing.trigger != ModuleRun.Trigger.EXTERNAL:
        raise Conflict("This run id belongs to another module's run.")
    # Conditional, so a run that has already finished keeps its verdict.
    if not ModuleRun.objects.filter(pk=run_id, outcome=ModuleRun.Outcome.RUNNING).update(**fields):
        raise Conflict("This run has already finished; report a new run.")
    existing.refresh_from_db()
    return existing, False


class ExternalRunView(APIView):
    authentication_classes = [ModuleTokenAuthentication, BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [IsOperatorOrTheModule]

    @extend_schema(
        operation_id="control_tower_module_report_run",
        request=ExternalRunSerializer,
        tags=TAGS,
        summary="Report a run of an external module",
        description="For modules registered with `manage.py register_external_module` (they run elsewhere, on their "
        "own schedule). The run counts like any other: success rate, errors, and overdue (OFFLINE) when "
        "none is reported for longer than the module's interval plus SCHEDULER_GRACE_SECONDS. Report "
        "`running` then the end with the same run_id, or only the finished run. The answer's may_act is "
        "false while the tower is halted or the module stopped: the module must not act then.",
        responses={
            201: OpenApiResponse(ExternalRunResultSerializer, "Recorded as a new run."),
            200: OpenApiResponse(ExternalRunResultSerializer, "The running run with this run_id was updated."),
            400: OpenApiResponse(description="Invalid input: an object of field name → list of messages."),
            401: OpenApiResponse(ErrorSerializer, "No or invalid credentials (WWW-Authenticate: Module)."),
            403: OpenApiResponse(ErrorSerializer, "Neither an operator nor this module's token."),
            404: OpenApiResponse(ErrorSerializer, "No module with this code."),
            409: OpenApiResponse(
                ErrorSerializer, "Not an external module, or the run_id is another module's or already finished."
            ),
        },
    )
    def post(self, request: Request, code: str) -> Response:
        module = get_object_or_404(MetaModule.objects.select_related("external"), code=code)
        if not hasattr(module, "external"):
            raise Conflict(f"Module {code} is run by this tower's scheduler: its job records its own runs.")
        body = ExternalRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run, created = record_run(module, dict(body.validated_data))
        if isinstance(request.auth, ExternalModule):
            ExternalModule.objects.filter(pk=module.pk).update(token_last_used_at=timezone.now())
        refusal = refusal_reason(module)
        result = {"module": code, "run": run, "may_act": not refusal, "refusal": refusal}
        return Response(ExternalRunResultSerializer(result).data, status=201 if created else 200)
