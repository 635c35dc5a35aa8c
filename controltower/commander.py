"""The orchestrator: every action an operator, a schedule or the watchdog asks for enters here.

Adapters (console, API, admin, Celery tasks, management commands) call this module for actions —
the spec's eight commands, the emergency stop and resume, recovery by hand, the health cycle —
and it composes the use cases below it (killswitch, cycle, recovery), none of which calls back
up. Reads (health, reports, summaries) go to their services directly.

Every command is one ControlTowerRun row (who, why, what it did). State-changing commands
are serialised by the row lock on TowerState (on SQLite, whose `select_for_update` is a
no-op, the IMMEDIATE transactions configured in settings give the same exclusion).
Commands that run module jobs execute them here, through the same recorded path as the
scheduler (`@module_job`, see schedules.run_module_now), so their outcome is in the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from controltower import audit, cycle, drills, findings, killswitch, queue, readiness, recovery, schedules
from controltower.models import (
    Canary,
    ControlTowerRun,
    FireDrill,
    ReadinessCheck,
    RecoveryAttempt,
    RecoveryState,
    RunState,
    RunType,
    TowerState,
)
from controltower.recovery_policy import Action
from meta_modules import parts
from meta_modules.gate import operations_halted
from meta_modules.models import MetaModule, ModuleRun

# Spellings used by the spec's own examples.
ALIASES = {
    "optimize_all": "optimize",
    "sync_all_data": "sync_data",
    "run_health_check": "health_check",
    "resume_operations": "resume",
}
SYNC_MODULES = ("10.2", "10.4", "10.14")
OPTIMIZATION_CHAIN = ("10.5", "10.6", "10.16")
RECOVERING = "recovery"  # recovery by hand, whatever its procedure, in REFUSED_WHILE_HALTED
FIRE_DRILL = "fire_drill"

# What would restart spending is refused while the tower is halted: these commands and recovery by
# hand (the console shows them disabled; the API, the admin and the console get this refusal).
REFUSED_WHILE_HALTED = {
    "start_all": "Emergency stop active: starting modules would restart spending. Resume first.",
    "restart_module": "Emergency stop active: restarting modules would restart spending. Resume first.",
    RECOVERING: "Emergency stop active: resume before recovering modules.",
    FIRE_DRILL: "Emergency stop active: a fire drill would re-activate campaigns. Resume first.",
}


class CommandRefused(Exception):
    """The command cannot run in the tower's current state (answered 409)."""


class QueueUnavailable(Exception):
    """The Celery broker did not take the queued command (answered 503)."""


def canonical(command_type: str) -> str:
    return ALIASES.get(command_type, command_type)


@dataclass
class Command:
    command_type: str  # a name of COMMANDS or one of its ALIASES (kept canonical)
    actor: str
    reason: str = ""
    target_modules: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.command_type = canonical(self.command_type)


@dataclass
class Outcome:
    modules_affected: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    message: str = ""


@dataclass
class Delegated:
    """A command carried out by a use case that records its own run (stop, resume, health check)."""

    run_id: str | None
    message: str


@dataclass(frozen=True)
class Handler:
    run: Callable[[Command], Outcome | Delegated]
    records_itself: bool = False  # makes its own run (Delegated); a queued placeholder points to it


def _modules(codes: list[str]) -> list[MetaModule]:
    query = MetaModule.objects.select_related("periodic_task__interval")
    return list(query.filter(code__in=codes) if codes else query.all())


def refuse_while_halted(action: str) -> None:
    """The one place that decides "refused while halted" (see REFUSED_WHILE_HALTED)."""
    if action in REFUSED_WHILE_HALTED and operations_halted():
        raise CommandRefused(REFUSED_WHILE_HALTED[action])


def mark_operator_acted(codes: list[str]) -> None:
    """An operator acted on these modules: auto-recovery's counter starts again, no human is awaited."""
    RecoveryState.objects.filter(module_code__in=codes).update(
        needs_human=False, needs_human_since=None, counter_reset_at=timezone.now()
    )


