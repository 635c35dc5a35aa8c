"""The operator console: server-rendered pages over the tower's own functions.

The console decides nothing itself: health comes from `health.evaluate()`, actions go
through the commander, the kill switch and the recovery engine, exactly as the API's do.
Pages that refresh have a fragments endpoint answering JSON with their partials
pre-rendered; console.js swaps them in, and without JavaScript the pages work as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.staticfiles import finders
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_http_methods

from controltower import (
    campaign_lists,
    channels,
    commander,
    findings,
    health,
    killswitch,
    readiness_policy,
    recovery,
    reports,
    rules,
)
from controltower.console import charts, queries, readiness_digest, tables, times
from controltower.console.access import can_operate, operator_required, passive, staff_required, throttled
from controltower.console.forms import (
    CampaignSearchForm,
    DrillForm,
    NotificationFilterForm,
    ReasonForm,
    ReportForm,
    ResumeForm,
    RunFilterForm,
    StopForm,
)
from controltower.models import (
    CampaignHold,
    Canary,
    ControlTowerRun,
    FireDrill,
    Notification,
    ReadinessCheck,
    RecoveryAttempt,
    RunState,
    RunType,
    TowerState,
)
from meta_modules import throttle
from meta_modules.models import MetaModule

PAGE_SIZE = 50
FAVICON = "controltower/favicon.svg"
RECOVERY_ATTEMPTS_SHOWN = 20
# The access tiers Meta gives ad accounts, as the dashboard names them ('': not learnt yet).
TIER_LABELS = {
    "development_access": "DEVELOPMENT (about 20 pauses per 5 min)",
    "standard_access": "standard",
    "": "not learnt yet",
}
ACCOUNTS_NAMED_PER_TIER = 10
READINESS_CHECKS_SHOWN = 10
UNLISTED_SHOWN = 20  # accounts the stop preview does not list but the readiness check found not ready


@dataclass(frozen=True)
class Action:
    label: str
    command: str  # a commander command, or a recovery action for module recovery
    confirm: str = ""  # non-empty: destructive, goes through a confirmation page saying this
    recovery: bool = False

    @property
    def refused_while_halted(self) -> bool:
        """The server refuses it during an emergency stop: recovery by hand, or a command that would
        restart spending."""
        return (commander.RECOVERING if self.recovery else self.command) in commander.REFUSED_WHILE_HALTED


COMMANDS = {
    "start_all": Action("Start all", "start_all"),
    "stop_all": Action(
        "Stop all",
        "stop_all",
        confirm="Every module's scheduler is disabled and its desired state "
        "set to stopped; nothing runs until someone starts them again. Campaigns keep running.",
    ),
    "sync_data": Action("Sync data", "sync_data"),
    "optimize": Action("Optimize", "optimize"),
    "health_check": Action("Run health check", "health_check"),
}
MODULE_ACTIONS = {
    "start": Action("Start", "start_all"),
    "restart": Action("Restart (run now)", "restart_module"),
    "stop": Action("Stop", "stop_all", confirm="The module's scheduler is disabled until someone starts it again."),
    "clear_cache": Action(
        "Clear cache",
        "clear_cache",
        recovery=True,
        confirm="The module's cache namespace is emptied; its next run rebuilds it.",
    ),
    "reset_module": Action(
        "Reset module",
        "reset_module",
        recovery=True,
        confirm="Its running runs are closed, its cache emptied, its 24 h error window restarted, "
        "and it runs once now.",
    ),
}
DASHBOARD_FRAGMENTS = {
    "system-status": "console/_status.html",
    "halt": "console/_halt.html",
    "modules": "console/_modules.html",
    "findings": "console/_findings.html",
    "alert-channels": "console/_alert_channels.html",
    "readiness": "console/_readiness_line.html",
}
MODULE_FRAGMENTS = {"module-facts": "console/_module_facts.html", "module-runs": "console/_module_runs.html"}
STOP_FRAGMENTS = {"stop-result": "console/_stop_result.html"}


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, template, {"can_operate": can_operate(request), **context}, status=status)


def _fragments(
    request: HttpRequest, templates: dict[str, str], context: dict[str, Any], done: bool = False
) -> JsonResponse:
    context = {"can_operate": can_operate(request), **context}
    return JsonResponse(
        {
            "fragments": {key: render_to_string(name, context, request=request) for key, name in templates.items()},
            "done": done,
        }
    )


def halt_refusal(state: TowerState) -> str:
    """Why the actions refused while halted are refused now, for their title ("" when not halted)."""
    if not state.emergency_stop_active:
        return ""
    when = f" at {times.zoned(state.halted_at)}" if state.halted_at else ""
    return f"Refused while halted: emergency stop by {state.halted_by or 'unknown'}{when} — resume first"


def _run_link(message: str, run_id: Any) -> str:
    return format_html('{} <a href="{}">Run details</a>', message, reverse("console:run", args=[run_id]))


def _campaign_search(
    request: HttpRequest, paging: Callable[[campaign_lists.Search], Any], states: list[tuple[str, str]] | None = None
) -> tuple[dict[str, Any], bool]:
    """A page's campaign search (GET account, state, q, page) and the page of campaigns `paging` found
    for it. False when the search is invalid or its page past the last: the page then shows why and
    no campaigns (a 400), never every campaign as if unfiltered."""
    form = CampaignSearchForm(request.GET, states)
    search = form.search()
    if search is not None:
        try:
            return {"search_form": form, "campaigns": paging(search)}, True
        except campaign_lists.PageNotFound as exc:
            form.add_error(None, str(exc))
    return {"search_form": form, "campaigns": None}, False


def _ledger_search(request: HttpRequest, run: ControlTowerRun) -> tuple[dict[str, Any], bool]:
    """A run's campaigns from the ledger, searched and a page at a time."""
    holds = campaign_lists.holds_of(run)
    return _campaign_search(
        request,
        lambda search: campaign_lists.page_of(campaign_lists.search_holds(holds, search), search),
        CampaignHold.State.choices,
    )


