"""Auto-recovery rules as pure functions: which procedure fits a module's facts, and whether
the restart policy lets it run now.

Procedures (spec): scheduler not running while the module should run → RESTART_SCHEDULER
0.95; OFFLINE → RESTART_SCHEDULER 0.90; database unhealthy → RECONNECT_DB 0.85; errors
pointing at objects that no longer exist (stale cached ids) → CLEAR_CACHE 0.85; more than
RECOVERY_ERROR_THRESHOLD errors in 24 h → RESET_MODULE 0.75. Only procedures at or above
RECOVERY_AUTO_EXECUTE_THRESHOLD run by themselves; the rest are recommendations.

Restart discipline (Kubernetes / supervisord): exponential backoff between attempts, at most
RECOVERY_MAX_ATTEMPTS per RECOVERY_WINDOW_SECONDS, then the module "needs a human" and is
escalated once (ALERT_ADMIN) and left alone until an operator acts or it has been healthy for
RECOVERY_RESET_AFTER_HEALTHY_SECONDS. A global breaker stops all restarts when more than
RECOVERY_BREAKER_SHARE of the modules fail at once (broker or database outage): one escalation.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings

import meta_modules.backoff


class Action(StrEnum):
    RESTART_SCHEDULER = "restart_scheduler"
    CLEAR_CACHE = "clear_cache"
    RECONNECT_DB = "reconnect_db"
    RESET_MODULE = "reset_module"
    ALERT_ADMIN = "alert_admin"


@dataclass(frozen=True)
class RecoveryProcedure:
    action: Action
    confidence: float
    reason: str


@dataclass(frozen=True)
class Facts:
    """What the procedures depend on, for one module."""

    status: str
    stopped_on_purpose: bool
    desired_running: bool
    is_scheduler_running: bool
    is_db_healthy: bool
    error_count_24h: int
    last_error: str


@dataclass(frozen=True)
class Policy:
    auto_execute_threshold: float
    error_threshold: int
    backoff_base: timedelta
    backoff_cap: timedelta
    max_attempts: int
    window: timedelta
    reset_after_healthy: timedelta
    breaker_share: float

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(
            auto_execute_threshold=settings.RECOVERY_AUTO_EXECUTE_THRESHOLD,
            error_threshold=settings.RECOVERY_ERROR_THRESHOLD,
            backoff_base=timedelta(seconds=settings.RECOVERY_BACKOFF_BASE_SECONDS),
            backoff_cap=timedelta(seconds=settings.RECOVERY_BACKOFF_CAP_SECONDS),
            max_attempts=settings.RECOVERY_MAX_ATTEMPTS,
            window=timedelta(seconds=settings.RECOVERY_WINDOW_SECONDS),
            reset_after_healthy=timedelta(seconds=settings.RECOVERY_RESET_AFTER_HEALTHY_SECONDS),
            breaker_share=settings.RECOVERY_BREAKER_SHARE,
        )


# Meta's "object does not exist" (100/33) and unknown-path errors: the module works from ids
# that went away — typically a stale cached list.
STALE_MARKERS = ("error 100/33", "does not exist", "Unknown path components")


def procedures(f: Facts, policy: Policy) -> list[RecoveryProcedure]:
    """Every procedure that fits, most confident first. None for a module stopped on purpose."""
    if f.stopped_on_purpose or not f.desired_running:
        return []
    found: list[RecoveryProcedure] = []
    if not f.is_scheduler_running:
        found.append(
            RecoveryProcedure(Action.RESTART_SCHEDULER, 0.95, "scheduler not running although the module should run")
        )
    elif f.status == "offline":
        found.append(RecoveryProcedure(Action.RESTART_SCHEDULER, 0.90, "module OFFLINE"))
    if not f.is_db_healthy:
        found.append(RecoveryProcedure(Action.RECONNECT_DB, 0.85, "database unhealthy"))
    if any(marker in f.last_error for marker in STALE_MARKERS):
        found.append(
            RecoveryProcedure(Action.CLEAR_CACHE, 0.85, "errors about objects that no longer exist (stale cache)")
        )
    if f.error_count_24h > policy.error_threshold:
        found.append(RecoveryProcedure(Action.RESET_MODULE, 0.75, f"{f.error_count_24h} errors in 24 h"))
    return sorted(found, key=lambda p: -p.confidence)


def backoff(attempts: int, code: str, policy: Policy) -> timedelta:
    """Wait before the next attempt after `attempts` attempts: doubling from the base, capped,
    with a fixed per-module jitter (0–20 %) so modules failing together do not retry together."""
    spread = 1 + (zlib.crc32(code.encode()) % 1000) / 5000
    return timedelta(
        seconds=meta_modules.backoff.delay(
            attempts, policy.backoff_base.total_seconds(), policy.backoff_cap.total_seconds(), jitter=spread
        )
    )


@dataclass(frozen=True)
class History:
    """A module's recent recovery history, as counted from its attempts."""

    attempts_in_window: int
    last_attempt_at: datetime | None
    needs_human: bool


@dataclass(frozen=True)
class Verdict:
    execute: RecoveryProcedure | None  # at most one action per module per check
    recommend: list[RecoveryProcedure]
    escalate: bool  # mark "needs a human" and alert admins (once)
    note: str


def decide(procs: list[RecoveryProcedure], history: History, now: datetime, code: str, policy: Policy) -> Verdict:
    automatic = [p for p in procs if p.confidence >= policy.auto_execute_threshold]
    recommend = [p for p in procs if p.confidence < policy.auto_execute_threshold]
    if not automatic:
        return Verdict(None, recommend, False, "nothing to do automatically" if recommend else "")
    if history.needs_human:
        return Verdict(None, procs, False, "needs a human: left alone until an operator acts")
    if history.attempts_in_window >= policy.max_attempts:
        return Verdict(None, procs, True, f"{history.attempts_in_window} attempts within {policy.window}: escalated")
    if history.last_attempt_at is not None:
        next_at = history.last_attempt_at + backoff(history.attempts_in_window, code, policy)
        if now < next_at:
            return Verdict(None, procs, False, f"backing off until {next_at:%H:%M:%S} UTC")
    return Verdict(automatic[0], recommend + automatic[1:], False, automatic[0].reason)


def breaker_open(failing: int, supervised: int, policy: Policy) -> bool:
    """Too many modules failing at once: the cause is shared (broker, database) — no restarts."""
    return supervised > 0 and failing / supervised > policy.breaker_share
