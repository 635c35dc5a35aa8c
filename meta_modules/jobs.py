"""The 17 module jobs. Each is a Celery task registered under its registry name.

Every job is a plain function `_name(run) -> summary` (reusable, e.g. by 10.11's full cycle)
wrapped by `@module_job`, which records the run; the jobs that work per ad account are
`_name(run, account) -> counts` wrapped by `@account_job` (meta_modules/parts.py), which runs
them as parts spread over the workers and records one run for the module. Jobs do the I/O — mirror queries and Meta
calls — and leave the arithmetic to `meta_modules.analytics` and `meta_modules.days`. See
docs/modules.md.

Days are each ad account's local days, in its `timezone_name`, as Meta reports them; a window
of N days ends today, today included, and today is the account's today. A job's "now" is
`run.now` (the tower clock at the run's start). Jobs that read per-day rows group the accounts
by their local today (at most three groups), so their queries do not grow with the accounts.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Model, OuterRef, Q, Subquery, Sum

from meta_modules import analytics, days
from meta_modules.analytics import AdStats
from meta_modules.graph import ErrorKind, MetaError, client
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
    per_local_today,
)
from meta_modules.parts import account_job
from meta_modules.runs import Job, RunContext, module_job

Summary = dict[str, Any]

ROAS_WINDOW_DAYS = 7
CREATIVE_WINDOW_DAYS = 14
FATIGUE_WINDOW_DAYS = 7
SPIKE_BASELINE_DAYS = 7
# 10.6 only acts on a ROAS 10.5 computed recently: a stalled ROAS engine must not keep moving budgets.
ROAS_MAX_AGE = timedelta(hours=24)
POLICY = "10.6 policy"
GUARDRAILS = "10.7 guardrails"
PAGE_SIZE = 200


# --- Shared helpers -------------------------------------------------------------------------


LocalTodays = dict[date, list[str]]  # account ids by their local today: AdAccountQuerySet.by_local_today


def _today_of(groups: LocalTodays) -> dict[str, date]:
    """Each account's local today."""
    return {account: today for today, accounts in groups.items() for account in accounts}


def _in_windows(groups: LocalTodays, length: int) -> Q:
    """Insights of the `length`-day window ending on their account's local today."""
    return per_local_today(groups, "ad__account_id", lambda today: Q(date__range=days.window(length, today)))


def _windows(groups: LocalTodays, length: int) -> list[str]:
    """The windows a run used, for its summary: one per local today."""
    return [f"{start}..{end}" for start, end in sorted(days.window(length, today) for today in groups)]


