"""Spend spikes over a whole day in three time zones, end to end over HTTP: the sandbox reports in
each account's zone, and 10.2 → 10.4 → 10.14 → 10.9 run as scheduled at every hour, with the
tower's clock and the sandbox's moved together."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controltower.schedules import sync_modules
from meta_modules import jobs
from meta_modules.models import Campaign, ModuleRun, SpendSnapshot, SpendSpike

pytestmark = pytest.mark.django_db

ZONES = ("America/Los_Angeles", "UTC", "Asia/Kolkata")  # behind, at and ahead of UTC (by 5 h 30)
# Los Angeles springs forward at 10:00 UTC that day: its 10 March has 23 hours.
DAY = datetime(2024, 3, 10, tzinfo=UTC)
MIN_SPEND = Decimal("5.00")


def run(task: Any) -> ModuleRun:
    result = ModuleRun.objects.get(pk=task())
    assert result.outcome == ModuleRun.Outcome.SUCCESS, result.error_message
    return result


def at(sandbox: Any, tower_clock: Any, now: datetime) -> None:
    tower_clock(now)
    sandbox.set_clock(now.isoformat())


def test_steady_spend_is_never_a_spike_and_a_3x_spike_is_caught_at_every_hour_in_every_zone(
    meta_sandbox, tower_clock, settings
) -> None:
    sync_modules()
    settings.INSIGHTS_LOOKBACK_DAYS = 8  # today and the 7 days of the baseline
    # A steady campaign's daily spend is 60–100 % of its budget, so today's rate over the week's
    # stays below 1.0 / 0.6 × 24 / 23 (a 23-hour day) ≈ 1.74; three times the spend stays above 2.
    settings.SPIKE_RATIO = 2.0
    settings.SPIKE_MIN_SPEND = float(MIN_SPEND)
    at(meta_sandbox, tower_clock, DAY)
    # Seed 1: every campaign's one ad is ACTIVE (about 15 % of seeded ads are PAUSED).
    meta_sandbox.reset(
        accounts=3,
        statuses={"ACTIVE": 3},
        adsets_per_campaign=1,
        ads_per_adset=1,
        history_days=9,
        timezones=list(ZONES),
        delivery_issues=[],
        seed=1,
    )
    zones = {f"act_100000000{n}": ZoneInfo(zone) for n, zone in enumerate(ZONES, start=1)}
    targets: dict[str, str] = {}
    caught: Counter[str] = Counter()

    for hour in range(24):
        now = DAY + timedelta(hours=hour, minutes=20)
        at(meta_sandbox, tower_clock, now)
        meta_sandbox.faults(
            async_job_seconds=0
        )  # insights report runs done at their first poll, as the fixture has them
        for task in (jobs.sync_campaigns, jobs.collect_insights, jobs.poll_today_spend):
            run(task)
        steady = run(jobs.detect_spend_spikes)
        assert steady.summary["spikes"] == 0, (now, list(SpendSpike.objects.filter(detected_at=now).values()))
        assert steady.summary["campaigns_checked"] > 0
        if not targets:  # per account, its oldest campaign that spends today: it has a full baseline
            polled = Campaign.objects.filter(spend_snapshots__isnull=False).order_by("created_time", "pk")
            for campaign in polled.distinct():
                targets.setdefault(campaign.account_id, campaign.pk)
            assert set(targets) == set(zones)

        meta_sandbox.faults(spend_multiplier=dict.fromkeys(targets.values(), 3), async_job_seconds=0)
        now += timedelta(minutes=5)  # 10.14's next poll
        at(meta_sandbox, tower_clock, now)
        run(jobs.poll_today_spend)
        run(jobs.detect_spend_spikes)

        flagged = set(SpendSpike.objects.filter(detected_at=now).values_list("campaign_id", flat=True))
        assert flagged <= set(targets.values()), now  # the steady campaigns are left alone
        for account, campaign in targets.items():
            spend = SpendSnapshot.objects.get(campaign_id=campaign, taken_at=now).spend_today
            if campaign in flagged:
                caught[account] += 1
                assert spend >= MIN_SPEND, (now, account, spend)
            # In the first hour of its day a rate is taken over one hour: it may still be too early.
            elif now.astimezone(zones[account]).hour >= 1:
                assert spend < MIN_SPEND, (now, account, spend)

    assert all(caught[account] >= 20 for account in zones), caught
    local_days = set(SpendSpike.objects.values_list("campaign__account_id", "day"))
    assert local_days == {
        (account, (DAY + timedelta(hours=h, minutes=25)).astimezone(zones[account]).date())
        for account in zones
        for h in range(24)
    }