def set_running(modules: list[MetaModule], command: Command) -> list[str]:
    now = timezone.now()
    for module in modules:
        module.desired_state, module.desired_state_by = MetaModule.DesiredState.RUNNING, command.actor
        module.desired_state_at, module.desired_state_reason = now, command.reason
    schedules.enable_staggered([module.periodic_task for module in modules])
    MetaModule.objects.bulk_update(
        modules, ["desired_state", "desired_state_by", "desired_state_at", "desired_state_reason"]
    )
    mark_operator_acted([m.code for m in modules])
    return [m.code for m in modules]


def _start(command: Command) -> Outcome:
    with transaction.atomic():
        TowerState.locked()
        refuse_while_halted("start_all")
        codes = set_running(_modules(command.target_modules), command)
    return Outcome(
        codes,
        [{"action": "start", "modules": codes}],
        message=f"Started {len(codes)} modules (first runs staggered {settings.START_STAGGER_SECONDS} s apart).",
    )


def _stop(command: Command) -> Outcome:
    with transaction.atomic():
        TowerState.locked()
        modules = _modules(command.target_modules)
        now = timezone.now()
        MetaModule.objects.filter(pk__in=[m.pk for m in modules]).update(
            desired_state=MetaModule.DesiredState.STOPPED,
            desired_state_by=command.actor,
            desired_state_at=now,
            desired_state_reason=command.reason,
        )
        schedules.disable(modules)
    codes = [m.code for m in modules]
    return Outcome(
        codes,
        [{"action": "stop", "modules": codes}],
        message=f"Stopped {len(codes)} modules; queued runs of them will do nothing.",
    )


def _restart(command: Command) -> Outcome:
    with transaction.atomic():
        TowerState.locked()
        refuse_while_halted("restart_module")
        modules = _modules(command.target_modules)
        external = [m.code for m in modules if not schedules.is_builtin(m.code)]
        if external:
            raise CommandRefused(f"{', '.join(external)} run outside this codebase: the tower cannot restart them.")
        set_running(modules, command)
        cancelled = {m.code: schedules.cancel_in_flight(m, f"Cancelled by restart ({command.actor})") for m in modules}
    runs = [schedules.run_module_now(m.code) for m in modules]
    failed = [r for r in runs if r["outcome"] != ModuleRun.Outcome.SUCCESS]
    return Outcome(
        [m.code for m in modules],
        [{"action": "restart", "cancelled_in_flight": cancelled}, *({"action": "run", **r} for r in runs)],
        [f"{r['module']}: {r['outcome']} {r['error']}".strip() for r in failed],
        f"Restarted {', '.join(m.code for m in modules)}: "
        + ", ".join(f"{r['module']} {r['outcome']}" for r in runs)
        + ".",
    )


def _run_modules(codes: tuple[str, ...], chain: bool) -> Outcome:
    runs = []
    for code in codes:
        runs.append(schedules.run_module_now(code))
        if chain and runs[-1]["outcome"] != ModuleRun.Outcome.SUCCESS:
            break
    failed = [r for r in runs if r["outcome"] != ModuleRun.Outcome.SUCCESS]
    stopped_early = len(runs) < len(codes)
    message = ", ".join(f"{r['module']} {r['outcome']}" for r in runs)
    if stopped_early:
        message += f"; chain stopped at {runs[-1]['module']}"
    return Outcome(
        [r["module"] for r in runs],
        [{"action": "run", **r} for r in runs],
        [f"{r['module']}: {r['outcome']} {r['error']}".strip() for r in failed],
        message + ".",
    )


def _emergency_stop_command(command: Command) -> Delegated:
    result = emergency_stop(killswitch.StopRequest.from_options(command.actor, command.reason, command.parameters))
    return Delegated(result.run_id, result.message)


def _resume_command(command: Command) -> Delegated:
    resumed = resume(killswitch.ResumeRequest.from_options(command.actor, command.reason, command.parameters))
    if resumed.awaiting_approval:
        raise CommandRefused(resumed.message)
    return Delegated(resumed.run_id, resumed.message)


