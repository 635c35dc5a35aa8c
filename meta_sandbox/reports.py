"""Async insights report runs: what ``GET /{report_run_id}`` shows as time passes.

Pure logic: the caller passes the elapsed real time, so the progression is unit-testable. The
rows are computed when the run is created (a snapshot of that moment), as the sandbox's choice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REPORT_RUN_ID_BASE = 1_202_500_000_000_000
REPORT_FIELDS = (
    "id",
    "account_id",
    "time_ref",
    "async_status",
    "async_percent_completion",
    "date_start",
    "date_stop",
    "time_completed",
    "error_code",
    "error_message",
)
OUTCOMES = ("Job Completed", "Job Failed", "Job Skipped")
# A failed run's error since v25.0 (the sandbox's choice of code and message).
FAILED_ERROR = {"error_code": 1, "error_message": "An unknown error occurred while running this report."}


@dataclass(frozen=True)
class ReportRun:
    id: int
    account_id: int
    rows: list[dict[str, Any]]
    date_start: str
    date_stop: str
    time_ref: int  # business epoch seconds at creation
    created: float  # real time at creation: progress follows real time, as rate limits do
    duration_s: float
    outcome: str  # one of OUTCOMES, drawn at creation


def progress(run: ReportRun, elapsed: float) -> tuple[str, int]:
    """(async_status, async_percent_completion) ``elapsed`` real seconds after creation:
    Job Not Started -> Job Started -> Job Running (percent rising) -> the outcome."""
    if run.duration_s <= 0 or elapsed >= run.duration_s:
        return run.outcome, 100 if run.outcome == "Job Completed" else 0
    share = elapsed / run.duration_s
    if share < 0.1:
        return "Job Not Started", 0
    if share < 0.25:
        return "Job Started", 0
    return "Job Running", min(99, int(share * 100))


def report_json(run: ReportRun, elapsed: float, with_error: bool) -> dict[str, Any]:
    """The AdReportRun node (facebook_business/adobjects/adreportrun.py field names)."""
    status, percent = progress(run, elapsed)
    body: dict[str, Any] = {
        "id": str(run.id),
        "account_id": str(run.account_id),
        "time_ref": run.time_ref,
        "async_status": status,
        "async_percent_completion": percent,
        "date_start": run.date_start,
        "date_stop": run.date_stop,
    }
    if status in OUTCOMES:
        body["time_completed"] = run.time_ref + max(1, round(run.duration_s))
    if status == "Job Failed" and with_error:
        body.update(FAILED_ERROR)
    return body


class ReportRuns:
    """The report runs since the last reset, in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[int, ReportRun] = {}

    def create(self, build: Callable[[int], ReportRun]) -> ReportRun:
        """Store the run ``build`` makes for the next id."""
        with self._lock:
            run = build(REPORT_RUN_ID_BASE + len(self._runs) + 1)
            self._runs[run.id] = run
            return run

    def get(self, run_id: int) -> ReportRun | None:
        with self._lock:
            return self._runs.get(run_id)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()
