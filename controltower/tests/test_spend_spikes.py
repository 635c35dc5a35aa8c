"""Spend spikes found by 10.9: a critical alert, and (opt-in) an emergency stop within a minute."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail

from controltower import commander
from controltower.management.commands.watchdog import check_once
from controltower.models import ControlTowerRun, TowerState
from meta_modules import clock, days, jobs
from meta_modules.models import Campaign, SpendSpike

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]


def _spike(requested: bool) -> SpendSpike:
    jobs.sync_campaigns.apply()
    campaign = Campaign.objects.filter(status="ACTIVE").select_related("account").first()
    today = days.local_today(clock.now(), campaign.account.zone)  # the sandbox's account 1 is in Los Angeles
    return SpendSpike.objects.create(
        campaign=campaign,
        day=today,
        spend_today=Decimal("10000.00"),
        hourly_rate=Decimal("1000"),
        baseline_hourly_rate=Decimal("50"),
        ratio=20.0,
        requested_emergency_stop=requested,
    )


def test_a_spike_raises_a_critical_alert(meta_sandbox, settings) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    spike = _spike(requested=False)

    run = commander.health_cycle("test")

    assert f"spend_spike:{spike.campaign_id}" in {a["key"] for a in run.alerts}
    assert "Spend spike on campaign" in mail.outbox[0].body and "20.0×" in mail.outbox[0].body
    assert "10,000.00 USD spent today" in mail.outbox[0].body
    assert not TowerState.get().emergency_stop_active  # alert only: the policy is opt-in


def test_a_requested_stop_is_carried_out_by_the_watchdog_once(meta_sandbox) -> None:
    spike = _spike(requested=True)

    check_once()

    state = TowerState.get()
    assert state.emergency_stop_active and state.halted_by == "10.9 Budget Spike Manager"
    assert "Budget spike (10.9)" in state.halt_reason and "20.0× its baseline" in state.halt_reason
    assert "10,000.00 USD spent today" in state.halt_reason
    assert meta_sandbox.campaigns(status="ACTIVE") == []
    spike.refresh_from_db()
    assert spike.acknowledged and spike.acknowledged_by.startswith("emergency stop ")
    check_once()
    assert ControlTowerRun.objects.filter(run_type="emergency_stop").count() == 1