def _meta_time(value: str | None) -> datetime | None:
    """Meta's timestamps carry the account's offset, e.g. 2024-03-12T15:02:47-0700."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z") if value else None


def _budget_cents(value: Any) -> int | None:
    """Meta sends budgets as strings in minor units, "0" when the budget is set elsewhere."""
    return int(value or 0) or None


# Errors about one object (a bad parameter, no permission on it) fail that item. Anything else
# (token, rate limit, Meta unavailable) would fail every item alike: stop, leave the rest untouched
# for the next run, and let the run record the error.
ITEM_ERRORS = frozenset({ErrorKind.INVALID, ErrorKind.PERMISSION})


def _raise_unless_item_error(error: MetaError) -> None:
    if error.kind not in ITEM_ERRORS:
        raise error


def _creative_stats(now: datetime) -> list[AdStats]:
    """Per ad with delivery in the CREATIVE_WINDOW_DAYS ending on its account's local today:
    summed impressions, clicks and purchases (two queries)."""
    groups = AdAccount.objects.by_local_today(now)
    rows = (
        DailyInsight.objects.filter(_in_windows(groups, CREATIVE_WINDOW_DAYS))
        .values("ad_id", "ad__adset_id")
        .annotate(n_impressions=Sum("impressions"), n_clicks=Sum("clicks"), n_purchases=Sum("purchases"))
        .order_by()
    )
    return [AdStats(r["ad_id"], r["ad__adset_id"], r["n_impressions"], r["n_clicks"], r["n_purchases"]) for r in rows]


def _by_adset(stats: list[AdStats]) -> dict[str, list[AdStats]]:
    groups: dict[str, list[AdStats]] = defaultdict(list)
    for ad in stats:
        groups[ad.adset_id].append(ad)
    return groups


# --- 10.1 Meta Models: the mirror's integrity -----------------------------------------------


class MirrorUnusable(Exception):
    """The campaign mirror cannot serve the other modules."""


def _check_data_layer(run: RunContext) -> Summary:
    """Counts of integrity problems. Fails only when a sync has succeeded yet the mirror holds no
    ad account: then every other module works on nothing."""
    now = run.now
    groups = AdAccount.objects.by_local_today(now)
    lookback = per_local_today(
        groups,
        "account_id",
        lambda today: Q(insights__date__gte=days.window(settings.INSIGHTS_LOOKBACK_DAYS, today)[0]),
    )
    live_campaigns = Campaign.objects.exclude(status="DELETED")
    report = {
        "accounts": sum(map(len, groups.values())),
        "campaigns": live_campaigns.count(),
        "stale_accounts": AdAccount.objects.filter(
            synced_at__lt=now - timedelta(hours=settings.MIRROR_STALE_HOURS)
        ).count(),
        "accounts_without_campaigns": AdAccount.objects.exclude(id__in=live_campaigns.values("account_id")).count(),
        "campaigns_without_adsets": live_campaigns.annotate(n=Count("adsets", filter=~Q(adsets__status="DELETED")))
        .filter(n=0)
        .count(),
        "adsets_without_ads": AdSet.objects.exclude(status="DELETED")
        .annotate(n=Count("ads", filter=~Q(ads__status="DELETED")))
        .filter(n=0)
        .count(),
        "active_ads_without_insights": Ad.objects.filter(effective_status="ACTIVE")
        .annotate(n=Count("insights", filter=lookback))
        .filter(n=0)
        .count(),
        "ads_outside_their_adsets_campaign": Ad.objects.exclude(campaign_id=F("adset__campaign_id")).count(),
        "insights_clicks_over_impressions": DailyInsight.objects.filter(clicks__gt=F("impressions")).count(),
        "insights_negative_money": DailyInsight.objects.filter(Q(spend__lt=0) | Q(purchase_value__lt=0)).count(),
        "insights_value_without_purchases": DailyInsight.objects.filter(purchases=0, purchase_value__gt=0).count(),
        "insights_in_the_future": DailyInsight.objects.filter(
            per_local_today(groups, "ad__account_id", lambda today: Q(date__gt=today))
        ).count(),
    }
    synced = ModuleRun.objects.filter(module__code__in=("10.2", "10.11"), outcome=ModuleRun.Outcome.SUCCESS).exists()
    if synced and report["accounts"] == 0:
        raise MirrorUnusable("A campaign sync succeeded but the mirror holds no ad account.")
    report["issues"] = sum(v for k, v in report.items() if k not in ("accounts", "campaigns"))
    return report


check_data_layer = module_job("10.1")(_check_data_layer)


# --- 10.2 Meta Ads Client: sync the mirror --------------------------------------------------

CAMPAIGN_FIELDS = (
    "id",
    "name",
    "objective",
    "status",
    "effective_status",
    "daily_budget",
    "created_time",
    "updated_time",
)
ADSET_FIELDS = ("id", "name", "status", "effective_status", "campaign_id", "daily_budget", "targeting", "updated_time")
AD_FIELDS = (
    "id",
    "name",
    "status",
    "effective_status",
    "campaign_id",
    "adset_id",
    "creative{id,name,title,body,call_to_action_type}",
    "updated_time",
)
# Everything but DELETED: without a filter Meta's edges leave ARCHIVED objects out.
CAMPAIGN_STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "IN_PROCESS", "WITH_ISSUES")
ADSET_STATUSES = (*CAMPAIGN_STATUSES, "CAMPAIGN_PAUSED")
AD_STATUSES = (*ADSET_STATUSES, "ADSET_PAUSED", "DISAPPROVED", "PENDING_REVIEW", "PREAPPROVED", "PENDING_BILLING_INFO")
# Mirror columns compared and written by a sync (besides id, account and synced_at).
MIRROR_FIELDS: dict[type[Model], tuple[str, ...]] = {
    Campaign: ("name", "status", "effective_status", "updated_time", "objective", "daily_budget_cents", "created_time"),
    AdSet: ("name", "status", "effective_status", "updated_time", "campaign_id", "daily_budget_cents", "targeting"),
    Ad: ("name", "status", "effective_status", "updated_time", "campaign_id", "adset_id", "creative"),
}


def _common(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": obj.get("name", ""),
        "status": obj["status"],
        "effective_status": obj.get("effective_status", ""),
        "updated_time": _meta_time(obj.get("updated_time")),
    }


def _campaign_row(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        **_common(obj),
        "objective": obj.get("objective", ""),
        "daily_budget_cents": _budget_cents(obj.get("daily_budget")),
        "created_time": _meta_time(obj.get("created_time")),
    }


def _adset_row(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        **_common(obj),
        "campaign_id": obj["campaign_id"],
        "daily_budget_cents": _budget_cents(obj.get("daily_budget")),
        "targeting": obj.get("targeting") or {},
    }


def _ad_row(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        **_common(obj),
        "campaign_id": obj["campaign_id"],
        "adset_id": obj["adset_id"],
        "creative": obj.get("creative") or {},
    }


def _edge(account: str, edge: str, fields: tuple[str, ...], statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    params = {"fields": ",".join(fields), "effective_status": json.dumps(list(statuses))}
    return list(client().paginate(f"{account}/{edge}", params, account, PAGE_SIZE))


def _mirror(
    model: type[Model], account: str, rows: dict[str, dict[str, Any]], now: datetime, label: str
) -> dict[str, int]:
    """Write the new and changed objects of one account in bulk, mark the vanished ones DELETED.

    One read of the account's rows, then bulk upserts of only what differs: a sync that finds
    nothing new writes nothing, and the query count does not grow with the number of objects."""
    fields = MIRROR_FIELDS[model]
    existing = {
        pk: dict(zip(fields, values))
        for pk, *values in model.objects.filter(account_id=account).values_list("pk", *fields)
    }
    changed = [
        model(pk=pk, account_id=account, synced_at=now, **row) for pk, row in rows.items() if existing.get(pk) != row
    ]
    model.objects.bulk_create(
        changed, update_conflicts=True, unique_fields=["id"], update_fields=[*fields, "synced_at"]
    )
    vanished = [pk for pk, row in existing.items() if pk not in rows and row["status"] != "DELETED"]
    if vanished:  # Meta no longer returns them: deleted there. Kept here for their history.
        model.objects.filter(pk__in=vanished).update(status="DELETED", effective_status="DELETED", synced_at=now)
    created = sum(1 for obj in changed if obj.pk not in existing)
    return {f"{label}_created": created, f"{label}_updated": len(changed) - created, f"{label}_vanished": len(vanished)}


ACCOUNT_FIELDS = ("name", "currency", "timezone_name", "timezone_offset_hours_utc")


def _sync_account(run: RunContext, account: str) -> Counter[str]:
    now = run.now
    info = client().get(account, {"fields": ",".join(ACCOUNT_FIELDS)}, account)
    campaigns = client().campaigns(account, CAMPAIGN_FIELDS, CAMPAIGN_STATUSES)
    adsets = _edge(account, "adsets", ADSET_FIELDS, ADSET_STATUSES)
    ads = _edge(account, "ads", AD_FIELDS, AD_STATUSES)
    campaign_rows = {c["id"]: _campaign_row(c) for c in campaigns}
    # A child whose parent was not listed (deleted between two pages) would break the foreign key.
    adset_rows = {s["id"]: _adset_row(s) for s in adsets if s.get("campaign_id") in campaign_rows}
    ad_rows = {a["id"]: _ad_row(a) for a in ads if a.get("adset_id") in adset_rows}
    zone_name = info.get("timezone_name") or ""
    counts: Counter[str] = Counter(
        orphans_skipped=len(adsets) - len(adset_rows) + len(ads) - len(ad_rows),
        # Its days are then counted in UTC, and may be off by its offset.
        unknown_time_zones=int(days.known_zone(zone_name) is None),
    )
    with transaction.atomic():
        AdAccount.objects.bulk_create(
            [
                AdAccount(
                    id=account,
                    name=info.get("name", ""),
                    currency=info.get("currency", ""),
                    timezone_name=zone_name,
                    timezone_offset_hours_utc=info.get("timezone_offset_hours_utc"),
                    synced_at=now,
                )
            ],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=[*ACCOUNT_FIELDS, "synced_at"],
        )
        counts.update(_mirror(Campaign, account, campaign_rows, now, "campaigns"))
        counts.update(_mirror(AdSet, account, adset_rows, now, "adsets"))
        counts.update(_mirror(Ad, account, ad_rows, now, "ads"))
    return counts


def _accounts_on_meta(run: RunContext) -> list[str]:
    return client().ad_accounts()


def _sync_campaigns(run: RunContext) -> Summary:
    """Every account in turn, inside one run: 10.11's first step."""
    accounts = _accounts_on_meta(run)
    totals: Counter[str] = Counter()
    for account in accounts:
        totals.update(_sync_account(run, account))
    return {"accounts": len(accounts), **totals}