def _health_check_command(command: Command) -> Delegated:
    check = health_cycle(executed_by=command.actor)
    ControlTowerRun.objects.filter(pk=check.pk).update(
        command_type="health_check", reason=command.reason, message=f"System {check.system_status.upper()}."
    )
    audit.record(
        "command",
        command="health_check",
        actor=command.actor,
        reason=command.reason,
        run_id=check.pk,
        outcome="ok",
        system_status=check.system_status,
        modules_checked=check.total_modules_checked,
    )
    return Delegated(str(check.pk), f"System {check.system_status.upper()}.")


# The one dispatch table: every command by its canonical name, in the spec's order.
HANDLERS = {
    "start_all": Handler(_start),
    "stop_all": Handler(_stop),
    "restart_module": Handler(_restart),
    "emergency_stop": Handler(_emergency_stop_command, records_itself=True),
    "resume": Handler(_resume_command, records_itself=True),
    "sync_data": Handler(lambda c: _run_modules(SYNC_MODULES, chain=False)),
    "optimize": Handler(lambda c: _run_modules(OPTIMIZATION_CHAIN, chain=True)),
    "health_check": Handler(_health_check_command, records_itself=True),
}
COMMANDS = tuple(HANDLERS)


def new_run(command: Command, state: str) -> ControlTowerRun:
    return ControlTowerRun.objects.create(
        run_type=RunType.COMMAND,
        command_type=command.command_type,
        state=state,
        executed_by=command.actor,
        reason=command.reason,
        parameters={"target_modules": command.target_modules, **command.parameters},
        system_status=TowerState.get().system_status,
        mode=settings.META_MODE,
    )


def execute(command: Command, run: ControlTowerRun | None = None) -> ControlTowerRun:
    """Execute a command now; returns its run (for stop/resume/health_check, the run they made)."""
    handler = HANDLERS[command.command_type]
    if handler.records_itself:
        done = handler.run(command)
        return _adopt(run, done.run_id, done.message)
    started = time.monotonic()
    run = run or new_run(command, RunState.RUNNING)
    run.start()
    try:
        outcome = handler.run(command)
    except CommandRefused as exc:
        _close(run, started, command, Outcome(errors=[str(exc)], message=str(exc)), RunState.FAILED, "refused")
        raise
    except Exception as exc:
        _close(
            run,
            started,
            command,
            Outcome(errors=[f"{type(exc).__name__}: {exc}"], message="Command failed."),
            RunState.FAILED,
            "failed",
        )
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
    end(
        started,
        modules_affected=outcome.modules_affected,
        actions_executed=outcome.actions,
        errors_encountered=outcome.errors,
        message=outcome.message,
        system_status=TowerState.get().system_status,
    )
    audit.record(
        "command",
        command=command.command_type,
        actor=command.actor,
        reason=command.reason,
        run_id=run.pk,
        outcome=verdict,
        modules_affected=outcome.modules_affected,
        modules=len(outcome.modules_affected),
        errors=len(outcome.errors),
        message=outcome.message,
    )


def enqueue(command: Command) -> ControlTowerRun:
    """execute_immediately=false: record the run as queued and hand it to a worker."""
    run = new_run(command, RunState.QUEUED)
    try:
        queue.send("controltower.tasks.execute_command", [str(run.pk)])
    except Exception as exc:
        run.fail(
            errors_encountered=[f"Task queue unavailable: {exc}"], message="Not queued: the task queue is unavailable."
        )
        raise QueueUnavailable(f"The task queue is unavailable ({type(exc).__name__}); nothing was queued.") from exc
    return run


