"""Real probes of what the modules depend on: database, broker, workers, the Meta Graph API.

Each returns what it observed, including its failure; none raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from controltower import queue
from meta_modules import graph


@dataclass
class DatabaseHealth:
    healthy: bool
    probe_ms: float | None
    error: str = ""
    # PostgreSQL only (null elsewhere): connections open to this database, those running a
    # query, and the mean active time per transaction from pg_stat_database.
    pool_size: int | None = None
    active_connections: int | None = None
    query_avg_ms: float | None = None


def database() -> DatabaseHealth:
    """A real round trip, timed; healthy when it answers within DB_HEALTHY_LATENCY_MS."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
            probe_ms = round((time.perf_counter() - started) * 1000, 2)
            health = DatabaseHealth(healthy=probe_ms <= settings.DB_HEALTHY_LATENCY_MS, probe_ms=probe_ms)
            if not health.healthy:
                health.error = (
                    f"Database answered in {probe_ms:.0f} ms (limit {settings.DB_HEALTHY_LATENCY_MS:.0f} ms)."
                )
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),"
                    " (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'),"
                    " (SELECT active_time / NULLIF(xact_commit + xact_rollback, 0) FROM pg_stat_database"
                    "  WHERE datname = current_database())"
                )
                pool, active, avg_ms = cursor.fetchone()
                health.pool_size, health.active_connections = pool, active
                health.query_avg_ms = round(avg_ms, 3) if avg_ms is not None else None
            return health
    except Exception as exc:  # noqa: BLE001 - reporting the failure is the probe's job
        return DatabaseHealth(healthy=False, probe_ms=None, error=f"{type(exc).__name__}: {exc}")


def broker() -> dict[str, Any]:
    """Can a connection to the Celery broker be opened right now?"""
    started = time.perf_counter()
    try:
        with queue.connection():
            pass
        return {
            "ok": True,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "error": "",
            "at": timezone.now().isoformat(),
        }
    except Exception as exc:  # noqa: BLE001 - any failure is the probe's answer, not the cycle's end
        return {"ok": False, "ms": None, "error": f"{type(exc).__name__}: {exc}", "at": timezone.now().isoformat()}


def workers() -> dict[str, Any]:
    """Worker names answering a broadcast ping (where the broker supports broadcast)."""
    from config.celery import app

    try:
        with queue.connection() as conn:
            replies = app.control.inspect(timeout=settings.WORKER_PING_TIMEOUT_SECONDS, connection=conn).ping() or {}
        return {"ok": bool(replies), "names": sorted(replies), "error": "", "at": timezone.now().isoformat()}
    except Exception as exc:  # noqa: BLE001 - a broker that cannot be asked: workers unknown, not dead
        return {"ok": None, "names": [], "error": f"{type(exc).__name__}: {exc}", "at": timezone.now().isoformat()}


def meta_api() -> dict[str, Any]:
    """One real Graph API call (`GET /me`), no retries: does Meta answer, and to our token?"""
    api = graph.GraphClient(timeout=settings.PROBE_TIMEOUT_SECONDS, max_retries=0, max_wait=0)
    started = time.perf_counter()
    try:
        api.get("me", {"fields": "id"})
        return {
            "ok": True,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "error": "",
            "kind": "",
            "at": timezone.now().isoformat(),
        }
    except graph.MetaError as exc:
        return {"ok": False, "ms": None, "error": str(exc), "kind": exc.kind.value, "at": timezone.now().isoformat()}
