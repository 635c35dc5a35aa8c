"""Reads behind the console pages, each a fixed number of queries whatever the data size."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Subquery
from django.utils import timezone

from controltower import campaign_lists
from controltower.console import times
from controltower.console.charts import RunPoint
from controltower.models import CampaignHold, ControlTowerRun, RunState, RunType, SystemHealthLog
from meta_modules.models import MetaModule, ModuleRun

STRIP_CHECKS = 48
RECENT_RUNS = 50
CHART_RUNS = 500
CHART_DAYS = 7
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
class AccountRow:
    """One ad account on the stop's result page: its summary, and a count for every state (zeros included)."""

    summary: campaign_lists.AccountSummary
    counts: dict[str, int]


@dataclass
class HoldSummary:
    """What a stop did to campaigns, read from the ledger (so background sweeps show up): per ad
    account, not per campaign — the campaigns are paged apart (campaign_lists)."""

    campaigns: campaign_lists.RunCampaigns
    totals: dict[str, int] = field(default_factory=dict)
    accounts: list[AccountRow] = field(default_factory=list)

    @property
    def paused(self) -> int:
        return sum(self.totals.get(state, 0) for state in WAS_PAUSED)

    @property
    def done(self) -> bool:
        return not self.totals.get(CampaignHold.State.PENDING)


def hold_summary(run: ControlTowerRun) -> HoldSummary:
    campaigns = campaign_lists.summary(run)
    rows = []
    for account in campaigns.accounts:
        counts = {state: account.by_state.get(state, 0) for state in CampaignHold.State.values}
        counts["was_paused"] = sum(counts[state] for state in WAS_PAUSED)
        rows.append(AccountRow(account, counts))
    totals = {state: campaigns.by_state.get(state, 0) for state in CampaignHold.State.values}
    return HoldSummary(campaigns=campaigns, totals=totals, accounts=rows)


def action(run: ControlTowerRun, name: str) -> dict[str, Any]:
    """One entry of a run's actions_executed by its name ({} when absent)."""
    return next((a for a in run.actions_executed if isinstance(a, dict) and a.get("action") == name), {})
