"""Account-local days, as small pure functions (no database, no clock: `now` is an argument).

Meta reports an ad account's "today", `date_preset=today` and its insights days in the
account's time zone (`timezone_name`), so every day the jobs mean is a local day of one
account. A local day is not always 24 hours long: a daylight-saving day has 23 or 25, and
its bounds are computed here as UTC instants so elapsed hours are real hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOUR = timedelta(hours=1)
UTC_ZONE = ZoneInfo("UTC")


def known_zone(name: str | None) -> ZoneInfo | None:
    """The zone of an IANA name such as "America/Los_Angeles"; None when blank or unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # not a key ("../x"), not a zone file, a folder
        return None


def zone(name: str | None) -> ZoneInfo:
    """The zone an account's days are counted in: its own, or UTC when blank or unknown."""
    return known_zone(name) or UTC_ZONE


def local_today(now: datetime, tz: ZoneInfo) -> date:
    """The local date in `tz` at the instant `now` (aware)."""
    return now.astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant the local `day` begins in `tz`.

    Where local midnight does not exist (a zone that springs forward at 00:00), the day begins
    at the transition; where it happens twice, at the first one (fold=0 does both)."""
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the local `day` in `tz`, as UTC instants."""
    return day_start(day, tz), day_start(day + timedelta(days=1), tz)


def day_hours(day: date, tz: ZoneInfo) -> float:
    """Length of the local `day` in hours: 24, or 23 / 25 on a daylight-saving change."""
    start, end = day_bounds(day, tz)
    return (end - start) / HOUR


def hours_elapsed(day: date, tz: ZoneInfo, at: datetime) -> float:
    """Real hours of the local `day` elapsed at the instant `at`: 0 before it begins, its
    length once it has ended."""
    start, end = day_bounds(day, tz)
    return (min(max(at, start), end) - start) / HOUR


def window(days: int, end: date) -> tuple[date, date]:
    """The `days` days ending on `end`, both included: a window of N days ends today, today included."""
    return end - timedelta(days=days - 1), end


# The zones furthest behind and ahead of UTC: Etc/GMT+12 and Pacific/Kiritimati.
EARLIEST_OFFSET, LATEST_OFFSET = timedelta(hours=-12), timedelta(hours=14)


def todays_anywhere(now: datetime) -> tuple[date, date]:
    """The first and last dates that are someone's local today at `now`: a cheap range filter
    before each account's own today is checked."""
    utc_now = now.astimezone(UTC)
    return (utc_now + EARLIEST_OFFSET).date(), (utc_now + LATEST_OFFSET).date()


def group_by_local_today(zones: Iterable[tuple[str, ZoneInfo]], now: datetime) -> dict[date, list[str]]:
    """Keys (account ids) grouped by their local today at `now`.

    Zones span UTC-12 to UTC+14, so there are at most three groups however many keys there
    are: a job runs its queries once per group, not once per account."""
    groups: dict[date, list[str]] = defaultdict(list)
    for key, tz in zones:
        groups[local_today(now, tz)].append(key)
    return dict(groups)
