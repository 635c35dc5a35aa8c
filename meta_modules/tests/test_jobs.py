"""The 17 module jobs: against the Meta sandbox over real HTTP where Meta is involved, on
hand-made mirror rows with a known answer where it is not."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controltower.models import TowerState
from controltower.schedules import sync_modules
from meta_modules import clock, days, jobs
from meta_modules.graph import GraphClient, WriteRefused
from meta_modules.models import (
    Ad,
    AdAccount,
    AdSet,
    AudienceScore,
    BudgetProposal,
    Campaign,
    CampaignDraft,
    CampaignRoas,
    CopyVariant,
    CreativeBrief,
    CreativeFatigue,
    CreativeRank,
    CreativeWinner,
    DailyInsight,
    ModuleRun,
    SpendSnapshot,
    SpendSpike,
)
from meta_modules.registry import MODULES
from meta_modules.runs import RunContext, execute

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def modules() -> None:
    sync_modules()


def run_of(task: Any) -> ModuleRun:
    """Run a module task synchronously through @module_job and return its recorded run."""
    return ModuleRun.objects.get(pk=task())


def graph_get(sandbox: Any, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode({"access_token": "t", **params})
    with urllib.request.urlopen(f"{sandbox.url}/v25.0/{path}?{query}", timeout=10) as response:
        return json.loads(response.read())


def graph_post(sandbox: Any, path: str, **data: Any) -> Any:
    body = urllib.parse.urlencode({"access_token": "t", **data}).encode()
    with urllib.request.urlopen(
        urllib.request.Request(f"{sandbox.url}/v25.0/{path}", data=body), timeout=10
    ) as response:
        return json.loads(response.read())


def local_today(account: str = "act_1") -> date:
    """The account's today at the tower clock's now (act_1, hand-made without a zone, is on UTC)."""
    return days.local_today(clock.now(), AdAccount.objects.get(pk=account).zone)


def days_ago(n: int, account: str = "act_1") -> date:
    return local_today(account) - timedelta(days=n)


def move_clocks(sandbox: Any, tower_clock: Any, now: datetime) -> None:
    """The tower's business clock and the sandbox's (Meta's) to the same instant."""
    tower_clock(now)
    sandbox.set_clock(now.isoformat())


LOS_ANGELES, ON_UTC, BERLIN = "act_1000000001", "act_1000000002", "act_1000000003"  # the sandbox's default zones


# --- Hand-made mirror rows ------------------------------------------------------------------


def make_campaign(cid: str, account: str = "act_1", budget: int | None = 10_000, status: str = "ACTIVE") -> Campaign:
    AdAccount.objects.get_or_create(id=account)
    return Campaign.objects.create(
        id=cid,
        account_id=account,
        name=f"Campaign {cid}",
        status=status,
        effective_status=status,
        daily_budget_cents=budget,
    )


def make_adset(sid: str, campaign: Campaign) -> AdSet:
    return AdSet.objects.create(
        id=sid,
        account_id=campaign.account_id,
        campaign=campaign,
        name=f"Ad set {sid}",
        status="ACTIVE",
        effective_status="ACTIVE",
    )


def make_ad(aid: str, adset: AdSet, creative: dict | None = None) -> Ad:
    return Ad.objects.create(
        id=aid,
        account_id=adset.account_id,
        campaign_id=adset.campaign_id,
        adset=adset,
        name=f"Ad {aid}",
        status="ACTIVE",
        effective_status="ACTIVE",
        creative=creative or {},
    )


def make_insight(
    ad: Ad, day: date, impressions: int = 0, clicks: int = 0, spend: str = "0", purchases: int = 0, value: str = "0"
) -> DailyInsight:
    return DailyInsight.objects.create(
        ad=ad,
        date=day,
        impressions=impressions,
        clicks=clicks,
        spend=Decimal(spend),
        purchases=purchases,
        purchase_value=Decimal(value),
    )


def one_ad(prefix: str, account: str = "act_1", budget: int | None = 10_000) -> Ad:
    campaign = make_campaign(f"{prefix}c", account, budget)
    return make_ad(f"{prefix}a", make_adset(f"{prefix}s", campaign))


# --- 10.2 sync_campaigns --------------------------------------------------------------------


def mirror_snapshot() -> list[tuple]:
    common = ("pk", "status", "effective_status", "updated_time", "synced_at")
    return [
        *Campaign.objects.order_by("pk").values_list(*common, "daily_budget_cents"),
        *AdSet.objects.order_by("pk").values_list(*common, "campaign_id"),
        *Ad.objects.order_by("pk").values_list(*common, "adset_id"),
    ]


def test_sync_mirrors_the_sandbox_and_a_second_sync_changes_nothing(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=2, campaigns_per_account=30, seed=7)

    run = run_of(jobs.sync_campaigns)

    assert run.outcome == ModuleRun.Outcome.SUCCESS and run.api_calls > 0
    state = meta_sandbox.state()
    assert sorted(AdAccount.objects.values_list("pk", flat=True)) == [a["id"] for a in state["accounts"]]
    for account in state["accounts"]:
        expected = {s: n for s, n in account["campaigns"].items() if s != "DELETED" and n}
        mirrored = Campaign.objects.filter(account_id=account["id"])
        assert {s: mirrored.filter(status=s).count() for s in expected} == expected
        assert mirrored.count() == sum(expected.values()) == 30
    truth = {c["id"]: c for c in meta_sandbox.campaigns()}
    for campaign in Campaign.objects.all():
        meta = truth[campaign.pk]
        assert (campaign.status, campaign.daily_budget_cents) == (meta["status"], int(meta["daily_budget"]))
        assert campaign.updated_time == jobs._meta_time(meta["updated_time"])
    assert AdSet.objects.count() == 2 * 30 * 2 and Ad.objects.count() == 2 * 30 * 2 * 2  # seed: 2 ad sets × 2 ads
    assert Ad.objects.exclude(creative__title=None).count() == Ad.objects.count()
    assert AdSet.objects.exclude(targeting={}).count() == AdSet.objects.count()
    assert run.summary["campaigns_created"] == 60

    before = mirror_snapshot()
    second = run_of(jobs.sync_campaigns)

    assert second.outcome == ModuleRun.Outcome.SUCCESS
    assert mirror_snapshot() == before
    assert second.summary["accounts_done"] == 2
    assert {k: v for k, v in second.summary.items() if not k.startswith(("accounts", "parts")) and v} == {}


def test_the_sync_stores_each_accounts_time_zone_and_currency(meta_sandbox, tower_clock) -> None:
    move_clocks(meta_sandbox, tower_clock, datetime(2024, 1, 15, 12, tzinfo=UTC))
    meta_sandbox.reset(
        accounts=3,
        campaigns_per_account=1,
        timezones=["America/Los_Angeles", "Asia/Kolkata", "UTC"],
        currencies=["USD", "JPY", "EUR"],
    )

    run = run_of(jobs.sync_campaigns)

    assert list(AdAccount.objects.values_list("pk", "timezone_name", "timezone_offset_hours_utc", "currency")) == [
        (LOS_ANGELES, "America/Los_Angeles", -8.0, "USD"),
        (ON_UTC, "Asia/Kolkata", 5.5, "JPY"),
        (BERLIN, "UTC", 0.0, "EUR"),
    ]
    assert run.summary["unknown_time_zones"] == 0
    campaign = Campaign.objects.get(account_id=LOS_ANGELES)
    meta_created = graph_get(meta_sandbox, campaign.pk, fields="created_time")["created_time"]
    assert meta_created.endswith("-0800") and campaign.created_time == jobs._meta_time(meta_created)

    move_clocks(meta_sandbox, tower_clock, datetime(2024, 7, 15, 12, tzinfo=UTC))
    run_of(jobs.sync_campaigns)
    assert AdAccount.objects.get(pk=LOS_ANGELES).timezone_offset_hours_utc == -7.0  # daylight saving time


def test_a_status_changed_on_meta_shows_up_after_the_next_sync(meta_sandbox) -> None:
    run_of(jobs.sync_campaigns)
    campaign = Campaign.objects.filter(status="ACTIVE", effective_status="ACTIVE").first()  # not one WITH_ISSUES

    graph_post(meta_sandbox, campaign.pk, status="PAUSED")  # a human, in Ads Manager
    run = run_of(jobs.sync_campaigns)

    campaign.refresh_from_db()
    assert (campaign.status, campaign.effective_status) == ("PAUSED", "PAUSED")
    assert run.summary["campaigns_updated"] == 1
    children = Ad.objects.filter(campaign=campaign).exclude(status="PAUSED")
    assert set(children.values_list("effective_status", flat=True)) == {"CAMPAIGN_PAUSED"}


def test_a_campaign_deleted_on_meta_is_marked_deleted_not_removed(meta_sandbox) -> None:
    run_of(jobs.sync_campaigns)
    campaign = Campaign.objects.filter(status="PAUSED").first()
    graph_post(meta_sandbox, campaign.pk, status="DELETED")

    run = run_of(jobs.sync_campaigns)

    assert Campaign.objects.get(pk=campaign.pk).status == "DELETED"
    assert set(Ad.objects.filter(campaign=campaign).values_list("status", flat=True)) == {"DELETED"}
    assert run.summary["campaigns_vanished"] == 1


def test_sync_queries_do_not_grow_with_the_number_of_campaigns(meta_sandbox, django_assert_max_num_queries) -> None:
    meta_sandbox.reset(accounts=1, campaigns_per_account=200, adsets_per_campaign=1, ads_per_adset=1)
    run = RunContext(run_id=None, module_code="10.2")

    # SQLite takes at most 999 parameters per statement, so 200 rows are 2–3 inserts per table;
    # PostgreSQL does each table in one.
    with django_assert_max_num_queries(16):
        jobs._sync_campaigns(run)
    with django_assert_max_num_queries(6):  # nothing changed: reads only
        jobs._sync_campaigns(run)
    assert Campaign.objects.count() == 200 and Ad.objects.count() == 200


# --- 10.4 collect_insights ------------------------------------------------------------------


def test_insights_land_on_each_accounts_local_days_and_equal_the_sandbox_numbers(meta_sandbox, tower_clock) -> None:
    # 20:00 on 11 March in Los Angeles (the day after its spring-forward), 04:00 on 12 March in Berlin.
    move_clocks(meta_sandbox, tower_clock, datetime(2024, 3, 12, 3, tzinfo=UTC))
    meta_sandbox.reset(accounts=3, campaigns_per_account=4, seed=7)
    run_of(jobs.sync_campaigns)

    run = run_of(jobs.collect_insights)

    assert run.outcome == ModuleRun.Outcome.SUCCESS and run.api_calls >= 3
    assert DailyInsight.objects.count() == run.summary["rows"] == run.summary["written"] > 0
    assert run.summary["windows"] == ["2024-03-05..2024-03-11", "2024-03-06..2024-03-12"]
    for account, today in ((LOS_ANGELES, date(2024, 3, 11)), (ON_UTC, date(2024, 3, 12)), (BERLIN, date(2024, 3, 12))):
        dates = set(DailyInsight.objects.filter(ad__account_id=account).values_list("date", flat=True))
        assert (min(dates), max(dates)) == (today - timedelta(days=6), today), account
    # Los Angeles' 23-hour day: the tower's row is Meta's row for that local day.
    insight = DailyInsight.objects.filter(ad__account_id=LOS_ANGELES, date=date(2024, 3, 10), purchases__gt=0).first()
    [truth] = graph_get(
        meta_sandbox,
        f"{insight.ad_id}/insights",
        fields="impressions,clicks,spend,actions,action_values",
        time_range=json.dumps({"since": "2024-03-10", "until": "2024-03-10"}),
    )["data"]
    purchases = {a["action_type"]: a["value"] for a in truth["actions"]}["omni_purchase"]
    value = {a["action_type"]: a["value"] for a in truth["action_values"]}["omni_purchase"]
    assert (insight.impressions, insight.clicks, insight.spend, insight.purchases, insight.purchase_value) == (
        int(truth["impressions"]),
        int(truth["clicks"]),
        Decimal(truth["spend"]),
        int(purchases),
        Decimal(value),
    )

    again = run_of(jobs.collect_insights)
    assert DailyInsight.objects.count() == run.summary["rows"]
    todays = DailyInsight.objects.filter(
        Q(ad__account_id=LOS_ANGELES, date=date(2024, 3, 11))
        | Q(ad__account_id__in=[ON_UTC, BERLIN], date=date(2024, 3, 12))
    )
    assert again.summary["written"] <= todays.count()  # only each account's today moves


# --- 10.5 compute_roas ----------------------------------------------------------------------


def test_roas_is_the_sum_of_values_over_the_sum_of_spend() -> None:
    ad = one_ad("r")
    make_insight(ad, days_ago(1), spend="100.00", value="500.00")  # ROAS 5
    make_insight(ad, days_ago(2), spend="300.00", value="300.00")  # ROAS 1
    make_insight(ad, days_ago(7), spend="1000.00", value="0")  # outside the 7-day window
    idle = one_ad("z")
    make_insight(idle, days_ago(1), impressions=10)

    run = run_of(jobs.compute_roas)

    assert run.summary == {"campaigns": 2, "without_spend": 1, "windows": [f"{days_ago(6)}..{days_ago(0)}"]}
    roas = CampaignRoas.objects.get(campaign_id="rc")
    assert (roas.spend, roas.purchase_value, roas.roas) == (Decimal("400.00"), Decimal("800.00"), Decimal("2.0000"))
    assert roas.roas != Decimal(3)  # the mean of the daily ratios would say 3
    assert CampaignRoas.objects.get(campaign_id="zc").roas is None


# --- 10.6 / 10.7 budgets --------------------------------------------------------------------


def set_roas(campaign_id: str, roas: str) -> None:
    today = local_today(Campaign.objects.get(pk=campaign_id).account_id)
    CampaignRoas.objects.create(
        campaign_id=campaign_id,
        window_start=today - timedelta(days=6),
        window_end=today,
        spend=Decimal("100"),
        purchase_value=Decimal("100") * Decimal(roas),
        roas=Decimal(roas),
    )


def test_proposals_follow_roas_against_the_target(settings) -> None:
    for cid, roas in (("up", "3.0"), ("down", "1.0"), ("band", "2.1"), ("old", "9.0")):
        make_campaign(cid)
        set_roas(cid, roas)
    CampaignRoas.objects.filter(campaign_id="old").update(computed_at=timezone.now() - timedelta(days=2))
    make_campaign("paused", status="PAUSED")
    set_roas("paused", "9.0")

    run = run_of(jobs.propose_budget_changes)

    proposals = {p.campaign_id: p for p in BudgetProposal.objects.all()}
    assert set(proposals) == {"up", "down"}
    assert (proposals["up"].proposed_budget_cents, proposals["down"].proposed_budget_cents) == (12_000, 8_000)
    assert all(p.status == BudgetProposal.Status.APPROVED and p.decided_by == "10.6 policy" for p in proposals.values())
    assert proposals["up"].roas == Decimal("3.0") and "above target" in proposals["up"].reason
    assert run.summary == {"proposals": 2, "raise": 1, "cut": 1, "auto_approved": 2, "awaiting_human": 0}

    set_roas("up", "5.0")
    run_of(jobs.propose_budget_changes)
    assert BudgetProposal.objects.count() == 2  # never two open proposals for one campaign

    settings.BUDGET_STEP = 0.3  # beyond the 20 % auto-approve limit: a human decides
    make_campaign("big")
    set_roas("big", "4.0")
    run_of(jobs.propose_budget_changes)
    big = BudgetProposal.objects.get(campaign_id="big")
    assert (big.status, big.proposed_budget_cents, big.decided_by) == (BudgetProposal.Status.PROPOSED, 13_000, "")


def sandbox_budgets(sandbox: Any) -> dict[str, int]:
    return {c["id"]: int(c["daily_budget"]) for c in sandbox.campaigns()}


def test_approved_proposals_are_applied_on_meta_and_big_ones_wait(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 3}, delivery_issues=[])  # all three delivering
    run_of(jobs.sync_campaigns)
    up, down, big = Campaign.objects.order_by("pk")
    before = sandbox_budgets(meta_sandbox)
    set_roas(up.pk, "4.0")
    set_roas(down.pk, "0.5")
    run_of(jobs.propose_budget_changes)
    settings.BUDGET_STEP = 0.3
    set_roas(big.pk, "4.0")
    run_of(jobs.propose_budget_changes)

    run = run_of(jobs.apply_budget_proposals)

    assert run.outcome == ModuleRun.Outcome.SUCCESS and run.api_calls == 2
    after = sandbox_budgets(meta_sandbox)
    assert after[up.pk] == before[up.pk] + before[up.pk] // 5
    assert after[down.pk] == before[down.pk] - before[down.pk] // 5
    assert after[big.pk] == before[big.pk]
    assert BudgetProposal.objects.get(campaign=big).status == BudgetProposal.Status.PROPOSED
    applied = BudgetProposal.objects.get(campaign=up)
    assert (
        applied.status == BudgetProposal.Status.APPLIED
        and applied.applied_at
        and applied.applied_budget_cents == after[up.pk]
    )
    assert Campaign.objects.get(pk=up.pk).daily_budget_cents == after[up.pk]
    assert run.summary.items() >= {"applied": 2, "clamped": 0, "rejected": 0, "failed": 0, "deferred": 0}.items()


