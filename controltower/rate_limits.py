"""Per-user rate limits on writes (emergency stop, resume, commands, recovery), shared by the API,
the console and the admin: one counter per user and scope, whichever door the request came in by.

Module start/stop/restart (API, console and admin) are commands: they count against the "command" scope.

DRF's ScopedRateThrottle, counted per user and scope in the shared cache (CACHES["default"]),
with the rate read from the Django settings at request time rather than frozen into the class
when DRF is imported: KILL_SWITCH_THROTTLE_RATE for emergency-stop and resume,
KILL_SWITCH_PREVIEW_THROTTLE_RATE for an emergency-stop or resume dry run (a preview must not use
up the real one's budget: an operator who previewed twice must not wait to stop), COMMAND_THROTTLE_RATE
for command and recovery. An empty rate switches the scope's throttle off.
A refused request gets 429 with Retry-After. Throttling is a brake on runaway scripts and
double-clicks, not a security boundary (DRF: non-atomic counters): when the cache cannot be
reached (Redis down) the request is let through, so an emergency stop never depends on it.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle

logger = logging.getLogger(__name__)

PREVIEW_SCOPE = "emergency_stop_preview"
RATE_SETTINGS = {
    "emergency_stop": "KILL_SWITCH_THROTTLE_RATE",
    PREVIEW_SCOPE: "KILL_SWITCH_PREVIEW_THROTTLE_RATE",
    "resume": "KILL_SWITCH_THROTTLE_RATE",
    "command": "COMMAND_THROTTLE_RATE",
    "recovery": "COMMAND_THROTTLE_RATE",
}


class TowerWriteThrottle(ScopedRateThrottle):
    def get_rate(self) -> str | None:
        name = RATE_SETTINGS.get(self.scope)
        if name is None:
            return super().get_rate()
        return getattr(settings, name, None) or None

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - the cache backend's own errors (redis, file system) have no common base
            logger.warning(
                "Throttle for %s not applied: the cache is unavailable (%s: %s)", self.scope, type(exc).__name__, exc
            )
            return True


def seconds_to_wait(request: Any, scope: str) -> float | None:
    """For the console's and the admin's forms: the same per-user counter as the API endpoint of
    `scope`. None = go ahead; otherwise the seconds to wait."""
    throttle = TowerWriteThrottle()
    if throttle.allow_request(request, SimpleNamespace(throttle_scope=scope)):
        return None
    return throttle.wait() or 1.0
