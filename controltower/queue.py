"""Handing work to the Celery broker from the web, the watchdog or the cycle — quickly or not at all.

Work is queued by task name (`send("controltower.tasks.resweep_halt", [...])`), so no service
imports the task module (which imports the orchestrator above them).

kombu keeps retrying a connection to a broker that is down for broker_connection_timeout plus
its growing pauses (about 6 s) before it gives up. The tower asks once and answers: a queued
command gets its 503, a probe its verdict, within PROBE_TIMEOUT_SECONDS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from kombu import Connection

from config.celery import app


@contextmanager
def connection() -> Iterator[Connection]:
    """A connection to the broker, established now (one attempt) or an exception."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=settings.PROBE_TIMEOUT_SECONDS)
        yield conn


def send(task_name: str, args: list[Any], **options: Any) -> None:
    """Publish the task named `task_name` once; raises when the broker cannot take it.

    A signature by name applies the registered task's own options (as `task.apply_async` does)."""
    with connection() as conn:
        app.signature(task_name, args=args).apply_async(connection=conn, retry=False, **options)


def send_each(task_name: str, arg_lists: list[list[Any]], **options: Any) -> None:
    """Publish the task once per argument list, over one connection; raises when the broker cannot take them."""
    with connection() as conn:
        for args in arg_lists:
            app.signature(task_name, args=args).apply_async(connection=conn, retry=False, **options)