sync_campaigns = account_job("10.2", _accounts_on_meta)(_sync_account)


# --- 10.3 Meta Orchestrator: drafts → paused campaigns ---------------------------------------


def _orchestrate_drafts(run: RunContext) -> Summary:
    counts = {"created": 0, "failed": 0}
    for draft in CampaignDraft.objects.filter(status=CampaignDraft.Status.QUEUED).order_by("created_at"):
        try:
            draft.meta_campaign_id = client().create(
                draft.account_id,
                "campaigns",
                {
                    "name": draft.name,
                    "objective": draft.objective,
                    "status": "PAUSED",
                    "daily_budget": draft.daily_budget_cents,
                    "special_ad_categories": [],
                },
            )
        except MetaError as error:
            _raise_unless_item_error(error)
            draft.status, draft.error = CampaignDraft.Status.FAILED, str(error)
            counts["failed"] += 1
        else:
            draft.status, draft.error = CampaignDraft.Status.CREATED, ""
            counts["created"] += 1
        draft.save(update_fields=["status", "error", "meta_campaign_id"])
    return counts


orchestrate_drafts = module_job("10.3")(_orchestrate_drafts)


# --- 10.4 Insights Collector ----------------------------------------------------------------

INSIGHT_FIELDS = "ad_id,date_start,impressions,clicks,spend,actions,action_values"
INSIGHT_COLUMNS = ("impressions", "clicks", "spend", "purchases", "purchase_value")


