"""An agency's facts, bulk-created: ad accounts with their mirrored campaigns, ad sets, ads and daily
insights, today's spend spikes, the access tiers learnt, and the modules' runs with per-account detail;
and a halt holding every ACTIVE campaign.

Shared by controltower/tests/test_flat_in_accounts.py and bench/health_accounts.py (the same shape at
two sizes). Deterministic: every figure follows from the account and campaign numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

# Accounts in several zones (their "today" differs) and two currencies, as an agency's are.
ZONES = ("America/Los_Angeles", "UTC", "Europe/Berlin", "Asia/Tokyo")
SPIKE_EVERY = 10  # one account in ten has a campaign spiking today
BATCH = 5000


@dataclass(frozen=True)
class Agency:
    accounts: int
    campaigns_per_account: int
    insight_days: int

    @property
    def campaigns(self) -> int:
        return self.accounts * self.campaigns_per_account

    @property
    def insights(self) -> int:
        return self.campaigns * self.insight_days  # one ad set and one ad per campaign


def account_id(n: int) -> str:
    return f"act_{1000 + n}"


def _status(c: int) -> str:
    return "PAUSED" if c % 10 == 8 else "ARCHIVED" if c % 10 == 9 else "ACTIVE"


def grow(agency: Agency, now: datetime, start: int = 0) -> None:
    """Accounts start … agency.accounts - 1 with their mirror and spikes (those below `start` exist)."""
    from meta_modules import days, throttle
    from meta_modules.models import Ad, AdAccount, AdSet, Campaign, DailyInsight, SpendSpike

    numbers = range(start, agency.accounts)
    AdAccount.objects.bulk_create(
        AdAccount(
            id=account_id(n),
            name=f"Client {n}",
            currency="EUR" if n % 5 == 4 else "USD",
            timezone_name=ZONES[n % len(ZONES)],
            synced_at=now,
        )
        for n in numbers
    )
    campaigns, adsets, ads, insights, spikes = [], [], [], [], []
    for n in numbers:
        account = account_id(n)
        today = days.local_today(now, days.zone(ZONES[n % len(ZONES)]))
        for c in range(agency.campaigns_per_account):
            cid = f"{1000 + n}{c:05d}"
            status = _status(c)
            campaigns.append(
                Campaign(
                    id=cid,
                    account_id=account,
                    name=f"Client {n} campaign {c}",
                    status=status,
                    effective_status=status,
                    objective="OUTCOME_SALES",
                    daily_budget_cents=1000 + 100 * (c % 50),
                    synced_at=now,
                )
            )
            adsets.append(AdSet(id=f"{cid}1", account_id=account, campaign_id=cid, name="set", status=status))
            ads.append(Ad(id=f"{cid}2", account_id=account, campaign_id=cid, adset_id=f"{cid}1", status=status))
            for d in range(agency.insight_days):
                spend = Decimal(10 + (c * 7 + d * 3) % 90)
                insights.append(
                    DailyInsight(
                        ad_id=f"{cid}2",
                        date=today - timedelta(days=d),
                        impressions=1000 + 37 * c + d,
                        clicks=20 + c % 17,
                        spend=spend,
                        purchases=c % 4,
                        purchase_value=spend * Decimal("2.5"),
                        collected_at=now,
                    )
                )
        if n % SPIKE_EVERY == 0:
            spikes.append(
                SpendSpike(
                    campaign_id=f"{1000 + n}00000",
                    day=today,
                    detected_at=now,
                    spend_today=Decimal("480.00"),
                    hourly_rate=Decimal("40.0000"),
                    baseline_hourly_rate=Decimal("8.0000"),
                    ratio=5.0,
                )
            )
    for model, rows in ((Campaign, campaigns), (AdSet, adsets), (Ad, ads), (DailyInsight, insights)):
        model.objects.bulk_create(rows, batch_size=BATCH)
    SpendSpike.objects.bulk_create(spikes)
    for n in numbers:
        throttle.remember_tier(account_id(n), "development_access" if n % 50 == 7 else "standard_access")


def record_runs(agency: Agency, now: datetime, per_module: int = 3) -> None:
    """`per_module` successful runs of every module, the latest a minute ago, each with its per-account detail."""
    from meta_modules.models import MetaModule, ModuleRun

    detail = {
        "accounts": {
            account_id(n): {"outcome": "success", "campaigns": agency.campaigns_per_account, "api_calls": 2}
            for n in range(agency.accounts)
        }
    }
    ModuleRun.objects.bulk_create(
        ModuleRun(
            module=module,
            started_at=now - timedelta(minutes=1 + 10 * i),
            finished_at=now - timedelta(minutes=1 + 10 * i) + timedelta(seconds=30),
            outcome=ModuleRun.Outcome.SUCCESS,
            duration_ms=30_000,
            api_calls=2 * agency.accounts if module.calls_meta else 0,
            cpu_ms=9_000,
            peak_rss_mb=180.0,
            summary=detail,
        )
        for module in MetaModule.objects.all()
        for i in range(per_module)
    )


def halt() -> Any:
    """A completed emergency stop in force (swept: nothing for the upkeep to do), its ledger empty."""
    from controltower.models import ControlTowerRun, RunState, RunType, TowerState

    stop = ControlTowerRun.objects.create(
        run_type=RunType.EMERGENCY_STOP, state=RunState.COMPLETED, executed_by="ops", reason="client audit"
    )
    TowerState.get().begin_halt(stop)
    TowerState.halt_swept(stop, stop.executed_at)
    return stop


def hold_active_campaigns(stop: Any) -> None:
    """A ledger row, confirmed PAUSED, for every ACTIVE campaign of the mirror not yet held by `stop`."""
    from controltower.models import CampaignHold
    from meta_modules.models import Campaign

    held = CampaignHold.objects.filter(halt_run=stop).values("campaign_id")
    CampaignHold.objects.bulk_create(
        (
            CampaignHold(
                halt_run=stop,
                stop_run=stop,
                campaign_id=campaign_id,
                account_id=account,
                campaign_name=name,
                prior_status="ACTIVE",
                state=CampaignHold.State.PAUSED,
                attempts=1,
                paused_at=stop.executed_at,
            )
            for campaign_id, account, name in Campaign.objects.filter(status="ACTIVE")
            .exclude(id__in=held)
            .values_list("id", "account_id", "name")
        ),
        batch_size=BATCH,
    )
