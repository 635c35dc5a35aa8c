"""The operator console: who sees what, who may act, and that every action does what it says."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from controltower import commander, killswitch
from controltower.models import (
    CampaignHold,
    ControlTowerRun,
    Notification,
    RecoveryAttempt,
    RunState,
    RunType,
    SystemStatus,
    TowerState,
)
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from meta_modules.models import MetaModule

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

MODULE = "10.5"
POST_FORM = re.compile(r"<form[^>]*method=\"post\"[^>]*>", re.IGNORECASE)
RUN_LINK = re.compile(r'href="/runs/[0-9a-f-]{36}/"')
STOP_OPTIONS = {"pause_campaigns": "on", "stop_schedulers": "on", "send_alerts": "on"}
RESUME_OPTIONS = {"resume_schedulers": "on", "resume_campaigns": "on", "run_health_check": "on"}
ACTION_PATHS = ("/emergency-stop/", "/resume/", "/commands/", "/actions/")


def _user(username: str, group: str | None = None, staff: bool = True) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=staff)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def _client(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def operator() -> Client:
    return _client(_user("olivia", OPERATORS_GROUP))


@pytest.fixture
def viewer() -> Client:
    return _client(_user("victor", VIEWERS_GROUP))


@pytest.fixture
def stop_run() -> ControlTowerRun:
    """A recorded emergency stop with a small ledger (no Meta needed to display it)."""
    run = ControlTowerRun.objects.create(
        run_type=RunType.EMERGENCY_STOP,
        command_type="emergency_stop",
        executed_by="alice",
        reason="Budget spike",
        system_status=SystemStatus.EMERGENCY_STOP,
        mode="stub",
        actions_executed=[
            {"action": "disable_schedulers", "modules": ["10.1", "10.2"]},
            {"action": "alerts", "sent": 1},
        ],
    )
    for index, state in enumerate(["paused", "paused", "failed"]):
        CampaignHold.objects.create(
            halt_run=run,
            stop_run=run,
            campaign_id=f"c{index}",
            account_id="act_1",
            campaign_name=f"Campaign {index}",
            prior_status="ACTIVE",
            state=state,
            last_error="(#100) Invalid parameter" if state == "failed" else "",
        )
    return run


def _pages(run: ControlTowerRun) -> list[str]:
    return ["/", f"/modules/{MODULE}/", "/runs/", f"/runs/{run.pk}/", f"/stops/{run.pk}/", "/notifications/"]


def _fragment_urls(run: ControlTowerRun) -> list[str]:
    return ["/fragments/", f"/modules/{MODULE}/fragments/", f"/stops/{run.pk}/fragments/"]


ACTION_URLS = [
    "/emergency-stop/",
    "/resume/",
    *(f"/commands/{name}/" for name in ("start_all", "stop_all", "sync_data", "optimize", "health_check")),
    *(f"/modules/{MODULE}/actions/{name}/" for name in ("start", "stop", "restart", "clear_cache", "reset_module")),
]


def _world() -> tuple:
    """What an action would change: runs, recoveries, halt, enabled schedules, desired states."""
    return (
        ControlTowerRun.objects.count(),
        RecoveryAttempt.objects.count(),
        TowerState.get().emergency_stop_active,
        PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).count(),
        sorted(MetaModule.objects.values_list("code", "desired_state")),
    )


# --- access -----------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page(stop_run) -> None:
    for url in _pages(stop_run) + _fragment_urls(stop_run) + ACTION_URLS:
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next="), url


def test_non_staff_users_get_403(stop_run) -> None:
    member = _client(_user("mallory", staff=False))
    for url in _pages(stop_run) + _fragment_urls(stop_run) + ACTION_URLS:
        assert member.get(url).status_code == 403, url
    assert member.post("/emergency-stop/", {"reason": "x"}).status_code == 403
    assert not TowerState.get().emergency_stop_active


def test_a_viewer_sees_every_page_without_any_action(viewer: Client, stop_run) -> None:
    TowerState.objects.filter(pk=1).update(
        emergency_stop_active=True, halted_by="alice", halt_run=stop_run, halted_at=timezone.now(), halt_reason="spike"
    )
    for url in _pages(stop_run):
        response = viewer.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert 'id="emergency-stop-button"' not in html and 'id="resume-button"' not in html, url
        assert [form for form in POST_FORM.findall(html) if 'id="logout-form"' not in form] == [], url
        assert not any(path in html for path in ACTION_PATHS), url
    for url in _fragment_urls(stop_run):
        fragments = viewer.get(url).json()["fragments"]
        assert not any(POST_FORM.search(html) or "/resume/" in html for html in fragments.values()), url


def test_an_operator_sees_the_kill_switch_on_every_page_and_the_buttons(operator: Client, stop_run) -> None:
    for url in _pages(stop_run):
        html = operator.get(url).content.decode()
        assert 'id="emergency-stop-button"' in html and 'href="/emergency-stop/"' in html, url
    dashboard = operator.get("/").content.decode()
    for name in ("start_all", "sync_data", "optimize", "health_check"):
        assert f'action="/commands/{name}/"' in dashboard and f'id="command-{name}"' in dashboard
    assert 'href="/commands/stop_all/"' in dashboard  # destructive: through its confirmation page
    module = operator.get(f"/modules/{MODULE}/").content.decode()
    for name in ("start", "restart"):
        assert f'action="/modules/{MODULE}/actions/{name}/"' in module
    for name in ("stop", "clear_cache", "reset_module"):
        assert f'href="/modules/{MODULE}/actions/{name}/"' in module


def test_a_viewer_cannot_act_and_nothing_changes(viewer: Client) -> None:
    before = _world()
    for url in ACTION_URLS:
        assert viewer.get(url).status_code == 403, url
        assert viewer.post(url, {"reason": "because", **STOP_OPTIONS}).status_code == 403, url
    assert _world() == before


def test_a_post_without_a_csrf_token_is_refused(settings) -> None:
    client = _client(_user("olivia", OPERATORS_GROUP), enforce_csrf_checks=True)
    before = _world()

    for url in ("/emergency-stop/", "/commands/stop_all/", f"/modules/{MODULE}/actions/stop/"):
        assert client.post(url, {"reason": "no token", "pause_campaigns": "on"}).status_code == 403, url

    assert _world() == before
    token = client.get("/commands/stop_all/").cookies["csrftoken"].value
    assert client.post("/commands/stop_all/", {"reason": "with token", "csrfmiddlewaretoken": token}).status_code == 302


# --- dashboard --------------------------------------------------------------------------


def test_the_dashboard_shows_status_modules_and_their_facts(operator: Client) -> None:
    MetaModule.objects.filter(code="10.9").update(
        desired_state="stopped", desired_state_by="sam", desired_state_reason="maintenance window"
    )

    response = operator.get("/")

    html = response.content.decode()
    status = re.search(r'<section id="system-status"[^>]*>.*?</section>', html, re.S).group(0)
    assert any(s in status for s in ("HEALTHY", "DEGRADED", "CRITICAL", "UNKNOWN"))
    assert 'id="meta-mode">STUB' in html and 'id="beat-liveness"' in html and 'id="worker-liveness"' in html
    assert html.count('<tr id="module-') == 17
    assert 'href="/modules/10.17/"' in html
    assert "by sam" in html and "maintenance window" in html
    assert "Open alerts" in html and "Recommendations" in html


def test_the_dashboard_says_which_access_tier_meta_gave_each_account(operator: Client, meta_sandbox, settings) -> None:
    from meta_modules import graph

    first, second = (a["id"] for a in meta_sandbox.state()["accounts"])
    settings.META_AD_ACCOUNT_IDS = [first, second]
    meta_sandbox.faults(tier={first: "development"})
    for account in (first, second):
        graph.client().get(account, {"fields": "id"}, account)

    page = operator.get("/").content.decode()

    tiers = re.search(r'<dd id="access-tiers">(.*?)</dd>', page, re.S).group(1)
    assert f"DEVELOPMENT (about 20 pauses per 5 min) — 1 account: {first}" in tiers
    assert f"standard — 1 account: {second}" in tiers


def test_the_strip_shows_the_latest_checks_with_a_title_per_cell(operator: Client) -> None:
    _checks(3)

    html = operator.get("/").content.decode()

    row = re.search(r'<tr id="module-10\.1">.*?</tr>', html, re.S).group(0)
    assert row.count('class="cell st-online"') == 3
    assert re.search(r'title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · ONLINE · success 98%', row)


def test_the_dashboard_fragments_carry_the_same_parts(operator: Client) -> None:
    body = operator.get("/fragments/").json()

    assert set(body["fragments"]) == {"system-status", "halt", "modules", "findings", "alert-channels", "readiness"}
    assert 'id="system-status"' in body["fragments"]["system-status"] and body["done"] is False


def test_todays_spend_spikes_are_on_the_dashboard(operator: Client) -> None:
    from meta_modules.models import AdAccount, Campaign, SpendSpike

    account = AdAccount.objects.create(id="act_1", currency="USD")
    campaign = Campaign.objects.create(id="42", account=account, name="Black <Friday>", status="ACTIVE")
    SpendSpike.objects.create(
        campaign=campaign,
        day=timezone.now().date(),
        spend_today="1234.50",
        hourly_rate=100,
        baseline_hourly_rate=20,
        ratio=5.0,
    )

    html = operator.get("/").content.decode()

    spikes = re.search(r'<ul id="spend-spikes".*?</ul>', html, re.S).group(0)
    assert "Black &lt;Friday&gt;" in spikes and "5.0× its baseline" in spikes and "1,234.50 USD today" in spikes
    assert "Spend spike on campaign Black &lt;Friday&gt;" in html  # also an open alert
    assert "1,234.50 USD spent today" in html


def test_the_dashboard_shows_the_spikes_of_each_accounts_local_today(operator: Client, tower_clock) -> None:
    from meta_modules.models import AdAccount, Campaign, SpendSpike

    tower_clock(datetime(2024, 3, 12, 3, tzinfo=UTC))  # 20:00 on 11 March in Los Angeles, 12:00 in Tokyo
    for account_id, zone, currency, day, name in (
        ("act_1", "America/Los_Angeles", "USD", date(2024, 3, 11), "West today"),
        ("act_2", "America/Los_Angeles", "USD", date(2024, 3, 10), "West yesterday"),
        ("act_3", "Asia/Tokyo", "JPY", date(2024, 3, 12), "Tokyo today"),
        ("act_4", "", "EUR", date(2024, 3, 11), "UTC yesterday"),
    ):
        account = AdAccount.objects.create(id=account_id, currency=currency, timezone_name=zone)
        campaign = Campaign.objects.create(id=account_id[-1], account=account, name=name, status="ACTIVE")
        SpendSpike.objects.create(
            campaign=campaign, day=day, spend_today="120450.00", hourly_rate=100, baseline_hourly_rate=20, ratio=5.0
        )

    html = operator.get("/").content.decode()

    spikes = re.search(r'<ul id="spend-spikes".*?</ul>', html, re.S).group(0)
    assert sorted(re.findall(r"<strong>(.*?)</strong>", spikes)) == ["Tokyo today", "West today"]
    assert "120,450.00 USD today (11 Mar in its account's time zone)" in spikes
    assert "120,450 JPY today (12 Mar in its account's time zone)" in spikes
    assert "yesterday" not in spikes


def test_polling_does_not_keep_an_idle_session_alive(operator: Client) -> None:
    key = operator.session.session_key

    def expiry():
        return Session.objects.get(session_key=key).expire_date

    first = expiry()
    operator.get("/fragments/")
    assert expiry() == first
    operator.get("/")
    assert expiry() > first


# --- commands and module actions --------------------------------------------------------


def test_stop_all_goes_through_a_confirmation_and_start_all_brings_them_back(operator: Client) -> None:
    confirm = operator.get("/commands/stop_all/")
    assert confirm.status_code == 200 and b'id="confirm-action"' in confirm.content

    response = operator.post("/commands/stop_all/", {"reason": "maintenance"}, follow=True)

    assert response.redirect_chain[-1][0] == "/"
    assert not PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).exists()
    assert set(MetaModule.objects.values_list("desired_state", flat=True)) == {"stopped"}
    assert "Stopped 17 modules" in response.content.decode()
    run = ControlTowerRun.objects.get(command_type="stop_all")
    assert run.executed_by == "olivia" and run.reason == "maintenance"

    operator.post("/commands/start_all/", {})
    assert PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).count() == 17


def test_a_refused_command_is_shown_as_an_error(operator: Client) -> None:
    TowerState.objects.filter(pk=1).update(emergency_stop_active=True)

    response = operator.post("/commands/start_all/", {}, follow=True)

    assert 'class="msg msg-error"' in response.content.decode()
    assert "Emergency stop active" in response.content.decode()


def test_an_unknown_command_is_404(operator: Client) -> None:
    assert operator.post("/commands/launch_rockets/", {}).status_code == 404
    assert operator.post(f"/modules/{MODULE}/actions/explode/", {}).status_code == 404
    assert operator.get("/modules/99.9/").status_code == 404


def test_module_stop_and_recovery_by_hand(operator: Client) -> None:
    assert b'id="confirm-action"' in operator.get(f"/modules/{MODULE}/actions/stop/").content

    operator.post(f"/modules/{MODULE}/actions/stop/", {"reason": "flaky upstream"})
    response = operator.post(f"/modules/{MODULE}/actions/clear_cache/", {}, follow=True)

    module = MetaModule.objects.select_related("periodic_task").get(code=MODULE)
    assert module.desired_state == "stopped" and not module.periodic_task.enabled
    attempt = RecoveryAttempt.objects.get(module_code=MODULE)
    assert attempt.action == "clear_cache" and attempt.trigger == "operator" and attempt.executed_by == "olivia"
    html = response.content.decode()
    assert "STOPPED" in html and "flaky upstream" in html and "clear_cache" in html


def test_recovery_by_hand_is_refused_while_halted(operator: Client) -> None:
    TowerState.objects.filter(pk=1).update(emergency_stop_active=True)

    response = operator.post(f"/modules/{MODULE}/actions/reset_module/", {}, follow=True)

    assert not RecoveryAttempt.objects.exists()
    assert "resume before recovering modules" in response.content.decode()


# --- emergency stop and resume through the console --------------------------------------


def test_emergency_stop_and_resume_through_the_console(operator: Client, meta_sandbox) -> None:
    active = meta_sandbox.campaigns(status="ACTIVE")
    assert active

    confirm = operator.get("/emergency-stop/").content.decode()
    for campaign in active:
        assert f'data-campaign-id="{campaign["id"]}"' in confirm
    for account in {c["account_id"] for c in active}:
        count = sum(c["account_id"] == account for c in active)
        assert re.search(rf'id="preview-act_{account}".*?<strong class="count">{count}</strong>', confirm, re.S)
    assert 'id="stop-reason"' in confirm and 'id="confirm-stop"' in confirm

    refused = operator.post("/emergency-stop/", {"reason": "  ", **STOP_OPTIONS})
    assert refused.status_code == 400 and 'id="stop-reason-error"' in refused.content.decode()
    assert not TowerState.get().emergency_stop_active
    assert not ControlTowerRun.objects.filter(run_type=RunType.EMERGENCY_STOP).exists()

    stopped = operator.post("/emergency-stop/", {"reason": "Budget spike: $10k in 1h", **STOP_OPTIONS})

    run = ControlTowerRun.objects.get(run_type=RunType.EMERGENCY_STOP)
    assert stopped.status_code == 302 and stopped["Location"] == f"/stops/{run.pk}/"
    state = TowerState.get()
    assert state.emergency_stop_active and state.halted_by == "olivia"
    assert state.halt_reason == "Budget spike: $10k in 1h"
    assert meta_sandbox.campaigns(status="ACTIVE") == []
    result = operator.get(stopped["Location"]).content.decode()
    assert re.search(rf'id="campaigns-paused"[^>]*>{len(active)}<', result)
    assert re.search(r'id="schedulers-stopped"[^>]*>17<', result)
    assert 'id="stop-result"' in result and 'id="refresh-link"' in result and "http-equiv" not in result
    assert operator.get(f"/stops/{run.pk}/fragments/").json()["done"] is True

    dashboard = operator.get("/").content.decode()
    assert "EMERGENCY_STOP" in dashboard and 'id="halted-by">olivia<' in dashboard and 'id="resume-button"' in dashboard
    assert f'href="/stops/{run.pk}/"' in dashboard
    assert b'id="confirm-resume"' in operator.get("/resume/").content

    resumed = operator.post("/resume/", {"reason": "spike explained", **RESUME_OPTIONS}, follow=True)

    resume_run = ControlTowerRun.objects.get(run_type=RunType.RESUME)
    assert resumed.redirect_chain == [("/", 302)]
    state = TowerState.get()
    assert not state.emergency_stop_active and state.system_status != SystemStatus.EMERGENCY_STOP
    banner = re.search(r'<section id="system-status"[^>]*>.*?</section>', resumed.content.decode(), re.S).group(0)
    assert state.system_status.upper() in banner and "EMERGENCY_STOP" not in banner
    assert f"{len(active)} campaigns re-activated" in resumed.content.decode()
    assert {c["id"] for c in meta_sandbox.campaigns(status="ACTIVE")} == {c["id"] for c in active}
    assert PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).count() == 17
    detail = operator.get(f"/runs/{resume_run.pk}/").content.decode()
    assert 'id="run-ledger"' in detail and detail.count("RESUMED</td>") == len(active)


def test_the_two_person_rule_in_the_console(operator: Client, meta_sandbox, settings) -> None:
    settings.RESUME_REQUIRES_SECOND_APPROVER = True
    killswitch.emergency_stop(killswitch.StopRequest(reason="spike", actor="olivia"))

    first = operator.post("/resume/", {"reason": "spike explained", **RESUME_OPTIONS}, follow=True)

    assert TowerState.get().emergency_stop_active and TowerState.get().resume_requested_by == "olivia"
    assert "a different operator approves" in first.content.decode()
    own = operator.get("/").content.decode()
    assert "Resume requested by <strong>olivia</strong>" in own and "waiting for a second operator" in own
    assert 'id="cannot-approve"' in own and 'id="resume-button"' not in own
    assert b'id="confirm-resume"' not in operator.get("/resume/").content
    again = operator.post("/resume/", {}, follow=True).content.decode()
    assert "a different operator must approve" in again and TowerState.get().emergency_stop_active

    second = _client(_user("oscar", OPERATORS_GROUP))
    page = second.get("/resume/").content.decode()
    assert 'id="confirm-resume"' in page and "Approve resume as oscar" in page
    assert 'name="resume_campaigns" value="on"' in page and 'name="reason" value="spike explained"' in page

    second.post("/resume/", {})

    assert not TowerState.get().emergency_stop_active
    assert ControlTowerRun.objects.get(run_type=RunType.RESUME).executed_by == "olivia (approved by oscar)"
    assert meta_sandbox.campaigns(status="ACTIVE")


def test_the_stop_result_follows_the_ledger_until_nothing_is_pending(operator: Client, stop_run) -> None:
    CampaignHold.objects.filter(campaign_id="c1").update(state="pending", last_error="No answer before the deadline.")

    pending = operator.get(f"/stops/{stop_run.pk}/fragments/").json()
    page = operator.get(f"/stops/{stop_run.pk}/").content.decode()

    assert pending["done"] is False and 'data-fragments-url="/stops/' in page
    html = pending["fragments"]["stop-result"]
    assert re.search(r'id="campaigns-paused"[^>]*>1<', html) and re.search(r'id="campaigns-pending"[^>]*>1<', html)
    assert "(#100) Invalid parameter" in html and "No answer before the deadline." in html

    CampaignHold.objects.filter(campaign_id="c1").update(state="paused", last_error="")  # a background sweep
    done = operator.get(f"/stops/{stop_run.pk}/fragments/").json()

    assert done["done"] is True and re.search(r'id="campaigns-paused"[^>]*>2<', done["fragments"]["stop-result"])


def test_a_stop_result_is_only_for_stops(operator: Client) -> None:
    check = ControlTowerRun.objects.create(run_type=RunType.HEALTH_CHECK, executed_by="scheduler", mode="stub")

    assert operator.get(f"/stops/{check.pk}/").status_code == 404
    assert operator.get(f"/stops/{uuid.uuid4()}/").status_code == 404


# --- history ----------------------------------------------------------------------------


def test_runs_are_filtered_and_paginated(operator: Client) -> None:
    now = timezone.now()
    ControlTowerRun.objects.bulk_create(
        [
            ControlTowerRun(
                run_type=RunType.HEALTH_CHECK,
                executed_by="scheduler",
                mode="stub",
                executed_at=now - timedelta(hours=i),
            )
            for i in range(60)
        ]
        + [
            ControlTowerRun(
                run_type=RunType.COMMAND,
                command_type="stop_all",
                executed_by="olivia",
                mode="stub",
                system_status=SystemStatus.DEGRADED,
                executed_at=now - timedelta(days=10),
            )
        ]
    )

    everything = operator.get("/runs/").content.decode()
    commands = operator.get("/runs/?run_type=command").content.decode()
    by_status = operator.get("/runs/?status=degraded&command_type=stop_all").content.decode()
    window = f"date_from={(now - timedelta(days=11)).date()}&date_to={(now - timedelta(days=5)).date()}"
    old = operator.get(f"/runs/?{window}").content.decode()
    page_two = operator.get("/runs/?run_type=health_check&page=2").content.decode()
    invalid = operator.get("/runs/?run_type=nonsense")

    assert "61 runs." in everything and len(RUN_LINK.findall(everything)) == 50
    assert "?page=2" in everything
    assert "1 run." in commands and "olivia" in commands
    assert "1 run." in by_status
    assert "1 run." in old
    assert len(RUN_LINK.findall(page_two)) == 10 and "run_type=health_check&amp;page=1" in page_two
    assert invalid.status_code == 400 and "Select a valid choice" in invalid.content.decode()
    assert "0 runs." in invalid.content.decode()  # not every run, as if unfiltered


def test_a_run_page_shows_everything_the_run_recorded(operator: Client) -> None:
    run = ControlTowerRun.objects.create(
        run_type=RunType.COMMAND,
        command_type="sync_data",
        executed_by="olivia",
        mode="stub",
        state=RunState.COMPLETED,
        actions_executed=[{"action": "run", "module": "10.2", "outcome": "failure"}],
        errors_encountered=["10.2: failure <b>boom</b>"],
        recoveries_performed=[{"module": "10.2", "action": "clear_cache"}],
        alerts=[{"severity": "critical", "title": "Module 10.2 is OFFLINE", "detail": "", "key": "k"}],
        recommendations=[{"severity": "warning", "module": "10.2", "message": "restart it"}],
        message="10.2 failure.",
        modules_affected=["10.2"],
    )

    html = operator.get(f"/runs/{run.pk}/").content.decode()

    assert "10.2: failure &lt;b&gt;boom&lt;/b&gt;" in html and "<b>boom</b>" not in html
    assert "<td>clear_cache</td>" in html and "Module 10.2 is OFFLINE" in html and "restart it" in html
    assert "not successful" in html and 'href="/modules/10.2/"' in html


def test_a_health_check_page_lists_its_modules_in_registry_order(operator: Client) -> None:
    _checks(1)
    run = ControlTowerRun.objects.get(run_type=RunType.HEALTH_CHECK)

    html = operator.get(f"/runs/{run.pk}/").content.decode()

    codes = re.findall(r'<a href="/modules/([\d.]+)/">', html)
    assert codes == [f"10.{i}" for i in range(1, 18)]
    assert html.count('<span class="badge st-online">ONLINE</span>') == 17


def test_notifications_list_with_their_delivery(operator: Client) -> None:
    Notification.objects.create(channel="email", subject="EMERGENCY STOP by alice", body="b", ok=True)
    Notification.objects.create(channel="slack", subject="Module down", body="b", ok=False, error="HTTP 500 from Slack")

    everything = operator.get("/notifications/").content.decode()
    failed = operator.get("/notifications/?ok=no").content.decode()

    assert "EMERGENCY STOP by alice" in everything and "HTTP 500 from Slack" in everything
    assert "Module down" in failed and "EMERGENCY STOP by alice" not in failed


# --- bounded queries --------------------------------------------------------------------


def _checks(count: int) -> None:
    """`count` recorded health checks with one log per module (as the cycle persists them)."""
    from controltower.models import SystemHealthLog

    codes = list(MetaModule.objects.values_list("code", "name"))
    now = timezone.now()
    runs = ControlTowerRun.objects.bulk_create(
        ControlTowerRun(
            run_type=RunType.HEALTH_CHECK,
            executed_by="scheduler",
            mode="stub",
            system_status=SystemStatus.HEALTHY,
            executed_at=now - timedelta(hours=count - i),
        )
        for i in range(count)
    )
    SystemHealthLog.objects.bulk_create(
        SystemHealthLog(
            run=run,
            module_name=code,
            module_full_name=name,
            health_status="online",
            success_rate=0.98,
            checked_at=run.executed_at,
            mode="stub",
        )
        for run in runs
        for code, name in codes
    )


def _runs(count: int) -> None:
    from meta_modules.models import ModuleRun

    module = MetaModule.objects.get(code=MODULE)
    now = timezone.now()
    ModuleRun.objects.bulk_create(
        ModuleRun(
            module=module,
            started_at=now - timedelta(minutes=10 * i),
            finished_at=now,
            outcome="failure" if i % 5 == 0 else "success",
            duration_ms=100 + i,
            api_calls=2,
        )
        for i in range(count)
    )


@pytest.mark.parametrize("url", ["/", "/fragments/", f"/modules/{MODULE}/", f"/modules/{MODULE}/fragments/"])
def test_pages_make_a_bounded_number_of_queries(operator: Client, url: str, django_assert_max_num_queries) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _checks(2)
    _runs(3)
    with CaptureQueriesContext(connection) as few:
        assert operator.get(url).status_code == 200
    _checks(60)
    _runs(400)

    with django_assert_max_num_queries(len(few.captured_queries)):
        html = operator.get(url).content.decode()

    assert "st-online" in html


def test_the_strips_of_all_modules_are_one_query(django_assert_num_queries) -> None:
    from controltower.console import queries

    _checks(50)

    with django_assert_num_queries(1):
        strips = queries.health_strips()

    assert len(strips) == 17 and all(len(cells) == queries.STRIP_CHECKS for cells in strips.values())
    assert strips["10.1"][0].checked_at < strips["10.1"][-1].checked_at


def test_the_admin_links_to_the_console(stop_run) -> None:
    admin = _client(User.objects.create_superuser("root", password="pw"))
    module = MetaModule.objects.get(code=MODULE)

    index = admin.get("/admin/").content.decode()
    run_page = admin.get(f"/admin/controltower/controltowerrun/{stop_run.pk}/change/").content.decode()
    module_page = admin.get(f"/admin/meta_modules/metamodule/{module.pk}/change/").content.decode()

    assert "Control Tower" in index and 'href="/"' in index
    assert f'href="/runs/{stop_run.pk}/"' in run_page
    assert f'href="/modules/{MODULE}/"' in module_page


def test_admin_lists_show_status_colours_with_text_and_the_problems_filter(synced, meta_sandbox, client) -> None:
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("root"))
    commander.health_cycle("test")

    runs = client.get("/admin/controltower/controltowerrun/").content.decode()
    logs = client.get("/admin/controltower/systemhealthlog/?problems=yes").content.decode()

    assert "STARTING</span>" in runs and "background:#1565c0" in runs  # no module has run yet
    assert "UNKNOWN</span>" in logs and "ONLINE</span>" not in logs
    assert client.get("/admin/controltower/towerstate/").status_code == 200