def _insight_values(row: dict[str, Any]) -> tuple[int, int, Decimal, int, Decimal]:
    """Meta's strings as the mirror's numbers; purchases from omni_purchase, else purchase."""
    purchases = analytics.action_value(row.get("actions")) or "0"
    value = analytics.action_value(row.get("action_values")) or "0"
    return (
        int(row.get("impressions") or 0),
        int(row.get("clicks") or 0),
        Decimal(row.get("spend") or "0").quantize(Decimal("0.01")),
        int(Decimal(purchases)),
        Decimal(value).quantize(Decimal("0.01")),
    )


def _collect_account_insights(account: str, since: date, until: date, now: datetime) -> Counter[str]:
    rows = client().insights(
        account,
        {
            "level": "ad",
            "time_increment": "1",
            "fields": INSIGHT_FIELDS,
            "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()}),
        },
        account,
    )
    known_ads = set(Ad.objects.filter(account_id=account).values_list("pk", flat=True))
    existing = {
        (ad_id, day): tuple(values)
        for ad_id, day, *values in DailyInsight.objects.filter(
            ad__account_id=account, date__range=(since, until)
        ).values_list("ad_id", "date", *INSIGHT_COLUMNS)
    }
    changed, unknown = [], 0
    for row in rows:
        if row.get("ad_id") not in known_ads:  # not in the mirror yet: the next sync brings it
            unknown += 1
            continue
        key, values = (row["ad_id"], date.fromisoformat(row["date_start"])), _insight_values(row)
        if existing.get(key) != values:
            changed.append(
                DailyInsight(ad_id=key[0], date=key[1], collected_at=now, **dict(zip(INSIGHT_COLUMNS, values)))
            )
    DailyInsight.objects.bulk_create(
        changed, update_conflicts=True, unique_fields=["ad", "date"], update_fields=[*INSIGHT_COLUMNS, "collected_at"]
    )
    return Counter(rows=len(rows), written=len(changed), unknown_ads=unknown)


def _collect_insights(run: RunContext) -> Summary:
    """Every account in turn, inside one run: 10.11's second step."""
    groups = AdAccount.objects.by_local_today(run.now)
    totals: Counter[str] = Counter()
    for today, accounts in sorted(groups.items()):
        since, until = days.window(settings.INSIGHTS_LOOKBACK_DAYS, today)
        for account in accounts:
            totals.update(_collect_account_insights(account, since, until, run.now))
    return {
        "accounts": sum(map(len, groups.values())),
        "windows": _windows(groups, settings.INSIGHTS_LOOKBACK_DAYS),
        **totals,
    }


def _mirrored_accounts(run: RunContext) -> list[str]:
    return list(AdAccount.objects.order_by("pk").values_list("pk", flat=True))


def _collect_insights_of(run: RunContext, account: str) -> Summary:
    """Its window ends on its local today: Meta's days are the account's."""
    groups = AdAccount.objects.filter(pk=account).by_local_today(run.now)
    since, until = days.window(settings.INSIGHTS_LOOKBACK_DAYS, next(iter(groups)))
    return {
        "windows": _windows(groups, settings.INSIGHTS_LOOKBACK_DAYS),
        **_collect_account_insights(account, since, until, run.now),
    }


collect_insights = account_job("10.4", _mirrored_accounts)(_collect_insights_of)


# --- 10.5 ROAS Engine -------------------------------------------------------------------------


def _compute_roas(run: RunContext) -> Summary:
    groups = AdAccount.objects.by_local_today(run.now)
    today_of = _today_of(groups)
    totals = (
        DailyInsight.objects.filter(_in_windows(groups, ROAS_WINDOW_DAYS))
        .values("ad__campaign_id", "ad__account_id")
        .annotate(total_spend=Sum("spend"), total_value=Sum("purchase_value"))
        .order_by()
    )
    rows = []
    for t in totals:
        start, end = days.window(ROAS_WINDOW_DAYS, today_of[t["ad__account_id"]])
        rows.append(
            CampaignRoas(
                campaign_id=t["ad__campaign_id"],
                window_start=start,
                window_end=end,
                spend=t["total_spend"],
                purchase_value=t["total_value"],
                roas=analytics.roas(t["total_value"], t["total_spend"]),
                computed_at=run.now,
            )
        )
    CampaignRoas.objects.bulk_create(rows)
    return {
        "campaigns": len(rows),
        "without_spend": sum(r.roas is None for r in rows),
        "windows": _windows(groups, ROAS_WINDOW_DAYS),
    }


compute_roas = module_job("10.5")(_compute_roas)


# --- 10.6 Optimization Loop: budget proposals ---------------------------------------------------


