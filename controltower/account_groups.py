"""Spreading a stop's or a resume's work on Meta over the Celery workers and the web process.

At agency scale one process cannot work on every ad account at once, and a stop must not wait
for the queue (the queue may be what is broken). So the ad accounts are split into groups
(rules.account_groups), every group is offered to the workers (they take them from the front),
and the process that took the request works on them itself from the back, several groups at a
time. A group is taken by a conditional update (AccountGroup.take), so each is worked on once;
one whose taker died is taken again once its claim lapses, and a halt's background sweep covers
its whole scope anyway. With the queue down or no worker free, the web process takes them all.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from controltower import queue, rules
from controltower.models import AccountGroup, ControlTowerRun

logger = logging.getLogger(__name__)

WORK_TASK = "controltower.tasks.work_account_group"


def taker(role: str) -> str:
    """Who takes a group: the web process or a worker, on which host and process."""
    return f"{role} {socket.gethostname()}:{os.getpid()}"


def plan(run: ControlTowerRun, accounts: list[str]) -> list[AccountGroup]:
    """The run's groups of accounts (created in one statement), offered to the workers in the background."""
    groups = [
        AccountGroup(run=run, position=i, accounts=chunk)
        for i, chunk in enumerate(rules.account_groups(accounts, settings.KILL_SWITCH_ACCOUNTS_PER_GROUP))
    ]
    AccountGroup.objects.bulk_create(groups)
    if len(groups) > 1:
        # A thread, so a broker that is down costs the stop nothing: it only talks to the broker.
        threading.Thread(target=_offer, args=([str(g.pk) for g in groups],), daemon=True).start()
    return groups


def _offer(group_ids: list[str]) -> None:
    try:
        # A group still unfinished a claim's length later is the background sweep's: an offer that
        # old (a worker that was down) is dropped, not carried out for a stop long over.
        queue.send_each(WORK_TASK, [[group_id] for group_id in group_ids], expires=settings.HOLD_CLAIM_SECONDS)
    except Exception as exc:  # noqa: BLE001 - broker down: the web process takes every group
        logger.warning("Could not offer %d account groups to the workers (%s)", len(group_ids), exc)


def work(
    groups: list[AccountGroup],
    on: Callable[[list[AccountGroup]], None],
    deadline: float,
    too_late: Callable[[list[str]], dict[str, Any]],
) -> None:
    """Take the groups nobody has taken, from the back, as many at a time as KILL_SWITCH_PARALLELISM
    accounts allow, and work on them with `on` until none is left or the deadline passed. Those
    still untaken at the deadline are closed with `too_late(accounts)` as their outcome: the
    background passes carry them on, and nothing waits for a taker that may never come."""
    at_once = max(1, settings.KILL_SWITCH_PARALLELISM // settings.KILL_SWITCH_ACCOUNTS_PER_GROUP)
    left = list(reversed(groups))
    by = taker("web")
    while left and time.monotonic() < deadline:
        mine: list[AccountGroup] = []
        while left and len(mine) < at_once:
            group = left.pop(0)
            if group.take(by):
                mine.append(group)
        if mine:
            on(mine)
    for group in left:
        group.close_untaken(too_late(group.accounts))


def in_flight() -> Q:
    """Groups someone is working on, or that are offered and not yet given up on (a lapsed claim or
    an offer older than a claim's length means its taker or the queue died)."""
    now = timezone.now()
    return Q(finished_at__isnull=True) & (
        Q(taken_until__gte=now)
        | Q(taken_until__isnull=True, created_at__gte=now - timedelta(seconds=settings.HOLD_CLAIM_SECONDS))
    )


def accounts_in_flight(run: ControlTowerRun) -> set[str]:
    """The accounts of the run's groups still being worked on elsewhere."""
    return {
        a for accounts in run.account_groups.filter(in_flight()).values_list("accounts", flat=True) for a in accounts
    }
