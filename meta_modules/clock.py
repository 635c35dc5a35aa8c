"""The tower's business clock: the "now" of the module jobs and of each ad account's "today".

Why one small clock rather than patching `django.utils.timezone.now` in tests: Django itself
(sessions, auth, axes, model defaults bound at import) reads that function, so patching it
moves far more than business time and misses every reference bound before the patch. The jobs
read this clock once per run (`RunContext.now`), and the "today" filters of the dashboard and
the admin read it too, so a test replays any hour of any day by `freeze(...)`, together with
the sandbox's own business clock, and nothing else moves.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

_frozen: datetime | None = None


def now() -> datetime:
    """The current instant (aware), or the one `freeze` fixed."""
    return _frozen if _frozen is not None else timezone.now()


def freeze(at: datetime | None) -> None:
    """Fix the clock at the aware instant `at`, or give it back to real time with None (tests)."""
    if at is not None and at.tzinfo is None:
        raise ValueError("The tower clock takes aware datetimes only.")
    global _frozen
    _frozen = at
