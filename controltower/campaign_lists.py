"""The campaigns of a stop or a resume at agency scale: a summary per ad account, and the campaigns
themselves a page at a time, filtered by account and state and searched by id or name.

A stop of 300 ad accounts × 100 campaigns holds 30,000: no page, JSON body or run record lists
them all. A run's campaigns come from the ledger (CampaignHold), read by the database a page at a
time; its summary is one row per account and state, aggregated by the database (counts, the daily
budget held, the commonest errors). A dry run's campaigns are listed from Meta at request time
(the stop's preview, the resume preview) and paged here in memory, with the same filters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import EmptyPage, Paginator
from django.db.models import BigIntegerField, Count, F, Q, QuerySet, Sum, Value, Window
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, NullIf, RowNumber

from controltower import stakes
from controltower.models import CampaignHold, ControlTowerRun, RunType
from meta_modules.models import AdAccount

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
REASONS_PER_ACCOUNT = 3  # the commonest errors (or resume notes) shown per ad account
# What a resume dry run would do with a held campaign (killswitch.resume.resume_preview).
PREVIEW_ACTIONS = ("reactivate", "leave", "unknown")


class PageNotFound(Exception):
    """A page past the last one (there is no such page of campaigns)."""


@dataclass(frozen=True)
class Search:
    """Which campaigns, and which page of them: every filter optional, all of them must match."""

    account: str = ""  # an ad account id (act_123)
    state: str = ""  # a hold's state (a run), or what a resume dry run would do (reactivate, leave, unknown)
    q: str = ""  # a fragment of the campaign's id or name, any case
    page: int = 1
    page_size: int = PAGE_SIZE


# --- a run's campaigns, from the ledger ------------------------------------------------------


def holds_of(run: ControlTowerRun) -> QuerySet[CampaignHold]:
    """The ledger rows a stop made (the halt it began) or re-swept, or a resume acted on."""
    return CampaignHold.objects.filter(Q(halt_run=run) | Q(stop_run=run) | Q(resume_run=run))


def search_holds(holds: QuerySet[CampaignHold], search: Search) -> QuerySet[CampaignHold]:
    """The holds matching `search`, by account then campaign (the primary key breaks ties, so pages
    never overlap or skip a row)."""
    if search.account:
        holds = holds.filter(account_id=search.account)
    if search.state:
        holds = holds.filter(state=search.state)
    if search.q:
        holds = holds.filter(Q(campaign_id__icontains=search.q) | Q(campaign_name__icontains=search.q))
    return holds.order_by("account_id", "campaign_id", "pk")


@dataclass
class AccountSummary:
    """One ad account's campaigns in a run: how many in each state, the daily budget they hold (in
    the account's currency, from the mirror; unknown before it synced the account) and why the
    commonest failures failed."""

    account: str
    campaigns: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    currency: str = ""
    daily_budget_minor: int = 0
    adset_budget_campaigns: int = 0
    lifetime_budget_campaigns: int = 0
    reasons: list[dict[str, Any]] = field(default_factory=list)  # [{reason, count}], commonest first

    @property
    def stakes(self) -> stakes.Stakes:
        return stakes.Stakes(
            self.account,
            self.currency,
            self.campaigns,
            self.daily_budget_minor,
            self.adset_budget_campaigns,
            self.lifetime_budget_campaigns,
        )

    @property
    def daily_budget(self) -> str | None:
        return self.stakes.daily_budget if self.currency else None


@dataclass
class RunCampaigns:
    """A run's campaigns in summary: per account, per state, and the daily budget per currency."""

    total: int
    by_state: dict[str, int]
    accounts: list[AccountSummary]
    totals: list[stakes.Stakes]  # per currency; accounts whose currency is unknown are left out


def summary(run: ControlTowerRun) -> RunCampaigns:
    """Three queries whatever the number of campaigns: counts and budgets per account and state, the
    commonest reasons per account, the accounts' currencies."""
    holds = holds_of(run)
    # The snapshot keeps Meta's budgets as strings of minor units, "" when unset.
    daily = Cast(NullIf(KT("snapshot__daily_budget"), Value("")), BigIntegerField())
    no_daily = Q(snapshot__daily_budget="") | Q(snapshot__daily_budget__isnull=True)
    lifetime = ~Q(snapshot__lifetime_budget="") & Q(snapshot__lifetime_budget__isnull=False)
    rows = (
        holds.values("account_id", "state")
        .annotate(
            n=Count("pk"),
            daily_minor=Sum(daily),
            with_daily=Count(daily),
            lifetime_only=Count("pk", filter=no_daily & lifetime),
        )
        .order_by()
    )
    accounts: dict[str, AccountSummary] = {}
    by_state: dict[str, int] = defaultdict(int)
    for row in rows:
        account = accounts.setdefault(row["account_id"], AccountSummary(row["account_id"]))
        account.campaigns += row["n"]
        account.by_state[row["state"]] = row["n"]
        account.daily_budget_minor += row["daily_minor"] or 0
        account.lifetime_budget_campaigns += row["lifetime_only"]
        account.adset_budget_campaigns += row["n"] - row["with_daily"] - row["lifetime_only"]
        by_state[row["state"]] += row["n"]
    for account, reason, n in _commonest_reasons(
        holds, "resume_note" if run.run_type == RunType.RESUME else "last_error"
    ):
        accounts[account].reasons.append({"reason": reason, "count": n})
    currencies = dict(AdAccount.objects.filter(pk__in=list(accounts)).values_list("pk", "currency"))
    for account in accounts.values():
        account.currency = currencies.get(account.account, "")
    ordered = [accounts[a] for a in sorted(accounts)]
    return RunCampaigns(
        total=sum(by_state.values()),
        by_state=dict(by_state),
        accounts=ordered,
        totals=stakes.per_currency(a.stakes for a in ordered if a.currency),
    )


