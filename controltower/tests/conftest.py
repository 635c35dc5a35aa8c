from __future__ import annotations

import pytest
from django.core.management import call_command

from controltower import cycle


@pytest.fixture
def synced(db) -> None:
    """The 17 modules and the tower's tasks exist, and a worker has just sent its heartbeat."""
    call_command("sync_modules", stdout=open("/dev/null", "w"))
    cycle.heartbeat()
