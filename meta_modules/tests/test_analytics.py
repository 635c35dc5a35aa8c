"""The pure arithmetic of the module jobs, at its boundaries."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meta_modules import analytics
from meta_modules.analytics import AdStats

D = Decimal


def test_action_value_prefers_omni_purchase_and_falls_back_to_purchase() -> None:
    both = [
        {"action_type": "link_click", "value": "40"},
        {"action_type": "purchase", "value": "3"},
        {"action_type": "omni_purchase", "value": "4"},
    ]
    assert analytics.action_value(both) == "4"
    assert analytics.action_value([{"action_type": "purchase", "value": "3"}]) == "3"
    assert analytics.action_value([{"action_type": "link_click", "value": "40"}]) is None
    assert analytics.action_value(None) is None


def test_roas_is_a_ratio_of_sums_and_undefined_without_spend() -> None:
    assert analytics.roas(D("800.00"), D("400.00")) == D("2.0000")
    assert analytics.roas(D("0"), D("10.00")) == D("0")
    assert analytics.roas(D("50.00"), D("0")) is None


def test_rates_are_zero_without_a_denominator() -> None:
    assert analytics.ctr(5, 100) == 0.05 and analytics.ctr(5, 0) == 0.0
    assert analytics.cvr(2, 50) == 0.04 and analytics.cvr(2, 0) == 0.0
    assert analytics.cost_per(D("100.00"), 3) == D("33.33") and analytics.cost_per(D("100.00"), 0) is None


@pytest.mark.parametrize(
    ("roas", "proposed"),
    [
        (D("2.21"), 12_000),  # above target × 1.1: raise by the step
        (D("2.20"), None),  # on the band's edge: no change
        (D("2.00"), None),
        (D("1.80"), None),
        (D("1.79"), 8_000),  # below target × 0.9: cut by the step
        (None, None),  # no spend, no ROAS: no opinion
    ],
)
def test_budget_step_moves_only_outside_the_band(roas: Decimal | None, proposed: int | None) -> None:
    step = analytics.budget_step(10_000, roas, target=2.0, band=0.1, step=0.2)
    assert (step.proposed_cents if step else None) == proposed


def test_budget_step_rounds_the_change_toward_zero() -> None:
    step = analytics.budget_step(333, D("5"), target=2.0, band=0.1, step=0.2)
    assert step is not None and step.proposed_cents == 399  # +66, not +67: never more than the step
    assert analytics.within_change_limit(333, step.proposed_cents, 0.2)
    assert analytics.budget_step(4, D("5"), target=2.0, band=0.1, step=0.2) is None  # a change of 0 cents


def test_change_limit_is_inclusive_and_exact() -> None:
    assert analytics.within_change_limit(10_000, 12_000, 0.2)
    assert analytics.within_change_limit(10_000, 8_000, 0.2)
    assert not analytics.within_change_limit(10_000, 12_001, 0.2)
    assert not analytics.within_change_limit(10_000, 7_999, 0.2)


def test_clamp_budget_applies_max_change_floor_and_ceiling() -> None:
    assert analytics.clamp_budget(10_000, 12_000, 1_000, 100_000, 0.5) == 12_000
    assert analytics.clamp_budget(10_000, 30_000, 1_000, 100_000, 0.5) == 15_000  # max change
    assert analytics.clamp_budget(10_000, 12_000, 1_000, 11_000, 0.5) == 11_000  # ceiling
    assert analytics.clamp_budget(10_000, 8_000, 9_000, 100_000, 0.5) == 9_000  # floor
    # Already below the floor: a cut must not turn into a raise.
    assert analytics.clamp_budget(500, 400, 1_000, 100_000, 0.5) == 500
    assert analytics.clamp_budget(20_000, 24_000, 1_000, 15_000, 0.5) == 20_000


def test_hours_have_a_one_hour_minimum_and_exposure_starts_at_creation() -> None:
    start = datetime(2026, 11, 25, tzinfo=UTC)
    assert analytics.hours_between(start, start + timedelta(minutes=10)) == 1.0
    assert analytics.hours_between(start, start + timedelta(hours=5, minutes=30)) == 5.5
    end = start + timedelta(days=7)
    assert analytics.exposure_hours(None, start, end) == 168.0
    assert analytics.exposure_hours(start - timedelta(days=30), start, end) == 168.0
    assert analytics.exposure_hours(end - timedelta(days=2), start, end) == 48.0
    assert analytics.exposure_hours(end + timedelta(hours=3), start, end) == 1.0  # created today


def test_spike_needs_the_ratio_and_the_minimum_spend() -> None:
    ratio = analytics.spike_ratio(D("3.0000"), D("1.0000"))
    assert ratio == 3.0
    assert analytics.is_spike(ratio, D("50.00"), 3.0, D("50.00"))  # both limits inclusive
    assert not analytics.is_spike(ratio, D("49.99"), 3.0, D("50.00"))
    assert not analytics.is_spike(analytics.spike_ratio(D("2.9999"), D("1")), D("500"), 3.0, D("50"))
    assert analytics.spike_ratio(D("5"), D("0")) is None
    assert not analytics.is_spike(None, D("500"), 3.0, D("50"))
    assert analytics.hourly_rate(D("168.00"), 168.0) == D("1.0000")


def test_weak_audience_is_above_the_factor_or_spends_without_purchases() -> None:
    # Account: 300.00 for 10 purchases = 30.00 each; 1.5× = 45.00.
    assert analytics.is_weak_audience(D("45.01"), 1, D("300"), 10, 1.5)
    assert not analytics.is_weak_audience(D("45.00"), 1, D("300"), 10, 1.5)
    assert analytics.is_weak_audience(D("0.01"), 0, D("300"), 10, 1.5)
    assert not analytics.is_weak_audience(D("0"), 0, D("300"), 10, 1.5)


def test_rank_by_ctr_breaks_ties_by_conversion_rate_then_id() -> None:
    ads = [
        AdStats("a", "s", 1000, 20, 1),
        AdStats("b", "s", 1000, 30, 1),
        AdStats("c", "s", 1000, 30, 3),
        AdStats("d", "s", 1000, 30, 3),
    ]
    assert [a.ad_id for a in analytics.rank_by_ctr(ads)] == ["c", "d", "b", "a"]


@pytest.mark.parametrize(("last_clicks", "fatigued"), [(159, True), (160, False), (170, False)])
def test_fatigue_is_a_drop_of_more_than_the_limit(last_clicks: int, fatigued: bool) -> None:
    # Previous CTR 2.00%; 1.60% is exactly 20% lower: not fatigue.
    verdict = analytics.fatigue((10_000, 200), (10_000, last_clicks), max_drop=0.2, min_impressions=1000)
    assert (verdict is not None) == fatigued
    if verdict:
        assert verdict.drop_pct == 20.5 and verdict.ctr_previous == 0.02


def test_fatigue_needs_enough_impressions_in_both_windows() -> None:
    assert analytics.fatigue((999, 100), (10_000, 10), 0.2, 1000) is None
    assert analytics.fatigue((10_000, 200), (999, 1), 0.2, 1000) is None
    assert analytics.fatigue((1000, 200), (1000, 10), 0.2, 1000) is not None
    assert analytics.fatigue((1000, 0), (1000, 0), 0.2, 1000) is None  # no clicks: nothing to lose


def test_normal_cdf_matches_known_values() -> None:
    assert analytics.normal_cdf(0) == 0.5
    assert math.isclose(analytics.normal_cdf(1.959964), 0.975, abs_tol=1e-6)
    assert math.isclose(analytics.normal_cdf(-1.644854), 0.05, abs_tol=1e-6)


def test_two_proportion_z_test_matches_a_hand_computation() -> None:
    # 100/1000 vs 50/1000: pooled 0.075, se = sqrt(0.075·0.925·0.002) = 0.011779, z = 4.2447.
    test = analytics.two_proportion_z_test(100, 1000, 50, 1000)
    assert math.isclose(test.z, 4.2447, abs_tol=1e-4)
    assert test.p_value < 0.0001
    near_tie = analytics.two_proportion_z_test(52, 1000, 50, 1000)
    assert math.isclose(near_tie.p_value, 0.8391, abs_tol=1e-3)
    assert analytics.two_proportion_z_test(1, 0, 1, 10) is None
    assert analytics.two_proportion_z_test(0, 10, 0, 10) is None  # no variance


def test_best_two_by_cvr_ignores_ads_without_clicks() -> None:
    ads = [AdStats("a", "s", 1000, 100, 5), AdStats("b", "s", 1000, 100, 9), AdStats("c", "s", 1000, 0, 0)]
    assert [a.ad_id for a in analytics.best_two_by_cvr(ads)] == ["b", "a"]
    assert analytics.best_two_by_cvr(ads[:1] + ads[2:]) is None


def test_templates_fill_with_the_ads_copy_literally() -> None:
    assert 3 <= len(analytics.COPY_TEMPLATES) <= 4
    assert len({t.key for t in analytics.COPY_TEMPLATES}) == len(analytics.COPY_TEMPLATES)
    for template in analytics.COPY_TEMPLATES:
        headline, body = analytics.fill_template(template, " Made  to {last} ", "Shop today.")
        assert "Made to {last}" in headline and "Shop today." in body
    long_headline, _ = analytics.fill_template(analytics.COPY_TEMPLATES[0], "x" * 400, "")
    assert len(long_headline) == analytics.HEADLINE_MAX


def test_creative_brief_defaults_its_call_to_action_and_format() -> None:
    brief = analytics.creative_brief("H", "B", "123", {"call_to_action_type": "SHOP_NOW"})
    assert brief == {
        "headline": "H",
        "body": "B",
        "source_ad": "123",
        "call_to_action": "SHOP_NOW",
        "format": "single_image",
    }
    assert analytics.creative_brief("H", "B", "123", {})["call_to_action"] == "LEARN_MORE"