def _propose_budget_changes(run: RunContext) -> Summary:
    now = run.now
    latest = CampaignRoas.objects.filter(campaign=OuterRef("pk")).order_by("-computed_at")
    campaigns = (
        Campaign.objects.filter(effective_status="ACTIVE", daily_budget_cents__gt=0)
        .exclude(budget_proposals__status__in=BudgetProposal.OPEN)
        .annotate(latest_roas=Subquery(latest.values("roas")[:1]), roas_at=Subquery(latest.values("computed_at")[:1]))
        .filter(roas_at__gte=now - ROAS_MAX_AGE)
    )
    proposals = []
    for campaign in campaigns:
        step = analytics.budget_step(
            campaign.daily_budget_cents,
            campaign.latest_roas,
            settings.TARGET_ROAS,
            settings.ROAS_BAND,
            settings.BUDGET_STEP,
        )
        if step is None:
            continue
        auto = analytics.within_change_limit(
            campaign.daily_budget_cents, step.proposed_cents, settings.BUDGET_AUTO_APPROVE_LIMIT
        )
        proposals.append(
            BudgetProposal(
                campaign=campaign,
                current_budget_cents=campaign.daily_budget_cents,
                proposed_budget_cents=step.proposed_cents,
                roas=campaign.latest_roas,
                reason=step.reason,
                created_at=now,
                status=BudgetProposal.Status.APPROVED if auto else BudgetProposal.Status.PROPOSED,
                decided_by=POLICY if auto else "",
                decided_at=now if auto else None,
            )
        )
    # The unique constraint on open proposals drops any a concurrent run already made.
    BudgetProposal.objects.bulk_create(proposals, ignore_conflicts=True)
    raised = sum(p.proposed_budget_cents > p.current_budget_cents for p in proposals)
    approved = sum(p.status == BudgetProposal.Status.APPROVED for p in proposals)
    return {
        "proposals": len(proposals),
        "raise": raised,
        "cut": len(proposals) - raised,
        "auto_approved": approved,
        "awaiting_human": len(proposals) - approved,
    }


propose_budget_changes = module_job("10.6")(_propose_budget_changes)


# --- 10.7 Autonomous System: apply approved proposals -------------------------------------------


def _decline(proposal: BudgetProposal, why: str, now: datetime) -> str:
    proposal.status, proposal.error = BudgetProposal.Status.REJECTED, why
    proposal.decided_by, proposal.decided_at = GUARDRAILS, now
    proposal.save(update_fields=["status", "error", "decided_by", "decided_at"])
    return "rejected"


def _apply_proposal(proposal: BudgetProposal, now: datetime) -> str:
    campaign = proposal.campaign
    current = campaign.daily_budget_cents
    if current != proposal.current_budget_cents:
        return _decline(
            proposal, f"Stale: the daily budget is now {current}, not {proposal.current_budget_cents}.", now
        )
    target = analytics.clamp_budget(
        current,
        proposal.proposed_budget_cents,
        settings.BUDGET_FLOOR_CENTS,
        settings.BUDGET_CEILING_CENTS,
        settings.BUDGET_MAX_CHANGE,
    )
    if target == current:
        return _decline(proposal, "The floor, ceiling or maximum change leave no change to apply.", now)
    try:
        client().update(campaign.pk, campaign.account_id, daily_budget=target)
    except MetaError as error:
        _raise_unless_item_error(error)
        proposal.status, proposal.error = BudgetProposal.Status.FAILED, str(error)
        proposal.save(update_fields=["status", "error"])
        return "failed"
    proposal.status, proposal.applied_budget_cents, proposal.applied_at = BudgetProposal.Status.APPLIED, target, now
    proposal.error = ""
    proposal.save(update_fields=["status", "applied_budget_cents", "applied_at", "error"])
    Campaign.objects.filter(pk=campaign.pk).update(daily_budget_cents=target)
    return "clamped" if target != proposal.proposed_budget_cents else "applied"


def _accounts_with_approved_proposals(run: RunContext) -> list[str]:
    approved = BudgetProposal.objects.filter(status=BudgetProposal.Status.APPROVED)
    return sorted(set(approved.values_list("campaign__account_id", flat=True)))


def _apply_budget_proposals(run: RunContext, account: str) -> Summary:
    """One Meta call per proposal of the account, each recorded at once: a halt (WriteRefused) or an
    outage mid-run ends the account's work with the rest still `approved`."""
    since = run.now - timedelta(minutes=settings.BUDGET_MIN_INTERVAL_MINUTES)
    of_account = BudgetProposal.objects.filter(campaign__account_id=account)
    recently_changed = set(
        of_account.filter(status=BudgetProposal.Status.APPLIED, applied_at__gte=since).values_list(
            "campaign_id", flat=True
        )
    )
    counts = Counter(applied=0, clamped=0, rejected=0, failed=0, deferred=0)
    approved = of_account.filter(status=BudgetProposal.Status.APPROVED).select_related("campaign")
    for proposal in approved.order_by("created_at"):
        if proposal.campaign_id in recently_changed:
            counts["deferred"] += 1  # Meta allows only a few budget changes an hour
            continue
        counts[_apply_proposal(proposal, run.now)] += 1
    return dict(counts)