# --- site ---------------------------------------------------------------------------


@require_GET
@cache_control(public=True, max_age=86400)
def favicon(request: HttpRequest) -> FileResponse:
    """/favicon.ico, which browsers and the admin ask for without a <link>: the console's icon,
    from the static source (served here, not redirected, so it answers before collectstatic too)."""
    return FileResponse(open(finders.find(FAVICON), "rb"), content_type="image/svg+xml")


# --- dashboard ------------------------------------------------------------------------


def _halt_context(request: HttpRequest, state: TowerState) -> dict[str, Any]:
    pending = state.resume_awaiting_approval()
    return {
        "state": state,
        "resume_pending": pending,
        "halt_refusal": halt_refusal(state),
        "own_resume_request": pending and state.resume_requested_by == _actor(request),
        "two_person_rule": settings.RESUME_REQUIRES_SECOND_APPROVER,
    }


def _alerting() -> dict[str, Any]:
    """Who a stop or resume will tell (the stop and resume pages)."""
    return {"alert_channels": channels.configured(), "alert_summary": channels.describe()}


@dataclass(frozen=True)
class TierGroup:
    tier: str
    label: str
    count: int
    named: list[str]

    @property
    def more(self) -> int:
        return self.count - len(self.named)


def tier_groups(tiers: dict[str, str]) -> list[TierGroup]:
    """The accounts by access tier, development first, each group naming its first few accounts:
    one line for an agency's hundreds of accounts. A tier Meta names otherwise counts as not learnt."""
    by_tier: dict[str, list[str]] = {tier: [] for tier in TIER_LABELS}
    for account, tier in tiers.items():
        by_tier[tier if tier in TIER_LABELS else ""].append(account)
    return [
        TierGroup(tier, TIER_LABELS[tier], len(accounts), accounts[:ACCOUNTS_NAMED_PER_TIER])
        for tier, accounts in by_tier.items()
        if accounts
    ]


