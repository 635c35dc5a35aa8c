"""The console in a real browser (Playwright driving Debian's Chromium, headless).

An operator logs in, opens the dashboard, presses the emergency stop, types a reason,
confirms, sees EMERGENCY_STOP and the paused count, then resumes and sees the status
return — with the sandbox's campaigns checked over its API after each step. Screenshots
of the dashboard and of the confirmation are saved under artifacts/.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connections

from controltower.models import TowerState
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
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                  "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        yield page
        browser.close()
        # ORM calls made while Playwright's loop ran opened connections in that context: close them
        # here, or the test database cannot be dropped at the end of the run.
        connections.close_all()


def _active(sandbox) -> int:
    return len(sandbox.campaigns(status="ACTIVE"))


def test_an_operator_stops_and_resumes_from_the_dashboard(synced, meta_sandbox, live_server, browser_page) -> None:
    # `synced` first: the test database is then set up before (and torn down after) the live server.
    operator = User.objects.create_user("olivia", password=PASSWORD, is_staff=True)
    operator.groups.add(Group.objects.get(name="Tower operators"))
    active_before = _active(meta_sandbox)
    assert active_before > 0
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/?next=/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#system-status")
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
