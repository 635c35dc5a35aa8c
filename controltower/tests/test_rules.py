"""The health rules, at their boundaries (pure functions: no database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controltower import rules
from controltower.models import ModuleStatus as M
from controltower.models import SystemStatus as S
from controltower.rules import (
    HaltScope,
    Leave,
    ModuleSignals,
    ResumeVerdict,
    Thresholds,
    halt_needs_sweep,
    halt_scope,
    is_overdue,
    is_running,
    module_status,
    reactivated_unanswered,
    resume_verdict,
    retry_delay,
    snapshot,
    system_status,
)

T = Thresholds(
    online_success_rate=0.95,
    offline_success_rate=0.70,
    max_errors_24h=50,
    overdue_grace=timedelta(minutes=10),
    starting_grace=timedelta(minutes=30),
)
HEALTHY = ModuleSignals(
    stopped_on_purpose=False,
    is_scheduler_running=True,
    has_finished_run=True,
    first_run_overdue=False,
    success_rate=1.0,
    error_count_24h=0,
    is_db_healthy=True,
    is_api_healthy=True,
)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({}, M.ONLINE),
        ({"success_rate": 0.95}, M.ONLINE),
        ({"success_rate": 0.9499}, M.DEGRADED),
        ({"success_rate": 0.70}, M.DEGRADED),
        ({"success_rate": 0.6999}, M.OFFLINE),
        ({"success_rate": 0.60}, M.OFFLINE),  # 40 % failures
        ({"success_rate": None}, M.ONLINE),  # no run in 24 h but ran before and not overdue
        ({"error_count_24h": 50}, M.ONLINE),
        ({"error_count_24h": 51}, M.DEGRADED),
        ({"is_db_healthy": False}, M.DEGRADED),
        ({"is_api_healthy": False}, M.DEGRADED),
        ({"is_scheduler_running": False}, M.OFFLINE),
        ({"has_finished_run": False, "success_rate": None}, M.UNKNOWN),
        ({"has_finished_run": False, "is_scheduler_running": False}, M.OFFLINE),
        ({"stopped_on_purpose": True, "is_scheduler_running": False, "success_rate": 0.0}, M.STOPPED),
    ],
)
def test_module_status(change: dict, expected: M) -> None:
    assert module_status(replace(HEALTHY, **change), T) == expected


@pytest.mark.parametrize(
    "statuses, halted, expected",
    [
        ([M.ONLINE] * 17, False, S.HEALTHY),
        ([M.ONLINE] * 16 + [M.STOPPED], False, S.HEALTHY),
        ([M.ONLINE] * 16 + [M.DEGRADED], False, S.DEGRADED),
        ([M.ONLINE] * 15 + [M.DEGRADED, M.UNKNOWN], False, S.DEGRADED),
        ([M.ONLINE] * 14 + [M.DEGRADED] * 2 + [M.UNKNOWN], False, S.DEGRADED),  # UNKNOWN: starting, not degraded
        ([M.ONLINE] * 14 + [M.DEGRADED] * 3, False, S.CRITICAL),
        ([M.ONLINE] * 16 + [M.OFFLINE], False, S.CRITICAL),
        ([M.ONLINE] * 17, True, S.EMERGENCY_STOP),
        ([M.OFFLINE] * 17, True, S.EMERGENCY_STOP),
    ],
)
def test_system_status(statuses: list[M], halted: bool, expected: S) -> None:
    assert system_status(statuses, halted) == expected


def test_overdue_only_past_interval_plus_grace() -> None:
    last = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    hour, grace = timedelta(hours=1), timedelta(minutes=10)
    assert not is_overdue(last, hour, grace, last + hour + grace)
    assert is_overdue(last, hour, grace, last + hour + grace + timedelta(seconds=1))
    assert not is_overdue(None, hour, grace, last + timedelta(days=9))


@pytest.mark.parametrize(
    "stops, expected",
    [
        ([{}], HaltScope(stop_schedulers=True, pause_campaigns=True, accounts=None)),  # recorded before parameters
        ([{"ad_account_ids": ["act_2", "act_1"]}], HaltScope(True, True, ("act_1", "act_2"))),
        ([{"ad_account_ids": ["act_1"]}, {"ad_account_ids": ["act_3"]}], HaltScope(True, True, ("act_1", "act_3"))),
        (
            [{"ad_account_ids": ["act_1"]}, {"ad_account_ids": None}],
            HaltScope(True, True, None),
        ),  # a later stop widens it
        (
            [{"pause_campaigns": False, "ad_account_ids": None}, {"ad_account_ids": ["act_1"]}],
            HaltScope(True, True, ("act_1",)),
        ),
        ([{"pause_campaigns": False, "stop_schedulers": False}], HaltScope(False, False, ())),
        ([{"stop_schedulers": False}, {"stop_schedulers": True}], HaltScope(True, True, None)),
    ],
)
def test_a_halt_covers_the_union_of_what_its_stops_asked_for(stops: list[dict], expected: HaltScope) -> None:
    assert halt_scope(stops) == expected


STOP = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "halted, swept_at, starting, busy, expected",
    [
        (True, None, False, False, True),  # never completed, nobody on it: its process died
        (True, STOP - timedelta(seconds=1), False, False, True),  # completed before a later stop only
        (True, STOP, False, False, False),  # a whole sweep began with (or after) the latest stop and finished
        (True, None, True, False, False),  # the stop is still within its own deadline
        (True, None, False, True, False),  # a sweeper holds the kill switch
        (False, None, False, False, False),  # resumed: nothing to finish
    ],
)
def test_a_halt_needs_a_sweep_only_when_incomplete_and_abandoned(
    halted: bool, swept_at: datetime | None, starting: bool, busy: bool, expected: bool
) -> None:
    assert halt_needs_sweep(halted, STOP, swept_at, starting, busy) is expected


PAUSED_AT = "2026-11-25T10:00:00+0000"
SNAPSHOT = {"name": "Summer Sale", "daily_budget": "5000", "lifetime_budget": "", "spend_cap": ""}
AS_PAUSED = {
    "status": "PAUSED",
    "updated_time": PAUSED_AT,
    "name": "Summer Sale",
    "daily_budget": "5000",
    "lifetime_budget": "0",
}


@pytest.mark.parametrize(
    "current, leave, reason",
    [
        (AS_PAUSED, None, ""),
        ({**AS_PAUSED, "updated_time": "2026-11-25T10:00:01+0000"}, Leave.EDITED, "edited on Meta since the stop"),
        ({**AS_PAUSED, "daily_budget": "9000"}, Leave.EDITED, "edited on Meta since the stop (daily_budget changed)"),
        ({**AS_PAUSED, "spend_cap": "100000"}, Leave.EDITED, "edited on Meta since the stop (spend_cap changed)"),
        (
            {**AS_PAUSED, "lifetime_budget": "30000", "daily_budget": "0"},
            Leave.EDITED,
            "edited on Meta since the stop (daily_budget, lifetime_budget changed)",
        ),
        (
            {**AS_PAUSED, "status": "ACTIVE", "updated_time": "2026-11-25T10:00:01+0000"},
            Leave.ACTIVE_AGAIN,
            "already ACTIVE again",
        ),
        (
            {**AS_PAUSED, "status": "ARCHIVED", "updated_time": "2026-11-25T10:00:01+0000"},
            Leave.ARCHIVED,
            "ARCHIVED since the stop",
        ),
        (
            {**AS_PAUSED, "status": "DELETED", "updated_time": "2026-11-25T10:00:01+0000"},
            Leave.DELETED,
            "DELETED since the stop",
        ),
        (None, Leave.DELETED, "no longer on Meta"),
    ],
)
def test_resume_verdict_re_activates_only_a_campaign_paused_as_our_pause_left_it(current, leave, reason: str) -> None:
    verdict = resume_verdict("ACTIVE", PAUSED_AT, SNAPSHOT, current)
    assert verdict.leave == leave and verdict.reason.startswith(reason) and verdict.reactivate == (leave is None)


def test_resume_verdict_without_a_confirmed_pause_never_re_activates() -> None:
    verdict = resume_verdict("ACTIVE", "", {}, {"status": "PAUSED", "updated_time": ""})
    assert verdict == ResumeVerdict(Leave.UNCONFIRMED, "pause was never confirmed by Meta")


@pytest.mark.parametrize("prior_status", ["PAUSED", "ARCHIVED", ""])
def test_resume_verdict_never_re_activates_a_campaign_not_configured_active_before_the_stop(prior_status: str) -> None:
    verdict = resume_verdict(prior_status, PAUSED_AT, SNAPSHOT, AS_PAUSED)
    assert verdict.leave == Leave.NOT_ACTIVE_BEFORE and verdict.reason.startswith("configured")
    assert "not ACTIVE" in verdict.reason


@pytest.mark.parametrize(
    "campaign, running",
    [
        ({"status": "ACTIVE", "effective_status": "ACTIVE"}, True),
        ({"status": "ACTIVE", "effective_status": "WITH_ISSUES"}, True),
        ({"status": "ACTIVE", "effective_status": "IN_PROCESS"}, True),
        ({"status": "PAUSED", "effective_status": "WITH_ISSUES"}, False),
        ({"status": "PAUSED", "effective_status": "IN_PROCESS"}, False),
        ({"effective_status": "ACTIVE"}, False),
    ],
)
def test_only_a_campaign_configured_active_counts_as_running(campaign, running: bool) -> None:
    assert is_running(campaign) is running


def test_a_snapshot_keeps_what_updated_time_does_not_see_with_unset_budgets_blank() -> None:
    assert snapshot({"id": "1", "name": "A", "daily_budget": "0", "lifetime_budget": "30000", "status": "PAUSED"}) == {
        "name": "A",
        "daily_budget": "",
        "lifetime_budget": "30000",
    }


@pytest.mark.parametrize(
    "current, done",
    [
        ({"status": "ACTIVE"}, True),
        ({"status": "PAUSED"}, False),
        ({"status": "ARCHIVED"}, False),
        (None, False),
    ],
)
def test_a_re_activation_whose_answer_was_lost_took_effect_only_if_the_campaign_reads_active(current, done) -> None:
    assert reactivated_unanswered(current) is done


@pytest.mark.parametrize(
    "attempt, seconds_left, delay",
    [
        (1, 10.0, 0.5),
        (2, 10.0, 1.0),
        (3, 10.0, 2.0),
        (4, 10.0, 4.0),
        (9, 10.0, 4.0),  # doubling, capped
        (1, 0.5, None),
        (1, 0.51, 0.5),
        (3, 2.0, None),
        (1, -1.0, None),  # no time left to try again
    ],
)
def test_retry_delay_doubles_to_its_cap_and_gives_up_at_the_deadline(attempt, seconds_left, delay) -> None:
    assert retry_delay(attempt, seconds_left) == delay


@pytest.mark.parametrize(
    "not_before, seconds_left, delay",
    [
        (0.0, 10.0, 0.5),
        (3.0, 10.0, 3.0),  # an account blocked for 3 s: not before it lifts
        (280.0, 15.0, None),  # blocked past the deadline: no point waiting in the request
    ],
)
def test_retry_delay_waits_for_a_known_block_or_gives_up_if_it_outlasts_the_deadline(
    not_before, seconds_left, delay
) -> None:
    assert retry_delay(1, seconds_left, not_before) == delay


def test_a_run_records_per_campaign_list_is_capped_once() -> None:
    items = [f"c{i}" for i in range(250)]
    written = rules.capped(items, limit=100)
    assert len(written) == 101 and written[-1] == "… and 150 more — see the run's campaigns"
    assert rules.capped(written, limit=100) == written  # shown as written, not "… and 1 more"
    assert rules.capped(items[:100], limit=100) == items[:100]
    assert rules.capped(items[:101], limit=100)[-1] == "… and 1 more — see the run's campaigns"