def _dashboard_context(request: HttpRequest) -> dict[str, Any]:
    report = health.evaluate()
    state = TowerState.get()
    strips = queries.health_strips()
    channel_states = channels.states()
    return {
        "channel_states": channel_states,
        "alert_configured": any(c.configured for c in channel_states),
        **_halt_context(request, state),
        "report": report,
        "modules": [{"health": m, "strip": strips.get(m.code, [])} for m in report.modules],
        "recommendations": findings.recommendations(report),
        "alerts": findings.alert_conditions(report),
        "commands": COMMANDS,
        "strip_size": queries.STRIP_CHECKS,
        "access_tiers": tier_groups(throttle.learnt_tiers()),
        **_readiness_context(),
    }


@require_GET
@staff_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return _page(request, "console/dashboard.html", _dashboard_context(request))


@require_GET
@staff_required
@passive
def dashboard_fragments(request: HttpRequest) -> JsonResponse:
    return _fragments(request, DASHBOARD_FRAGMENTS, _dashboard_context(request))


# --- kill-switch readiness ----------------------------------------------------------------


def _digest(latest: ReadinessCheck | None) -> readiness_digest.Digest | None:
    """Stale after two health cycles without a check: the cycle checks at every run."""
    stale_after = timedelta(seconds=2 * settings.HEALTH_CYCLE_INTERVAL_SECONDS)
    return readiness_digest.digest(latest, timezone.now(), stale_after) if latest else None


def _readiness_context() -> dict[str, Any]:
    """The latest readiness check, digested for the line beside the kill switch (None before any)."""
    latest = ReadinessCheck.latest()
    return {
        "readiness": _digest(latest),
        "readiness_next": reverse("console:dashboard"),
    }


READINESS_MESSAGE_LEVELS = {
    readiness_policy.READY: messages.SUCCESS,
    readiness_policy.DEGRADED: messages.WARNING,
    readiness_policy.NOT_READY: messages.ERROR,
}


@require_http_methods(["POST"])
@operator_required
@throttled("command")
def readiness_check(request: HttpRequest) -> HttpResponse:
    """Check now: asks Meta (reads only) through the commander, records the check with who asked,
    and goes back where the button was."""
    found = commander.check_readiness(_actor(request))
    messages.add_message(
        request, READINESS_MESSAGE_LEVELS.get(found.verdict, messages.INFO), f"Readiness checked: {found.summary}"
    )
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("console:dashboard")
    return redirect(back)


@require_GET
@staff_required
def readiness(request: HttpRequest) -> HttpResponse:
    """The latest check in full: the token, every ad account a page at a time (the worst first,
    filterable by verdict), and the verdicts of the checks before it."""
    latest = ReadinessCheck.latest()
    verdict = request.GET.get("verdict", "")
    status = 200
    if verdict and verdict not in readiness_policy.VERDICT_LABELS:
        messages.error(request, f"Unknown verdict {verdict!r}: one of {', '.join(readiness_policy.VERDICT_LABELS)}.")
        verdict, status = "", 400
    recent = list(ReadinessCheck.objects.defer("accounts", "token", "reasons")[:READINESS_CHECKS_SHOWN])
    context: dict[str, Any] = {
        "readiness": _digest(latest),
        "readiness_next": reverse("console:readiness"),
        "recent_checks": recent,
        "verdict": verdict,
        "verdicts": readiness_policy.VERDICT_LABELS,
    }
    if latest:
        rows = readiness_digest.ordered_accounts(latest, verdict)
        context["accounts"] = readiness_digest.page_of_accounts(rows, request.GET.get("page"))
    return _page(request, "console/readiness.html", context, status=status)


# --- emergency stop and resume --------------------------------------------------------


