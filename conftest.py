"""Shared fixtures: real services, a real Celery worker process, the Meta sandbox.

REQUIRE_SERVICES=1 (set by .ci/run) turns "service not available" into a failure instead
of a skip, so CI can never pass by silently skipping PostgreSQL or Redis tests.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.db import connection

from tests.support import child_env, service_missing, start_worker, stop_process

if TYPE_CHECKING:
    from meta_sandbox.testing import RunningSandbox
    from tests.support import HttpReceiver

ROOT = Path(__file__).resolve().parent


@pytest.fixture
def postgres_db() -> None:
    """Marks a test that needs PostgreSQL as the test database."""
    if connection.vendor != "postgresql":
        service_missing("PostgreSQL (set DATABASE_URL=postgres://...)")


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        service_missing("Redis (set REDIS_URL=redis://...)")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis at {url} ({exc})")
    return url


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: None, django_db_blocker: pytest.FixtureRequest
) -> Iterator[subprocess.Popen]:
    """A real `celery worker` process on the configured broker and the test database.

    Tests that use it need `@pytest.mark.django_db(transaction=True)`: the worker sees only
    committed rows.
    """
    proc = start_worker(
        child_env(),
        Path(settings.VAR_DIR) / "test-worker.log",
        "--pool",
        "solo",
        "--include",
        "tests.worker_jobs",
        "--hostname",
        "tests@%h",
    )
    yield proc
    stop_process(proc)


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[RunningSandbox]:
    from meta_sandbox.testing import start_sandbox

    with start_sandbox(accounts=2, campaigns_per_account=10, seed=7) as sandbox:
        yield sandbox


@pytest.fixture
def meta_sandbox(_sandbox_server, settings) -> RunningSandbox:
    """The Meta sandbox over HTTP, freshly seeded (2 accounts × 10 campaigns; the default seed's
    harsh sides included: account 1 in Los Angeles, campaigns reading WITH_ISSUES), faults cleared
    except that async insights report runs finish at their first poll (a test of the async flow
    sets `async_job_seconds`; any `faults(...)` call replaces the whole configuration), with the
    Graph client pointed at it. Reseed with `meta_sandbox.reset(...)` for other sizes."""
    from meta_modules import graph

    _sandbox_server.set_clock()  # a reset keeps the business clock: another test may have moved it
    _sandbox_server.reset(accounts=2, campaigns_per_account=10, seed=7)
    _sandbox_server.faults(async_job_seconds=0)
    settings.META_GRAPH_URL = _sandbox_server.url
    settings.META_AD_ACCOUNT_IDS = []
    graph.reset_clients()  # also forgets rate budgets learnt against another test's data
    yield _sandbox_server
    graph.reset_clients()


@pytest.fixture
def tower_clock() -> Iterator[Callable[[datetime | None], None]]:
    """Sets the tower's business clock (`meta_modules.clock.freeze`) for this test; real time after it."""
    from meta_modules import clock

    yield clock.freeze
    clock.freeze(None)


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    from tests.support import HttpReceiver

    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(autouse=True)
def _empty_shared_cache() -> Iterator[None]:
    """The shared cache outlives a test (files or Redis): start every test without entries."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def synced(db) -> None:
    """The 17 modules and the tower's tasks exist, and a worker has just sent its heartbeat."""
    from django.core.management import call_command

    from controltower import cycle

    call_command("sync_modules", stdout=io.StringIO())
    cycle.heartbeat()