def propose(
    campaign: Campaign, proposed: int, status: str = BudgetProposal.Status.APPROVED, **fields: Any
) -> BudgetProposal:
    return BudgetProposal.objects.create(
        campaign=campaign,
        current_budget_cents=campaign.daily_budget_cents,
        proposed_budget_cents=proposed,
        status=status,
        **fields,
    )


def test_guardrails_clamp_defer_and_decline(meta_sandbox, settings) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 5})
    run_of(jobs.sync_campaigns)
    low, recent, stale, floored, high = Campaign.objects.order_by("daily_budget_cents", "pk")
    settings.BUDGET_CEILING_CENTS = high.daily_budget_cents + 100
    settings.BUDGET_FLOOR_CENTS = low.daily_budget_cents - 100
    propose(high, high.daily_budget_cents * 2)
    propose(low, low.daily_budget_cents // 2)
    propose(
        recent,
        recent.daily_budget_cents + 500,
        status=BudgetProposal.Status.APPLIED,
        applied_at=timezone.now() - timedelta(minutes=10),
    )
    waiting = propose(recent, recent.daily_budget_cents + 1000)
    outdated = BudgetProposal.objects.create(
        campaign=stale,
        current_budget_cents=stale.daily_budget_cents + 1,
        proposed_budget_cents=stale.daily_budget_cents * 2,
        status=BudgetProposal.Status.APPROVED,
    )
    Campaign.objects.filter(pk=floored.pk).update(daily_budget_cents=settings.BUDGET_FLOOR_CENTS - 50)
    floored.refresh_from_db()
    below_floor = propose(floored, floored.daily_budget_cents - 100)
    before = sandbox_budgets(meta_sandbox)

    run = run_of(jobs.apply_budget_proposals)

    after = sandbox_budgets(meta_sandbox)
    assert after[high.pk] == settings.BUDGET_CEILING_CENTS
    assert after[low.pk] == settings.BUDGET_FLOOR_CENTS
    assert after[recent.pk] == before[recent.pk] and after[stale.pk] == before[stale.pk]
    assert after[floored.pk] == before[floored.pk]
    waiting.refresh_from_db()
    assert waiting.status == BudgetProposal.Status.APPROVED  # at most one change an hour: next run
    outdated.refresh_from_db()
    below_floor.refresh_from_db()
    assert outdated.status == below_floor.status == BudgetProposal.Status.REJECTED
    assert outdated.decided_by == "10.7 guardrails" and "Stale" in outdated.error
    assert run.summary.items() >= {"applied": 0, "clamped": 2, "rejected": 2, "failed": 0, "deferred": 1}.items()


def test_a_meta_refusal_fails_only_that_proposal(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 1, "ARCHIVED": 1})
    run_of(jobs.sync_campaigns)
    archived, active = Campaign.objects.get(status="ARCHIVED"), Campaign.objects.get(status="ACTIVE")
    bad = propose(archived, archived.daily_budget_cents + 100)
    good = propose(active, active.daily_budget_cents + 100)

    run = run_of(jobs.apply_budget_proposals)

    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.status == BudgetProposal.Status.FAILED and "archived" in bad.error
    assert good.status == BudgetProposal.Status.APPLIED
    assert run.outcome == ModuleRun.Outcome.SUCCESS and run.summary["failed"] == 1


