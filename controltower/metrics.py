"""Prometheus exposition at /metrics: the tower's state, read from the database at each scrape.

A custom collector rather than in-process counters: the web runs as several processes, and
the database is the one place that knows. Eight small queries per scrape; module figures come
from the latest persisted health check (cheap), not from a live evaluation.

Access: `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set, or a client address
(REMOTE_ADDR: behind a proxy, the proxy's) within METRICS_ALLOWED_IPS (addresses or networks,
e.g. 10.0.0.0/8). With neither setting, every scrape is refused: never open by default.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from ipaddress import ip_address, ip_network

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controltower.models import (
    Alert,
    CampaignHold,
    ControlTowerRun,
    ModuleStatus,
    ReadinessCheck,
    RecoveryAttempt,
    RunState,
    RunType,
    SystemHealthLog,
    SystemStatus,
    TowerState,
)
from meta_modules.models import MetaModule, ModuleRun

logger = logging.getLogger(__name__)


def _state_set(name: str, documentation: str, values: Iterable[str], current: str) -> GaugeMetricFamily:
    """One series per possible status, 1 for the current one (the state-set idiom)."""
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for value in values:
        family.add_metric([value], 1.0 if value == current else 0.0)
    return family


class TowerCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        state = TowerState.get()
        yield _state_set(
            "tower_system_status", "System status (1 for the current one).", SystemStatus.values, state.system_status
        )
        yield GaugeMetricFamily(
            "tower_emergency_stop_active",
            "1 while an emergency stop is active.",
            value=float(state.emergency_stop_active),
        )
        yield GaugeMetricFamily(
            "tower_health_cycle_interval_seconds",
            "Configured interval of the health cycle.",
            value=float(settings.HEALTH_CYCLE_INTERVAL_SECONDS),
        )
        yield from self._latest_check()
        yield from self._last_runs(now)
        yield self._holds(state)
        yield self._recoveries(now)
        yield self._open_alerts()
        yield from self._readiness(now)

    def _latest_check(self) -> Iterator[Metric]:
        check = (
            ControlTowerRun.objects.filter(run_type=RunType.HEALTH_CHECK, state=RunState.COMPLETED)
            .order_by("-executed_at")
            .values("pk", "executed_at", "execution_time_ms")
            .first()
        )
        if check is None:
            return
        yield GaugeMetricFamily(
            "tower_last_health_check_timestamp_seconds",
            "When the latest completed check ran.",
            value=check["executed_at"].timestamp(),
        )
        if check["execution_time_ms"] is not None:
            yield GaugeMetricFamily(
                "tower_health_cycle_duration_seconds",
                "How long the latest completed check took.",
                value=check["execution_time_ms"] / 1000,
            )
        status = GaugeMetricFamily(
            "tower_module_status",
            "Module status at the latest check (1 for the current one).",
            labels=["module", "name", "status"],
        )
        success = GaugeMetricFamily(
            "tower_module_success_rate",
            "Share of finished runs that succeeded in 24 h (absent without runs).",
            labels=["module"],
        )
        errors = GaugeMetricFamily("tower_module_errors_24h", "Failed or timed-out runs in 24 h.", labels=["module"])
        api_calls = GaugeMetricFamily(
            "tower_module_api_calls_24h", "Meta Graph API requests in 24 h.", labels=["module"]
        )
        logs = SystemHealthLog.objects.filter(run_id=check["pk"]).values_list(
            "module_name", "module_full_name", "health_status", "success_rate", "error_count_24h", "api_calls_24h"
        )
        for code, name, current, rate, error_count, calls in logs:
            for value in ModuleStatus.values:
                status.add_metric([code, name, value], 1.0 if value == current else 0.0)
            if rate is not None:
                success.add_metric([code], rate)
            errors.add_metric([code], error_count)
            api_calls.add_metric([code], calls)
        yield from (status, success, errors, api_calls)

    def _last_runs(self, now: datetime) -> Iterator[Metric]:
        latest = (
            ModuleRun.objects.filter(module=OuterRef("pk"))
            .exclude(outcome=ModuleRun.Outcome.SKIPPED)
            .order_by("-started_at")
        )
        age = GaugeMetricFamily(
            "tower_module_last_run_age_seconds",
            "Seconds since the module's latest run started (absent before its first).",
            labels=["module"],
        )
        for code, started in MetaModule.objects.annotate(last=Subquery(latest.values("started_at")[:1])).values_list(
            "code", "last"
        ):
            if started is not None:
                age.add_metric([code], max(0.0, (now - started).total_seconds()))
        yield age

    def _holds(self, state: TowerState) -> Metric:
        family = GaugeMetricFamily(
            "tower_campaigns_held",
            "Campaigns in the ledger of the current (or latest) emergency stop, by state.",
            labels=["state"],
        )
        counts = (
            dict(
                CampaignHold.objects.filter(halt_run_id=state.halt_run_id)
                .values_list("state")
                .annotate(n=Count("pk"))
                .order_by()
            )
            if state.halt_run_id
            else {}
        )
        for value in CampaignHold.State.values:
            family.add_metric([value], counts.get(value, 0))
        return family

    def _recoveries(self, now: datetime) -> Metric:
        # A 24 h gauge, not a counter: retention prunes attempts, and a counter must never go down.
        family = GaugeMetricFamily(
            "tower_recovery_attempts_24h",
            "Recovery attempts started in the last 24 h.",
            labels=["module", "action", "outcome"],
        )
        rows = (
            RecoveryAttempt.objects.filter(started_at__gte=now - timedelta(hours=24))
            .values_list("module_code", "action", "outcome")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for module, action, outcome, count in rows:
            family.add_metric([module, action, outcome], count)
        return family

    def _open_alerts(self) -> Metric:
        family = GaugeMetricFamily("tower_alerts_open", "Alerts open now, by severity.", labels=["severity"])
        counts = dict(
            Alert.objects.filter(resolved_at__isnull=True).values_list("severity").annotate(n=Count("pk")).order_by()
        )
        for value in Alert.Severity.values:
            family.add_metric([value], counts.get(value, 0))
        return family

    def _readiness(self, now: datetime) -> Iterator[Metric]:
        """The latest readiness check of the kill switch (none before the first: no series)."""
        check = ReadinessCheck.latest()
        if check is None:
            return
        yield _state_set(
            "tower_kill_switch_readiness",
            "Would the kill switch work now, at the latest check (1 for the current verdict).",
            ReadinessCheck.Verdict.values,
            check.verdict,
        )
        yield GaugeMetricFamily(
            "tower_kill_switch_readiness_checked_timestamp_seconds",
            "When the latest readiness check ran.",
            value=check.checked_at.timestamp(),
        )
        stop = GaugeMetricFamily(
            "tower_kill_switch_stop_campaigns",
            "What a stop at the latest check would do with the ACTIVE campaigns.",
            labels=["outcome"],
        )
        stop.add_metric(["paused_at_once"], float(check.paused_at_once))
        stop.add_metric(["left_pending"], float(check.left_pending))
        stop.add_metric(["out_of_reach"], float(check.out_of_reach))
        yield stop
        for name, moment, what in (
            ("tower_meta_token_expires_in_seconds", check.token_expires_at, "the access token expires"),
            ("tower_meta_token_data_access_expires_in_seconds", check.data_access_expires_at, "data access expires"),
        ):
            if moment is not None:  # a token that never expires has no series
                left = (moment - now).total_seconds()
                yield GaugeMetricFamily(name, f"Seconds until {what} (negative: past).", value=left)
        accounts = GaugeMetricFamily(
            "tower_ad_account_ready",
            "Per ad account at the latest readiness check: 1 ready, 0.5 degraded, 0 not ready.",
            labels=["account"],
        )
        for account in check.accounts:
            accounts.add_metric([account["account_id"]], {"ready": 1.0, "degraded": 0.5}.get(account["verdict"], 0.0))
        yield accounts


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(TowerCollector())


def address_allowed(address: str, allowed: Iterable[str]) -> bool:
    """Whether `address` is one of the allowed addresses or inside one of the allowed networks."""
    try:
        client = ip_address(address)
    except ValueError:
        return False
    if client.version == 6 and client.ipv4_mapped:  # ::ffff:10.0.0.1 from a dual-stack socket
        client = client.ipv4_mapped
    for entry in allowed:
        try:
            network = ip_network(entry, strict=False)
        except ValueError:
            logger.warning("METRICS_ALLOWED_IPS: %r is not an address or network; ignored", entry)
            continue
        if client in network:
            return True
    return False


def _bearer(request: HttpRequest) -> str:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def scrape_allowed(request: HttpRequest) -> bool:
    token, presented = settings.METRICS_TOKEN, _bearer(request)
    if token and presented and hmac.compare_digest(presented.encode(), token.encode()):
        return True
    return address_allowed(request.META.get("REMOTE_ADDR", ""), settings.METRICS_ALLOWED_IPS)


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        return HttpResponseForbidden(
            "Metrics need 'Authorization: Bearer <METRICS_TOKEN>' or an address in METRICS_ALLOWED_IPS.",
            content_type="text/plain",
        )
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


# Mounted at /metrics by config/urls.py (include), outside the API and its OpenAPI schema.
urlpatterns = [path("", metrics_view, name="metrics")]
