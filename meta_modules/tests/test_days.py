"""Account-local days: zones behind, ahead of and at UTC, half-hour zones, daylight-saving days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest

from meta_modules import days

LA, BERLIN, KOLKATA = ZoneInfo("America/Los_Angeles"), ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_it_reads_a_blank_or_unknown_zone_as_utc() -> None:
    assert days.zone("America/Los_Angeles") is LA
    for name in ("", None, "Mars/Olympus_Mons", "../etc/passwd", "America", "zone.tab"):
        assert days.zone(name) is days.UTC_ZONE, name
        assert days.known_zone(name) is None, name
    assert days.known_zone("UTC") is days.UTC_ZONE


@pytest.mark.parametrize(
    ("tz", "instant", "today"),
    [
        (LA, utc(2024, 3, 12, 2, 0), date(2024, 3, 11)),  # behind UTC: still yesterday at 02:00 UTC
        (LA, utc(2024, 3, 12, 7, 0), date(2024, 3, 12)),  # PDT: midnight is 07:00 UTC
        (KOLKATA, utc(2024, 3, 11, 18, 29, 59), date(2024, 3, 11)),  # +05:30: midnight is 18:30 UTC the day before
        (KOLKATA, utc(2024, 3, 11, 18, 30), date(2024, 3, 12)),
        (ZoneInfo("Pacific/Kiritimati"), utc(2024, 3, 11, 10, 0), date(2024, 3, 12)),  # +14
        (ZoneInfo("Pacific/Pago_Pago"), utc(2024, 3, 11, 10, 0), date(2024, 3, 10)),  # -11
        (days.UTC_ZONE, utc(2024, 3, 11, 23, 59, 59), date(2024, 3, 11)),
    ],
)
def test_it_knows_the_local_today_of_an_instant(tz: ZoneInfo, instant: datetime, today: date) -> None:
    assert days.local_today(instant, tz) == today


@pytest.mark.parametrize(
    ("tz", "day", "start", "hours"),
    [
        (LA, date(2024, 3, 9), utc(2024, 3, 9, 8), 24),
        (LA, date(2024, 3, 10), utc(2024, 3, 10, 8), 23),  # spring forward: PST midnight, PDT next midnight
        (LA, date(2024, 3, 11), utc(2024, 3, 11, 7), 24),
        (LA, date(2024, 11, 3), utc(2024, 11, 3, 7), 25),  # fall back
        (BERLIN, date(2024, 3, 31), utc(2024, 3, 30, 23), 23),
        (BERLIN, date(2024, 10, 27), utc(2024, 10, 26, 22), 25),
        (KOLKATA, date(2024, 3, 12), utc(2024, 3, 11, 18, 30), 24),
        (ZoneInfo("Australia/Lord_Howe"), date(2024, 10, 6), utc(2024, 10, 5, 13, 30), 23.5),  # a half-hour DST shift
        # Santiago springs forward at midnight: 00:00 never happens, the day begins at 01:00 (-03).
        (ZoneInfo("America/Santiago"), date(2024, 9, 8), utc(2024, 9, 8, 4), 23),
    ],
)
def test_a_local_day_has_its_utc_bounds_and_its_real_length(
    tz: ZoneInfo, day: date, start: datetime, hours: float
) -> None:
    assert days.day_start(day, tz) == start
    assert days.day_bounds(day, tz) == (start, start + timedelta(hours=hours))
    assert days.day_hours(day, tz) == hours
    assert days.local_today(start, tz) == day and days.local_today(start - timedelta(seconds=1), tz) == day - timedelta(
        days=1
    )


def test_hours_elapsed_count_real_hours_across_a_daylight_saving_change() -> None:
    spring, fall = date(2024, 3, 10), date(2024, 11, 3)
    assert days.hours_elapsed(spring, LA, utc(2024, 3, 10, 19)) == 11  # noon PDT: an hour was skipped
    assert days.hours_elapsed(fall, LA, utc(2024, 11, 3, 20)) == 13  # noon PST: an hour was repeated
    assert days.hours_elapsed(date(2024, 3, 12), KOLKATA, utc(2024, 3, 11, 20)) == 1.5
    assert days.hours_elapsed(spring, LA, utc(2024, 3, 10, 7)) == 0  # before the day
    assert days.hours_elapsed(spring, LA, utc(2024, 3, 12)) == 23  # after it: all of it


def test_a_window_of_n_days_ends_on_its_last_day_included() -> None:
    assert days.window(7, date(2024, 3, 12)) == (date(2024, 3, 6), date(2024, 3, 12))
    assert days.window(1, date(2024, 3, 1)) == (date(2024, 3, 1), date(2024, 3, 1))


def test_accounts_are_grouped_by_their_local_today() -> None:
    zones = [("la", LA), ("utc", days.UTC_ZONE), ("berlin", BERLIN), ("kolkata", KOLKATA), ("la2", LA)]

    assert days.group_by_local_today(zones, utc(2024, 3, 12, 2)) == {
        date(2024, 3, 11): ["la", "la2"],
        date(2024, 3, 12): ["utc", "berlin", "kolkata"],
    }
    assert days.group_by_local_today(zones, utc(2024, 3, 12, 20)) == {
        date(2024, 3, 12): ["la", "utc", "berlin", "la2"],
        date(2024, 3, 13): ["kolkata"],
    }
    assert days.group_by_local_today([], utc(2024, 3, 12)) == {}


def test_there_are_never_more_than_three_local_todays_at_once() -> None:
    zones = [(name, ZoneInfo(name)) for name in available_timezones()]
    for hour in range(0, 48, 5):
        assert len(days.group_by_local_today(zones, utc(2024, 3, 30) + timedelta(hours=hour))) <= 3


def test_todays_anywhere_spans_exactly_the_local_todays_of_every_zone() -> None:
    zones = [ZoneInfo(name) for name in available_timezones()]
    for hour in range(0, 48, 5):
        now = utc(2024, 3, 30) + timedelta(hours=hour)
        local = {days.local_today(now, tz) for tz in zones}
        assert (min(local), max(local)) == days.todays_anywhere(now)
