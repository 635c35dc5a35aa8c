import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from controltower import commander, findings, health, rules
from controltower.models import ControlTowerRun, RunState, RunType
from controltower.schedules import HEALTH_CYCLE_TASK

logger = logging.getLogger(__name__)
WATCHED = {"infra:beat", "infra:workers", "infra:broker", "infra:database"}


def check_once() -> ControlTowerRun | None:
    """Act on spend-spike stop requests, finish a halt nobody is finishing, then run the cycle
    here if Beat/workers are not doing it.

    Returns the health-check run if one was made.
    """
    commander.upkeep()  # a stop whose process died must not wait for the hourly cycle
    report = health.evaluate()
    down_now = {c.key for c in findings.infrastructure_conditions(report)} & WATCHED
    last = (
        ControlTowerRun.objects.filter(run_type=RunType.HEALTH_CHECK, state=RunState.COMPLETED)
        .only("executed_at", "errors_encountered", "system_status")
        .first()
    )
    down_recorded = {e.get("key") for e in last.errors_encountered} & WATCHED if last else set()
    # Before the first check, the scheduled first one is the reference.
    scheduled = PeriodicTask.objects.filter(name=HEALTH_CYCLE_TASK).values_list("last_run_at", flat=True).first()
    due = rules.watchdog_should_run(
        timezone.now(),
        last.executed_at if last else scheduled,
        timedelta(seconds=settings.HEALTH_CYCLE_INTERVAL_SECONDS),
        timedelta(seconds=settings.SCHEDULER_GRACE_SECONDS),
        down_now,
        down_recorded,
        report.system_status,
        last.system_status if last else None,
    )
    return commander.health_cycle(executed_by="watchdog") if due else None


class Command(BaseCommand):
    help = (
        "Watch the watchers: carry out spend-spike emergency stops (10.9, opt-in) within a minute, finish "
        "an emergency stop whose process died, and run the health cycle here when Beat or the workers are not "
        "running it (overdue, or a change in what is down). --once checks a single time."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true")

    def handle(self, *args, **options) -> None:
        try:
            self.watch(once=options["once"])
        except KeyboardInterrupt:  # Ctrl-C on `tower.py up` reaches every process: end quietly, as the others do
            pass

    def watch(self, once: bool) -> None:
        while True:
            try:
                run = check_once()
                if run is not None:
                    self.stdout.write(f"watchdog ran a health cycle: {run.system_status} ({run.pk})")
            except Exception:  # keep watching through a database outage
                logger.exception("Watchdog check failed")
            if once:
                return
            time.sleep(settings.WATCHDOG_INTERVAL_SECONDS)
