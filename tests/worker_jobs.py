"""Test-only Celery tasks, loaded into the test worker with `--include tests.worker_jobs`.

They run arbitrary job bodies through the real `execute` path of @module_job, so tests can
make a module's job fail, or prove that a skipped job did nothing.
"""

from __future__ import annotations

from pathlib import Path

from celery import shared_task

from meta_modules.runs import RunContext, execute


def _boom(run: RunContext) -> dict:
    raise RuntimeError("sandbox unreachable")


@shared_task(name="tests.failing_job")
def failing_job(code: str) -> None:
    execute(code, _boom)


@shared_task(name="tests.marker_job")
def marker_job(code: str, marker: str) -> None:
    def write_marker(run: RunContext) -> dict:
        Path(marker).write_text(str(run.run_id))
        return {"marker": marker}

    execute(code, write_marker)
