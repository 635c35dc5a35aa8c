"""Shared fixtures: real services, a real Celery worker process, the Meta sandbox.

REQUIRE_SERVICES=1 (set by .ci/run) turns "service not available" into a failure instead
of a skip, so CI can never pass by silently skipping PostgreSQL or Redis tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.support import child_env

ROOT = Path(__file__).resolve().parent
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def service_missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


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
def celery_worker_process(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[subprocess.Popen]:
    """A real `celery worker` process on the configured broker and the test database.

    Tests that use it need `@pytest.mark.django_db(transaction=True)`: the worker sees only
    committed rows.
    """
    log = open(Path(settings.VAR_DIR) / "test-worker.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "info",
         "--without-gossip", "--without-mingle", "--include", "tests.worker_jobs", "--hostname", "tests@%h"],
        cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while "ready." not in Path(log.name).read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Celery worker did not start:\n{Path(log.name).read_text()[-3000:]}")
        time.sleep(0.2)
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
