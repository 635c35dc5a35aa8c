from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import ngettext

from meta_modules import analytics, clock
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
    ModuleRunPart,
    SpendSnapshot,
    SpendSpike,
    per_local_today,
)
from meta_modules.money import EMPTY, minor_units, money


def ratio(value: float | Decimal | None, suffix: str = "") -> str:
    return EMPTY if value is None else f"{value:.2f}{suffix}"


def percent(fraction: float | None) -> str:
    return EMPTY if fraction is None else f"{fraction:.2%}"


class RefusesForbiddenActions(admin.ModelAdmin):
    """Posting an action the user may not run is a 403, not Django's silent re-rendered list."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        action = request.POST.get("action")
        if request.method == "POST" and action and action not in self.get_actions(request):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)


class ReadOnlyAdmin(RefusesForbiddenActions):
    """Audit records: viewable and searchable, never added, edited or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ActionOnlyAdmin(RefusesForbiddenActions):
    """Rows written by the jobs that operators act on only through the list's actions.

    The change permission gates the actions; object pages stay view-only (every field read-only,
    no Save button), so a stale form can never write a row a job has moved on since.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request)

    def report(self, request: HttpRequest, changed: int, done: str, skipped: int, why: str) -> None:
        """What an action changed and what it left alone (the django-celery-beat message style)."""
        left = ngettext(
            "%(count)d skipped because it was %(why)s.", "%(count)d skipped because they were %(why)s.", skipped
        ) % {"count": skipped, "why": why}
        self.message_user(request, f"{done}; {left}", messages.SUCCESS if changed else messages.WARNING)


class TodayFilter(admin.SimpleListFilter):
    """Rows of their ad account's local today (the day the jobs write) or of earlier days."""

    field = "day"
    account = ""  # the lookup from the row to its AdAccount's id

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("today", "Today"), ("earlier", "Earlier")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() not in ("today", "earlier"):
            return None
        today = per_local_today(
            AdAccount.objects.by_local_today(clock.now()), self.account, lambda day: Q(**{self.field: day})
        )
        return queryset.filter(today) if self.value() == "today" else queryset.exclude(today)


class SpikeDayFilter(TodayFilter):
    title = "spike"
    parameter_name = "spike"
    account = "campaign__account_id"


class FatigueDayFilter(TodayFilter):
    title = "detected"
    parameter_name = "detected"
    account = "ad__account_id"


