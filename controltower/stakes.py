"""What a stop or a resume puts at stake: the daily budget of the campaigns it pauses or
re-activates, per ad account and per currency (pure: campaigns in, figures out).

Meta gives budgets as strings in the account currency's minor units ("5000" = 50.00 USD), "0"
or absent when unset. A campaign without a campaign daily budget spends through its ad sets'
budgets, or a lifetime budget: it is counted apart and said so, never as 0 spend. Amounts in
different currencies are never added together: totals are per currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from meta_modules.money import minor_units


@dataclass(frozen=True)
class Stakes:
    """Campaigns of one ad account (or, with account "", the total of one currency)."""

    account: str
    currency: str
    campaigns: int = 0
    daily_budget_minor: int = 0  # the sum of the campaigns' own daily budgets
    adset_budget_campaigns: int = 0  # no campaign budget: their ad sets' budgets spend
    lifetime_budget_campaigns: int = 0

    @property
    def daily_budget(self) -> str:
        return minor_units(self.daily_budget_minor, self.currency)

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "currency": self.currency,
            "campaigns": self.campaigns,
            "daily_budget_minor": self.daily_budget_minor,
            "daily_budget": self.daily_budget,
            "adset_budget_campaigns": self.adset_budget_campaigns,
            "lifetime_budget_campaigns": self.lifetime_budget_campaigns,
        }


def budget_minor(value: Any) -> int | None:
    """A Meta budget field in minor units; None when unset ("0" or absent). Raises ValueError on
    anything else than a whole number: a figure shown to an operator is never guessed."""
    if value in (None, "", "0", 0):
        return None
    amount = int(str(value))
    if amount < 0:
        raise ValueError(f"negative budget {value!r}")
    return amount


def of_account(account: str, currency: str, campaigns: Iterable[Mapping[str, Any]]) -> Stakes:
    daily, count, adset, lifetime = 0, 0, 0, 0
    for campaign in campaigns:
        count += 1
        budget = budget_minor(campaign.get("daily_budget"))
        if budget is not None:
            daily += budget
        elif budget_minor(campaign.get("lifetime_budget")) is not None:
            lifetime += 1
        else:
            adset += 1
    return Stakes(account, currency, count, daily, adset, lifetime)


def per_currency(accounts: Iterable[Stakes]) -> list[Stakes]:
    """One total per currency, in currency order."""
    totals: dict[str, Stakes] = {}
    for row in accounts:
        seen = totals.get(row.currency, Stakes("", row.currency))
        totals[row.currency] = replace(
            seen,
            campaigns=seen.campaigns + row.campaigns,
            daily_budget_minor=seen.daily_budget_minor + row.daily_budget_minor,
            adset_budget_campaigns=seen.adset_budget_campaigns + row.adset_budget_campaigns,
            lifetime_budget_campaigns=seen.lifetime_budget_campaigns + row.lifetime_budget_campaigns,
        )
    return [totals[currency] for currency in sorted(totals)]


def summary(totals: Iterable[Stakes]) -> str:
    """One line for a message: "1,200.00 EUR + 800.00 USD a day; 3 campaigns on ad-set or lifetime
    budgets not counted"."""
    totals = list(totals)
    if not totals:
        return "no daily budget"
    others = sum(t.adset_budget_campaigns + t.lifetime_budget_campaigns for t in totals)
    return (
        " + ".join(t.daily_budget for t in totals)
        + " a day"
        + (
            f"; {others} campaign{'s' if others != 1 else ''} on ad-set or lifetime budgets not counted"
            if others
            else ""
        )
    )
