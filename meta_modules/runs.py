"""`@module_job`: turns a module's job into a Celery task that records every execution.

Each execution writes one ModuleRun: outcome, error, wall and CPU time, the worker's peak
RSS and the Meta API calls the client counted into the current run. A job refuses to act
(and records a `skipped` run) while the tower is halted or the module is stopped, so a
message already queued before a stop does nothing.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from meta_modules import clock, registry
from meta_modules.gate import operations_halted
from meta_modules.models import MetaModule, ModuleRun

logger = logging.getLogger(__name__)

Job = Callable[["RunContext"], dict[str, Any] | None]


@dataclass
class RunContext:
    """What a running job knows about its own run; the Meta client counts calls into it."""

    run_id: Any
    module_code: str
    # The job's "now", read once from the tower clock: every step of a run sees the same instant.
    now: datetime = field(default_factory=clock.now)
    api_calls: int = 0
    api_errors: int = 0

    def count_api_call(self, failed: bool = False) -> None:
        self.api_calls += 1
        if failed:
            self.api_errors += 1


_current_run: ContextVar[RunContext | None] = ContextVar("current_module_run", default=None)


def current_run() -> RunContext | None:
    """The run of the job executing in this context, or None outside module jobs."""
    return _current_run.get()


@contextmanager
def counting_into(context: RunContext) -> Iterator[RunContext]:
    """Within the block, Meta calls are counted into `context` (a part of a run counts its own)."""
    token = _current_run.set(context)
    try:
        yield context
    finally:
        _current_run.reset(token)


def refusal_reason(module: MetaModule) -> str:
    """Why a job of this module must not act now ('' when it may)."""
    if operations_halted():
        return "Emergency stop active: the tower is halted."
    if module.desired_state == MetaModule.DesiredState.STOPPED:
        by = f" by {module.desired_state_by}" if module.desired_state_by else ""
        return f"Module stopped{by}."
    return ""


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the worker process's high-water mark so far.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def execute(
    code: str, job: Job, trigger: str = ModuleRun.Trigger.SCHEDULE, celery_task_id: str = "", in_parts: bool = False
) -> ModuleRun:
    """Run one module job and record it. Re-raises the job's exception after recording it.

    `in_parts`: the job only dispatches the run's parts (meta_modules/parts.py); when it succeeds
    its figures are recorded and the run left open for the parts to close."""
    module = MetaModule.objects.get(code=code)
    refusal = refusal_reason(module)
    if refusal:
        now = timezone.now()
        return ModuleRun.objects.create(
            module=module,
            started_at=now,
            finished_at=now,
            outcome=ModuleRun.Outcome.SKIPPED,
            trigger=trigger,
            error_message=refusal,
            duration_ms=0,
            celery_task_id=celery_task_id,
        )

    run = ModuleRun.objects.create(module=module, trigger=trigger, celery_task_id=celery_task_id)
    context = RunContext(run_id=run.pk, module_code=code)
    wall_start, cpu_start = time.perf_counter(), time.thread_time()
    outcome, error, summary, raised = ModuleRun.Outcome.SUCCESS, "", {}, None
    try:
        with counting_into(context):
            summary = job(context) or {}
    except SoftTimeLimitExceeded as exc:
        outcome, error, raised = ModuleRun.Outcome.TIMEOUT, "Soft time limit exceeded.", exc
    except Exception as exc:
        outcome, error, raised = ModuleRun.Outcome.FAILURE, f"{type(exc).__name__}: {exc}", exc
        logger.exception("Module %s job failed", code)
    figures = {
        "cpu_ms": round((time.thread_time() - cpu_start) * 1000),
        "peak_rss_mb": _peak_rss_mb(),
        "api_calls": context.api_calls,
        "api_errors": context.api_errors,
        "summary": summary,
    }
    if in_parts and raised is None:
        ModuleRun.objects.filter(pk=run.pk, outcome=ModuleRun.Outcome.RUNNING).update(**figures)
        run.refresh_from_db()
        return run
    # Conditional: if recovery already closed this run (e.g. as a stuck timeout), keep its verdict.
    ModuleRun.objects.filter(pk=run.pk, outcome=ModuleRun.Outcome.RUNNING).update(
        outcome=outcome,
        error_message=error[:5000],
        finished_at=timezone.now(),
        duration_ms=round((time.perf_counter() - wall_start) * 1000),
        **figures,
    )
    if raised is not None:
        raise raised
    run.refresh_from_db()
    return run


def module_job(code: str) -> Callable[[Job], Any]:
    """Register `job` as the Celery task of module `code` (task name from the registry)."""
    spec = registry.get(code)

    def decorate(job: Job) -> Any:
        @shared_task(name=spec.task, bind=True)
        def task(self: Any, trigger: str = ModuleRun.Trigger.SCHEDULE) -> str:
            return str(execute(code, job, trigger=trigger, celery_task_id=self.request.id or "").pk)

        return task

    return decorate