def test_a_halt_in_mid_run_leaves_the_rest_approved(meta_sandbox, monkeypatch) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 3})
    run_of(jobs.sync_campaigns)
    proposals = [propose(c, c.daily_budget_cents + 100) for c in Campaign.objects.order_by("pk")]
    update = GraphClient.update

    def update_then_halt(self: GraphClient, *args: Any, **kwargs: Any) -> None:
        update(self, *args, **kwargs)
        TowerState.objects.filter(pk=1).update(emergency_stop_active=True)  # the migration made the row

    monkeypatch.setattr(GraphClient, "update", update_then_halt)

    run = run_of(jobs.apply_budget_proposals)

    statuses = [BudgetProposal.objects.get(pk=p.pk).status for p in proposals]
    assert statuses == [BudgetProposal.Status.APPLIED, BudgetProposal.Status.APPROVED, BudgetProposal.Status.APPROVED]
    # The halt refused the account's next write: recorded as such, like a run refused by a halt.
    assert run.outcome == ModuleRun.Outcome.SKIPPED and run.api_calls == 1
    assert run.error_message == str(WriteRefused("Meta write refused: the tower is halted (emergency stop)."))
    assert list(run.summary["refused"]) == [Campaign.objects.get(pk=proposals[0].campaign_id).account_id]


