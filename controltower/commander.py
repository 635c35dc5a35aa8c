"""The orchestration commander: the spec's eight commands, each doing what its name says.

Every command is one ControlTowerRun row (who, why, what it did). State-changing commands
are serialised by the row lock on TowerState (on SQLite, whose `select_for_update` is a
no-op, the IMMEDIATE transactions configured in settings give the same exclusion).
Commands that run module jobs execute them here, through the same recorded path as the
scheduler (`@module_job`), so their outcome is in the answer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from config.celery import app
from controltower import audit, killswitch, queue
from controltower.models import ControlTowerRun, RecoveryState, RunState, RunType, TowerState
from meta_modules import jobs, registry  # noqa: F401 (importing jobs registers the module tasks)
from meta_modules.models import MetaModule, ModuleRun
from meta_modules.scheduling import staggered_last_run

COMMANDS = ("start_all", "stop_all", "restart_module", "emergency_stop", "resume", "sync_data", "optimize",
            "health_check")
# Spellings used by the spec's own examples.
ALIASES = {"optimize_all": "optimize", "sync_all_data": "sync_data", "run_health_check": "health_check",
           "resume_operations": "resume"}
SYNC_MODULES = ("10.2", "10.4", "10.14")
OPTIMIZATION_CHAIN = ("10.5", "10.6", "10.16")


class CommandRefused(Exception):
    """The command cannot run in the tower's current state (answered 409)."""


class QueueUnavailable(Exception):
    """The Celery broker did not take the queued command (answered 503)."""


def canonical(command_type: str) -> str:
    return ALIASES.get(command_type, command_type)


@dataclass
class Command:
    command_type: str
    actor: str
    reason: str = ""
    target_modules: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    modules_affected: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    message: str = ""


def _modules(codes: list[str]) -> list[MetaModule]:
    query = MetaModule.objects.select_related("periodic_task__interval")
    return list(query.filter(code__in=codes) if codes else query.all())


# Commands that would restart spending, refused while the tower is halted (the console shows them disabled).
REFUSED_WHILE_HALTED = {"start_all": "starting modules", "restart_module": "restarting modules"}


def _refuse_while_halted(command_type: str) -> None:
    if TowerState.get().emergency_stop_active:
        raise CommandRefused(f"Emergency stop active: {REFUSED_WHILE_HALTED[command_type]} would restart spending. "
                             "Resume first.")


def mark_operator_acted(codes: list[str]) -> None:
    """An operator acted on these modules: auto-recovery's counter starts again, no human is awaited."""
    RecoveryState.objects.filter(module_code__in=codes).update(
        needs_human=False, needs_human_since=None, counter_reset_at=timezone.now())


def set_running(modules: list[MetaModule], command: Command, enable_tasks: bool = True) -> list[str]:
    now = timezone.now()
    for index, module in enumerate(modules):
        module.desired_state, module.desired_state_by = MetaModule.DesiredState.RUNNING, command.actor
        module.desired_state_at, module.desired_state_reason = now, command.reason
        task = module.periodic_task
        if enable_tasks and task is not None and not task.enabled:
            PeriodicTask.objects.filter(pk=task.pk).update(
                enabled=True, last_run_at=staggered_last_run(index, task.interval.every if task.interval else 3600))
    MetaModule.objects.bulk_update(modules, ["desired_state", "desired_state_by", "desired_state_at",
                                             "desired_state_reason"])
    PeriodicTasks.update_changed()
    mark_operator_acted([m.code for m in modules])
    return [m.code for m in modules]


def _start(command: Command) -> Outcome:
    with transaction.atomic():
        TowerState.locked()
        _refuse_while_halted("start_all")
        codes = set_running(_modules(command.target_modules), command)
    return Outcome(codes, [{"action": "start", "modules": codes}],
                   message=f"Started {len(codes)} modules (first runs staggered {settings.START_STAGGER_SECONDS} s apart).")


