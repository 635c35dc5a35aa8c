"""Fire drills (controltower/drills.py): the canary campaigns and the drills.

GET canaries, GET drills: viewers. POST canaries, DELETE canaries/{id}, POST drills: operators,
counted against the "command" write budget; bad input is a 400 with field errors.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from controltower import commander, drills
from controltower.api.permissions import IsTowerViewer
from controltower.api.query import validated_query
from controltower.api.serializers import REASON_MAX
from controltower.api.strict import JsonCharField, JsonObjectSerializer, JsonRegexField
from controltower.api.views import AUTH_ERRORS, CONFLICT, TAGS, WriteView, write_schema
from controltower.models import Canary, FireDrill

DRILLS_SHOWN = 20
DRILLS_MAX = 100


# --- serializers ------------------------------------------------------------------------------


class CanaryRequestSerializer(JsonObjectSerializer):
    account_id = JsonRegexField(
        r"^(act_)?[0-9]{1,30}$", help_text="The ad account, act_<digits> or <digits>: one canary per account."
    )
    campaign_id = JsonRegexField(r"^[0-9]{1,30}$", help_text="A campaign of that account on Meta (read to check).")
    reason = JsonCharField(max_length=REASON_MAX, allow_blank=False, trim_whitespace=True)


class CanarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Canary
        fields = ["id", "account_id", "campaign_id", "name", "designated_by", "designated_at", "reason"]


class CanaryReleaseSerializer(JsonObjectSerializer):
    reason = JsonCharField(max_length=REASON_MAX, required=False, allow_blank=True, default="")


class DrillRequestSerializer(JsonObjectSerializer):
    reason = JsonCharField(
        max_length=REASON_MAX, allow_blank=False, trim_whitespace=True, help_text="Why (recorded with who and when)."
    )


class DrillQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=DRILLS_MAX, default=DRILLS_SHOWN, help_text="How many drills, newest first."
    )


class CanaryResultSerializer(serializers.Serializer):
    account = serializers.CharField()
    campaign_id = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    paused_ms = serializers.IntegerField(allow_null=True, help_text="Round trip of the stop's pause, confirmed.")
    resumed_ms = serializers.IntegerField(allow_null=True, help_text="Round trip of resume's re-activation.")
    outcome = serializers.ChoiceField(choices=[drills.PASSED, drills.FAILED])
    failed_at = serializers.CharField(allow_blank=True, help_text="read, not_running, pause, reactivate or halt.")
    error = serializers.CharField(allow_blank=True)


class FireDrillSerializer(serializers.ModelSerializer):
    results = CanaryResultSerializer(many=True)

    class Meta:
        model = FireDrill
        fields = [
            "id",
            "state",
            "trigger",
            "executed_by",
            "reason",
            "started_at",
            "finished_at",
            "pause_ms",
            "resume_ms",
            "message",
            "mode",
            "results",
        ]


class DrillListSerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=0, help_text="Every drill recorded.")
    drills = FireDrillSerializer(many=True)


# --- views ------------------------------------------------------------------------------------


class ReadsForViewers(WriteView):
    """GET for viewers, unthrottled; the other methods as every write (operators, throttled)."""

    throttle_scope = "command"

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method in SAFE_METHODS:
            return [IsTowerViewer()]
        return super().get_permissions()

    def get_throttles(self) -> list[BaseThrottle]:
        return [] if self.request.method in SAFE_METHODS else super().get_throttles()


def _validated(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class CanariesView(ReadsForViewers):
    @extend_schema(
        operation_id="control_tower_canaries",
        tags=TAGS,
        summary="Canary campaigns of the fire drills",
        responses={200: CanarySerializer(many=True), **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(CanarySerializer(Canary.objects.all(), many=True).data)

    @write_schema(
        operation_id="control_tower_canary_designate",
        request=CanaryRequestSerializer,
        summary="Designate a canary campaign",
        description="It must exist on Meta in that account (read now: 400 on campaign_id otherwise). At most "
        "one per ad account, a campaign once (409 otherwise). Fire drills pause and re-activate it, and "
        "nothing else.",
        responses={
            201: CanarySerializer,
            409: OpenApiResponse(description="The account already has a canary, or the campaign already is one."),
            503: OpenApiResponse(description="Meta could not be asked; nothing was designated."),
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(CanaryRequestSerializer, request)
        try:
            canary = commander.designate_canary(
                data["account_id"], data["campaign_id"], request.user.get_username(), data["reason"]
            )
        except drills.InvalidCanary as exc:
            raise ValidationError(exc.errors) from exc
        except drills.CanaryTaken as exc:
            return Response({"detail": str(exc)}, status=409)
        except drills.MetaUnavailable as exc:
            return Response({"detail": str(exc)}, status=503)
        return Response(CanarySerializer(canary).data, status=201)


class CanaryView(ReadsForViewers):
    @write_schema(
        operation_id="control_tower_canary_release",
        request=CanaryReleaseSerializer,
        parameters=[OpenApiParameter("canary_id", str, OpenApiParameter.PATH)],
        summary="Remove a canary (nothing is done to the campaign on Meta)",
        description="An optional JSON body {reason} is recorded.",
        responses={204: None, 404: OpenApiResponse(description="No such canary.")},
    )
    def delete(self, request: Request, canary_id: str) -> Response:
        try:
            canary = Canary.objects.filter(pk=uuid.UUID(canary_id)).first()
        except ValueError:
            canary = None
        if canary is None:
            raise NotFound("No such canary.")
        data = _validated(CanaryReleaseSerializer, request) if request.body else {"reason": ""}
        commander.release_canary(canary, request.user.get_username(), data["reason"])
        return Response(status=204)


class DrillsView(ReadsForViewers):
    @extend_schema(
        operation_id="control_tower_drills",
        tags=TAGS,
        parameters=[DrillQuerySerializer],
        summary="Recent fire drills, newest first",
        responses={
            200: DrillListSerializer,
            400: OpenApiResponse(description="Invalid parameter: field name → list of messages."),
            **AUTH_ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        limit = validated_query(DrillQuerySerializer, request).validated_data["limit"]
        recent = FireDrill.objects.order_by("-started_at")[:limit]
        return Response(DrillListSerializer({"count": FireDrill.objects.count(), "drills": recent}).data)

    @write_schema(
        operation_id="control_tower_drill_run",
        request=DrillRequestSerializer,
        summary="Run a fire drill now",
        description="Pauses each canary with the emergency stop's own call and re-activates it with resume's, "
        "accounts in parallel, timing both; touches no other campaign. Answers the recorded drill (passed or "
        "failed; a failed one also alerts). Refused (409, recorded) while halted, with no canary, or while "
        "another drill runs.",
        responses={200: FireDrillSerializer, 409: CONFLICT},
    )
    def post(self, request: Request) -> Response:
        data = _validated(DrillRequestSerializer, request)
        try:
            drill = commander.fire_drill(request.user.get_username(), data["reason"], FireDrill.Trigger.OPERATOR)
        except commander.CommandRefused as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(FireDrillSerializer(drill).data)