# --- 10.3 / 10.8 drafts ---------------------------------------------------------------------


def test_a_queued_draft_becomes_a_paused_campaign_then_active_at_publish_time(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 1})
    run_of(jobs.sync_campaigns)
    account = AdAccount.objects.get()
    draft = CampaignDraft.objects.create(
        account=account,
        name="Winter launch",
        daily_budget_cents=5_000,
        publish_at=timezone.now() + timedelta(hours=1),
        created_by="alice",
    )
    broken = CampaignDraft.objects.create(
        account=account, name="Bad objective", objective="OUTCOME_NONSENSE", daily_budget_cents=5_000
    )

    run = run_of(jobs.orchestrate_drafts)

    draft.refresh_from_db()
    broken.refresh_from_db()
    assert run.summary == {"created": 1, "failed": 1}
    assert draft.status == CampaignDraft.Status.CREATED and draft.meta_campaign_id
    assert broken.status == CampaignDraft.Status.FAILED and "objective" in broken.error
    [created] = [c for c in meta_sandbox.campaigns() if c["id"] == draft.meta_campaign_id]
    assert (created["status"], created["daily_budget"]) == ("PAUSED", "5000")

    assert run_of(jobs.publish_scheduled).summary == {"published": 0, "failed": 0}  # not yet due
    CampaignDraft.objects.filter(pk=draft.pk).update(publish_at=timezone.now() - timedelta(minutes=1))
    published = run_of(jobs.publish_scheduled)

    draft.refresh_from_db()
    assert published.summary == {"published": 1, "failed": 0}
    assert draft.status == CampaignDraft.Status.PUBLISHED and draft.published_at
    assert meta_sandbox.campaigns(status="ACTIVE")[-1]["id"] == draft.meta_campaign_id
    run_of(jobs.sync_campaigns)
    assert Campaign.objects.get(pk=draft.meta_campaign_id).status == "ACTIVE"


