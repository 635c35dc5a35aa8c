"""The kill switch endpoints' throttle: a dry run counts against its own budget, not the real one's.

The budgets themselves (scopes, rates, the shared counter) are the tower's: controltower.rate_limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from controltower.rate_limits import PREVIEW_SCOPE, TowerWriteThrottle


def is_dry_run(body: Any) -> bool:
    """Only a body the stop would run as a dry run: anything else counts as a real stop."""
    return isinstance(body, Mapping) and body.get("dry_run") is True


class KillSwitchThrottle(TowerWriteThrottle):
    """The view's budget (stop or resume) for real requests, PREVIEW_SCOPE's for dry runs. The body is
    parsed here, outside the cache guard, so a malformed body is its 400 (and counts against neither budget)."""

    def allow_request(self, request: Any, view: Any) -> bool:
        scope = PREVIEW_SCOPE if is_dry_run(request.data) else view.throttle_scope
        return super().allow_request(request, SimpleNamespace(throttle_scope=scope))
