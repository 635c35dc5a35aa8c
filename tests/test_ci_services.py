"""With REQUIRE_SERVICES=1 (CI) the suite must really run on PostgreSQL and Redis."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.db import connection


@pytest.mark.skipif(os.environ.get("REQUIRE_SERVICES") != "1", reason="only meaningful when services are required")
def test_ci_runs_on_postgres_and_redis() -> None:
    assert connection.vendor == "postgresql"
    assert settings.CELERY_BROKER_URL.startswith("redis://")