# --- 10.9 / 10.14 spend -----------------------------------------------------------------------


def test_a_spend_spike_on_meta_flags_that_campaign_only(meta_sandbox, settings) -> None:
    settings.INSIGHTS_LOOKBACK_DAYS = 8  # the baseline is the 7 full days before today
    settings.SPIKE_MIN_SPEND = 1.0  # so the test holds in the first minutes of the account's local day too
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 6})
    run_of(jobs.sync_campaigns)
    run_of(jobs.collect_insights)
    first = run_of(jobs.poll_today_spend)
    assert first.outcome == ModuleRun.Outcome.SUCCESS and first.summary["snapshots"] > 1
    target = SpendSnapshot.objects.order_by("campaign_id").first().campaign_id
    meta_sandbox.faults(spend_multiplier={target: 1000})

    run_of(jobs.poll_today_spend)
    run = run_of(jobs.detect_spend_spikes)

    assert run.summary["spikes"] == 1 and run.api_calls == 0
    spike = SpendSpike.objects.get()
    assert spike.campaign_id == target and spike.ratio >= settings.SPIKE_RATIO
    assert not spike.requested_emergency_stop
    latest = SpendSnapshot.objects.filter(campaign_id=target).order_by("-taken_at").first()
    assert spike.spend_today == latest.spend_today