class RoasTargetFilter(admin.SimpleListFilter):
    """Where ROAS stands against the band 10.6 steers budgets to."""

    title = "ROAS vs target"
    parameter_name = "vs_target"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("above", "Above the band (raise)"),
            ("within", "Within the band"),
            ("below", "Below the band (cut)"),
            ("none", "No spend"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        target, band = Decimal(str(settings.TARGET_ROAS)), Decimal(str(settings.ROAS_BAND))
        high, low = target * (1 + band), target * (1 - band)
        match self.value():
            case "above":
                return queryset.filter(roas__gt=high)
            case "within":
                return queryset.filter(roas__gte=low, roas__lte=high)
            case "below":
                return queryset.filter(roas__lt=low)
            case "none":
                return queryset.filter(roas__isnull=True)
        return None


class DirectionFilter(admin.SimpleListFilter):
    title = "direction"
    parameter_name = "direction"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("raise", "Raise"), ("cut", "Cut")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == "raise":
            return queryset.filter(proposed_budget_cents__gt=F("current_budget_cents"))
        if self.value() == "cut":
            return queryset.filter(proposed_budget_cents__lt=F("current_budget_cents"))
        return None


class PublicationFilter(admin.SimpleListFilter):
    """What 10.8 will do with a draft: activate it now, later, or never on its own."""

    title = "publication"
    parameter_name = "publication"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("due", "Due now"), ("scheduled", "Scheduled later"), ("manual", "No publish time")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        pending = queryset.filter(status__in=[CampaignDraft.Status.QUEUED, CampaignDraft.Status.CREATED])
        match self.value():
            case "due":
                return pending.filter(publish_at__lte=clock.now())  # 10.8's clock
            case "scheduled":
                return pending.filter(publish_at__gt=clock.now())
            case "manual":
                return pending.filter(publish_at__isnull=True)
        return None


class BestInAdSetFilter(admin.SimpleListFilter):
    title = "place in ad set"
    parameter_name = "place"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("best", "Best (#1)"), ("others", "Others")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == "best":
            return queryset.filter(rank_in_adset=1)
        if self.value() == "others":
            return queryset.filter(rank_in_adset__gt=1)
        return None


# --- The modules and their runs ---


@admin.register(MetaModule)
class MetaModuleAdmin(RefusesForbiddenActions):
    list_display = ("code", "name", "function", "desired_state", "schedule", "scheduler_enabled", "calls_meta")
    list_filter = ("desired_state", "calls_meta")
    search_fields = ("code", "name", "function")
    readonly_fields = (
        "code",
        "name",
        "function",
        "task_name",
        "calls_meta",
        "position",
        "periodic_task",
        "desired_state",
        "desired_state_by",
        "desired_state_at",
        "desired_state_reason",
        "error_window_start",
        "created_at",
        "updated_at",
    )
    list_select_related = ("periodic_task__interval",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # modules come from the registry (`manage.py sync_modules`)

    @admin.display(description="Schedule")
    def schedule(self, module: MetaModule) -> str:
        task = module.periodic_task
        return str(task.interval) if task and task.interval else EMPTY

    @admin.display(description="Scheduler enabled", boolean=True)
    def scheduler_enabled(self, module: MetaModule) -> bool | None:
        return module.periodic_task.enabled if module.periodic_task else None


@admin.register(ModuleRun)
class ModuleRunAdmin(ReadOnlyAdmin):
    list_display = (
        "module",
        "started_at",
        "outcome",
        "trigger",
        "duration",
        "api_calls",
        "api_errors",
        "cpu_ms",
        "peak_rss_mb",
        "short_error",
    )
    list_filter = ("outcome", "trigger", "module")
    search_fields = ("module__code", "module__name", "error_message", "celery_task_id")
    date_hierarchy = "started_at"
    list_select_related = ("module",)

    @admin.display(description="Duration", ordering="duration_ms")
    def duration(self, run: ModuleRun) -> str:
        return EMPTY if run.duration_ms is None else f"{run.duration_ms / 1000:.2f} s"

    @admin.display(description="Error")
    def short_error(self, run: ModuleRun) -> str:
        return run.error_message[:80]


@admin.register(ModuleRunPart)
class ModuleRunPartAdmin(ReadOnlyAdmin):
    """The parts of the runs done per ad account (meta_modules/parts.py), with each account's result."""

    list_display = ("run", "state", "account_list", "queued", "started_at", "finished_at", "api_calls", "short_error")
    list_filter = ("state", "queued", "run__module")
    search_fields = ("run__id", "accounts", "error", "celery_task_id")
    list_select_related = ("run__module",)

    @admin.display(description="Accounts")
    def account_list(self, part: ModuleRunPart) -> str:
        return ", ".join(part.accounts)

    @admin.display(description="Error")
    def short_error(self, part: ModuleRunPart) -> str:
        return part.error[:80]


# --- The campaign mirror: synced from Meta (10.2, 10.4), never edited here ---


@admin.register(AdAccount)
class AdAccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "currency", "timezone_name", "timezone_offset_hours_utc", "synced_at")
    list_filter = ("currency", "timezone_name")
    search_fields = ("id", "name")


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "name",
        "account",
        "status",
        "effective_status",
        "objective",
        "daily_budget",
        "updated_time",
        "synced_at",
    )
    list_filter = ("status", "effective_status", "objective", "account")
    search_fields = ("id", "name", "account__id", "account__name")
    date_hierarchy = "created_time"
    list_select_related = ("account",)

    @admin.display(description="Daily budget", ordering="daily_budget_cents")
    def daily_budget(self, campaign: Campaign) -> str:
        return minor_units(campaign.daily_budget_cents, campaign.account.currency)


