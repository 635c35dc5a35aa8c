"""What a health report means for people: recommendations and alert conditions (pure).

Alert conditions carry a dedup key: the same condition seen at every check is one alert.
Spend spikes found by 10.9 raise their own critical alert. Inhibition, as Alertmanager does it:
while an infrastructure condition (database, broker, Beat, workers) holds, the per-module
conditions it causes are not raised separately; while the tower is halted, module and system
conditions are not raised at all (the emergency stop is the alert).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from controltower.models import FireDrill, ModuleStatus, SystemStatus

if TYPE_CHECKING:
    from controltower.health import HealthReport, ModuleHealth

CRITICAL, WARNING, INFO = "critical", "warning", "info"


@dataclass(frozen=True)
class AlertCondition:
    key: str
    severity: str
    title: str
    detail: str = ""
    module_code: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "severity": self.severity, "title": self.title, "detail": self.detail}


def _ago(module: ModuleHealth) -> str:
    return f"last run {module.last_run:%Y-%m-%d %H:%M} UTC" if module.last_run else "never ran"


def infrastructure_conditions(report: HealthReport) -> list[AlertCondition]:
    infra = report.infrastructure
    found: list[AlertCondition] = []
    if not infra.database.healthy:
        found.append(AlertCondition("infra:database", CRITICAL, "Database unhealthy", infra.database.error))
    if infra.broker is not None and not infra.broker.get("ok"):
        found.append(
            AlertCondition("infra:broker", CRITICAL, "Celery broker unreachable", infra.broker.get("error", ""))
        )
    if not infra.beat_alive:
        found.append(
            AlertCondition(
                "infra:beat",
                CRITICAL,
                "Celery Beat is not running",
                "No heartbeat was sent: no module is being scheduled.",
            )
        )
    elif not infra.workers_alive:
        found.append(
            AlertCondition(
                "infra:workers",
                CRITICAL,
                "No Celery worker is running",
                "Beat sends the heartbeat but no worker executes it: no module job runs.",
            )
        )
    if infra.meta_api is not None and not infra.meta_api.get("ok"):
        if infra.meta_api.get("kind") == "auth":
            found.append(
                AlertCondition(
                    "infra:meta_token", CRITICAL, "Meta rejected the access token", infra.meta_api.get("error", "")
                )
            )
        elif infra.meta_api.get("kind") == "deprecated_version":
            found.append(
                AlertCondition(
                    "infra:meta_version",
                    CRITICAL,
                    f"Meta refuses Graph API version {settings.META_API_VERSION}",
                    f"{_upgrade_version()} {infra.meta_api.get('error', '')}",
                )
            )
        else:
            found.append(
                AlertCondition(
                    "infra:meta_api", WARNING, "Meta Graph API not answering", infra.meta_api.get("error", "")
                )
            )
    return found


def alert_conditions(report: HealthReport) -> list[AlertCondition]:
    found = infrastructure_conditions(report)
    if report.halted:
        return found
    if report.system_status == SystemStatus.CRITICAL:
        found.append(
            AlertCondition("system:critical", CRITICAL, "Control Tower status CRITICAL", critical_detail(report))
        )
    for spike in report.spend_spikes:
        found.append(
            AlertCondition(
                f"spend_spike:{spike['campaign_id']}",
                CRITICAL,
                f"Spend spike on campaign {spike['campaign__name']}",
                f"Spending {spike['ratio']:.1f}× its baseline rate; {spike['spend']} spent today (10.9).",
            )
        )
    if any(c.severity == CRITICAL for c in found if c.key.startswith("infra:")):
        return found  # module failures are consequences of the infrastructure one
    for module in report.modules:
        if module.status == ModuleStatus.OFFLINE:
            found.append(
                AlertCondition(
                    f"module:{module.code}:offline",
                    CRITICAL,
                    f"Module {module.code} {module.name} is OFFLINE",
                    _why(module),
                    module.code,
                )
            )
        elif module.status == ModuleStatus.DEGRADED:
            found.append(
                AlertCondition(
                    f"module:{module.code}:degraded",
                    WARNING,
                    f"Module {module.code} {module.name} is DEGRADED",
                    _why(module),
                    module.code,
                )
            )
    return found


def critical_detail(report: HealthReport) -> str:
    """Why the system is CRITICAL, naming the modules: any OFFLINE, or more than 2 DEGRADED."""

    def named(status: ModuleStatus) -> str:
        return ", ".join(f"{m.code} {m.name}" for m in report.modules if m.status == status)

    parts = []
    if offline := named(ModuleStatus.OFFLINE):
        parts.append(f"OFFLINE: {offline}")
    if degraded := named(ModuleStatus.DEGRADED):
        parts.append(f"DEGRADED: {degraded}")
    return "; ".join(parts) + "."


def _no_first_run() -> str:
    return f"no run has finished within {settings.STARTING_GRACE_MINUTES} min of its start (STARTING_GRACE_MINUTES)"


def _upgrade_version() -> str:
    return (
        f"Every Meta call fails while META_API_VERSION={settings.META_API_VERSION}: set it to a version "
        "Meta still serves (the facebook-business 26.x the tower pins speaks v26.0) and restart."
    )


def _why(module: ModuleHealth) -> str:
    reasons = []
    if not module.scheduler_enabled:
        reasons.append("its periodic task is disabled")
    if module.overdue:
        reasons.append(f"it is overdue ({_ago(module)})")
    if module.first_run_overdue:
        reasons.append(_no_first_run())
    if module.success_rate is not None:
        reasons.append(f"success rate {module.success_rate:.0%} over 24 h")
    if module.error_count_24h:
        reasons.append(f"{module.error_count_24h} errors in 24 h")
    if not module.is_api_healthy:
        reasons.append("Meta API unhealthy for it")
    if not module.is_db_healthy:
        reasons.append("database unhealthy")
    if module.last_error:
        reasons.append(f"last error: {module.last_error[:200]}")
    return "; ".join(reasons)


def recommendations(report: HealthReport) -> list[dict[str, str]]:
    """Actions an operator should consider, most severe first."""
    found: list[dict[str, str]] = []

    def add(severity: str, message: str, module: str = "") -> None:
        found.append({"severity": severity, "module": module, "message": message})

    infra = report.infrastructure
    if not infra.beat_alive:
        add(CRITICAL, "Start Celery Beat (exactly one: `celery -A config beat`).")
    elif not infra.workers_alive:
        add(CRITICAL, "Start a Celery worker (`celery -A config worker`).")
    if not infra.database.healthy:
        add(CRITICAL, f"Check the database: {infra.database.error}")
    if infra.broker is not None and not infra.broker.get("ok"):
        add(CRITICAL, f"Check the Celery broker: {infra.broker.get('error')}")
    if infra.meta_api is not None and infra.meta_api.get("kind") == "auth":
        add(CRITICAL, "Renew META_ACCESS_TOKEN: Meta rejects the current token.")
    if infra.meta_api is not None and infra.meta_api.get("kind") == "deprecated_version":
        add(CRITICAL, _upgrade_version())
    if report.halted:
        add(INFO, "Emergency stop active: resume when the cause is handled.")
        return found
    for spike in report.spend_spikes:
        add(
            CRITICAL,
            f"Campaign {spike['campaign__name']} spends {spike['ratio']:.1f}× its baseline today: review it, "
            "acknowledge the spike in the admin, or press the emergency stop.",
        )
    for module in report.modules:
        name = f"{module.code} {module.name}"
        if module.status == ModuleStatus.STOPPED:
            continue
        if module.desired_state == "running" and not module.scheduler_enabled:
            add(CRITICAL, f"{name}: its scheduler is disabled although it should run — restart it.", module.code)
        elif module.overdue and infra.beat_alive and infra.workers_alive:
            add(
                CRITICAL,
                f"{name}: overdue ({_ago(module)}, every {module.interval_seconds} s) — restart its scheduler.",
                module.code,
            )
        elif module.first_run_overdue and infra.beat_alive and infra.workers_alive:
            add(
                CRITICAL,
                f"{name}: {_no_first_run()} — read the worker's log for its task, then restart it.",
                module.code,
            )
        if (
            module.success_rate is not None
            and module.status in (ModuleStatus.OFFLINE, ModuleStatus.DEGRADED)
            and module.failures_24h
        ):
            add(
                WARNING,
                f"{name}: {module.success_rate:.0%} of runs succeed; last error: {module.last_error[:200]}",
                module.code,
            )
        if module.error_count_24h > 50:
            add(
                WARNING,
                f"{name}: {module.error_count_24h} errors in 24 h — consider resetting the module.",
                module.code,
            )
        if module.calls_meta and not module.is_api_healthy and infra.meta_api_ok:
            add(
                WARNING,
                f"{name}: {module.api_errors_24h} of {module.api_calls_24h} Meta calls failed in 24 h.",
                module.code,
            )
        if module.status == ModuleStatus.UNKNOWN:
            add(INFO, f"{name}: has never finished a run yet.", module.code)
    order = {CRITICAL: 0, WARNING: 1, INFO: 2}
    return sorted(found, key=lambda r: order[r["severity"]])


def drill_conditions(latest: FireDrill | None) -> list[AlertCondition]:
    """`drill:failed` while the latest drill with a verdict failed (refused drills were not run).

    Critical when a canary could not be paused by the stop's own call: the emergency stop itself
    may not stop spend. Warning otherwise (a canary not running or unreadable, a re-activation that
    failed, a halt during the drill): the stop worked and what is at stake is one canary left paused.
    """
    if latest is None or latest.state != FireDrill.State.FAILED:
        return []
    failed = [r for r in latest.results if r.get("outcome") != FireDrill.State.PASSED]
    pause_failed = any(r.get("failed_at") == "pause" for r in failed)
    counted = f"{len(failed)} of {len(latest.results)} canaries" if latest.results else "interrupted"
    return [
        AlertCondition(
            "drill:failed",
            CRITICAL if pause_failed else WARNING,
            f"Fire drill failed ({counted})",
            latest.message,
        )
    ]
