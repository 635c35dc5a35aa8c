"""The meta_modules admin: every page renders, the decision actions are conditional and need
the change permission, drafts remember who wrote them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from controltower.roles import VIEWERS_GROUP
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
    MetaModule,
    ModuleRun,
    SpendSnapshot,
    SpendSpike,
)
from meta_modules.money import minor_units, money

pytestmark = pytest.mark.django_db

REGISTERED = [
    (model, model_admin)
    for model, model_admin in admin.site._registry.items()
    if model._meta.app_label == "meta_modules"
]


def url(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def campaign(account: AdAccount, campaign_id: str) -> Campaign:
    return Campaign.objects.create(
        id=campaign_id,
        account=account,
        name=f"Campaign {campaign_id}",
        status="ACTIVE",
        effective_status="ACTIVE",
        daily_budget_cents=5000,
    )


def proposal(campaign_: Campaign, status: str = BudgetProposal.Status.PROPOSED) -> BudgetProposal:
    return BudgetProposal.objects.create(
        campaign=campaign_, current_budget_cents=5000, proposed_budget_cents=7500, roas=Decimal("3.1"), status=status
    )


def spike(campaign_: Campaign, **fields: object) -> SpendSpike:
    return SpendSpike.objects.create(
        campaign=campaign_,
        day=fields.pop("day", timezone.now().date()),
        spend_today=Decimal("240.00"),
        hourly_rate=Decimal("20"),
        baseline_hourly_rate=Decimal("5"),
        ratio=4.0,
        **fields,
    )


@pytest.fixture
def account() -> AdAccount:
    return AdAccount.objects.create(id="act_1", name="Shop", currency="USD")


@pytest.fixture
def rows(account: AdAccount) -> list[Model]:
    """One row of every model the admin shows."""
    today = timezone.now().date()
    module = MetaModule.objects.create(code="10.5", name="ROAS Analyzer", function="compute_roas")
    camp = campaign(account, "c1")
    adset = AdSet.objects.create(
        id="as1", account=account, campaign=camp, name="Lookalike", status="ACTIVE", daily_budget_cents=2500
    )
    ad = Ad.objects.create(
        id="ad1",
        account=account,
        campaign=camp,
        adset=adset,
        name="Video",
        status="ACTIVE",
        creative={"title": "Spring sale", "body": "Everything -20%"},
    )
    runner_up = Ad.objects.create(id="ad2", account=account, campaign=camp, adset=adset, name="Image", status="ACTIVE")
    variant = CopyVariant.objects.create(source_ad=ad, template_key="urgency", headline="Last days", body="Hurry")
    return [
        module,
        ModuleRun.objects.create(module=module, outcome=ModuleRun.Outcome.SUCCESS, duration_ms=1234),
        account,
        camp,
        adset,
        ad,
        DailyInsight.objects.create(
            ad=ad,
            date=today,
            impressions=1000,
            clicks=20,
            spend=Decimal("10.00"),
            purchases=2,
            purchase_value=Decimal("31.00"),
        ),
        CampaignDraft.objects.create(account=account, name="Autumn", daily_budget_cents=2000),
        CampaignRoas.objects.create(
            campaign=camp,
            window_start=today - timedelta(days=6),
            window_end=today,
            spend=Decimal("10.00"),
            purchase_value=Decimal("31.00"),
            roas=Decimal("3.1"),
        ),
        proposal(camp),
        SpendSnapshot.objects.create(campaign=camp, spend_today=Decimal("240.00")),
        spike(camp),
        variant,
        AudienceScore.objects.create(
            adset=adset,
            spend=Decimal("90"),
            purchases=3,
            cost_per_purchase=Decimal("30"),
            account_cost_per_purchase=Decimal("20"),
            flagged_weak=True,
        ),
        CreativeRank.objects.create(
            ad=ad, impressions=1000, clicks=20, purchases=2, ctr=0.02, cvr=0.1, rank_in_adset=1
        ),
        CreativeFatigue.objects.create(ad=ad, day=today, ctr_previous_7d=0.03, ctr_last_7d=0.02, drop_pct=33.33),
        CreativeWinner.objects.create(
            adset=adset, ad=ad, runner_up=runner_up, conversions=12, clicks=100, cvr=0.12, z_score=2.5, p_value=0.0124
        ),
        CreativeBrief.objects.create(
            variant=variant, brief={"headline": "Last days", "call_to_action": "SHOP_NOW", "format": "single_image"}
        ),
    ]


@pytest.fixture
def viewer_client() -> Client:
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS_GROUP))
    client = Client()
    client.force_login(user)
    return client


def test_every_model_of_the_app_is_registered() -> None:
    from django.apps import apps

    assert {model for model, _ in REGISTERED} == set(apps.get_app_config("meta_modules").get_models())


def test_a_superuser_sees_every_changelist_and_every_change_page(admin_client: Client, rows: list[Model]) -> None:
    for model, _ in REGISTERED:
        assert admin_client.get(url(model, "changelist")).status_code == 200, model.__name__
    for row in rows:
        assert admin_client.get(url(type(row), "change", row.pk)).status_code == 200, type(row).__name__


def test_every_custom_list_filter_choice_renders(admin_client: Client, rows: list[Model]) -> None:
    for model, model_admin in REGISTERED:
        for list_filter in model_admin.list_filter:
            if isinstance(list_filter, type) and issubclass(list_filter, admin.SimpleListFilter):
                for value, _ in list_filter(None, {}, model, model_admin).lookups(None, model_admin):
                    response = admin_client.get(url(model, "changelist"), {list_filter.parameter_name: value})
                    assert response.status_code == 200, (model.__name__, value)


def test_the_spike_filter_tells_each_accounts_local_today_from_earlier_days(
    admin_client: Client, account: AdAccount, tower_clock
) -> None:
    tower_clock(datetime(2024, 3, 12, 3, tzinfo=UTC))  # still 11 March in Los Angeles
    los_angeles = AdAccount.objects.create(id="act_2", name="West", currency="USD", timezone_name="America/Los_Angeles")
    today = spike(campaign(account, "c1"), day=date(2024, 3, 12))
    spike(campaign(account, "c2"), day=date(2024, 3, 11))
    today_in_la = spike(campaign(los_angeles, "c3"), day=date(2024, 3, 11))
    spike(campaign(los_angeles, "c4"), day=date(2024, 3, 12))  # not yet: a day in its future

    listed = admin_client.get(url(SpendSpike, "changelist"), {"spike": "today"}).context["cl"].result_list
    earlier = admin_client.get(url(SpendSpike, "changelist"), {"spike": "earlier"}).context["cl"].result_list

    assert {row.pk for row in listed} == {today.pk, today_in_la.pk}
    assert len(earlier) == 2 and not {row.pk for row in earlier} & {today.pk, today_in_la.pk}


def test_money_is_shown_in_major_units_of_the_account_currency() -> None:
    assert minor_units(123456, "USD") == "1,234.56 USD"
    assert minor_units(123456, "JPY") == "123,456 JPY"  # Meta's offset-1 currencies have no minor unit
    assert money(Decimal("10.5"), "EUR") == "10.50 EUR"
    assert minor_units(None, "USD") == "—"


def test_approve_acts_only_on_pending_proposals_and_records_who(
    admin_client: Client, admin_user: User, account: AdAccount
) -> None:
    pending = proposal(campaign(account, "c1"))
    applied = proposal(campaign(account, "c2"), status=BudgetProposal.Status.APPLIED)

    response = admin_client.post(
        url(BudgetProposal, "changelist"),
        {"action": "approve", "_selected_action": [pending.pk, applied.pk]},
        follow=True,
    )

    pending.refresh_from_db()
    applied.refresh_from_db()
    assert pending.status == BudgetProposal.Status.APPROVED
    assert pending.decided_by == admin_user.get_username() and pending.decided_at is not None
    assert applied.status == BudgetProposal.Status.APPLIED and applied.decided_by == ""
    assert "1 proposal approved; 1 skipped because it was not pending." in response.content.decode()


def test_reject_leaves_proposals_decided_meanwhile_alone(admin_client: Client, account: AdAccount) -> None:
    pending = proposal(campaign(account, "c1"))
    approved = proposal(campaign(account, "c2"), status=BudgetProposal.Status.APPROVED)

    response = admin_client.post(
        url(BudgetProposal, "changelist"),
        {"action": "reject", "_selected_action": [pending.pk, approved.pk]},
        follow=True,
    )

    assert BudgetProposal.objects.get(pk=pending.pk).status == BudgetProposal.Status.REJECTED
    assert BudgetProposal.objects.get(pk=approved.pk).status == BudgetProposal.Status.APPROVED
    assert "1 proposal rejected; 1 skipped because it was not pending." in response.content.decode()


def test_proposal_pages_are_view_only(admin_client: Client, account: AdAccount) -> None:
    row = proposal(campaign(account, "c1"))

    page = admin_client.get(url(BudgetProposal, "change", row.pk)).content.decode()

    assert 'name="_save"' not in page and "<select" not in page  # no form, so never a box of all campaigns
    assert admin_client.post(url(BudgetProposal, "change", row.pk), {"status": "approved"}).status_code == 403


def test_acknowledge_records_who_and_skips_acknowledged_spikes(
    admin_client: Client, admin_user: User, account: AdAccount
) -> None:
    new = spike(campaign(account, "c1"))
    old = spike(campaign(account, "c2"), acknowledged=True, acknowledged_by="10.9 emergency stop")

    response = admin_client.post(
        url(SpendSpike, "changelist"), {"action": "acknowledge", "_selected_action": [new.pk, old.pk]}, follow=True
    )

    new.refresh_from_db()
    old.refresh_from_db()
    assert new.acknowledged and new.acknowledged_by == admin_user.get_username() and new.acknowledged_at is not None
    assert old.acknowledged_by == "10.9 emergency stop"
    assert "1 spike acknowledged; 1 skipped because it was already acknowledged." in response.content.decode()


def test_a_draft_added_in_the_admin_is_created_by_the_logged_in_user(
    admin_client: Client, admin_user: User, account: AdAccount
) -> None:
    form = admin_client.get(url(CampaignDraft, "add")).content.decode()
    assert "vForeignKeyRawIdAdminField" in form and '<select name="account"' not in form  # a raw id, never all accounts

    response = admin_client.post(
        url(CampaignDraft, "add"),
        {
            "account": "act_1",
            "name": "Black Friday",
            "objective": "OUTCOME_SALES",
            "daily_budget_cents": "2500",
            "publish_at_0": "",
            "publish_at_1": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    draft = CampaignDraft.objects.get(name="Black Friday")
    assert draft.created_by == admin_user.get_username()
    assert draft.status == CampaignDraft.Status.QUEUED


def test_a_draft_already_on_meta_keeps_what_was_sent_but_can_be_rescheduled(
    admin_client: Client, account: AdAccount
) -> None:
    draft = CampaignDraft.objects.create(
        account=account,
        name="Autumn",
        daily_budget_cents=2000,
        status=CampaignDraft.Status.CREATED,
        meta_campaign_id="120001",
    )

    response = admin_client.post(
        url(CampaignDraft, "change", draft.pk),
        {
            "name": "Renamed",
            "daily_budget_cents": "999999",
            "publish_at_0": "2031-01-02",
            "publish_at_1": "08:00:00",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    draft.refresh_from_db()
    assert (draft.name, draft.daily_budget_cents, draft.status) == ("Autumn", 2000, CampaignDraft.Status.CREATED)
    assert draft.publish_at is not None and draft.publish_at.year == 2031


def test_a_viewer_sees_the_lists_but_may_not_run_actions(viewer_client: Client, rows: list[Model]) -> None:
    for model, _ in REGISTERED:
        assert viewer_client.get(url(model, "changelist")).status_code == 200, model.__name__
    pending = BudgetProposal.objects.get()
    unacknowledged = SpendSpike.objects.get()

    approve = viewer_client.post(
        url(BudgetProposal, "changelist"), {"action": "approve", "_selected_action": [pending.pk]}
    )
    acknowledge = viewer_client.post(
        url(SpendSpike, "changelist"), {"action": "acknowledge", "_selected_action": [unacknowledged.pk]}
    )

    assert (approve.status_code, acknowledge.status_code) == (403, 403)
    assert BudgetProposal.objects.get().status == BudgetProposal.Status.PROPOSED
    assert not SpendSpike.objects.get().acknowledged