@admin.register(AdSet)
class AdSetAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "campaign", "status", "effective_status", "daily_budget", "updated_time", "synced_at")
    list_filter = ("status", "effective_status", "account")
    search_fields = ("id", "name", "campaign__id", "campaign__name")
    list_select_related = ("campaign", "account")

    @admin.display(description="Daily budget", ordering="daily_budget_cents")
    def daily_budget(self, adset: AdSet) -> str:
        return minor_units(adset.daily_budget_cents, adset.account.currency)


@admin.register(Ad)
class AdAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "name",
        "adset",
        "campaign",
        "status",
        "effective_status",
        "headline",
        "updated_time",
        "synced_at",
    )
    list_filter = ("status", "effective_status", "account")
    search_fields = ("id", "name", "adset__id", "adset__name", "campaign__id", "campaign__name")
    list_select_related = ("adset", "campaign")

    @admin.display(description="Headline")
    def headline(self, ad: Ad) -> str:
        return ad.creative.get("title") or EMPTY


@admin.register(DailyInsight)
class DailyInsightAdmin(ReadOnlyAdmin):
    list_display = (
        "date",
        "ad",
        "impressions",
        "clicks",
        "ctr",
        "spend_amount",
        "purchases",
        "purchase_value_amount",
        "roas",
    )
    list_filter = ("ad__account",)
    search_fields = ("ad__id", "ad__name", "ad__campaign__id", "ad__campaign__name")
    date_hierarchy = "date"
    list_select_related = ("ad__account",)

    @admin.display(description="CTR")
    def ctr(self, insight: DailyInsight) -> str:
        return percent(analytics.ctr(insight.clicks, insight.impressions))

    @admin.display(description="Spend", ordering="spend")
    def spend_amount(self, insight: DailyInsight) -> str:
        return money(insight.spend, insight.ad.account.currency)

    @admin.display(description="Purchase value", ordering="purchase_value")
    def purchase_value_amount(self, insight: DailyInsight) -> str:
        return money(insight.purchase_value, insight.ad.account.currency)

    @admin.display(description="ROAS")
    def roas(self, insight: DailyInsight) -> str:
        return ratio(analytics.roas(insight.purchase_value, insight.spend))


# --- What the module jobs produce ---


@admin.register(CampaignDraft)
class CampaignDraftAdmin(RefusesForbiddenActions):
    """Operators write drafts; 10.3 creates them on Meta (paused) and 10.8 activates them at publish_at."""

    list_display = (
        "name",
        "account",
        "objective",
        "daily_budget",
        "publish_at",
        "status",
        "meta_campaign_id",
        "created_by",
        "created_at",
        "published_at",
    )
    list_filter = ("status", PublicationFilter, "objective", "account")
    search_fields = ("name", "meta_campaign_id", "account__id", "account__name", "created_by", "error")
    date_hierarchy = "created_at"
    list_select_related = ("account",)
    raw_id_fields = ("account",)
    fields = (
        "account",
        "name",
        "objective",
        "daily_budget_cents",
        "publish_at",
        "status",
        "meta_campaign_id",
        "error",
        "created_by",
        "created_at",
        "published_at",
    )
    readonly_fields = ("status", "meta_campaign_id", "error", "created_by", "created_at", "published_at")
    # Already on Meta: editing these here would not reach the campaign.
    SENT_TO_META = ("account", "name", "objective", "daily_budget_cents")

    def get_readonly_fields(self, request: HttpRequest, obj: CampaignDraft | None = None) -> tuple[str, ...]:
        if obj is None or obj.status == CampaignDraft.Status.QUEUED:
            return self.readonly_fields
        if obj.status == CampaignDraft.Status.CREATED:  # publish_at still steers 10.8
            return self.SENT_TO_META + self.readonly_fields
        return self.SENT_TO_META + ("publish_at",) + self.readonly_fields

    def save_model(self, request: HttpRequest, obj: CampaignDraft, form: ModelForm, change: bool) -> None:
        if not change:
            obj.created_by = request.user.get_username()
            obj.save()
        else:
            # Only what the operator edited: status and the Meta id belong to 10.3/10.8, which may move them meanwhile.
            obj.save(update_fields=form.changed_data)

    @admin.display(description="Daily budget", ordering="daily_budget_cents")
    def daily_budget(self, draft: CampaignDraft) -> str:
        return minor_units(draft.daily_budget_cents, draft.account.currency)


