"""Handing work to the Celery broker from the web, the watchdog or the cycle — quickly or not at all.

kombu keeps retrying a connection to a broker that is down for broker_connection_timeout plus
its growing pauses (about 6 s) before it gives up. The tower asks once and answers: a queued
command gets its 503, a probe its verdict, within PROBE_TIMEOUT_SECONDS.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task
from django.conf import settings
from kombu import Connection


@contextmanager
def connection() -> Iterator[Connection]:
    """A connection to the broker, established now (one attempt) or an exception."""
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=settings.PROBE_TIMEOUT_SECONDS)
        yield conn


def send(task: Task, args: list[Any], **options: Any) -> None:
    """Publish `task` once; raises when the broker cannot take it."""
    with connection() as conn:
        task.apply_async(args=args, connection=conn, retry=False, **options)