@pytest.mark.parametrize(
    ("zone", "now", "hours", "baseline_hours"),
    [
        ("UTC", datetime(2024, 3, 12, 10, tzinfo=UTC), 10, 168),
        # 04:00 on 12 March in Kolkata (+05:30) while it is still 11 March in UTC.
        ("Asia/Kolkata", datetime(2024, 3, 11, 22, 30, tzinfo=UTC), 4, 168),
        # 19:00 PDT on 10 March, Los Angeles' 23-hour day: 18 hours have passed since its midnight.
        ("America/Los_Angeles", datetime(2024, 3, 11, 2, tzinfo=UTC), 18, 168),
        # 21:00 PDT on 11 March: its baseline of 4–10 March holds the 23-hour day.
        ("America/Los_Angeles", datetime(2024, 3, 12, 4, tzinfo=UTC), 21, 167),
    ],
)
def test_spikes_from_hand_made_figures_in_the_accounts_local_day(
    settings, tower_clock, zone: str, now: datetime, hours: int, baseline_hours: int
) -> None:
    settings.SPIKE_REQUESTS_EMERGENCY_STOP = True
    tower_clock(now)
    AdAccount.objects.create(id="act_1", timezone_name=zone)
    today = local_today()
    for prefix, rate in (("fast", 4), ("steady", 2), ("small", "3.5"), ("stale", 4)):
        ad = one_ad(prefix)
        for n in range(1, 8):
            make_insight(ad, days_ago(n), spend="24.00")  # 1.00 an hour on a 24-hour day
        SpendSnapshot.objects.create(
            campaign_id=f"{prefix}c", taken_at=now, day=today, spend_today=Decimal(rate) * hours
        )
    # Yesterday's local day ended fast, but it is over: only today's snapshot counts.
    SpendSnapshot.objects.filter(campaign_id="stalec").update(day=today - timedelta(days=1))
    settings.SPIKE_MIN_SPEND = 3.6 * hours  # "small" is fast enough but not enough money

    run_of(jobs.detect_spend_spikes)
    run = run_of(jobs.detect_spend_spikes)

    spike = SpendSpike.objects.get()  # one row per campaign and local day
    assert spike.campaign_id == "fastc" and spike.day == today and spike.detected_at == now
    baseline = (Decimal(168) / baseline_hours).quantize(Decimal("0.0001"))
    assert (spike.hourly_rate, spike.baseline_hourly_rate) == (Decimal("4.0000"), baseline)
    assert spike.ratio == round(float(Decimal(4) / baseline), 2)
    assert spike.requested_emergency_stop
    assert run.summary == {"campaigns_checked": 3, "spikes": 1, "emergency_stop_requested": 1, "days": [str(today)]}


# --- 10.10 / 10.17 copy ---------------------------------------------------------------------


def test_copy_variants_for_the_top_ads_then_briefs(settings) -> None:
    settings.COPY_VARIANTS_TOP_N = 1
    best = one_ad("best")
    best.creative = {"title": "Made to last", "body": "Shop today.", "call_to_action_type": "SHOP_NOW"}
    best.save()
    make_insight(best, days_ago(3), impressions=2_000, clicks=100)
    make_insight(one_ad("meh"), days_ago(3), impressions=2_000, clicks=40)
    make_insight(one_ad("tiny"), days_ago(3), impressions=500, clicks=100)  # too few impressions

    run = run_of(jobs.generate_copy_variants)
    run_of(jobs.generate_copy_variants)

    variants = CopyVariant.objects.all()
    assert run.summary == {"top_ads": 1, "created": 4}
    assert variants.count() == 4 and {v.source_ad_id for v in variants} == {"besta"}
    assert all("Made to last" in v.headline and "Shop today." in v.body for v in variants)

    produced = run_of(jobs.produce_creatives)

    assert produced.summary == {"briefs": 4} and produced.api_calls == 0
    assert set(CopyVariant.objects.values_list("status", flat=True)) == {CopyVariant.Status.BRIEFED}
    brief = CreativeBrief.objects.get(variant__template_key="urgency").brief
    assert brief["source_ad"] == "besta" and brief["call_to_action"] == "SHOP_NOW" and brief["format"] == "single_image"
    assert run_of(jobs.produce_creatives).summary == {"briefs": 0}


# --- 10.12 / 10.13 / 10.15 / 10.16 creatives and audiences -----------------------------------


