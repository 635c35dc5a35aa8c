"""The recovery rules and restart discipline, at their boundaries (pure: no database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controltower.recovery_policy import (
    Action,
    Facts,
    History,
    Policy,
    RecoveryProcedure,
    backoff,
    breaker_open,
    decide,
    procedures,
)

POLICY = Policy(
    auto_execute_threshold=0.85,
    error_threshold=50,
    backoff_base=timedelta(seconds=30),
    backoff_cap=timedelta(minutes=10),
    max_attempts=3,
    window=timedelta(hours=6),
    reset_after_healthy=timedelta(minutes=10),
    breaker_share=0.5,
)
OK = Facts(
    status="online",
    stopped_on_purpose=False,
    desired_running=True,
    is_scheduler_running=True,
    is_db_healthy=True,
    error_count_24h=0,
    last_error="",
)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _actions(facts: Facts) -> list[tuple[Action, float]]:
    return [(p.action, p.confidence) for p in procedures(facts, POLICY)]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({}, []),
        ({"is_scheduler_running": False, "status": "offline"}, [(Action.RESTART_SCHEDULER, 0.95)]),
        ({"status": "offline"}, [(Action.RESTART_SCHEDULER, 0.90)]),
        ({"is_db_healthy": False, "status": "degraded"}, [(Action.RECONNECT_DB, 0.85)]),
        ({"error_count_24h": 50}, []),
        ({"error_count_24h": 51, "status": "degraded"}, [(Action.RESET_MODULE, 0.75)]),
        (
            {"last_error": "MetaError: Meta invalid error 100/33: Object with ID '1' does not exist"},
            [(Action.CLEAR_CACHE, 0.85)],
        ),
        ({"status": "offline", "error_count_24h": 60}, [(Action.RESTART_SCHEDULER, 0.90), (Action.RESET_MODULE, 0.75)]),
        ({"stopped_on_purpose": True, "status": "stopped", "is_scheduler_running": False}, []),
        ({"desired_running": False, "is_scheduler_running": False}, []),  # never against the operator's wish
    ],
)
def test_procedures(change: dict, expected: list) -> None:
    assert _actions(replace(OK, **change)) == expected


def test_backoff_doubles_from_the_base_up_to_the_cap_with_a_fixed_jitter() -> None:
    gaps = [backoff(n, "10.2", POLICY) for n in range(1, 8)]
    assert gaps[0] >= timedelta(seconds=30) and gaps[1] >= timedelta(seconds=60)
    assert all(later >= earlier for earlier, later in zip(gaps, gaps[1:]))
    assert gaps[-1] <= timedelta(minutes=10) * 1.2
    assert backoff(1, "10.2", POLICY) == backoff(1, "10.2", POLICY)  # deterministic
    assert backoff(1, "10.2", POLICY) != backoff(1, "10.3", POLICY)  # spread between modules
    assert backoff(0, "10.2", POLICY) == timedelta(0)


RESTART = RecoveryProcedure(Action.RESTART_SCHEDULER, 0.95, "scheduler not running")
RESET = RecoveryProcedure(Action.RESET_MODULE, 0.75, "errors")


def test_it_executes_at_the_threshold_and_only_recommends_below() -> None:
    verdict = decide([RESTART, RESET], History(0, None, False), NOW, "10.2", POLICY)
    assert verdict.execute == RESTART and verdict.recommend == [RESET] and not verdict.escalate
    at_threshold = RecoveryProcedure(Action.RECONNECT_DB, 0.85, "db")
    assert decide([at_threshold], History(0, None, False), NOW, "10.2", POLICY).execute == at_threshold
    assert decide([RESET], History(0, None, False), NOW, "10.2", POLICY).execute is None


def test_it_backs_off_between_attempts() -> None:
    gap = backoff(1, "10.2", POLICY)
    too_soon = decide([RESTART], History(1, NOW - gap + timedelta(seconds=1), False), NOW, "10.2", POLICY)
    assert too_soon.execute is None and "backing off" in too_soon.note
    assert decide([RESTART], History(1, NOW - gap, False), NOW, "10.2", POLICY).execute == RESTART


def test_after_the_last_attempt_it_escalates_then_keeps_quiet() -> None:
    escalated = decide([RESTART], History(3, NOW - timedelta(hours=1), False), NOW, "10.2", POLICY)
    assert escalated.execute is None and escalated.escalate
    quiet = decide([RESTART], History(3, NOW - timedelta(hours=1), True), NOW, "10.2", POLICY)
    assert quiet.execute is None and not quiet.escalate


@pytest.mark.parametrize("failing, supervised, is_open", [(8, 17, False), (9, 17, True), (10, 17, True), (0, 0, False)])
def test_the_breaker_opens_above_the_share(failing: int, supervised: int, is_open: bool) -> None:
    assert breaker_open(failing, supervised, POLICY) is is_open