def _commonest_reasons(holds: QuerySet[CampaignHold], column: str) -> Iterable[tuple[str, str, int]]:
    """Per account, its REASONS_PER_ACCOUNT commonest non-empty `column` values with their counts."""
    return (
        holds.exclude(**{column: ""})
        .values("account_id", column)
        .annotate(n=Count("pk"))
        .annotate(rank=Window(RowNumber(), partition_by=[F("account_id")], order_by=[F("n").desc(), F(column).asc()]))
        .filter(rank__lte=REASONS_PER_ACCOUNT)
        .order_by("account_id", "rank")
        .values_list("account_id", column, "n")
    )


# --- a dry run's campaigns, listed from Meta ---------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a list, and where it sits in the whole."""

    rows: list[Any]
    count: int  # rows matching the search, over all pages
    page: int
    page_size: int
    pages: int
    search: Search

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "page": self.page,
            "page_size": self.page_size,
            "pages": self.pages,
            **{name: getattr(self.search, name) for name in ("account", "state", "q")},
        }


def page_of(rows: Sequence[Any], search: Search) -> Page:
    """The page `search.page` of `rows` (already filtered). Raises PageNotFound past the last page;
    an empty list has one, empty, page."""
    paginator = Paginator(rows, search.page_size, allow_empty_first_page=True)
    try:
        page = paginator.page(search.page)
    except EmptyPage as exc:
        raise PageNotFound(f"There are {paginator.num_pages} pages of {search.page_size} campaigns.") from exc
    return Page(list(page.object_list), paginator.count, page.number, search.page_size, paginator.num_pages, search)


def _found(search: Search, account: str, campaign_id: str, name: str) -> bool:
    q = search.q.casefold()
    return (not search.account or account == search.account) and (
        not q or q in campaign_id.casefold() or q in name.casefold()
    )


def page_stop_preview(preview: Mapping[str, Any], search: Search) -> dict[str, Any]:
    """The stop's dry run with one page of its campaigns: `campaigns` keeps its shape (ad account →
    [{id, name}]) holding only that page, `campaigns_page` says which page of how many. The per-account
    counts and budgets (`stakes`) stay whole: they are one row per account."""
    rows = [
        (account, campaign)
        for account in sorted(preview["campaigns"])
        for campaign in preview["campaigns"][account]
        if _found(search, account, campaign["id"], campaign.get("name", ""))
    ]
    page = page_of(rows, search)
    campaigns: dict[str, list[dict[str, Any]]] = {}
    for account, campaign in page.rows:
        campaigns.setdefault(account, []).append(campaign)
    return {**preview, "campaigns": campaigns, "campaigns_page": page.to_json()}


def page_resume_preview(preview: Mapping[str, Any], search: Search) -> dict[str, Any]:
    """The resume dry run with one page of its campaigns (filtered by account, action as `state`,
    and id or name), `campaigns_page` saying which, and `accounts`: per ad account how many campaigns
    resume would re-activate, leave, or could not decide (Meta unread), over all of them."""
    every = preview["campaigns"]
    rows = [
        c
        for c in every
        if _found(search, c["account_id"], c["campaign_id"], c["name"])
        and (not search.state or c["action"] == search.state)
    ]
    page = page_of(rows, search)
    accounts: dict[str, dict[str, Any]] = {}
    for c in every:
        row = accounts.setdefault(
            c["account_id"], {"account": c["account_id"], "campaigns": 0, **dict.fromkeys(PREVIEW_ACTIONS, 0)}
        )
        row["campaigns"] += 1
        row[c["action"]] += 1
    return {
        **preview,
        "campaigns": page.rows,
        "campaigns_page": page.to_json(),
        "accounts": [accounts[a] for a in sorted(accounts)],
    }