def _stop(command: Command) -> Outcome:
    with transaction.atomic():
        TowerState.locked()
        modules = _modules(command.target_modules)
        now = timezone.now()
        MetaModule.objects.filter(pk__in=[m.pk for m in modules]).update(
            desired_state=MetaModule.DesiredState.STOPPED, desired_state_by=command.actor, desired_state_at=now,
            desired_state_reason=command.reason)
        PeriodicTask.objects.filter(meta_module__in=modules).update(enabled=False)
    PeriodicTasks.update_changed()
    codes = [m.code for m in modules]
    return Outcome(codes, [{"action": "stop", "modules": codes}],
                   message=f"Stopped {len(codes)} modules; queued runs of them will do nothing.")


def cancel_in_flight(module: MetaModule, why: str) -> int:
    """Cooperative cancel: close the module's running runs as timeouts. The job's own final
    update is conditional on `running`, so it cannot overwrite this verdict."""
    return ModuleRun.objects.filter(module=module, outcome=ModuleRun.Outcome.RUNNING).update(
        outcome=ModuleRun.Outcome.TIMEOUT, finished_at=timezone.now(), error_message=why)


def is_builtin(code: str) -> bool:
    """A registry module, whose job runs here (external modules only report their runs)."""
    return code in registry.BY_CODE


def run_module_now(code: str, trigger: str = ModuleRun.Trigger.COMMAND) -> dict[str, Any]:
    """Run one module's job here, through @module_job, and report its recorded outcome."""
    since = timezone.now()
    result = app.tasks[registry.get(code).task].apply(kwargs={"trigger": trigger})
    run = ModuleRun.objects.filter(module__code=code, trigger=trigger, started_at__gte=since).order_by("-started_at").first()
    return {"module": code, "outcome": run.outcome if run else "unknown", "run_id": str(run.pk) if run else None,
            "error": run.error_message if run else str(result.result)}


def _restart(command: Command) -> Outcome:
    with transaction.atomic():
        TowerState.locked()
        _refuse_while_halted("restart_module")
        modules = _modules(command.target_modules)
        external = [m.code for m in modules if not is_builtin(m.code)]
        if external:
            raise CommandRefused(f"{', '.join(external)} run outside this codebase: the tower cannot restart them.")
        set_running(modules, command)
        cancelled = {m.code: cancel_in_flight(m, f"Cancelled by restart ({command.actor})") for m in modules}
    runs = [run_module_now(m.code) for m in modules]
    failed = [r for r in runs if r["outcome"] != ModuleRun.Outcome.SUCCESS]
    return Outcome([m.code for m in modules],
                   [{"action": "restart", "cancelled_in_flight": cancelled}, *({"action": "run", **r} for r in runs)],
                   [f"{r['module']}: {r['outcome']} {r['error']}".strip() for r in failed],
                   f"Restarted {', '.join(m.code for m in modules)}: "
                   + ", ".join(f"{r['module']} {r['outcome']}" for r in runs) + ".")


def _run_modules(codes: tuple[str, ...], chain: bool) -> Outcome:
    runs = []
    for code in codes:
        runs.append(run_module_now(code))
        if chain and runs[-1]["outcome"] != ModuleRun.Outcome.SUCCESS:
            break
    failed = [r for r in runs if r["outcome"] != ModuleRun.Outcome.SUCCESS]
    stopped_early = len(runs) < len(codes)
    message = ", ".join(f"{r['module']} {r['outcome']}" for r in runs)
    if stopped_early:
        message += f"; chain stopped at {runs[-1]['module']}"
    return Outcome([r["module"] for r in runs], [{"action": "run", **r} for r in runs],
                   [f"{r['module']}: {r['outcome']} {r['error']}".strip() for r in failed], message + ".")


HANDLERS = {
    "start_all": _start,
    "stop_all": _stop,
    "restart_module": _restart,
    "sync_data": lambda c: _run_modules(SYNC_MODULES, chain=False),
    "optimize": lambda c: _run_modules(OPTIMIZATION_CHAIN, chain=True),
}


def new_run(command: Command, state: str) -> ControlTowerRun:
    return ControlTowerRun.objects.create(
        run_type=RunType.COMMAND, command_type=command.command_type, state=state, executed_by=command.actor,
        reason=command.reason, parameters={"target_modules": command.target_modules, **command.parameters},
        system_status=TowerState.get().system_status, mode=settings.META_MODE,
    )


