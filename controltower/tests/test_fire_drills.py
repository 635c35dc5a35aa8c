"""Fire drills on canary campaigns, over HTTP against the Meta sandbox: a drill pauses and restores
only its canaries, is refused while halted, fails (and alerts) on a canary it must not touch, never
undoes a stop that begins during it, runs on DRILL_SCHEDULE, and shows in the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connections
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from controltower import commander, killswitch, schedules, tasks
from controltower.models import Alert, CampaignHold, ControlTowerRun, FireDrill, Notification, RunType, TowerState
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from tests.support import ROOT, admin_client, api_client, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

API = "/meta/control-tower"


def _campaigns(sandbox) -> dict[str, tuple[str, str]]:
    """Meta-side truth: campaign id → (configured status, updated time)."""
    return {str(c["id"]): (c["status"], c["updated_time"]) for c in sandbox.campaigns()}


def _first_active(sandbox, account: str) -> str:
    return next(str(c["id"]) for c in sandbox.campaigns(account=account, status="ACTIVE"))


def _accounts(sandbox) -> list[str]:
    return sorted({f"act_{c['account_id']}" for c in sandbox.campaigns()})


def _human_post(sandbox, campaign_id: str, **fields: str) -> None:
    """A person edits the campaign on Meta (the tower's client and its write guard not involved)."""
    data = urllib.parse.urlencode({**fields, "access_token": "human"}).encode()
    with urllib.request.urlopen(f"{sandbox.url}/v26.0/{campaign_id}", data=data) as response:
        json.loads(response.read())


@pytest.fixture
def operator():
    return api_client("olivia", OPERATORS_GROUP)


@pytest.fixture
def canaries(meta_sandbox, operator) -> list[str]:
    """One ACTIVE campaign per ad account, designated over the API."""
    designated = []
    for account in _accounts(meta_sandbox):
        campaign = _first_active(meta_sandbox, account.removeprefix("act_"))
        response = operator.post(
            f"{API}/canaries",
            {"account_id": account, "campaign_id": campaign, "reason": "tiny budget, kept for drills"},
            format="json",
        )
        assert response.status_code == 201, response.json()
        designated.append(campaign)
    return designated


def test_a_drill_pauses_and_restores_only_its_canaries(meta_sandbox, canaries, operator) -> None:
    before = _campaigns(meta_sandbox)

    response = operator.post(f"{API}/drills", {"reason": "monthly drill"}, format="json")

    assert response.status_code == 200, response.json()
    drill = response.json()
    assert drill["state"] == "passed" and drill["trigger"] == "operator" and drill["executed_by"] == "olivia"
    assert {r["campaign_id"] for r in drill["results"]} == set(canaries)
    for result in drill["results"]:
        assert result["outcome"] == "passed" and result["failed_at"] == "" and result["error"] == ""
        assert result["paused_ms"] >= 0 and result["resumed_ms"] >= 0
    assert drill["pause_ms"] == max(r["paused_ms"] for r in drill["results"])
    assert drill["resume_ms"] == max(r["resumed_ms"] for r in drill["results"])
    after = _campaigns(meta_sandbox)
    others = set(before) - set(canaries)
    assert len(others) == 18 and {c: after[c] for c in others} == {c: before[c] for c in others}
    for canary in canaries:
        assert after[canary][0] == "ACTIVE" and after[canary][1] != before[canary][1]  # paused and back
    listed = operator.get(f"{API}/drills").json()
    assert listed["count"] == 1 and listed["drills"][0]["id"] == drill["id"]


def test_the_scheduled_task_runs_a_drill_recorded_as_scheduled(meta_sandbox, canaries) -> None:
    answer = tasks.run_fire_drill.apply().get()

    drill = FireDrill.objects.get(pk=answer["drill_id"])
    assert answer["state"] == drill.state == "passed"
    assert drill.trigger == "scheduled" and drill.executed_by == "scheduler"


def test_it_is_refused_while_halted_and_touches_nothing(meta_sandbox, canaries, operator) -> None:
    TowerState.set(emergency_stop_active=True)
    before = _campaigns(meta_sandbox)

    response = operator.post(f"{API}/drills", {"reason": "drill"}, format="json")

    assert response.status_code == 409
    assert response.json()["detail"] == commander.REFUSED_WHILE_HALTED[commander.FIRE_DRILL]
    assert _campaigns(meta_sandbox) == before
    refused = FireDrill.objects.get()
    assert refused.state == "refused" and refused.executed_by == "olivia" and refused.reason == "drill"
    assert "Emergency stop active" in refused.message


def test_a_canary_not_active_fails_the_drill_untouched_and_alerts_until_a_drill_passes(
    meta_sandbox, canaries, operator, settings
) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    stopped, running = canaries
    _human_post(meta_sandbox, stopped, status="PAUSED")
    before = _campaigns(meta_sandbox)

    drill = operator.post(f"{API}/drills", {"reason": "weekly"}, format="json").json()

    assert drill["state"] == "failed"
    by_campaign = {r["campaign_id"]: r for r in drill["results"]}
    assert by_campaign[stopped]["failed_at"] == "not_running" and by_campaign[stopped]["paused_ms"] is None
    assert "not running on Meta (status PAUSED" in by_campaign[stopped]["error"]
    assert by_campaign[running]["outcome"] == "passed"
    after = _campaigns(meta_sandbox)
    assert after[stopped] == before[stopped]  # not touched: same status, same updated time
    assert after[running][0] == "ACTIVE"
    assert [m.subject for m in mail.outbox] == ["[Control Tower] FIRE DRILL FAILED (operator, by olivia)"]
    assert "Reason: weekly" in mail.outbox[0].body and stopped in mail.outbox[0].body
    assert Notification.objects.get(kind=Notification.Kind.DRILL).ok

    commander.health_cycle("test")
    alert = Alert.objects.get(key="drill:failed", resolved_at__isnull=True)
    assert alert.severity == "warning" and alert.title == "Fire drill failed (1 of 2 canaries)"

    commander.health_cycle("test")  # still failed: the same alert stays open
    assert Alert.objects.filter(key="drill:failed", resolved_at__isnull=True).count() == 1

    _human_post(meta_sandbox, stopped, status="ACTIVE")
    assert operator.post(f"{API}/drills", {"reason": "again"}, format="json").json()["state"] == "passed"
    commander.health_cycle("test")
    assert not Alert.objects.filter(key="drill:failed", resolved_at__isnull=True).exists()
    assert Alert.objects.get(key="drill:failed").resolved_at is not None


def test_a_canary_the_stop_cannot_pause_opens_a_critical_alert(meta_sandbox, canaries, operator) -> None:
    # Meta refuses the next two writes for good: both canaries' pauses.
    meta_sandbox.faults(errors=[{"preset": "not_linked_delegate_page", "on": "write", "times": 2}], async_job_seconds=0)

    drill = operator.post(f"{API}/drills", {"reason": "drill"}, format="json").json()

    assert drill["state"] == "failed" and {r["failed_at"] for r in drill["results"]} == {"pause"}
    assert all(_campaigns(meta_sandbox)[c][0] == "ACTIVE" for c in canaries)  # the pause never applied
    commander.health_cycle("test")
    assert Alert.objects.get(key="drill:failed").severity == "critical"


@pytest.mark.django_db(transaction=True)
def test_a_halt_beginning_mid_drill_leaves_the_canaries_paused(meta_sandbox, canaries) -> None:
    # Every Graph call takes a second: the drill's re-activation is still on its way (or about to be
    # refused by the write guard) when the halt is recorded, right after the canaries read PAUSED.
    meta_sandbox.faults(latency_ms=1000, async_job_seconds=0)
    before = _campaigns(meta_sandbox)
    outcome: dict[str, FireDrill] = {}

    def drill() -> None:
        try:
            outcome["drill"] = commander.fire_drill("olivia", "drill", FireDrill.Trigger.OPERATOR)
        finally:
            connections.close_all()

    thread = threading.Thread(target=drill)
    thread.start()
    wait_for(
        lambda: all(_campaigns(meta_sandbox)[c][0] == "PAUSED" for c in canaries),
        timeout=20,
        interval=0.02,
        message="the drill to pause its canaries",
    )
    killswitch.emergency_stop(
        killswitch.StopRequest(
            reason="real spike", actor="bob", pause_campaigns=False, stop_schedulers=False, send_alerts=False
        )
    )
    thread.join(timeout=60)

    finished = outcome["drill"]
    assert finished.state == "failed"
    assert {r["failed_at"] for r in finished.results} == {"halt"}
    assert all("emergency stop began during the drill" in r["error"] for r in finished.results)
    after = _campaigns(meta_sandbox)
    assert all(after[c][0] == "PAUSED" for c in canaries)
    assert {c: after[c] for c in set(before) - set(canaries)} == {c: before[c] for c in set(before) - set(canaries)}


def test_it_waits_while_resume_is_still_re_activating_a_canary(meta_sandbox, canaries, operator) -> None:
    stop = ControlTowerRun.objects.create(run_type=RunType.EMERGENCY_STOP, executed_by="bob", mode="stub")
    CampaignHold.objects.create(
        halt_run=stop,
        stop_run=stop,
        campaign_id=canaries[0],
        account_id="act_1000000001",
        prior_status="ACTIVE",
        state=CampaignHold.State.RESUMING,
    )
    before = _campaigns(meta_sandbox)

    response = operator.post(f"{API}/drills", {"reason": "drill"}, format="json")

    assert response.status_code == 409 and f"still working on canary {canaries[0]}" in response.json()["detail"]
    assert _campaigns(meta_sandbox) == before


def test_one_drill_at_a_time_and_a_dead_one_is_closed(meta_sandbox, canaries, operator) -> None:
    first = FireDrill.begin("alice", "drill", FireDrill.Trigger.OPERATOR)
    assert first is not None and FireDrill.begin("bob", "drill", FireDrill.Trigger.OPERATOR) is None

    response = operator.post(f"{API}/drills", {"reason": "drill"}, format="json")

    assert response.status_code == 409 and "already running (by alice" in response.json()["detail"]
    FireDrill.objects.filter(pk=first.pk).update(started_at=timezone.now() - FireDrill.alive_for() - timedelta(1))
    assert operator.post(f"{API}/drills", {"reason": "drill"}, format="json").json()["state"] == "passed"
    first.refresh_from_db()
    assert first.state == "failed" and first.message.startswith("Interrupted")


def test_drill_schedule_registers_a_crontab_task_and_empty_removes_it(settings) -> None:
    settings.DRILL_SCHEDULE = "30 4 * * 1"
    assert schedules.DRILL_TASK in schedules.sync_tower_tasks()
    task = PeriodicTask.objects.select_related("crontab").get(name=schedules.DRILL_TASK)
    assert task.task == "controltower.tasks.run_fire_drill" and task.interval is None and task.enabled
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "30",
        "4",
        "*",
        "*",
        "1",
    )

    PeriodicTask.objects.filter(pk=task.pk).update(enabled=False)  # an operator disabled it
    settings.DRILL_SCHEDULE = "0 5 * * *"
    schedules.sync_tower_tasks()
    task.refresh_from_db()
    assert not task.enabled and task.crontab.hour == "5"

    settings.DRILL_SCHEDULE = ""
    assert schedules.DRILL_TASK not in schedules.sync_tower_tasks()
    assert not PeriodicTask.objects.filter(name=schedules.DRILL_TASK).exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("61 * * * *", "DRILL_SCHEDULE='61 * * * *' is not a valid crontab expression"),
        ("30 4 * *", "DRILL_SCHEDULE='30 4 * *' must have 5 fields"),
        ("0 0 31 2 *", "is not a valid crontab expression"),
    ],
)
def test_a_bad_drill_schedule_is_refused_at_start(value: str, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env.update(SECRET_KEY="k" * 50, DRILL_SCHEDULE=value, DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_bad_canary_input_is_a_400_with_field_errors_and_a_taken_one_a_409(meta_sandbox, operator) -> None:
    accounts = _accounts(meta_sandbox)
    mine = _first_active(meta_sandbox, accounts[0].removeprefix("act_"))
    theirs = _first_active(meta_sandbox, accounts[1].removeprefix("act_"))

    def post(**body):
        return operator.post(f"{API}/canaries", {"reason": "drills", **body}, format="json")

    assert set(post(account_id="abc", campaign_id=mine).json()) == {"account_id"}
    assert set(post(account_id=accounts[0], campaign_id=12).json()) == {"campaign_id"}  # not a JSON string
    assert set(post(account_id=accounts[0]).json()) == {"campaign_id"}
    assert set(post(account_id=accounts[0], campaign_id=mine, dry_run=True).json()) == {"dry_run"}
    assert set(
        operator.post(f"{API}/canaries", {"account_id": accounts[0], "campaign_id": mine}, format="json").json()
    ) == {"reason"}
    missing = post(account_id=accounts[0], campaign_id="999999999")
    assert missing.status_code == 400 and "could not be read on Meta" in missing.json()["campaign_id"][0]
    elsewhere = post(account_id=accounts[0], campaign_id=theirs)
    assert elsewhere.status_code == 400 and "is not in ad account" in elsewhere.json()["campaign_id"][0]

    assert post(account_id=accounts[0].removeprefix("act_"), campaign_id=mine).status_code == 201
    twice = post(account_id=accounts[1], campaign_id=mine)  # a conflict with what is designated: 409
    assert twice.status_code == 409 and "is already a canary" in twice.json()["detail"]
    second = _campaigns(meta_sandbox)
    other = next(
        c for c in second if c != mine and c in {str(r["id"]) for r in meta_sandbox.campaigns(account=accounts[0][4:])}
    )
    one_per_account = post(account_id=accounts[0], campaign_id=other)
    assert one_per_account.status_code == 409 and "already has a canary" in one_per_account.json()["detail"]

    viewer = api_client("victor", VIEWERS_GROUP)
    assert (
        viewer.post(
            f"{API}/canaries", {"account_id": accounts[1], "campaign_id": theirs, "reason": "x"}, format="json"
        ).status_code
        == 403
    )
    listed = viewer.get(f"{API}/canaries").json()
    assert [(c["account_id"], c["campaign_id"], c["designated_by"]) for c in listed] == [(accounts[0], mine, "olivia")]
    assert viewer.delete(f"{API}/canaries/{listed[0]['id']}").status_code == 403
    assert operator.delete(f"{API}/canaries/not-a-uuid").status_code == 404
    assert operator.delete(f"{API}/canaries/{listed[0]['id']}", {"reason": "retired"}, format="json").status_code == 204
    assert operator.get(f"{API}/canaries").json() == []

    assert set(operator.post(f"{API}/drills", {}, format="json").json()) == {"reason"}
    assert set(operator.get(f"{API}/drills?limit=0").json()) == {"limit"}
    no_canary = operator.post(f"{API}/drills", {"reason": "drill"}, format="json")
    assert no_canary.status_code == 409 and "No canary campaign is designated" in no_canary.json()["detail"]


def test_the_report_counts_the_drills_of_the_period(meta_sandbox, canaries, operator) -> None:
    assert operator.post(f"{API}/drills", {"reason": "one"}, format="json").json()["state"] == "passed"
    TowerState.set(emergency_stop_active=True)
    assert operator.post(f"{API}/drills", {"reason": "two"}, format="json").status_code == 409
    TowerState.set(emergency_stop_active=False)
    _human_post(meta_sandbox, canaries[0], status="PAUSED")
    assert operator.post(f"{API}/drills", {"reason": "three"}, format="json").json()["state"] == "failed"

    figures = operator.get(f"{API}/report?days=1").json()["fire_drills"]

    assert (figures["count"], figures["passed"], figures["failed"], figures["refused"]) == (3, 1, 1, 1)
    assert [d["state"] for d in figures["latest"]] == ["failed", "refused", "passed"]
    assert figures["latest"][2]["pause_ms"] is not None and figures["latest"][2]["resume_ms"] is not None
    assert figures["latest"][1]["pause_ms"] is None

    page = admin_client("carol", VIEWERS_GROUP).get("/report/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="drill-figures"' in html and "<strong>1 passed</strong>" in html and "1 refused" in html


def test_the_console_lists_canaries_and_runs_a_drill_for_operators(meta_sandbox, canaries) -> None:
    viewer = admin_client("carol", VIEWERS_GROUP).get("/drills/")
    assert viewer.status_code == 200 and canaries[0] in viewer.content.decode()
    assert 'id="run-drill"' not in viewer.content.decode()

    console = admin_client("oscar", OPERATORS_GROUP)
    page = console.get("/drills/").content.decode()
    assert 'id="run-drill"' in page and "csrfmiddlewaretoken" in page
    assert console.post("/drills/", {"reason": ""}).status_code == 400
    response = console.post("/drills/", {"reason": "from the console"}, follow=True)
    assert "Fire drill passed" in response.content.decode()
    assert FireDrill.objects.get().executed_by == "oscar"
    assert admin_client("vera", VIEWERS_GROUP).post("/drills/", {"reason": "x"}).status_code == 403
