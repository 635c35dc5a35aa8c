"""The console in a real browser (Playwright driving Debian's Chromium, headless).

An operator logs in, opens the dashboard, presses the emergency stop, types a reason,
confirms, sees EMERGENCY_STOP and the paused count, then resumes and sees the status
return — with the sandbox's campaigns checked over its API after each step.

A new operator's first hour (issue 15): a fresh install reads STARTING, not CRITICAL, until every
module has run, then HEALTHY; the stop page names the sandbox, the budget at stake per account
and currency, and warns that nobody will be alerted; with a webhook configured (a local receiver)
the stop delivers and its result page shows the delivery; the resume preview lists exactly the
campaigns the sandbox then shows re-activated. Screenshots of every page land in artifacts/.

Kill-switch readiness (issue 18): the latest check's line sits beside the EMERGENCY STOP button, and
Check now records a new one from the browser.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connections
from django.utils import timezone

from controltower import readiness
from controltower import readiness_policy as policy
from controltower.commander import health_cycle
from controltower.models import ReadinessCheck, TowerState
from controltower.schedules import run_module_now
from meta_modules import registry
from tests.support import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"
PASSWORD = "a-long-operator-password"

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch):
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"Chromium is required (REQUIRE_BROWSER=1) but {CHROMIUM} does not exist")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM checks are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        yield page
        browser.close()
        # ORM calls made while Playwright's loop ran opened connections in that context: close them
        # here, or the test database cannot be dropped at the end of the run.
        connections.close_all()


def _active(sandbox) -> int:
    return len(sandbox.campaigns(status="ACTIVE"))


def _log_in(page, live_server, name: str) -> None:
    operator = User.objects.create_user(name, password=PASSWORD, is_staff=True)
    operator.groups.add(Group.objects.get(name="Tower operators"))
    page.goto(f"{live_server.url}/admin/login/?next=/")
    page.fill("#id_username", name)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#system-status")


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_an_operator_stops_and_resumes_from_the_dashboard(synced, meta_sandbox, live_server, browser_page) -> None:
    # `synced` first: the test database is then set up before (and torn down after) the live server.
    active_before = _active(meta_sandbox)
    assert active_before > 0
    page = browser_page
    _log_in(page, live_server, "olivia")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.click("#emergency-stop-button")
    page.wait_for_selector("#stop-reason")
    page.screenshot(path=str(ARTIFACTS / "emergency-stop-confirmation.png"), full_page=True)
    assert _active(meta_sandbox) == active_before  # the preview changed nothing
    page.fill("#stop-reason", "Budget spike: $10k in 1h")
    page.click("#confirm-stop")
    page.wait_for_selector("#stop-result")

    assert page.inner_text("#campaigns-paused").strip() == str(active_before)
    assert _active(meta_sandbox) == 0
    state = TowerState.get()
    assert state.emergency_stop_active and state.halted_by == "olivia"

    page.goto(f"{live_server.url}/")
    assert "EMERGENCY_STOP" in page.inner_text("#system-status")
    assert "olivia" in page.inner_text("#halted-by")
    page.screenshot(path=str(ARTIFACTS / "dashboard-halted.png"), full_page=True)
    page.click("#resume-button")
    page.wait_for_selector("#confirm-resume")
    page.click("#confirm-resume")
    page.wait_for_selector("#system-status")

    assert "EMERGENCY_STOP" not in page.inner_text("#system-status")
    assert _active(meta_sandbox) == active_before
    assert not TowerState.get().emergency_stop_active


def _rename_on_meta(sandbox, campaign_id: str) -> None:
    """A person edits a campaign through the ordinary Graph API while the tower is halted."""
    data = urllib.parse.urlencode({"name": "edited by a person", "access_token": "human"}).encode()
    with urllib.request.urlopen(f"{sandbox.url}/v26.0/{campaign_id}", data=data, timeout=30) as response:
        assert json.loads(response.read())["success"]


def test_a_new_operator_can_trust_what_the_console_says(
    synced, meta_sandbox, live_server, browser_page, http_receiver, settings
) -> None:
    meta_sandbox.reset(accounts=2, statuses={"ACTIVE": 4, "PAUSED": 2}, currencies=["USD", "JPY"], seed=7)
    accounts = {a["id"]: a for a in meta_sandbox.state()["accounts"]}
    active = {c["id"]: c for c in meta_sandbox.campaigns(status="ACTIVE")}
    page = browser_page
    _log_in(page, live_server, "nora")

    # A fresh install: no module has run yet, so the tower is starting, not failing.
    status = page.inner_text("#system-status")
    assert "STARTING" in status and "0 of 17 modules have run" in status and "CRITICAL" not in status, status
    _shot(page, "first-start")
    for spec in registry.MODULES:  # every module's first run, its real job against the sandbox
        assert run_module_now(spec.code)["outcome"] == "success", spec.code
    health_cycle("scheduler")
    page.reload()
    assert "HEALTHY" in page.inner_text("#system-status")
    assert "nobody" in page.inner_text("#alert-channels").lower()
    _shot(page, "dashboard-healthy")

    # The stop page: where, what is at stake, and that nobody will be told.
    page.click("#emergency-stop-button")
    page.wait_for_selector("#stop-reason")
    assert "STUB sandbox" in page.inner_text("#stop-target")
    for account in accounts:
        row = page.locator(f"#stop-stakes tr[data-account='{account}']")
        assert row.count() == 1, account
        held_here = [c for c in active.values() if c["account_id"] == account.removeprefix("act_")]
        assert str(len(held_here)) in row.inner_text()
    assert set(
        page.locator("#stop-stakes-total strong[data-currency]").evaluate_all("els => els.map(e => e.dataset.currency)")
    ) == {"USD", "JPY"}
    assert page.is_visible("#alert-warning")
    _shot(page, "stop-page-nobody-alerted")

    # With a webhook configured, the warning goes and the stop's alert reaches it.
    settings.ALERT_WEBHOOK_URL = f"{http_receiver.url}/hook"
    page.reload()
    assert not page.is_visible("#alert-warning")
    page.fill("#stop-reason", "Spend spike on the JPY account")
    page.click("#confirm-stop")
    page.wait_for_selector("#stop-result")
    assert meta_sandbox.campaigns(status="ACTIVE") == []
    assert page.locator("#alert-deliveries tr[data-channel='webhook'][data-delivery='ok']").count() >= 1
    assert any("Spend spike on the JPY account" in json.dumps(r["json"]) for r in http_receiver.received)
    _shot(page, "stop-result")

    # While halted a person edits one held campaign: resume must leave that one paused.
    edited = sorted(active)[0]
    _rename_on_meta(meta_sandbox, edited)
    page.goto(f"{live_server.url}/")
    page.click("#resume-button")
    page.wait_for_selector("#resume-preview")
    rows = page.locator("#resume-preview tr[data-campaign-id]")
    plan = dict(
        zip(
            rows.evaluate_all("els => els.map(e => e.dataset.campaignId)"),
            rows.evaluate_all("els => els.map(e => e.dataset.action)"),
        )
    )
    assert set(plan) == set(active)
    assert plan[edited] == "leave"
    _shot(page, "resume-preview")
    page.click("#confirm-resume")
    page.wait_for_selector("#system-status")
    assert (
        {c["id"] for c in meta_sandbox.campaigns(status="ACTIVE")}
        == {cid for cid, action in plan.items() if action == "reactivate"}
        == set(active) - {edited}
    )

    # Every other page, as the operator sees it now.
    for name, path, ready in (
        ("runs", "/runs/", "body"),
        ("notifications", "/notifications/", "body"),
        ("report", "/report/?days=1", "#stop-frequency"),
        ("module", "/modules/10.7/", "body"),
        ("api-root", "/meta/control-tower/", "#api-console-link"),
        ("api-docs", "/api/docs/", ".swagger-ui .info"),
    ):  # Swagger draws the schema it fetched
        page.goto(f"{live_server.url}{path}")
        page.wait_for_selector(ready)
        _shot(page, name)
    assert page.is_visible("#docs-console-link")
    page.goto(f"{live_server.url}/runs/")
    page.click("a[href^='/runs/']:not([href='/runs/'])")
    _shot(page, "run")


def _readiness_check(accounts: int, per_account: int) -> ReadinessCheck:
    """A recorded check with readiness_policy's own verdicts: standard-tier accounts, a valid token."""
    now = timezone.now()
    token = policy.token_readiness(
        policy.TokenFacts(checked=True, valid=True, type="SYSTEM_USER", scopes=("ads_management",)), now, 7
    )
    judged = [
        policy.account_readiness(
            policy.AccountFacts(
                f"act_{n}",
                True,
                account_status=1,
                user_tasks=("MANAGE",),
                tier="standard_access",
                latency_ms=150.0,
                active_campaigns=per_account,
            ),
            20.0,
        )
        for n in range(1, accounts + 1)
    ]
    return readiness.record(policy.overall(token, judged, 8), "scheduler")