def execute(command: Command, run: ControlTowerRun | None = None) -> ControlTowerRun:
    """Execute a command now; returns its run (for stop/resume/health_check, the run they made)."""
    command.command_type = canonical(command.command_type)
    if command.command_type == "emergency_stop":
        result = killswitch.emergency_stop(
            killswitch.StopRequest.from_options(command.actor, command.reason, command.parameters))
        return _adopt(run, result.run_id, result.message)
    if command.command_type == "resume":
        resumed = killswitch.resume(
            killswitch.ResumeRequest.from_options(command.actor, command.reason, command.parameters))
        if resumed.awaiting_approval:
            raise CommandRefused(resumed.message)
        return _adopt(run, resumed.run_id, resumed.message)
    if command.command_type == "health_check":
        from controltower import cycle

        check = cycle.run_cycle(executed_by=command.actor)
        ControlTowerRun.objects.filter(pk=check.pk).update(command_type="health_check", reason=command.reason,
                                                           message=f"System {check.system_status.upper()}.")
        audit.record("command", command="health_check", actor=command.actor, reason=command.reason, run_id=check.pk,
                     outcome="ok", system_status=check.system_status, modules_checked=check.total_modules_checked)
        return _adopt(run, str(check.pk), f"System {check.system_status.upper()}.")
    started = time.monotonic()
    run = run or new_run(command, RunState.RUNNING)
    run.start()
    try:
        outcome = HANDLERS[command.command_type](command)
    except CommandRefused as exc:
        _close(run, started, command, Outcome(errors=[str(exc)], message=str(exc)), RunState.FAILED, "refused")
        raise
    except Exception as exc:
        _close(run, started, command, Outcome(errors=[f"{type(exc).__name__}: {exc}"], message="Command failed."),
               RunState.FAILED, "failed")
        raise
    _close(run, started, command, outcome, RunState.COMPLETED, "failed" if outcome.errors else "ok")
    run.refresh_from_db()
    return run


def _adopt(queued: ControlTowerRun | None, run_id: str | None, message: str) -> ControlTowerRun:
    """Stops, resumes and checks make their own run; a queued placeholder points to it."""
    run = ControlTowerRun.objects.get(pk=run_id)
    if queued is not None and queued.pk != run.pk:
        queued.finish(message=message, actions_executed=[{"action": "delegated", "run_id": run_id}])
    return run


def _close(run: ControlTowerRun, started: float, command: Command, outcome: Outcome, state: str, verdict: str) -> None:
    end = run.fail if state == RunState.FAILED else run.finish
    end(started, modules_affected=outcome.modules_affected, actions_executed=outcome.actions,
        errors_encountered=outcome.errors, message=outcome.message, system_status=TowerState.get().system_status)
    audit.record("command", command=command.command_type, actor=command.actor, reason=command.reason, run_id=run.pk,
                 outcome=verdict, modules_affected=outcome.modules_affected, modules=len(outcome.modules_affected),
                 errors=len(outcome.errors), message=outcome.message)


def enqueue(command: Command) -> ControlTowerRun:
    """execute_immediately=false: record the run as queued and hand it to a worker."""
    from controltower.tasks import execute_command

    command.command_type = canonical(command.command_type)
    run = new_run(command, RunState.QUEUED)
    try:
        queue.send(execute_command, [str(run.pk)])
    except Exception as exc:
        run.fail(errors_encountered=[f"Task queue unavailable: {exc}"], message="Not queued: the task queue is unavailable.")
        raise QueueUnavailable(f"The task queue is unavailable ({type(exc).__name__}); nothing was queued.") from exc
    return run


def execute_queued(run_id: str) -> None:
    """Worker side of enqueue(): run the recorded command exactly once."""
    if not ControlTowerRun.claim_queued(run_id):
        return  # already taken (redelivered message)
    run = ControlTowerRun.objects.get(pk=run_id)
    params = dict(run.parameters)
    command = Command(command_type=run.command_type, actor=run.executed_by, reason=run.reason,
                      target_modules=params.pop("target_modules", []), parameters=params)
    try:
        execute(command, run)
    except (CommandRefused, killswitch.KillSwitchError) as exc:
        run.fail(message=str(exc), errors_encountered=[str(exc)])