@require_http_methods(["GET", "POST"])
@operator_required
@throttled("emergency_stop")
def emergency_stop(request: HttpRequest) -> HttpResponse:
    form = StopForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        result = commander.emergency_stop(killswitch.StopRequest(actor=_actor(request), **form.cleaned_data))
        level = messages.INFO if result.joined else messages.SUCCESS if result.success else messages.WARNING
        messages.add_message(request, level, result.message)
        for error in result.errors:
            messages.error(request, error)
        return redirect("console:stop-result", run_id=result.run_id)
    # The confirmation shows exactly what would stop, read from the scheduler and from Meta now: per
    # ad account in full, the campaigns a page at a time (30,000 at agency scale).
    preview = commander.emergency_stop(
        killswitch.StopRequest(reason="console preview", actor=_actor(request), dry_run=True)
    )
    search, found = _campaign_search(request, lambda s: campaign_lists.page_stop_preview(preview.preview, s))
    return _page(
        request,
        "console/emergency_stop.html",
        {
            "form": form,
            "preview": preview,
            "state": TowerState.get(),
            **search,
            **_alerting(),
            **_stop_readiness(preview.preview or {}),
        },
        status=400 if form.is_bound or not found else 200,
    )


def _stop_readiness(preview: dict[str, Any]) -> dict[str, Any]:
    """The latest readiness check beside the stop's preview: each account's verdict in its row, and
    the accounts the check found not ready that the preview does not list (unreadable, say). It
    informs; the stop is never refused for it."""
    latest = ReadinessCheck.latest()
    judged = readiness_digest.by_account(latest)
    rows = (preview.get("stakes") or {}).get("accounts") or []
    listed = {row.get("account") for row in rows}
    unlisted = [a for a in readiness_digest.ordered_accounts(latest) if a["account_id"] not in listed] if latest else []
    unlisted = [a for a in unlisted if a.get("verdict") != readiness_policy.READY]
    return {
        "readiness": _digest(latest),
        "stake_rows": [(row, judged.get(row.get("account"))) for row in rows],
        "unready_unlisted": unlisted[:UNLISTED_SHOWN],
        "unready_unlisted_more": max(0, len(unlisted) - UNLISTED_SHOWN),
        "readiness_next": reverse("console:emergency-stop"),
    }


def _stop_context(run_id: UUID) -> dict[str, Any]:
    run = get_object_or_404(ControlTowerRun, pk=run_id, run_type=RunType.EMERGENCY_STOP)
    return {
        "run": run,
        "errors": rules.capped(run.errors_encountered),
        "summary": queries.hold_summary(run),
        "schedulers": queries.action(run, "disable_schedulers").get("modules", []),
        "alerts_sent": queries.action(run, "alerts").get("sent"),
        "alerts_outcome": queries.action(run, "alerts").get("outcome", ""),
        "notifications": list(run.notifications.order_by("sent_at")),
        "state": TowerState.get(),
    }


@require_GET
@staff_required
def stop_result(request: HttpRequest, run_id: UUID) -> HttpResponse:
    context = _stop_context(run_id)
    # The campaigns are outside the refreshing fragment: searched once per page load, not per refresh.
    search, found = _ledger_search(request, context["run"])
    return _page(request, "console/stop_result.html", {**context, **search}, status=200 if found else 400)


@require_GET
@staff_required
@passive
def stop_result_fragments(request: HttpRequest, run_id: UUID) -> JsonResponse:
    context = _stop_context(run_id)
    return _fragments(request, STOP_FRAGMENTS, context, done=context["summary"].done)