def test_the_readiness_line_sits_beside_the_emergency_stop_button(
    synced, meta_sandbox, live_server, browser_page
) -> None:
    check = _readiness_check(accounts=12, per_account=100)
    assert check.summary.startswith("READY: a stop now would pause 1,200 campaigns in 12 accounts")
    page = browser_page
    _log_in(page, live_server, "rhea")

    line = page.locator("#kill-switch #readiness-line")
    button = page.locator("#kill-switch #emergency-stop-button")
    assert line.is_visible() and button.is_visible()
    assert check.summary in line.inner_text() and "checked" in page.inner_text("#readiness-age")
    assert page.inner_text("#readiness-line .badge") == "READY"
    # Beside it: on the same band of the page, the line just left of the button.
    at_line, at_button = line.bounding_box(), button.bounding_box()
    assert at_line["y"] < at_button["y"] + at_button["height"] and at_button["y"] < at_line["y"] + at_line["height"]
    assert 0 <= at_button["x"] - (at_line["x"] + at_line["width"]) <= 40, (at_line, at_button)
    _shot(page, "dashboard-readiness")

    # Check now, from the browser: a new check recorded with the operator's name, its summary shown.
    page.click("#readiness-check-button")
    page.wait_for_selector("#messages")
    latest = ReadinessCheck.latest()
    assert latest.pk != check.pk and latest.executed_by == "rhea"
    assert page.get_attribute("#readiness-summary", "title") == latest.summary  # cut when long, whole on hover
    assert page.url.rstrip("/") == live_server.url
    _shot(page, "dashboard-readiness-checked")
    page.click("#readiness-link")
    page.wait_for_selector("#readiness-recent")
    assert page.locator("#readiness-recent tr[data-verdict]").count() == 2
    _shot(page, "readiness")