apply_budget_proposals = account_job("10.7", _accounts_with_approved_proposals)(_apply_budget_proposals)


# --- 10.8 Auto-Publisher ----------------------------------------------------------------------


def _publish_scheduled(run: RunContext) -> Summary:
    counts = {"published": 0, "failed": 0}
    due = CampaignDraft.objects.filter(status=CampaignDraft.Status.CREATED, publish_at__lte=run.now)
    for draft in due.order_by("publish_at"):
        try:
            client().update(draft.meta_campaign_id, draft.account_id, status="ACTIVE")
        except MetaError as error:
            _raise_unless_item_error(error)
            draft.status, draft.error = CampaignDraft.Status.FAILED, str(error)
            counts["failed"] += 1
        else:
            draft.status, draft.error, draft.published_at = CampaignDraft.Status.PUBLISHED, "", run.now
            Campaign.objects.filter(pk=draft.meta_campaign_id).update(status="ACTIVE")
            counts["published"] += 1
        draft.save(update_fields=["status", "error", "published_at"])
    return counts


publish_scheduled = module_job("10.8")(_publish_scheduled)


# --- 10.9 Budget Spike Manager ----------------------------------------------------------------


def _detect_spend_spikes(run: RunContext) -> Summary:
    """Each campaign's spend of its account's local today, per hour elapsed in that day, against
    its spend per hour over the previous SPIKE_BASELINE_DAYS local days. Two queries per local
    today (at most three of them), whatever the number of accounts."""
    now, zones = run.now, AdAccount.objects.zones()
    stop = settings.SPIKE_REQUESTS_EMERGENCY_STOP
    min_spend = Decimal(str(settings.SPIKE_MIN_SPEND))
    spikes, checked = [], 0
    groups = days.group_by_local_today(zones.items(), now)
    for today, accounts in sorted(groups.items()):
        latest = SpendSnapshot.objects.filter(campaign=OuterRef("pk"), day=today).order_by("-taken_at")
        campaigns = (
            Campaign.objects.filter(account_id__in=accounts)
            .annotate(
                snapshot_spend=Subquery(latest.values("spend_today")[:1]),
                snapshot_at=Subquery(latest.values("taken_at")[:1]),
            )
            .filter(snapshot_spend__isnull=False)
            .values("pk", "account_id", "created_time", "snapshot_spend", "snapshot_at")
        )
        baseline_days = (today - timedelta(days=SPIKE_BASELINE_DAYS), today - timedelta(days=1))
        baseline = dict(
            DailyInsight.objects.filter(ad__account_id__in=accounts, date__range=baseline_days)
            .values("ad__campaign_id")
            .annotate(total=Sum("spend"))
            .order_by()
            .values_list("ad__campaign_id", "total")
        )
        for c in campaigns:
            checked += 1
            tz = zones[c["account_id"]]
            hours = max(analytics.MIN_HOURS, days.hours_elapsed(today, tz, c["snapshot_at"]))
            rate = analytics.hourly_rate(c["snapshot_spend"], hours)
            # Real hours between local midnights: a daylight-saving day in the baseline has 23 or 25.
            baseline_hours = analytics.exposure_hours(
                c["created_time"], days.day_start(baseline_days[0], tz), days.day_start(today, tz)
            )
            baseline_rate = analytics.hourly_rate(baseline.get(c["pk"]) or Decimal(0), baseline_hours)
            ratio = analytics.spike_ratio(rate, baseline_rate)
            if analytics.is_spike(ratio, c["snapshot_spend"], settings.SPIKE_RATIO, min_spend):
                spikes.append(
                    SpendSpike(
                        campaign_id=c["pk"],
                        day=today,
                        detected_at=now,
                        spend_today=c["snapshot_spend"],
                        hourly_rate=rate,
                        baseline_hourly_rate=baseline_rate,
                        ratio=round(ratio, 2),
                        requested_emergency_stop=stop,
                    )
                )
    # One row per campaign and local day: a spike that goes on updates its figures, keeps its
    # acknowledgement, and keeps an emergency-stop request once made.
    refreshed = ["detected_at", "spend_today", "hourly_rate", "baseline_hourly_rate", "ratio"]
    SpendSpike.objects.bulk_create(
        spikes,
        update_conflicts=True,
        unique_fields=["campaign", "day"],
        update_fields=refreshed + (["requested_emergency_stop"] if stop else []),
    )
    return {
        "campaigns_checked": checked,
        "spikes": len(spikes),
        "emergency_stop_requested": len(spikes) if stop else 0,
        "days": sorted(today.isoformat() for today in groups),
    }


detect_spend_spikes = module_job("10.9")(_detect_spend_spikes)


# --- 10.10 Creative Variants ------------------------------------------------------------------


