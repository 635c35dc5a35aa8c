"""How the console writes an instant: in the tower's time zone (TIME_ZONE) with the zone named, so
no time on a page is ambiguous; console.js adds the reader's own local time on hover."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

TEXT_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


def zoned(instant: datetime) -> str:
    """'2026-12-03 05:40:12 UTC': the instant in the tower's zone, with the zone's name."""
    return timezone.localtime(instant).strftime(TEXT_FORMAT)


def iso(instant: datetime) -> str:
    """'2026-12-03T05:40:12+00:00': ISO 8601 with the offset, as <time datetime> wants it
    (whole seconds: HTML allows at most three fraction digits)."""
    return timezone.localtime(instant).isoformat(timespec="seconds")