@require_http_methods(["GET", "POST"])
@operator_required
@throttled("resume")
def resume(request: HttpRequest) -> HttpResponse:
    form = ResumeForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            result = commander.resume(killswitch.ResumeRequest(actor=_actor(request), **form.cleaned_data))
        except killswitch.KillSwitchError as exc:
            messages.error(request, str(exc))
            return redirect("console:dashboard")
        if result.awaiting_approval:
            messages.info(request, result.message)
            return redirect("console:dashboard")
        messages.add_message(
            request, messages.SUCCESS if result.success else messages.WARNING, _run_link(result.message, result.run_id)
        )
        for error in result.errors:
            messages.error(request, error)
        return redirect("console:dashboard")  # where the status is seen coming back
    state = TowerState.get()
    preview, found = _resume_preview(request) if state.emergency_stop_active else ({}, True)
    return _page(
        request,
        "console/resume.html",
        {"form": form, **_halt_context(request, state), **_alerting(), **preview},
        status=400 if form.is_bound or not found else 200,
    )


def _resume_preview(request: HttpRequest) -> tuple[dict[str, Any], bool]:
    """The confirmation shows exactly what resume would do, decided as resume decides, from Meta now:
    per ad account in full, the campaigns a page at a time."""
    try:
        preview = commander.resume(killswitch.ResumeRequest(actor=_actor(request), dry_run=True))
    except killswitch.KillSwitchError as exc:  # resume would refuse now: say why instead
        return {"preview_refused": str(exc)}, True
    actions = [(action, action) for action in campaign_lists.PREVIEW_ACTIONS]
    search, found = _campaign_search(request, lambda s: campaign_lists.page_resume_preview(preview.preview, s), actions)
    return {"preview": preview, **search}, found


@require_http_methods(["POST"])
@operator_required
@throttled("command")
def test_alert(request: HttpRequest, kind: str) -> HttpResponse:
    """Send a marked test message through one configured channel; recorded with who asked."""
    if kind not in channels.KINDS:
        raise Http404("Unknown alert channel")
    try:
        sent = channels.send_test(kind, _actor(request))
    except channels.NotConfigured as exc:
        return _page(request, "console/forbidden.html", {"why": str(exc), "status": 409}, status=409)
    if sent.ok:
        messages.success(request, f"Test message delivered via {kind} ({channels.target(kind)}).")
    else:
        messages.error(request, f"Test message via {kind} failed: {sent.error}")
    return redirect(f"{reverse('console:dashboard')}#alert-channels")


# --- commands and module actions ------------------------------------------------------


def _execute(request: HttpRequest, command: commander.Command) -> None:
    """Run a command now and report its outcome (or the tower's refusal) as messages."""
    try:
        run = commander.execute(command)
    except (commander.CommandRefused, killswitch.KillSwitchError) as exc:
        messages.error(request, str(exc))
        return
    failed = run.errors_encountered and run.run_type != RunType.HEALTH_CHECK
    messages.add_message(
        request,
        messages.ERROR if failed else messages.SUCCESS,
        _run_link(run.message or f"{command.command_type} done.", run.pk),
    )
    for error in run.errors_encountered if failed else []:
        messages.error(request, str(error))


@require_http_methods(["GET", "POST"])
@operator_required
@throttled("command")
def command(request: HttpRequest, name: str) -> HttpResponse:
    spec = COMMANDS.get(name)
    if spec is None:
        raise Http404("Unknown command")
    form = ReasonForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        _execute(request, commander.Command(spec.command, actor=_actor(request), reason=form.cleaned_data["reason"]))
        return redirect("console:dashboard")
    return _page(
        request,
        "console/confirm.html",
        {
            "form": form,
            "action": spec,
            "title": f"{spec.label}: confirm",
            "halt_refusal": halt_refusal(TowerState.get()),
            "post_url": reverse("console:command", args=[name]),
            "cancel_url": reverse("console:dashboard"),
        },
    )


