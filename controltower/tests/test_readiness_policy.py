"""The readiness rules: facts in, verdicts out (no database, no Meta, no clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controltower import readiness_policy as policy

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
GOOD_TOKEN = policy.TokenFacts(
    checked=True, valid=True, type="SYSTEM_USER", scopes=("ads_management", "ads_read"), source="debug_token"
)
ALL_TASKS = ("MANAGE", "ADVERTISE", "ANALYZE", "DRAFT")


def account(**facts: object) -> policy.AccountFacts:
    base = policy.AccountFacts(
        account_id="act_1",
        reachable=True,
        account_status=1,
        user_tasks=ALL_TASKS,
        tier="standard_access",
        latency_ms=100.0,
        active_campaigns=120,
    )
    return replace(base, **facts)


def token(**facts: object) -> policy.TokenReadiness:
    return policy.token_readiness(replace(GOOD_TOKEN, **facts), NOW, warn_days=7)


def test_a_valid_never_expiring_token_with_ads_management_is_ready() -> None:
    assert token().verdict == policy.READY and not token().reasons


@pytest.mark.parametrize(
    ("facts", "verdict", "problem", "words"),
    [
        ({"valid": False, "error": "Session has expired"}, policy.NOT_READY, "invalid", "not valid"),
        ({"expires_at": NOW - timedelta(minutes=1)}, policy.NOT_READY, "expired", "expired"),
        ({"scopes": ("ads_read",)}, policy.NOT_READY, "permission", "lacks the ads_management"),
        ({"expires_at": NOW + timedelta(days=3)}, policy.DEGRADED, "expiring", "expires in 3 days"),
        ({"expires_at": NOW + timedelta(hours=5)}, policy.DEGRADED, "expiring", "expires in 5 h"),
        ({"data_access_expires_at": NOW + timedelta(days=2)}, policy.DEGRADED, "expiring", "data access expires"),
        ({"data_access_expires_at": NOW - timedelta(days=1)}, policy.NOT_READY, "expired", "data access has expired"),
        ({"scopes": None}, policy.DEGRADED, "scopes_unknown", "did not say which permissions"),
        ({"expires_at": NOW + timedelta(days=8)}, policy.READY, "", ""),
    ],
)
def test_the_token_verdict_names_the_cause(facts: dict, verdict: str, problem: str, words: str) -> None:
    found = token(**facts)

    assert (found.verdict, found.problem) == (verdict, problem)
    assert words in " ".join(found.reasons)


def test_a_token_meta_could_not_be_asked_about_is_not_ready() -> None:
    found = policy.token_readiness(policy.TokenFacts(checked=False, error="connection refused"), NOW, 7)

    assert found.verdict == policy.NOT_READY and "connection refused" in found.reasons[0]


def test_the_headroom_is_the_stops_own_arithmetic() -> None:
    # Development tier: 60 points, writes up to 90 % (54); 1 point used, 1 listing page → 17 pauses.
    room = policy.headroom(30, "development_access", used_pct=1.67, latency_ms=100.0, item_ms=20.0)

    assert (room.max_points, room.list_pages, room.at_once, room.pending) == (60, 1, 17, 13)
    assert room.seconds == round((2 * 100 + 17 * 20) / 1000, 2)  # 1 listing + 1 batch, 17 items


def test_on_the_standard_tier_thousands_fit_but_not_every_number() -> None:
    fits = policy.headroom(2_000, "standard_access", used_pct=0.0, latency_ms=None, item_ms=20.0)
    too_many = policy.headroom(3_000, "standard_access", used_pct=0.0, latency_ms=None, item_ms=20.0)

    assert (fits.at_once, fits.pending, fits.seconds) == (2_000, 0, None)
    # 8,100 points for writes, less the 30 listing pages: 2,690 pauses.
    assert (too_many.at_once, too_many.pending) == (2_690, 310)


def test_with_nothing_reported_every_pause_goes_in_batches_sized_to_the_strictest_window() -> None:
    # No usage headers yet (Meta sends them once enough calls were made): nothing counts against
    # the window, batches of 18 (90 % of 60 points at 3 each) one after the other.
    room = policy.headroom(30, "", 0.0, latency_ms=100.0, item_ms=0.0)

    assert (room.max_points, room.at_once, room.pending) == (60, 30, 0)
    assert room.seconds == 0.3  # 1 listing + 2 batches


def test_a_reported_usage_without_a_tier_counts_against_the_strictest_window() -> None:
    assert policy.headroom(30, "", 10.0, None, 0.0).at_once == 15  # (54 - 6 - 1) // 3


def test_campaigns_the_listing_returns_besides_the_active_ones_cost_their_pages() -> None:
    # 100 ACTIVE and 2 PAUSED WITH_ISSUES: the stop lists 102, two pages.
    room = policy.headroom(100, "development_access", 0.0, None, 0.0, listed=102)

    assert (room.list_pages, room.at_once) == (2, 17)  # (54 - 2) // 3


def test_a_block_pauses_nothing_at_once() -> None:
    assert policy.headroom(30, "standard_access", 100.0, None, 0.0, blocked=True).at_once == 0


@pytest.mark.parametrize(
    ("facts", "verdict", "words"),
    [
        ({"reachable": False, "error": "(#100) cannot be loaded"}, policy.NOT_READY, "cannot be read"),
        ({"user_tasks": ("ANALYZE",)}, policy.NOT_READY, "may not edit this account (its tasks: ANALYZE"),
        ({"account_status": 2}, policy.NOT_READY, "is DISABLED"),
        ({"account_status": 101}, policy.NOT_READY, "is CLOSED"),
        ({"account_status": 9}, policy.DEGRADED, "is IN_GRACE_PERIOD"),
        ({"user_tasks": None}, policy.DEGRADED, "did not say what the token's user may do"),
        ({"tier": "development_access", "active_campaigns": 5}, policy.DEGRADED, "development tier"),
        ({"active_campaigns": 3_000}, policy.DEGRADED, "would pause 2690 of its 3000 ACTIVE campaigns at once"),
        ({"mirror_stale": True}, policy.DEGRADED, "were never synced (module 10.2): the counts may be old"),
        ({"user_tasks": ("ADVERTISE",)}, policy.READY, ""),
    ],
)
def test_the_account_verdict_names_the_cause(facts: dict, verdict: str, words: str) -> None:
    found = policy.account_readiness(account(**facts), item_ms=20.0)

    assert found.verdict == verdict
    assert words in " ".join(found.reasons)


def test_overall_is_ready_with_the_sentence_the_dashboard_shows() -> None:
    accounts = [policy.account_readiness(account(account_id=f"act_{i}", active_campaigns=100), 20.0) for i in range(12)]

    found = policy.overall(token(), accounts, parallelism=150)

    assert found.verdict == policy.READY
    # Each account: 1 listing page + 2 batches at 100 ms, 100 items at 20 ms; accounts in parallel.
    assert found.summary == "READY: a stop now would pause 1,200 campaigns in 12 accounts in about 2.3 s."
    assert (found.paused_at_once, found.left_pending, found.out_of_reach) == (1_200, 0, 0)


def test_one_account_not_editable_degrades_and_its_campaigns_are_out_of_reach() -> None:
    accounts = [
        policy.account_readiness(account(account_id="act_1"), 20.0),
        policy.account_readiness(account(account_id="act_2", user_tasks=("ANALYZE",), active_campaigns=7), 20.0),
    ]

    found = policy.overall(token(), accounts, parallelism=150)

    assert found.verdict == policy.DEGRADED
    assert (found.paused_at_once, found.left_pending, found.out_of_reach) == (120, 0, 7)
    assert "7 could not be paused" in found.summary
    assert any("act_2: the token's user may not edit" in r for r in found.reasons)


def test_no_account_editable_or_a_dead_token_is_not_ready() -> None:
    blocked = [policy.account_readiness(account(user_tasks=("ANALYZE",)), 20.0)]
    good = [policy.account_readiness(account(), 20.0)]

    assert policy.overall(token(), blocked, 150).verdict == policy.NOT_READY
    assert policy.overall(token(), [], 150).verdict == policy.NOT_READY
    dead = policy.overall(token(valid=False), good, 150)
    assert dead.verdict == policy.NOT_READY and dead.summary.startswith("NOT READY: Meta says the access token")


def test_an_expiring_token_degrades_an_otherwise_ready_stop() -> None:
    found = policy.overall(token(expires_at=NOW + timedelta(days=2)), [policy.account_readiness(account(), 20.0)], 150)

    assert found.verdict == policy.DEGRADED and found.summary.startswith("DEGRADED: a stop now would pause 120")


def test_the_last_stops_slowness_scales_the_estimate_never_speeds_it() -> None:
    assert policy.stop_factor(18.6, 5.3) == 3.51
    assert policy.stop_factor(0.5, 2.0) == 1.0  # faster than Meta's part: Meta's part stands
    assert policy.stop_factor(None, 2.0) is None and policy.stop_factor(3.0, None) is None
    accounts = [policy.account_readiness(account(), 20.0)]

    found = policy.overall(token(), accounts, 150, factor=3.5)

    # 120 campaigns: 2 listing pages + 3 batches at 100 ms, 120 items at 20 ms.
    assert (found.meta_seconds, found.stop_factor, found.estimated_seconds) == (2.9, 3.5, 10.2)
    assert "in about 10.2 s" in found.summary


def test_while_halted_the_summary_speaks_of_the_re_sweeps_and_resume_not_of_a_stop() -> None:
    found = policy.overall(token(), [policy.account_readiness(account(), 20.0)], 150, halted=True)

    assert (
        found.summary == "READY: halted; the token and 1 account let the kill switch re-sweep and resume re-activate."
    )


def test_accounts_beyond_the_parallelism_take_rounds() -> None:
    assert policy.stop_seconds([1.0, 3.0, 2.0, None], parallelism=2) == 4.0  # (3, 2) then (1): the slowest of each
    assert policy.stop_seconds([None], parallelism=2) is None