def test_weak_audiences_are_flagged_against_their_accounts_cost_per_purchase() -> None:
    campaign = make_campaign("ac")
    for sid, spend, purchases in (("good", "100.00", 10), ("weak", "100.00", 2), ("dry", "50.00", 0)):
        make_insight(make_ad(f"{sid}-ad", make_adset(sid, campaign)), days_ago(2), spend=spend, purchases=purchases)
    make_insight(one_ad("other", account="act_2"), days_ago(2), spend="1000.00", purchases=1)  # another account

    run = run_of(jobs.score_audiences)

    scores = {s.adset_id: s for s in AudienceScore.objects.all()}
    # act_1: 250.00 for 12 purchases = 20.83; weak above 31.25.
    assert {k for k, s in scores.items() if s.flagged_weak} == {"weak", "dry"}
    assert scores["weak"].cost_per_purchase == Decimal("50.00") and scores["dry"].cost_per_purchase is None
    assert scores["good"].account_cost_per_purchase == Decimal("20.83")
    assert run.summary == {"adsets": 4, "flagged_weak": 2}


def test_creatives_are_ranked_in_their_ad_set_by_ctr_then_cvr() -> None:
    adset = make_adset("rs", make_campaign("rc"))
    for aid, clicks, purchases in (("low", 20, 5), ("high-cvr", 30, 6), ("high", 30, 3)):
        make_insight(make_ad(aid, adset), days_ago(1), impressions=1_000, clicks=clicks, purchases=purchases)
    make_insight(one_ad("alone"), days_ago(1), impressions=1_000, clicks=1)

    run_of(jobs.rank_creatives)

    ranks = dict(CreativeRank.objects.values_list("ad_id", "rank_in_adset"))
    assert ranks == {"high-cvr": 1, "high": 2, "low": 3, "alonea": 1}
    top = CreativeRank.objects.get(ad_id="high-cvr")
    assert (top.ctr, top.cvr) == (0.03, 0.2)


def test_fatigue_flags_a_25_percent_ctr_drop_not_a_15_percent_one() -> None:
    for prefix, previous_clicks, last_clicks in (("tired", 200, 150), ("fine", 200, 170)):
        ad = one_ad(prefix)
        make_insight(ad, days_ago(10), impressions=10_000, clicks=previous_clicks)
        make_insight(ad, days_ago(3), impressions=10_000, clicks=last_clicks)
    thin = one_ad("thin")
    make_insight(thin, days_ago(10), impressions=500, clicks=50)
    make_insight(thin, days_ago(3), impressions=500, clicks=5)

    run_of(jobs.detect_creative_fatigue)
    run = run_of(jobs.detect_creative_fatigue)

    fatigue = CreativeFatigue.objects.get()  # one row per ad per day
    assert fatigue.ad_id == "tireda"
    assert (fatigue.ctr_previous_7d, fatigue.ctr_last_7d, fatigue.drop_pct) == (0.02, 0.015, 25.0)
    assert run.summary == {"ads_checked": 3, "fatigued": 1}


def test_a_clear_winner_is_recorded_and_a_near_tie_is_not() -> None:
    clear = make_adset("clear", make_campaign("wc"))
    tie = make_adset("tie", make_campaign("tc"))
    for adset, aid, purchases in ((clear, "w1", 100), (clear, "w2", 50), (tie, "t1", 52), (tie, "t2", 50)):
        make_insight(make_ad(aid, adset), days_ago(4), impressions=50_000, clicks=1_000, purchases=purchases)
    make_insight(one_ad("solo"), days_ago(4), impressions=50_000, clicks=1_000, purchases=100)

    run = run_of(jobs.select_winners)

    winner = CreativeWinner.objects.get()
    assert (winner.adset_id, winner.ad_id, winner.runner_up_id) == ("clear", "w1", "w2")
    assert (winner.conversions, winner.clicks, winner.cvr) == (100, 1_000, 0.1)
    assert winner.p_value < 0.05 and round(winner.z_score, 3) == 4.245
    assert run.summary == {"adsets_tested": 2, "winners": 1}


# --- 10.1 check_data_layer ------------------------------------------------------------------


def test_the_data_layer_check_counts_problems() -> None:
    one_ad("ok")
    make_campaign("empty")
    make_adset("bare", make_campaign("c2"))
    AdAccount.objects.create(id="act_9", synced_at=timezone.now() - timedelta(hours=3))
    make_insight(Ad.objects.get(pk="oka"), days_ago(1), impressions=10, clicks=20, value="5.00")

    run = run_of(jobs.check_data_layer)

    assert run.outcome == ModuleRun.Outcome.SUCCESS
    summary = run.summary
    assert (summary["accounts"], summary["stale_accounts"], summary["accounts_without_campaigns"]) == (2, 1, 1)
    assert (summary["campaigns_without_adsets"], summary["adsets_without_ads"]) == (1, 1)
    assert summary["insights_clicks_over_impressions"] == summary["insights_value_without_purchases"] == 1
    assert summary["active_ads_without_insights"] == 0