@admin.register(CampaignRoas)
class CampaignRoasAdmin(ReadOnlyAdmin):
    list_display = (
        "campaign",
        "roas_value",
        "spend_amount",
        "purchase_value_amount",
        "window_start",
        "window_end",
        "computed_at",
    )
    list_filter = (RoasTargetFilter, "campaign__account")
    search_fields = ("campaign__id", "campaign__name")
    date_hierarchy = "computed_at"
    list_select_related = ("campaign__account",)

    @admin.display(description="ROAS", ordering="roas")
    def roas_value(self, row: CampaignRoas) -> str:
        return ratio(row.roas)

    @admin.display(description="Spend", ordering="spend")
    def spend_amount(self, row: CampaignRoas) -> str:
        return money(row.spend, row.campaign.account.currency)

    @admin.display(description="Purchase value", ordering="purchase_value")
    def purchase_value_amount(self, row: CampaignRoas) -> str:
        return money(row.purchase_value, row.campaign.account.currency)


@admin.register(BudgetProposal)
class BudgetProposalAdmin(ActionOnlyAdmin):
    """10.6 proposes, policy or a human decides (the actions below), 10.7 applies what is approved."""

    list_display = (
        "campaign",
        "status",
        "current_budget",
        "proposed_budget",
        "change",
        "applied_budget",
        "roas_value",
        "created_at",
        "decided_by",
        "decided_at",
        "applied_at",
    )
    list_filter = ("status", DirectionFilter, "decided_by", "campaign__account")
    search_fields = ("campaign__id", "campaign__name", "reason", "decided_by", "error")
    date_hierarchy = "created_at"
    list_select_related = ("campaign__account",)
    actions = ("approve", "reject")

    @admin.action(permissions=["change"], description="Approve selected proposals")
    def approve(self, request: HttpRequest, queryset: QuerySet[BudgetProposal]) -> None:
        self._decide(request, queryset, BudgetProposal.Status.APPROVED)

    @admin.action(permissions=["change"], description="Reject selected proposals")
    def reject(self, request: HttpRequest, queryset: QuerySet[BudgetProposal]) -> None:
        self._decide(request, queryset, BudgetProposal.Status.REJECTED)

    def _decide(self, request: HttpRequest, queryset: QuerySet[BudgetProposal], status: BudgetProposal.Status) -> None:
        selected = queryset.count()
        # One conditional UPDATE: a proposal 10.6 policy or another operator decided meanwhile is left alone.
        changed = queryset.filter(status=BudgetProposal.Status.PROPOSED).update(
            status=status, decided_by=request.user.get_username(), decided_at=timezone.now()
        )
        done = ngettext("%(count)d proposal %(status)s", "%(count)d proposals %(status)s", changed) % {
            "count": changed,
            "status": status.label.lower(),
        }
        self.report(request, changed, done, selected - changed, "not pending")

    def _currency(self, proposal: BudgetProposal) -> str:
        return proposal.campaign.account.currency

    @admin.display(description="Current", ordering="current_budget_cents")
    def current_budget(self, proposal: BudgetProposal) -> str:
        return minor_units(proposal.current_budget_cents, self._currency(proposal))

    @admin.display(description="Proposed", ordering="proposed_budget_cents")
    def proposed_budget(self, proposal: BudgetProposal) -> str:
        return minor_units(proposal.proposed_budget_cents, self._currency(proposal))

    @admin.display(description="Change")
    def change(self, proposal: BudgetProposal) -> str:
        if not proposal.current_budget_cents:
            return EMPTY
        return f"{proposal.proposed_budget_cents / proposal.current_budget_cents - 1:+.2%}"

    @admin.display(description="Applied", ordering="applied_budget_cents")
    def applied_budget(self, proposal: BudgetProposal) -> str:
        return minor_units(proposal.applied_budget_cents, self._currency(proposal))

    @admin.display(description="ROAS", ordering="roas")
    def roas_value(self, proposal: BudgetProposal) -> str:
        return ratio(proposal.roas)


