"""Reads behind the console pages, each a fixed number of queries whatever the data size."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet, Subquery
from django.utils import timezone

from controltower.console import times
from controltower.console.charts import RunPoint
from controltower.models import CampaignHold, ControlTowerRun, RunState, RunType, SystemHealthLog
from meta_modules.models import MetaModule, ModuleRun

STRIP_CHECKS = 48
RECENT_RUNS = 50
CHART_RUNS = 500
CHART_DAYS = 7
LEDGER_ROWS = 500
# States a hold reaches only after the kill switch confirmed it paused.
WAS_PAUSED = (
    CampaignHold.State.PAUSED,
    CampaignHold.State.RESUMED,
    CampaignHold.State.SKIPPED,
    CampaignHold.State.RELEASED,
)


@dataclass(frozen=True)
class StripCell:
    status: str
    checked_at: datetime
    title: str


def health_strips(codes: list[str] | None = None, checks: int = STRIP_CHECKS) -> dict[str, list[StripCell]]:
    """The last `checks` completed health checks of every module (or of `codes`), oldest first:
    ONE query (the latest checks are a subquery) however many modules and checks exist."""
    latest = (
        ControlTowerRun.objects.filter(run_type=RunType.HEALTH_CHECK, state=RunState.COMPLETED)
        .order_by("-executed_at")
        .values("pk")[:checks]
    )
    logs = SystemHealthLog.objects.filter(run_id__in=Subquery(latest))
    if codes is not None:
        logs = logs.filter(module_name__in=codes)
    strips: dict[str, list[StripCell]] = defaultdict(list)
    rows = logs.order_by("checked_at").values_list(
        "module_name", "health_status", "checked_at", "success_rate", "error_count_24h", "last_error"
    )
    for code, status, checked_at, rate, errors, last_error in rows:
        strips[code].append(StripCell(status, checked_at, _cell_title(status, checked_at, rate, errors, last_error)))
    return strips


def _cell_title(status: str, checked_at: datetime, rate: float | None, errors: int, last_error: str) -> str:
    parts = [times.zoned(checked_at), status.upper()]
    if rate is not None:
        parts.append(f"success {rate:.0%}")
    if errors:
        parts.append(f"{errors} errors/24 h")
    if last_error:
        parts.append(f"last error: {last_error[:120]}")
    return " · ".join(parts)


def recent_runs(module: MetaModule, limit: int = RECENT_RUNS) -> list[ModuleRun]:
    return list(
        ModuleRun.objects.filter(module=module)
        .order_by("-started_at")
        .only(
            "started_at",
            "finished_at",
            "outcome",
            "trigger",
            "error_message",
            "duration_ms",
            "api_calls",
            "api_errors",
            "cpu_ms",
            "peak_rss_mb",
        )[:limit]
    )


def chart_points(module: MetaModule, now: datetime | None = None) -> list[RunPoint]:
    since = (now or timezone.now()) - timedelta(days=CHART_DAYS)
    rows = (
        ModuleRun.objects.filter(module=module, started_at__gte=since)
        .order_by("-started_at")
        .values_list("started_at", "duration_ms", "outcome", "trigger", "error_message")[:CHART_RUNS]
    )
    return [
        RunPoint(at, ms, outcome, f"{trigger}{': ' + error[:120] if error else ''}")
        for at, ms, outcome, trigger, error in rows
    ]


@dataclass
class HoldSummary:
    """What a stop did to campaigns, read from the ledger (so background sweeps show up)."""

    by_account: dict[str, dict[str, int]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    failed: list[CampaignHold] = field(default_factory=list)
    pending: list[CampaignHold] = field(default_factory=list)

    @property
    def paused(self) -> int:
        return sum(self.totals.get(state, 0) for state in WAS_PAUSED)

    @property
    def done(self) -> bool:
        return not self.totals.get(CampaignHold.State.PENDING)


def holds_of(run: ControlTowerRun) -> QuerySet[CampaignHold]:
    """The ledger rows a stop made (the halt it began) or re-swept, or a resume acted on."""
    return CampaignHold.objects.filter(Q(halt_run=run) | Q(stop_run=run) | Q(resume_run=run))


def hold_summary(run: ControlTowerRun) -> HoldSummary:
    holds = holds_of(run)
    by_account: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(CampaignHold.State.values, 0))
    for row in holds.values("account_id", "state").annotate(n=Count("id")).order_by("account_id"):
        by_account[row["account_id"]][row["state"]] = row["n"]
    totals = {state: sum(counts[state] for counts in by_account.values()) for state in CampaignHold.State.values}
    for counts in by_account.values():
        counts["was_paused"] = sum(counts[state] for state in WAS_PAUSED)
    problems = list(
        holds.filter(state__in=[CampaignHold.State.FAILED, CampaignHold.State.PENDING]).only(
            "campaign_id", "campaign_name", "account_id", "state", "last_error", "attempts"
        )[:LEDGER_ROWS]
    )
    return HoldSummary(
        by_account=dict(by_account),
        totals=totals,
        failed=[h for h in problems if h.state == CampaignHold.State.FAILED],
        pending=[h for h in problems if h.state == CampaignHold.State.PENDING],
    )


def action(run: ControlTowerRun, name: str) -> dict[str, Any]:
    """One entry of a run's actions_executed by its name ({} when absent)."""
    return next((a for a in run.actions_executed if isinstance(a, dict) and a.get("action") == name), {})