def test_the_data_layer_check_fails_when_a_sync_left_no_account() -> None:
    assert run_of(jobs.check_data_layer).outcome == ModuleRun.Outcome.SUCCESS  # never synced: nothing expected
    execute("10.2", lambda run: {"accounts": 0})

    with pytest.raises(jobs.MirrorUnusable):
        jobs.check_data_layer()

    assert ModuleRun.objects.filter(module__code="10.1", outcome=ModuleRun.Outcome.FAILURE).exists()


# --- 10.11 run_full_cycle and all 17 together -------------------------------------------------


def test_the_full_cycle_runs_its_steps_inside_one_run(meta_sandbox) -> None:
    run = run_of(jobs.run_full_cycle)

    assert run.outcome == ModuleRun.Outcome.SUCCESS
    assert [s["step"] for s in run.summary["steps"]] == [
        "sync_campaigns",
        "collect_insights",
        "compute_roas",
        "propose_budget_changes",
    ]
    assert run.api_calls > 0 and CampaignRoas.objects.exists()
    assert not ModuleRun.objects.filter(module__code__in=("10.2", "10.4", "10.5", "10.6")).exists()


def test_the_full_cycle_stops_at_the_first_failing_step(meta_sandbox) -> None:
    meta_sandbox.faults(expire_token=True)

    with pytest.raises(jobs.CycleStepFailed):
        jobs.run_full_cycle()

    run = ModuleRun.objects.get(module__code="10.11")
    assert run.outcome == ModuleRun.Outcome.FAILURE
    assert "Step sync_campaigns failed" in run.error_message and "190" in run.error_message
    assert not DailyInsight.objects.exists()


def test_all_17_jobs_succeed_against_the_sandbox_in_dependency_order(meta_sandbox) -> None:
    run_of(jobs.sync_campaigns)
    CampaignDraft.objects.create(
        account=AdAccount.objects.first(),
        name="Launch",
        daily_budget_cents=5_000,
        publish_at=timezone.now() - timedelta(minutes=1),
    )
    order = [
        "10.2",
        "10.4",
        "10.14",
        "10.1",
        "10.3",
        "10.5",
        "10.6",
        "10.7",
        "10.8",
        "10.9",
        "10.10",
        "10.11",
        "10.12",
        "10.13",
        "10.15",
        "10.16",
        "10.17",
    ]
    assert sorted(order) == sorted(spec.code for spec in MODULES)
    tasks = {spec.code: getattr(jobs, spec.task.rsplit(".", 1)[1]) for spec in MODULES}

    runs = {code: run_of(tasks[code]) for code in order}

    assert {code: run.outcome for code, run in runs.items()} == dict.fromkeys(order, ModuleRun.Outcome.SUCCESS)
    assert runs["10.3"].summary["created"] == 1 and runs["10.8"].summary["published"] == 1
    assert runs["10.7"].summary["applied"] > 0
    assert CopyVariant.objects.exists() and CreativeBrief.objects.exists() and CreativeRank.objects.exists()


# --- Account-local days at scale ------------------------------------------------------------------


def accounts_in_three_zones(numbers: range, today_at: datetime) -> None:
    """Accounts `numbers` in each of Los Angeles, UTC and Kolkata, each with a campaign that has
    14 days of insights and a snapshot of its local today."""
    for zone in ("America/Los_Angeles", "UTC", "Asia/Kolkata"):
        for n in numbers:
            account = AdAccount.objects.create(id=f"act_{zone[:3]}{n}", timezone_name=zone)
            ad = one_ad(account.pk, account=account.pk)
            for back in range(14):
                make_insight(ad, days_ago(back, account.pk), impressions=1_000, clicks=10, spend="24.00", purchases=1)
            SpendSnapshot.objects.create(
                campaign=ad.campaign, taken_at=today_at, day=local_today(account.pk), spend_today=Decimal("90.00")
            )


def test_the_day_based_jobs_make_as_many_queries_for_nine_accounts_as_for_three(tower_clock) -> None:
    tower_clock(datetime(2024, 3, 12, 3, tzinfo=UTC))  # two local todays: 11 March in Los Angeles, 12 elsewhere
    day_based = (
        jobs.check_data_layer,
        jobs.compute_roas,
        jobs.detect_spend_spikes,
        jobs.generate_copy_variants,
        jobs.score_audiences,
        jobs.rank_creatives,
        jobs.detect_creative_fatigue,
        jobs.select_winners,
    )

    def queries() -> list[int]:
        counts = []
        for task in day_based:
            with CaptureQueriesContext(connection) as captured:
                run_of(task)
            counts.append(len(captured))
        return counts

    accounts_in_three_zones(range(1), clock.now())
    with_three = queries()
    accounts_in_three_zones(range(1, 3), clock.now())
    with_nine = queries()

    assert with_nine == with_three, (with_three, with_nine)
    assert SpendSpike.objects.count() == 9  # 90.00 by 20:00 (or earlier) against 24.00 a day: a spike
    roas = ModuleRun.objects.filter(module__code="10.5").order_by("-started_at").first()
    assert roas.summary["windows"] == ["2024-03-05..2024-03-11", "2024-03-06..2024-03-12"]
