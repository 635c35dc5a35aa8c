"""Named leases on the database: the same guarantee on PostgreSQL and on SQLite."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from controltower.models import TowerLock


def _acquire(name: str, holder: str, ttl: timedelta) -> bool:
    now = timezone.now()
    # Take over a lease whose holder died (expired); the conditional update is the claim.
    if TowerLock.objects.filter(name=name, expires_at__lt=now).update(holder=holder, expires_at=now + ttl):
        return True
    try:
        with transaction.atomic():
            TowerLock.objects.create(name=name, holder=holder, expires_at=now + ttl)
        return True
    except IntegrityError:
        return False


@contextmanager
def lease(name: str, ttl: timedelta, wait: float = 0.0) -> Iterator[bool]:
    """Yield True if this caller holds the lease `name` (for at most `ttl`), else False.

    With `wait`, keep trying for that many seconds before giving up.
    """
    holder = uuid.uuid4().hex
    give_up = time.monotonic() + wait
    while not (acquired := _acquire(name, holder, ttl)) and time.monotonic() < give_up:
        time.sleep(0.1)
    try:
        yield acquired
    finally:
        if acquired:
            TowerLock.objects.filter(name=name, holder=holder).delete()


def is_held(name: str) -> bool:
    """Whether someone holds the lease `name` now (an expired lease's holder is presumed dead)."""
    return TowerLock.objects.filter(name=name, expires_at__gte=timezone.now()).exists()