@admin.register(SpendSnapshot)
class SpendSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("campaign", "day", "taken_at", "spend")
    list_filter = ("campaign__account",)
    search_fields = ("campaign__id", "campaign__name")
    date_hierarchy = "taken_at"
    list_select_related = ("campaign__account",)

    @admin.display(description="Spend today", ordering="spend_today")
    def spend(self, snapshot: SpendSnapshot) -> str:
        return money(snapshot.spend_today, snapshot.campaign.account.currency)


@admin.register(SpendSpike)
class SpendSpikeAdmin(ActionOnlyAdmin):
    """Spikes found by 10.9; acknowledging one ends its critical alert."""

    list_display = (
        "campaign",
        "day",
        "spike_ratio",
        "spend",
        "hourly",
        "baseline_hourly",
        "detected_at",
        "acknowledged",
        "acknowledged_by",
        "acknowledged_at",
        "requested_emergency_stop",
    )
    list_filter = (SpikeDayFilter, "acknowledged", "requested_emergency_stop", "campaign__account")
    search_fields = ("campaign__id", "campaign__name", "acknowledged_by")
    date_hierarchy = "day"
    list_select_related = ("campaign__account",)
    actions = ("acknowledge",)

    @admin.action(permissions=["change"], description="Acknowledge selected spikes")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[SpendSpike]) -> None:
        selected = queryset.count()
        changed = queryset.filter(acknowledged=False).update(
            acknowledged=True, acknowledged_by=request.user.get_username(), acknowledged_at=timezone.now()
        )
        done = ngettext("%(count)d spike acknowledged", "%(count)d spikes acknowledged", changed) % {"count": changed}
        self.report(request, changed, done, selected - changed, "already acknowledged")

    @admin.display(description="Ratio", ordering="ratio")
    def spike_ratio(self, spike: SpendSpike) -> str:
        return ratio(spike.ratio, "×")

    @admin.display(description="Spend today", ordering="spend_today")
    def spend(self, spike: SpendSpike) -> str:
        return money(spike.spend_today, spike.campaign.account.currency)

    @admin.display(description="Rate / h", ordering="hourly_rate")
    def hourly(self, spike: SpendSpike) -> str:
        return money(spike.hourly_rate, spike.campaign.account.currency)

    @admin.display(description="Baseline / h", ordering="baseline_hourly_rate")
    def baseline_hourly(self, spike: SpendSpike) -> str:
        return money(spike.baseline_hourly_rate, spike.campaign.account.currency)


@admin.register(CopyVariant)
class CopyVariantAdmin(ReadOnlyAdmin):
    list_display = ("headline", "template_key", "source_ad", "status", "created_at")
    list_filter = ("status", "template_key")
    search_fields = ("headline", "body", "source_ad__id", "source_ad__name")
    date_hierarchy = "created_at"
    list_select_related = ("source_ad",)


@admin.register(AudienceScore)
class AudienceScoreAdmin(ReadOnlyAdmin):
    list_display = (
        "adset",
        "flagged_weak",
        "cost_per_purchase_amount",
        "account_cost_per_purchase_amount",
        "relative_cost",
        "spend_amount",
        "purchases",
        "computed_at",
    )
    list_filter = ("flagged_weak", "adset__account")
    search_fields = ("adset__id", "adset__name", "adset__campaign__name")
    date_hierarchy = "computed_at"
    list_select_related = ("adset__account",)

    @admin.display(description="Cost / purchase", ordering="cost_per_purchase")
    def cost_per_purchase_amount(self, score: AudienceScore) -> str:
        return money(score.cost_per_purchase, score.adset.account.currency)

    @admin.display(description="Account cost / purchase", ordering="account_cost_per_purchase")
    def account_cost_per_purchase_amount(self, score: AudienceScore) -> str:
        return money(score.account_cost_per_purchase, score.adset.account.currency)

    @admin.display(description="vs account")
    def relative_cost(self, score: AudienceScore) -> str:
        if score.cost_per_purchase is None or not score.account_cost_per_purchase:
            return EMPTY
        return ratio(score.cost_per_purchase / score.account_cost_per_purchase, "×")

    @admin.display(description="Spend (14 d)", ordering="spend")
    def spend_amount(self, score: AudienceScore) -> str:
        return money(score.spend, score.adset.account.currency)


