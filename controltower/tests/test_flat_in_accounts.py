"""Health and reports flat in ad accounts (issue 17): a health cycle, GET health, GET status, the
dashboard, the report and /metrics make the same queries at 300 accounts as at 3.

The facts grow with the accounts the way an agency's do (tests/agency.py): the mirror (campaigns,
ad sets, ads, insights), spend spikes (one account in ten), the access tiers learnt, and the
per-account detail the module runs carry. The cycle is measured as it opens the spikes' alerts, while
they hold, and as they resolve; and everything again while a halt holds every ACTIVE campaign (a
ledger row each). Counts only: the time is measured by bench/health_accounts.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controltower import commander, health
from controltower.models import Alert, CampaignHold, ControlTowerRun, TowerState
from controltower.roles import VIEWERS_GROUP
from meta_modules import clock
from meta_modules.models import Campaign, SpendSpike
from tests import agency
from tests.support import admin_client, api_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced", "meta_sandbox")]

FEW, MANY = 3, 300
CAMPAIGNS, INSIGHT_DAYS = 3, 2
BASE = "/meta/control-tower"
METRICS_TOKEN = "scrape-me"


def _queries(action: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured.captured_queries)


def _get(client, url: str, **headers: str) -> Callable[[], None]:
    def fetch() -> None:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.content[:500]

    return fetch


def _cycle() -> None:
    commander.health_cycle("scheduler")


def _costs(scale: agency.Agency, start: int) -> dict[str, int]:
    """Grow to `scale` and count each path's queries (each read once before, so that what a first
    request loads once per process is not counted)."""
    now = clock.now()
    agency.grow(scale, now, start=start)
    agency.record_runs(scale, now)
    SpendSpike.objects.update(acknowledged=True)  # raised below, after the warm-up
    _cycle()
    viewer, console = api_client(f"viewer{scale.accounts}", VIEWERS_GROUP), admin_client(f"staff{scale.accounts}")
    reads = {
        "GET health": _get(viewer, f"{BASE}/health"),
        "GET status": _get(viewer, f"{BASE}/status"),
        "GET report": _get(viewer, f"{BASE}/report?days=7"),
        "dashboard": _get(console, "/"),
        "dashboard fragments": _get(console, "/fragments/"),
        "console report": _get(console, "/report/?days=7"),
        "metrics": _get(console, "/metrics", Authorization=f"Bearer {METRICS_TOKEN}"),
    }
    for read in reads.values():
        read()
    SpendSpike.objects.update(acknowledged=False)
    costs = {"cycle opening the spikes' alerts": _queries(_cycle)}
    costs["cycle while they hold"] = _queries(_cycle)
    costs.update({name: _queries(read) for name, read in reads.items()})  # spikes and their alerts shown
    SpendSpike.objects.update(acknowledged=True)
    costs["cycle resolving them"] = _queries(_cycle)
    return costs


def test_every_health_and_report_path_makes_the_same_queries_at_300_accounts_as_at_3(settings) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN
    few = _costs(agency.Agency(FEW, CAMPAIGNS, INSIGHT_DAYS), start=0)
    opened_few = Alert.objects.filter(key__startswith="spend_spike:").count()

    many = _costs(agency.Agency(MANY, CAMPAIGNS, INSIGHT_DAYS), start=FEW)

    assert Campaign.objects.count() == MANY * CAMPAIGNS
    spike_alerts = Alert.objects.filter(key__startswith="spend_spike:")
    assert (opened_few, spike_alerts.count()) == (1, 1 + MANY // agency.SPIKE_EVERY)  # the alerts were raised
    assert not spike_alerts.filter(resolved_at__isnull=True).exists()  # and resolved
    assert many == few


def _halted_costs(scale: agency.Agency, start: int, halt: ControlTowerRun) -> dict[str, int]:
    now = clock.now()
    agency.grow(scale, now, start=start)
    agency.record_runs(scale, now)
    agency.hold_active_campaigns(halt)
    viewer, console = api_client(f"viewer{scale.accounts}", VIEWERS_GROUP), admin_client(f"staff{scale.accounts}")
    paths = {
        "cycle": _cycle,
        "GET health": _get(viewer, f"{BASE}/health"),
        "GET status": _get(viewer, f"{BASE}/status"),
        "GET report": _get(viewer, f"{BASE}/report?days=7"),
        "dashboard": _get(console, "/"),
        "metrics": _get(console, "/metrics", Authorization=f"Bearer {METRICS_TOKEN}"),
    }
    for path in paths.values():
        path()
    return {name: _queries(path) for name, path in paths.items()}


def test_while_every_campaign_is_held_the_paths_make_the_same_queries_at_300_accounts_as_at_3(settings) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN
    halt = agency.halt()
    few = _halted_costs(agency.Agency(FEW, CAMPAIGNS, INSIGHT_DAYS), 0, halt)

    many = _halted_costs(agency.Agency(MANY, CAMPAIGNS, INSIGHT_DAYS), FEW, halt)

    assert CampaignHold.objects.filter(halt_run=halt, state=CampaignHold.State.PAUSED).count() == MANY * 3
    assert TowerState.get().emergency_stop_active
    assert many == few


def test_the_dashboard_counts_the_access_tiers_of_300_accounts_in_one_line() -> None:
    scale = agency.Agency(MANY, 1, 0)
    agency.grow(scale, clock.now())  # accounts 7, 57, 107, … are on the development tier

    page = admin_client("staff").get("/").content.decode()

    tiers = re.search(r'<dd id="access-tiers">(.*?)</dd>', page, re.S).group(1)
    development = ", ".join(agency.account_id(n) for n in range(7, MANY, 50))
    assert f"DEVELOPMENT (about 20 pauses per 5 min) — 6 accounts: {development}</span>" in tiers
    named = ", ".join(agency.account_id(n) for n in range(11) if n != 7)
    assert f"standard — 294 accounts: {named} and 284 more</span>" in tiers
    assert tiers.count("act_") == 6 + 10


def test_the_mirror_totals_count_active_campaigns_and_only_usd_accounts_budgets() -> None:
    agency.grow(agency.Agency(10, 10, 0), clock.now())  # accounts 4 and 9 in EUR; campaigns 8 and 9 not ACTIVE

    report = health.evaluate()

    assert report.total_campaigns_active == 10 * 8
    assert report.total_daily_budget_usd == 8 * sum(1000 + 100 * c for c in range(8)) / 100