def _generate_copy_variants(run: RunContext) -> Summary:
    eligible = [a for a in _creative_stats(run.now) if a.impressions >= settings.COPY_VARIANTS_MIN_IMPRESSIONS]
    top = analytics.rank_by_ctr(eligible)[: settings.COPY_VARIANTS_TOP_N]
    ads = Ad.objects.in_bulk([a.ad_id for a in top])
    existing = set(CopyVariant.objects.filter(source_ad_id__in=list(ads)).values_list("source_ad_id", "template_key"))
    variants = []
    for ad in ads.values():
        title, body = ad.creative.get("title") or ad.name, ad.creative.get("body") or ""
        for template in analytics.COPY_TEMPLATES:
            if (ad.pk, template.key) not in existing:
                headline, text = analytics.fill_template(template, title, body)
                variants.append(CopyVariant(source_ad=ad, template_key=template.key, headline=headline, body=text))
    CopyVariant.objects.bulk_create(variants, ignore_conflicts=True)
    return {"top_ads": len(top), "created": len(variants)}


generate_copy_variants = module_job("10.10")(_generate_copy_variants)


# --- 10.11 Full Cycle Manager -----------------------------------------------------------------

CYCLE: tuple[tuple[str, Job], ...] = (
    ("sync_campaigns", _sync_campaigns),
    ("collect_insights", _collect_insights),
    ("compute_roas", _compute_roas),
    ("propose_budget_changes", _propose_budget_changes),
)


class CycleStepFailed(Exception):
    """A step of the full cycle failed; the message is the per-step report."""


def _run_full_cycle(run: RunContext) -> Summary:
    """The steps in order, inside this run (their Meta calls count here); stops at the first failure,
    which fails the run with the report of the steps done so far."""
    steps: list[Summary] = []
    for name, step in CYCLE:
        try:
            steps.append({"step": name, "ok": True, "summary": step(run) or {}})
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            done = "; ".join(f"{s['step']} ok {json.dumps(s['summary'])}" for s in steps) or "none"
            raise CycleStepFailed(f"Step {name} failed ({type(exc).__name__}: {exc}). Steps done: {done}") from exc
    return {"steps": steps}


run_full_cycle = module_job("10.11")(_run_full_cycle)


# --- 10.12 Targeting Optimizer ----------------------------------------------------------------


def _score_audiences(run: RunContext) -> Summary:
    groups = AdAccount.objects.by_local_today(run.now)
    rows = list(
        DailyInsight.objects.filter(_in_windows(groups, CREATIVE_WINDOW_DAYS))
        .values("ad__adset_id", "ad__account_id")
        .annotate(total_spend=Sum("spend"), total_purchases=Sum("purchases"))
        .order_by()
    )
    accounts: dict[str, list] = defaultdict(lambda: [Decimal(0), 0])
    for r in rows:
        accounts[r["ad__account_id"]][0] += r["total_spend"]
        accounts[r["ad__account_id"]][1] += r["total_purchases"]
    now = run.now
    scores = []
    for r in rows:
        account_spend, account_purchases = accounts[r["ad__account_id"]]
        scores.append(
            AudienceScore(
                adset_id=r["ad__adset_id"],
                computed_at=now,
                spend=r["total_spend"],
                purchases=r["total_purchases"],
                cost_per_purchase=analytics.cost_per(r["total_spend"], r["total_purchases"]),
                account_cost_per_purchase=analytics.cost_per(account_spend, account_purchases),
                flagged_weak=analytics.is_weak_audience(
                    r["total_spend"],
                    r["total_purchases"],
                    account_spend,
                    account_purchases,
                    settings.AUDIENCE_WEAK_FACTOR,
                ),
            )
        )
    AudienceScore.objects.bulk_create(scores)
    return {"adsets": len(scores), "flagged_weak": sum(s.flagged_weak for s in scores)}


score_audiences = module_job("10.12")(_score_audiences)


# --- 10.13 Creative Intelligence --------------------------------------------------------------


def _rank_creatives(run: RunContext) -> Summary:
    now = run.now
    groups = _by_adset(_creative_stats(now))
    ranks = [
        CreativeRank(
            ad_id=ad.ad_id,
            computed_at=now,
            impressions=ad.impressions,
            clicks=ad.clicks,
            purchases=ad.purchases,
            ctr=ad.ctr,
            cvr=ad.cvr,
            rank_in_adset=position,
        )
        for ads in groups.values()
        for position, ad in enumerate(analytics.rank_by_ctr(ads), start=1)
    ]
    CreativeRank.objects.bulk_create(ranks)
    return {"adsets": len(groups), "ads_ranked": len(ranks)}


rank_creatives = module_job("10.13")(_rank_creatives)


# --- 10.14 Real-Time Engine -------------------------------------------------------------------


