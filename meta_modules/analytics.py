"""The arithmetic of the module jobs, as small pure functions (no database, no Meta, no clock).

Ratios of sums, never means of ratios: ROAS = Σ purchase value / Σ spend, CTR = Σ clicks /
Σ impressions, and so on, whatever the grouping (Meta's insights are sums; its ratio fields are ratios of those sums).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from typing import Any

# Meta reports purchases under both; omni_purchase de-duplicates across web, app and offline.
PURCHASE_ACTION_TYPES = ("omni_purchase", "purchase")
HOUR = timedelta(hours=1)


# --- Parsing Meta's insights --------------------------------------------------------------


def action_value(
    entries: Iterable[Mapping[str, Any]] | None, types: Sequence[str] = PURCHASE_ACTION_TYPES
) -> str | None:
    """The value of the first action type of `types` present in an actions/action_values list."""
    found = {entry.get("action_type"): entry.get("value") for entry in entries or ()}
    for action_type in types:
        if found.get(action_type) is not None:
            return str(found[action_type])
    return None


# --- Ratios -------------------------------------------------------------------------------


def ctr(clicks: int, impressions: int) -> float:
    """Click-through rate as a fraction; 0 without impressions."""
    return clicks / impressions if impressions else 0.0


def cvr(purchases: int, clicks: int) -> float:
    """Conversion rate (purchases per click) as a fraction; 0 without clicks."""
    return purchases / clicks if clicks else 0.0


def roas(purchase_value: Decimal, spend: Decimal) -> Decimal | None:
    """Return on ad spend from sums; None when nothing was spent (undefined, not zero)."""
    if not spend:
        return None
    return (Decimal(purchase_value) / Decimal(spend)).quantize(Decimal("0.0001"))


def cost_per(spend: Decimal, count: int) -> Decimal | None:
    """Spend per purchase (or any event); None when there were none."""
    if not count:
        return None
    return (Decimal(spend) / count).quantize(Decimal("0.01"))


# --- 10.6 / 10.7: budgets -------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetStep:
    proposed_cents: int
    reason: str


def budget_step(
    current_cents: int, roas_value: Decimal | None, target: float, band: float, step: float
) -> BudgetStep | None:
    """Raise the budget by `step` when ROAS beats the target by more than `band`, cut it when it
    falls short by more than `band`, else leave it (None). The change is rounded toward zero,
    so it never exceeds `step`."""
    if roas_value is None or current_cents <= 0:
        return None
    roas_value, target_d, band_d = Decimal(roas_value), Decimal(str(target)), Decimal(str(band))
    delta = int((Decimal(current_cents) * Decimal(str(step))).to_integral_value(rounding=ROUND_DOWN))
    if delta == 0:
        return None
    if roas_value > target_d * (1 + band_d):
        return BudgetStep(
            current_cents + delta, f"ROAS {roas_value} above target {target} (+{band:.0%} band): raise {step:.0%}"
        )
    if roas_value < target_d * (1 - band_d):
        return BudgetStep(
            current_cents - delta, f"ROAS {roas_value} below target {target} (−{band:.0%} band): cut {step:.0%}"
        )
    return None


def within_change_limit(current_cents: int, proposed_cents: int, limit: float) -> bool:
    """Whether the relative change stays within `limit` (exact, no float rounding)."""
    return abs(proposed_cents - current_cents) <= Decimal(current_cents) * Decimal(str(limit))


def clamp_budget(
    current_cents: int, proposed_cents: int, floor_cents: int, ceiling_cents: int, max_change: float
) -> int:
    """The budget the guardrails allow: at most `max_change` away from the current one, within
    [floor, ceiling]. Never moves against the proposal: a cut the floor turns into a raise is no change."""
    reach = int((Decimal(current_cents) * Decimal(str(max_change))).to_integral_value(rounding=ROUND_DOWN))
    limited = min(max(proposed_cents, current_cents - reach), current_cents + reach)
    bounded = min(max(limited, floor_cents), ceiling_cents)
    if (bounded - current_cents) * (proposed_cents - current_cents) <= 0:
        return current_cents
    return bounded


# --- 10.9: spend spikes ---------------------------------------------------------------------


# A rate over the first minutes of a day is noise: rates are over at least this many hours.
MIN_HOURS = 1.0


def hours_between(start: datetime, end: datetime, minimum: float = MIN_HOURS) -> float:
    """Elapsed hours (aware instants: real hours across daylight-saving changes), at least `minimum`."""
    return max(minimum, (end - start) / HOUR)


def exposure_hours(created: datetime | None, window_start: datetime, window_end: datetime) -> float:
    """Hours of the window the campaign existed: a campaign launched two days ago has a two-day baseline."""
    start = max(window_start, created) if created else window_start
    return hours_between(start, window_end)


def hourly_rate(spend: Decimal, hours: float) -> Decimal:
    return (Decimal(spend) / Decimal(str(hours))).quantize(Decimal("0.0001"))


def spike_ratio(rate_today: Decimal, baseline_rate: Decimal) -> float | None:
    """Today's hourly spend rate over the baseline's; None without a baseline (nothing to compare)."""
    if baseline_rate <= 0:
        return None
    return float(rate_today / baseline_rate)


def is_spike(ratio: float | None, spend_today: Decimal, min_ratio: float, min_spend: Decimal) -> bool:
    """A spike needs both: a rate `min_ratio`× the baseline and enough money at stake."""
    return ratio is not None and ratio >= min_ratio and spend_today >= min_spend


# --- 10.12: audiences -----------------------------------------------------------------------


def is_weak_audience(
    spend: Decimal, purchases: int, account_spend: Decimal, account_purchases: int, factor: float
) -> bool:
    """Weak: money spent without a purchase, or a cost per purchase above `factor`× the account's
    (Σ spend / Σ purchases over all its ad sets)."""
    if spend <= 0:
        return False
    if purchases == 0:
        return True
    # spend/purchases > factor · account_spend/account_purchases, cross-multiplied to stay exact.
    return Decimal(spend) * account_purchases > Decimal(str(factor)) * Decimal(account_spend) * purchases


# --- 10.13: creative ranking ----------------------------------------------------------------


@dataclass(frozen=True)
class AdStats:
    ad_id: str
    adset_id: str
    impressions: int
    clicks: int
    purchases: int

    @property
    def ctr(self) -> float:
        return ctr(self.clicks, self.impressions)

    @property
    def cvr(self) -> float:
        return cvr(self.purchases, self.clicks)


def rank_by_ctr(ads: Iterable[AdStats]) -> list[AdStats]:
    """Best first: CTR, then conversion rate, then the ad id so the order is stable."""
    return sorted(ads, key=lambda a: (-a.ctr, -a.cvr, a.ad_id))


# --- 10.15: creative fatigue ----------------------------------------------------------------


@dataclass(frozen=True)
class Fatigue:
    ctr_previous: float
    ctr_last: float
    drop_pct: float


def fatigue(previous: tuple[int, int], last: tuple[int, int], max_drop: float, min_impressions: int) -> Fatigue | None:
    """Fatigue when the CTR of the last window is more than `max_drop` below the previous one.

    `previous` and `last` are (impressions, clicks); both windows need `min_impressions`."""
    (prev_impressions, prev_clicks), (last_impressions, last_clicks) = previous, last
    if min(prev_impressions, last_impressions) < max(min_impressions, 1) or prev_clicks == 0:
        return None
    # Exact fractions: a drop of exactly `max_drop` is not fatigue, whatever float rounding says.
    before, after = Fraction(prev_clicks, prev_impressions), Fraction(last_clicks, last_impressions)
    drop = (before - after) / before
    if drop <= Fraction(str(max_drop)):
        return None
    return Fatigue(float(before), float(after), round(float(drop) * 100, 2))


# --- 10.16: winners -------------------------------------------------------------------------


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@dataclass(frozen=True)
class ZTest:
    z: float
    p_value: float


def two_proportion_z_test(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> ZTest | None:
    """Two-sided pooled z-test of p_a = p_b; None when it is undefined (no trials, no variance)."""
    if trials_a <= 0 or trials_b <= 0:
        return None
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    if se == 0:
        return None
    z = (successes_a / trials_a - successes_b / trials_b) / se
    return ZTest(z, 2 * (1 - normal_cdf(abs(z))))


def best_two_by_cvr(ads: Iterable[AdStats]) -> tuple[AdStats, AdStats] | None:
    """The leader and runner-up by conversion rate among ads with clicks (ties: more purchases, id)."""
    ranked = sorted((a for a in ads if a.clicks > 0), key=lambda a: (-a.cvr, -a.purchases, a.ad_id))
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


# --- 10.10 / 10.17: copy ----------------------------------------------------------------------


@dataclass(frozen=True)
class CopyTemplate:
    key: str
    headline: str
    body: str


# Fixed, reviewed copy patterns; {title} and {body} come from the source ad's creative.
COPY_TEMPLATES: tuple[CopyTemplate, ...] = (
    CopyTemplate("benefit", "{title}", "{body} See why it's worth it."),
    CopyTemplate("urgency", "{title} – limited time", "{body} Offer ends soon."),
    CopyTemplate("social_proof", "Customers love it: {title}", "{body} Join thousands of happy customers."),
    CopyTemplate("question", "Still looking? {title}", "{body} Find out more today."),
)
HEADLINE_MAX = 255


def fill_template(template: CopyTemplate, title: str, body: str) -> tuple[str, str]:
    """(headline, body) of a template filled with an ad's copy; braces in the copy are kept literally."""
    values = {"title": " ".join(title.split()), "body": " ".join(body.split())}
    headline = template.headline.format(**values).strip()[:HEADLINE_MAX]
    return headline, template.body.format(**values).strip()


def creative_brief(headline: str, body: str, source_ad: str, creative: Mapping[str, Any]) -> dict[str, Any]:
    """What production needs to make one creative from a copy variant."""
    return {
        "headline": headline,
        "body": body,
        "source_ad": source_ad,
        "call_to_action": creative.get("call_to_action_type") or "LEARN_MORE",
        "format": creative.get("format") or "single_image",
    }