def _module_action(request: HttpRequest, module: MetaModule, spec: Action, reason: str) -> None:
    if not spec.recovery:
        _execute(
            request, commander.Command(spec.command, actor=_actor(request), reason=reason, target_modules=[module.code])
        )
        return
    try:
        attempt = commander.recover(module.code, spec.command, _actor(request), reason)
    except commander.CommandRefused as exc:
        messages.error(request, str(exc))
        return
    ok = attempt.outcome == RecoveryAttempt.Outcome.SUCCEEDED
    messages.add_message(
        request,
        messages.SUCCESS if ok else messages.ERROR,
        f"{spec.label} on {module.code}: {attempt.get_outcome_display().lower()}.",
    )


@require_http_methods(["GET", "POST"])
@operator_required
@throttled("command")
def module_action(request: HttpRequest, code: str, name: str) -> HttpResponse:
    module = get_object_or_404(MetaModule, code=code)
    spec = MODULE_ACTIONS.get(name)
    if spec is None:
        raise Http404("Unknown module action")
    form = ReasonForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        _module_action(request, module, spec, form.cleaned_data["reason"])
        return redirect("console:module", code=code)
    return _page(
        request,
        "console/confirm.html",
        {
            "form": form,
            "action": spec,
            "module": module,
            "title": f"{spec.label} {module}: confirm",
            "halt_refusal": halt_refusal(TowerState.get()),
            "post_url": reverse("console:module-action", args=[code, name]),
            "cancel_url": reverse("console:module", args=[code]),
        },
    )


# --- module page ----------------------------------------------------------------------


def _module_context(code: str) -> dict[str, Any]:
    module = get_object_or_404(MetaModule, code=code)
    report = health.evaluate()
    facts = next(m for m in report.modules if m.code == code)
    attempts, last_action, healed = recovery.module_summaries([code], report.checked_at)[code]
    return {
        "module": module,
        "facts": facts,
        "report": report,
        "runs": queries.recent_runs(module),
        "attempts": list(RecoveryAttempt.objects.filter(module_code=code)[:RECOVERY_ATTEMPTS_SHOWN]),
        "recovery_summary": {"attempts": attempts, "last_action": last_action, "healed": healed},
        "strip": queries.health_strips([code]).get(code, []),
        "chart": charts.run_durations(
            queries.chart_points(module, report.checked_at),
            title=f"{module.code} {module.name}: run durations, last {queries.CHART_DAYS} days",
        ),
        "actions": MODULE_ACTIONS,
        "chart_days": queries.CHART_DAYS,
        "strip_size": queries.STRIP_CHECKS,
        "halt_refusal": halt_refusal(TowerState.get()),
    }


@require_GET
@staff_required
def module_detail(request: HttpRequest, code: str) -> HttpResponse:
    return _page(request, "console/module.html", _module_context(code))


@require_GET
@staff_required
@passive
def module_fragments(request: HttpRequest, code: str) -> JsonResponse:
    return _fragments(request, MODULE_FRAGMENTS, _module_context(code))


# --- history --------------------------------------------------------------------------