def _poll_today_spend(run: RunContext, account: str) -> Summary:
    """Each snapshot is tied to the day Meta says it measured (`date_start`: the account's local
    today), not to the tower's idea of it, so a poll that straddles local midnight cannot count
    one day's spend against the other's hours."""
    known = set(Campaign.objects.filter(account_id=account).values_list("pk", flat=True))
    rows = client().insights(
        account, {"level": "campaign", "date_preset": "today", "fields": "campaign_id,spend"}, account
    )
    snapshots = [
        SpendSnapshot(
            campaign_id=r["campaign_id"],
            taken_at=run.now,
            day=date.fromisoformat(r["date_start"]),
            spend_today=Decimal(r["spend"]),
        )
        for r in rows
        if r.get("campaign_id") in known and Decimal(r.get("spend") or 0) > 0
    ]
    SpendSnapshot.objects.bulk_create(snapshots)
    return {"snapshots": len(snapshots), "days": sorted({snapshot.day.isoformat() for snapshot in snapshots})}


poll_today_spend = account_job("10.14", _mirrored_accounts)(_poll_today_spend)


# --- 10.15 Creative Analyzer: fatigue ---------------------------------------------------------


def _previous_window(today: date) -> tuple[date, date]:
    """The FATIGUE_WINDOW_DAYS days before the last FATIGUE_WINDOW_DAYS (today included)."""
    last_start, _ = days.window(FATIGUE_WINDOW_DAYS, today)
    return days.window(FATIGUE_WINDOW_DAYS, last_start - timedelta(days=1))


def _detect_creative_fatigue(run: RunContext) -> Summary:
    now = run.now
    groups = AdAccount.objects.by_local_today(now)
    today_of = _today_of(groups)
    in_previous = per_local_today(groups, "ad__account_id", lambda today: Q(date__range=_previous_window(today)))
    in_last = _in_windows(groups, FATIGUE_WINDOW_DAYS)
    rows = (
        DailyInsight.objects.filter(in_previous | in_last)
        .values("ad_id", "ad__account_id")
        .annotate(
            prev_impressions=Sum("impressions", filter=in_previous),
            prev_clicks=Sum("clicks", filter=in_previous),
            last_impressions=Sum("impressions", filter=in_last),
            last_clicks=Sum("clicks", filter=in_last),
        )
        .order_by()
    )
    flagged = []
    for r in rows:
        verdict = analytics.fatigue(
            (r["prev_impressions"] or 0, r["prev_clicks"] or 0),
            (r["last_impressions"] or 0, r["last_clicks"] or 0),
            settings.FATIGUE_CTR_DROP,
            settings.FATIGUE_MIN_IMPRESSIONS,
        )
        if verdict:
            flagged.append(
                CreativeFatigue(
                    ad_id=r["ad_id"],
                    day=today_of[r["ad__account_id"]],
                    detected_at=now,
                    ctr_previous_7d=verdict.ctr_previous,
                    ctr_last_7d=verdict.ctr_last,
                    drop_pct=verdict.drop_pct,
                )
            )
    CreativeFatigue.objects.bulk_create(
        flagged,
        update_conflicts=True,
        unique_fields=["ad", "day"],
        update_fields=["detected_at", "ctr_previous_7d", "ctr_last_7d", "drop_pct"],
    )
    return {"ads_checked": len(rows), "fatigued": len(flagged)}


detect_creative_fatigue = module_job("10.15")(_detect_creative_fatigue)


# --- 10.16 Creative Optimizer: winners --------------------------------------------------------


def _select_winners(run: RunContext) -> Summary:
    now = run.now
    tested, winners = 0, []
    for adset_id, ads in _by_adset(_creative_stats(now)).items():
        pair = analytics.best_two_by_cvr(ads)
        if pair is None:
            continue
        best, runner_up = pair
        test = analytics.two_proportion_z_test(best.purchases, best.clicks, runner_up.purchases, runner_up.clicks)
        tested += 1
        if test is not None and test.z > 0 and test.p_value < settings.WINNER_P_VALUE:
            winners.append(
                CreativeWinner(
                    adset_id=adset_id,
                    ad_id=best.ad_id,
                    runner_up_id=runner_up.ad_id,
                    computed_at=now,
                    conversions=best.purchases,
                    clicks=best.clicks,
                    cvr=best.cvr,
                    z_score=test.z,
                    p_value=test.p_value,
                )
            )
    CreativeWinner.objects.bulk_create(winners)
    return {"adsets_tested": tested, "winners": len(winners)}


select_winners = module_job("10.16")(_select_winners)


# --- 10.17 Creative Production ----------------------------------------------------------------


def _produce_creatives(run: RunContext) -> Summary:
    variants = list(CopyVariant.objects.filter(status=CopyVariant.Status.NEW).select_related("source_ad"))
    briefs = [
        CreativeBrief(
            variant=v, brief=analytics.creative_brief(v.headline, v.body, v.source_ad_id, v.source_ad.creative)
        )
        for v in variants
    ]
    with transaction.atomic():
        CreativeBrief.objects.bulk_create(briefs, ignore_conflicts=True)
        CopyVariant.objects.filter(status=CopyVariant.Status.NEW, brief__isnull=False).update(
            status=CopyVariant.Status.BRIEFED
        )
    return {"briefs": len(briefs)}


produce_creatives = module_job("10.17")(_produce_creatives)
