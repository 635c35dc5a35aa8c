"""Helpers for tests that drive real processes."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    """URL of the test database as the test run created it, for child processes."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a project process that must share this test run's database and broker."""
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="config.test_settings", DATABASE_URL=_database_url(),
               TOWER_VAR_DIR=str(settings.VAR_DIR), PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, message: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")
