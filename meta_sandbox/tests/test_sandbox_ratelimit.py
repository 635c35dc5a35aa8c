"""Unit tests of the sandbox's per-ad-account score (pure logic, injected clock)."""

from __future__ import annotations

import pytest

from meta_sandbox.ratelimit import (
    DEFAULT_TIERS,
    READ_POINTS,
    WRITE_POINTS,
    RateLimiter,
    TierParams,
    parse_tier_params,
)

ACCOUNT = "act_1000000001"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def development(limiter: RateLimiter, **params: float) -> None:
    limiter.configure({ACCOUNT: "development"}, parse_tier_params({"development": params}))


def test_defaults_match_meta_tiers() -> None:
    assert DEFAULT_TIERS["development"] == TierParams(max_points=60, decay_s=300, block_s=300, hourly_base=300)
    assert DEFAULT_TIERS["standard"] == TierParams(max_points=9000, decay_s=300, block_s=60, hourly_base=100_000)
    assert DEFAULT_TIERS["development"].hourly_quota(active_ads=10) == 700  # 300 + 40 x active ads
    assert (READ_POINTS, WRITE_POINTS) == (1, 3)


def test_score_sums_points_and_reports_utilisation(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    development(limiter)
    for _ in range(10):
        decision = limiter.charge(ACCOUNT, WRITE_POINTS)
        clock.advance(1)
    assert decision.allowed
    assert decision.usage.util_pct == 50.0
    assert decision.usage.access_tier == "development_access"
    # The newest point was charged 1 s ago and leaves the window 300 s after it was charged.
    assert limiter.usage(ACCOUNT).reset_time_duration == 299
    assert limiter.snapshot(ACCOUNT)["score"] == 30


def test_points_decay_out_of_the_window(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    development(limiter)
    for _ in range(20):
        assert limiter.charge(ACCOUNT, WRITE_POINTS).allowed  # exactly 60 points
    clock.advance(299)
    assert limiter.usage(ACCOUNT).util_pct == 100.0
    clock.advance(1)
    usage = limiter.usage(ACCOUNT)
    assert (usage.util_pct, usage.reset_time_duration) == (0.0, 0)
    assert limiter.charge(ACCOUNT, WRITE_POINTS).allowed


def test_exceeding_the_max_blocks_then_access_is_regained(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    development(limiter, block_s=90)
    for _ in range(20):
        assert limiter.charge(ACCOUNT, WRITE_POINTS).allowed
    first = limiter.charge(ACCOUNT, READ_POINTS)
    assert not first.allowed and first.started_block
    assert first.usage.blocked and first.usage.reset_time_duration == 90
    assert first.usage.regain_minutes == 2  # minutes, rounded up

    clock.advance(30)
    during = limiter.charge(ACCOUNT, READ_POINTS)
    assert not during.allowed and not during.started_block
    assert during.usage.reset_time_duration == 60 and during.usage.regain_minutes == 1
    assert limiter.snapshot(ACCOUNT)["rejected_while_blocked"] == 1
    assert limiter.snapshot(ACCOUNT)["blocked_until"] == pytest.approx(clock.now + 60)

    clock.advance(60)
    after = limiter.charge(ACCOUNT, WRITE_POINTS)
    assert after.allowed and not after.usage.blocked
    assert after.usage.util_pct == 5.0  # the block wiped the score
    assert limiter.snapshot(ACCOUNT)["blocked_until"] is None


def test_accounts_and_tiers_are_independent(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    development(limiter, max=3)
    assert limiter.charge(ACCOUNT, WRITE_POINTS).allowed
    assert not limiter.charge(ACCOUNT, READ_POINTS).allowed
    other = limiter.charge("act_2", WRITE_POINTS)
    assert other.allowed and other.usage.tier == "standard"
    assert other.usage.util_pct == round(3 / 9000 * 100, 2)


def test_configure_keeps_scores_and_clear_forgets_them(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    limiter.charge(ACCOUNT, WRITE_POINTS)
    development(limiter)
    assert limiter.usage(ACCOUNT).util_pct == 5.0
    limiter.clear()
    assert limiter.snapshot(ACCOUNT) == {
        "tier": "development",
        "score": 0,
        "calls_this_hour": 0,
        "hourly_quota": 300,
        "blocked_until": None,
        "rejected_while_blocked": 0,
    }


def test_it_rejects_calls_beyond_the_hourly_quota_until_one_leaves_the_hour(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    development(limiter, hourly_base=10, per_active_ad=1, max=10_000)
    for _ in range(12):  # quota 10 + 1 x 2 active ads
        assert limiter.charge(ACCOUNT, READ_POINTS, active_ads=2).allowed
        clock.advance(100)
    assert limiter.usage(ACCOUNT, active_ads=2).call_count_pct == 100.0
    first = limiter.charge(ACCOUNT, READ_POINTS, active_ads=2)
    assert not first.allowed and first.started_block
    assert first.usage.blocked_for == pytest.approx(3600 - 1200) and first.usage.regain_minutes == 40
    assert not limiter.charge(ACCOUNT, READ_POINTS, active_ads=2).allowed
    assert limiter.snapshot(ACCOUNT)["rejected_while_blocked"] == 1
    clock.advance(2400)
    after = limiter.charge(ACCOUNT, READ_POINTS, active_ads=2)
    assert after.allowed and after.usage.call_count_pct == round(12 / 12 * 100, 2)


def test_it_keeps_the_insights_scope_apart_with_its_own_params(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    limiter.configure(
        {ACCOUNT: "development"}, parse_tier_params({}), parse_tier_params({"development": {"max": 2, "block_s": 30}})
    )
    assert limiter.charge(ACCOUNT, READ_POINTS, "ads_insights").allowed
    assert limiter.charge(ACCOUNT, READ_POINTS, "ads_insights").allowed
    assert not limiter.charge(ACCOUNT, READ_POINTS, "ads_insights").allowed
    assert limiter.charge(ACCOUNT, WRITE_POINTS).allowed  # ads_management is untouched
    assert limiter.snapshot(ACCOUNT, "ads_insights")["blocked_until"] == pytest.approx(clock.now + 30)
    assert limiter.snapshot(ACCOUNT)["score"] == 3


@pytest.mark.parametrize(
    "overrides",
    [{"premium": {"max": 1}}, {"development": {"max": 0}}, {"development": {"burst": 1}}, {"development": 5}],
)
def test_bad_tier_params_are_rejected(overrides: dict) -> None:
    with pytest.raises(ValueError):
        parse_tier_params(overrides)
