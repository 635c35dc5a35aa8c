"""The one backoff formula (meta_modules.backoff), with each caller's parameters."""

from __future__ import annotations

import pytest

from meta_modules.backoff import delay


@pytest.mark.parametrize(
    "failures, expected", [(0, 0.0), (-1, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 8.0), (60, 8.0)]
)
def test_it_doubles_from_the_base_after_each_failure_up_to_the_cap(failures, expected) -> None:
    assert delay(failures, 0.5, 8.0) == expected


def test_without_a_cap_it_keeps_doubling() -> None:
    assert delay(11, 15) == 15 * 1024


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999])
def test_full_jitter_scales_the_capped_wait_by_the_draw(draw) -> None:
    assert delay(9, 0.5, 8.0, jitter=draw) == 8.0 * draw


def test_a_fixed_spread_may_take_the_wait_past_the_cap() -> None:
    assert delay(9, 60, 600, jitter=1.2) == pytest.approx(720)


@pytest.mark.parametrize("not_before, expected", [(0.0, 0.5), (0.4, 0.5), (3.0, 3.0)])
def test_it_waits_at_least_for_a_known_block(not_before, expected) -> None:
    assert delay(1, 0.5, 4.0, not_before=not_before) == expected


@pytest.mark.parametrize(
    "failures, not_before, seconds_left, expected",
    [
        (1, 0.0, 0.51, 0.5),
        (1, 0.0, 0.5, None),
        (3, 0.0, 2.0, None),
        (1, 0.0, -1.0, None),
        (1, 280.0, 15.0, None),  # blocked past the deadline: no time for another try
        (0, 0.0, 0.01, 0.0),
    ],
)
def test_with_a_deadline_it_gives_up_when_the_wait_would_not_leave_time(
    failures, not_before, seconds_left, expected
) -> None:
    assert delay(failures, 0.5, 4.0, not_before=not_before, seconds_left=seconds_left) == expected
