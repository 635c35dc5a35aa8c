"""The daily budget at stake in a stop or a resume, per ad account and per currency (pure rules)."""

from __future__ import annotations

import pytest

from controltower.stakes import Stakes, budget_minor, of_account, per_currency, summary


@pytest.mark.parametrize("value, minor", [("5000", 5000), (5000, 5000), ("0", None), ("", None), (None, None)])
def test_it_reads_metas_budgets_in_minor_units_with_zero_as_unset(value, minor) -> None:
    assert budget_minor(value) == minor


@pytest.mark.parametrize("value", ["50.00", "abc", "-100"])
def test_it_refuses_a_budget_it_cannot_read_rather_than_guess(value) -> None:
    with pytest.raises(ValueError):
        budget_minor(value)


def test_it_counts_campaigns_without_a_campaign_daily_budget_apart_not_as_zero_spend() -> None:
    row = of_account(
        "act_1",
        "USD",
        [
            {"daily_budget": "5000"},
            {"daily_budget": "2550"},
            {"daily_budget": "0", "lifetime_budget": "90000"},
            {"daily_budget": "0"},
            {},
        ],
    )

    assert row == Stakes(
        "act_1", "USD", campaigns=5, daily_budget_minor=7550, adset_budget_campaigns=2, lifetime_budget_campaigns=1
    )
    assert row.daily_budget == "75.50 USD"


def test_it_totals_per_currency_and_never_adds_currencies_together() -> None:
    rows = [
        of_account("act_1", "USD", [{"daily_budget": "5000"}]),
        of_account("act_2", "JPY", [{"daily_budget": "3000"}]),
        of_account("act_3", "USD", [{"daily_budget": "1000"}, {}]),
    ]

    totals = per_currency(rows)

    assert [(t.currency, t.campaigns, t.daily_budget_minor, t.adset_budget_campaigns) for t in totals] == [
        ("JPY", 1, 3000, 0),
        ("USD", 3, 6000, 1),
    ]
    assert [t.daily_budget for t in totals] == ["3,000 JPY", "60.00 USD"]  # JPY has no minor unit
    assert summary(totals) == "3,000 JPY + 60.00 USD a day; 1 campaign on ad-set or lifetime budgets not counted"


def test_it_says_so_when_nothing_is_at_stake() -> None:
    assert per_currency([]) == [] and summary([]) == "no daily budget"