@admin.register(CreativeRank)
class CreativeRankAdmin(ReadOnlyAdmin):
    list_display = (
        "ad",
        "adset",
        "rank_in_adset",
        "ctr_value",
        "cvr_value",
        "impressions",
        "clicks",
        "purchases",
        "computed_at",
    )
    list_filter = (BestInAdSetFilter, "ad__account")
    search_fields = ("ad__id", "ad__name", "ad__adset__id", "ad__adset__name")
    date_hierarchy = "computed_at"
    list_select_related = ("ad__adset",)

    @admin.display(description="Ad set", ordering="ad__adset")
    def adset(self, rank: CreativeRank) -> AdSet:
        return rank.ad.adset

    @admin.display(description="CTR", ordering="ctr")
    def ctr_value(self, rank: CreativeRank) -> str:
        return percent(rank.ctr)

    @admin.display(description="CVR", ordering="cvr")
    def cvr_value(self, rank: CreativeRank) -> str:
        return percent(rank.cvr)


@admin.register(CreativeFatigue)
class CreativeFatigueAdmin(ReadOnlyAdmin):
    list_display = ("ad", "day", "ctr_before", "ctr_last", "drop", "detected_at")
    list_filter = (FatigueDayFilter, "ad__account")
    search_fields = ("ad__id", "ad__name", "ad__campaign__name")
    date_hierarchy = "day"
    list_select_related = ("ad",)

    @admin.display(description="CTR previous 7 d", ordering="ctr_previous_7d")
    def ctr_before(self, fatigue: CreativeFatigue) -> str:
        return percent(fatigue.ctr_previous_7d)

    @admin.display(description="CTR last 7 d", ordering="ctr_last_7d")
    def ctr_last(self, fatigue: CreativeFatigue) -> str:
        return percent(fatigue.ctr_last_7d)

    @admin.display(description="CTR drop", ordering="drop_pct")
    def drop(self, fatigue: CreativeFatigue) -> str:
        return ratio(fatigue.drop_pct, "%")


@admin.register(CreativeWinner)
class CreativeWinnerAdmin(ReadOnlyAdmin):
    list_display = ("adset", "ad", "runner_up", "cvr_value", "conversions", "clicks", "z", "p", "computed_at")
    list_filter = ("adset__account",)
    search_fields = ("adset__id", "adset__name", "ad__id", "ad__name")
    date_hierarchy = "computed_at"
    list_select_related = ("adset", "ad", "runner_up")

    @admin.display(description="CVR", ordering="cvr")
    def cvr_value(self, winner: CreativeWinner) -> str:
        return percent(winner.cvr)

    @admin.display(description="z", ordering="z_score")
    def z(self, winner: CreativeWinner) -> str:
        return ratio(winner.z_score)

    @admin.display(description="p", ordering="p_value")
    def p(self, winner: CreativeWinner) -> str:
        return f"{winner.p_value:.3g}"  # significant digits: p-values are often far below 0.01


@admin.register(CreativeBrief)
class CreativeBriefAdmin(ReadOnlyAdmin):
    list_display = ("headline", "source_ad", "call_to_action", "format", "created_at")
    search_fields = ("variant__headline", "variant__source_ad__id", "variant__source_ad__name")
    date_hierarchy = "created_at"
    list_select_related = ("variant__source_ad",)

    @admin.display(description="Headline", ordering="variant__headline")
    def headline(self, brief: CreativeBrief) -> str:
        return brief.variant.headline

    @admin.display(description="Source ad")
    def source_ad(self, brief: CreativeBrief) -> Ad:
        return brief.variant.source_ad

    @admin.display(description="Call to action")
    def call_to_action(self, brief: CreativeBrief) -> str:
        return brief.brief.get("call_to_action") or EMPTY

    @admin.display(description="Format")
    def format(self, brief: CreativeBrief) -> str:
        return brief.brief.get("format") or EMPTY
