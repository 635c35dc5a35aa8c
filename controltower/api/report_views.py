"""GET report: the spec's success metrics over a period (definitions in controltower/reports.py)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controltower import reports
from controltower.api.permissions import IsTowerViewer
from controltower.api.query import validated_query
from controltower.api.report_serializers import ReportQuerySerializer, ReportSerializer
from controltower.api.views import AUTH_ERRORS, TAGS


class ReportView(APIView):
    permission_classes = [IsTowerViewer]

    @extend_schema(
        operation_id="control_tower_report",
        tags=TAGS,
        parameters=[ReportQuerySerializer],
        summary="System report over a period",
        description="System uptime (time-weighted between checks), module availability, MTTR, auto-recovery success, "
        "emergency stops per ISO week, false-positive alerts, run totals, top errors and the current "
        "recommendations. `days` (1–366, default 7) back from `until` (default now), or `since`/`until`. "
        "Computed by the database in a fixed number of queries whatever the period.",
        responses={
            200: ReportSerializer,
            400: OpenApiResponse(description="Invalid period: an object of field name → list of messages."),
            **AUTH_ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        query = validated_query(ReportQuerySerializer, request)
        period = reports.Period(since=query.validated_data["since"], until=query.validated_data["until"])
        return Response(ReportSerializer(reports.build(period)).data)