def _code_key(code: str) -> list[tuple[int, str]]:
    """10.2 before 10.10 (numeric parts compare as numbers)."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in code.split(".")]


def _paginated(request: HttpRequest, rows: Any) -> Any:
    return Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))


@require_GET
@staff_required
def run_list(request: HttpRequest) -> HttpResponse:
    form = RunFilterForm(request.GET)
    runs = form.filter(
        ControlTowerRun.objects.defer(
            "module_health_details",
            "actions_executed",
            "recoveries_performed",
            "recommendations",
            "alerts",
            "parameters",
        ).order_by("-executed_at")
    )
    return _page(
        request,
        "console/runs.html",
        {"form": form, "page": _paginated(request, runs)},
        status=400 if form.errors else 200,
    )


@require_GET
@staff_required
def run_detail(request: HttpRequest, run_id: UUID) -> HttpResponse:
    run = get_object_or_404(ControlTowerRun, pk=run_id)
    # Only stops and resumes have campaigns in the ledger.
    has_ledger = run.run_type in (RunType.EMERGENCY_STOP, RunType.RESUME)
    search, found = _ledger_search(request, run) if has_ledger else ({}, True)
    result = run.result()
    return _page(
        request,
        "console/run.html",
        {
            "run": run,
            "result": result,
            "actions": tables.record_table(rules.capped_actions(run.actions_executed)),
            "errors": tables.record_table(rules.capped(result["errors"]), text_key="error"),
            "recoveries": tables.record_table(run.recoveries_performed),
            "module_details": sorted(run.module_health_details.items(), key=lambda item: _code_key(item[0])),
            "health_logs": sorted(run.health_logs.all(), key=lambda log: _code_key(log.module_name)),
            **search,
            "recovery_attempts": list(run.recoveries.all()),
            "notifications": list(run.notifications.order_by("sent_at")),
            "is_stop": run.run_type == RunType.EMERGENCY_STOP,
            "has_ledger": has_ledger,
        },
        status=200 if found else 400,
    )


@require_GET
@staff_required
def notification_list(request: HttpRequest) -> HttpResponse:
    form = NotificationFilterForm(request.GET)
    rows = form.filter(Notification.objects.select_related("run").order_by("-sent_at"))
    return _page(
        request,
        "console/notifications.html",
        {"form": form, "page": _paginated(request, rows)},
        status=400 if form.errors else 200,
    )


@require_GET
@staff_required
def report(request: HttpRequest) -> HttpResponse:
    """The report of GET /meta/control-tower/report, with its charts."""
    form = ReportForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return _page(request, "console/report.html", {"form": form, "report": None}, status=400)
    until = timezone.now()
    period = reports.Period(since=until - timedelta(days=form.period_days()), until=until)
    data = reports.build(period, now=until)
    # The chart's points: one small row per check (hourly: 8,760 a year), bucketed by charts.py.
    checks = ControlTowerRun.objects.filter(
        run_type=RunType.HEALTH_CHECK, state=RunState.COMPLETED, executed_at__range=(period.since, period.until)
    )
    timeline = charts.status_timeline(
        list(checks.values_list("executed_at", "system_status")), period.since, period.until
    )
    availability = charts.availability_bars(
        [(f"{m['module']} {m['name']}", m["availability_pct"]) for m in data["module_availability"]["modules"]]
    )
    return _page(
        request,
        "console/report.html",
        {
            "form": form,
            "report": data,
            "timeline": timeline,
            "availability": availability,
            "stop_frequency": reports.stop_frequency(data["emergency_stops"]["count"], period.seconds),
        },
    )


@require_http_methods(["GET", "POST"])
@staff_required
@throttled("command")
def drills(request: HttpRequest) -> HttpResponse:
    """Fire drills: the canary campaigns, the latest drills and, for operators, "Run a drill now"."""
    if request.method == "POST" and not can_operate(request):
        return _page(
            request,
            "console/forbidden.html",
            {"why": "Running a fire drill needs the operate_tower permission.", "status": 403},
            status=403,
        )
    form = DrillForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            drill = commander.fire_drill(_actor(request), form.cleaned_data["reason"], FireDrill.Trigger.OPERATOR)
        except commander.CommandRefused as exc:
            messages.error(request, f"Fire drill refused: {exc}")
        else:
            level = messages.SUCCESS if drill.state == FireDrill.State.PASSED else messages.ERROR
            messages.add_message(request, level, f"Fire drill {drill.state}: {drill.message}")
        return redirect("console:drills")
    state = TowerState.get()
    return _page(
        request,
        "console/drills.html",
        {
            "form": form,
            "canaries": Canary.objects.all(),
            "drills": FireDrill.objects.order_by("-started_at")[: reports.DRILLS_LISTED],
            "halt_refusal": commander.REFUSED_WHILE_HALTED[commander.FIRE_DRILL] if state.emergency_stop_active else "",
            "drill_schedule": settings.DRILL_SCHEDULE,
        },
        status=400 if form.is_bound else 200,
    )