def execute_queued(run_id: str) -> None:
    """Worker side of enqueue(): run the recorded command exactly once."""
    if not ControlTowerRun.claim_queued(run_id):
        return  # already taken (redelivered message)
    run = ControlTowerRun.objects.get(pk=run_id)
    params = dict(run.parameters)
    command = Command(
        command_type=run.command_type,
        actor=run.executed_by,
        reason=run.reason,
        target_modules=params.pop("target_modules", []),
        parameters=params,
    )
    try:
        execute(command, run)
    except (CommandRefused, killswitch.KillSwitchError) as exc:
        run.fail(message=str(exc), errors_encountered=[str(exc)])


# --- the kill switch, recovery by hand and the health cycle ---------------------------------


def emergency_stop(request: killswitch.StopRequest) -> killswitch.StopResult:
    """The emergency stop (or its dry run, `request.dry_run`)."""
    return killswitch.emergency_stop(request)


def resume(request: killswitch.ResumeRequest) -> killswitch.ResumeResult:
    """Lift the halt, then (when asked) run a health cycle, whose status the resume reports."""
    lifted = killswitch.resume(request)
    if isinstance(lifted, killswitch.ResumeResult):  # a dry run, a refusal awaiting approval, or overtaken
        return lifted
    check = health_cycle(executed_by=lifted.request.actor) if lifted.request.run_health_check else None
    return killswitch.report_resume(lifted, check)


def recover(code: str, action: str, actor: str, reason: str = "") -> RecoveryAttempt:
    """An operator runs a recovery procedure by hand (e.g. a recommended RESET_MODULE): refused while
    halted and on modules that run elsewhere; it counts as an operator acting, so the module's restart
    counter starts again."""
    refuse_while_halted(RECOVERING)
    if action not in (Action.RECONNECT_DB, Action.CLEAR_CACHE) and not schedules.is_builtin(code):
        raise CommandRefused(f"Module {code} runs outside this codebase: the tower cannot run or restart it.")
    attempt = recovery.operator_action(code, action, actor, reason)
    mark_operator_acted([code])
    return attempt


def fire_drill(actor: str, reason: str, trigger: str = FireDrill.Trigger.OPERATOR) -> FireDrill:
    """Drill the canary campaigns now (controltower.drills). Refused while halted, with no canary
    designated and while another drill runs; a refusal is recorded as a refused drill."""
    try:
        refuse_while_halted(FIRE_DRILL)
        return drills.run(actor, reason, trigger)
    except (CommandRefused, drills.DrillRefused) as exc:
        drills.refused(actor, reason, trigger, str(exc))
        raise CommandRefused(str(exc)) from exc


def designate_canary(account_id: str, campaign_id: str, actor: str, reason: str) -> Canary:
    """An operator designates a campaign its account's canary (drills.designate: checked on Meta)."""
    return drills.designate(account_id, campaign_id, actor, reason)


def release_canary(canary: Canary, actor: str, reason: str = "") -> None:
    drills.release(canary, actor, reason)


def upkeep() -> None:
    """The kill switch's own upkeep, by the watchdog and every health cycle: carry out the emergency
    stops spend spikes asked for (10.9, opt-in), finish a halt nobody is finishing (its stop or sweep
    died before it was complete) and re-activations a resume left."""
    killswitch.stop_for_requested_spikes()
    killswitch.finish_abandoned()


def check_readiness(actor: str) -> ReadinessCheck:
    """Would the kill switch work now: asked on demand (the health cycle asks at every check)."""
    return readiness.check(actor)


def health_cycle(executed_by: str) -> ControlTowerRun:
    """The health cycle: the upkeep, then probe → evaluate → recover → persist → alerts, all under the
    cycle's lease (one cycle at a time; a second one is recorded as skipped). Recovery acts on this
    check's facts; its effect shows (and is verified) at the next check."""
    with cycle.lease_cycle() as acquired:
        if not acquired:
            return cycle.skipped(executed_by)
        started = time.perf_counter()
        upkeep()
        parts.close_overdue()  # a module run whose parts never reported is closed before it is judged
        report = cycle.assess()
        found = readiness.conditions(readiness.check(executed_by))
        found += findings.drill_conditions(FireDrill.latest_verdict())
        return cycle.record(report, recovery.recover(report), executed_by, started, found)
