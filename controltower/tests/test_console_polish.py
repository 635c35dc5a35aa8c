"""Polish that reads as care: the favicon, times with their zone, refused actions shown disabled with
the reason, the run page's tables, the notifications' channel choice, the browsable API and Swagger."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.test import Client

from controltower.models import ControlTowerRun, Notification, RunType
from controltower.roles import OPERATORS_GROUP
from tests.support import admin_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

# <time datetime="2026-12-03T05:40:12+00:00">2026-12-03 05:40:12 UTC</time>
TIME = re.compile(r'<time datetime="(?P<iso>[^"]+)">(?P<text>[^<]+)</time>')
ISO_WITH_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")


@pytest.fixture
def operator() -> Client:
    return admin_client("olivia", OPERATORS_GROUP)


# --- favicon ----------------------------------------------------------------------------


def test_it_links_the_favicon_and_answers_favicon_ico_with_an_image(operator: Client) -> None:
    page = operator.get("/").content.decode()
    admin = admin_client("root", superuser=True).get("/admin/").content.decode()
    icon = Client().get("/favicon.ico")  # browsers ask before anyone logs in

    link = '<link rel="icon" href="/static/controltower/favicon.svg" type="image/svg+xml">'
    assert link in page and link in admin
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content)


# --- times with their zone --------------------------------------------------------------


def test_it_shows_every_time_with_its_zone_and_an_iso_instant(operator: Client) -> None:
    run = ControlTowerRun.objects.create(
        run_type=RunType.COMMAND,
        command_type="sync_data",
        executed_by="olivia",
        mode="stub",
        executed_at=datetime(2026, 12, 3, 5, 40, 12, 345678, tzinfo=UTC),
    )
    Notification.objects.create(channel="email", subject="s", body="b", ok=True, sent_at=run.executed_at, run=run)

    pages = {
        url: operator.get(url).content.decode()
        for url in ("/", "/modules/10.5/", "/runs/", f"/runs/{run.pk}/", "/notifications/", "/report/")
    }

    for url, html in pages.items():
        times = TIME.findall(html)
        assert times, url
        for iso, text in times:
            assert ISO_WITH_OFFSET.fullmatch(iso), (url, iso)
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text), (url, text)
    for url in ("/runs/", f"/runs/{run.pk}/", "/notifications/"):
        assert '<time datetime="2026-12-03T05:40:12+00:00">2026-12-03 05:40:12 UTC</time>' in pages[url]
    assert "<title>Run 2026-12-03 05:40:12 UTC · Control Tower</title>" in pages[f"/runs/{run.pk}/"]


def test_it_names_the_towers_zone_when_it_is_not_utc(operator: Client, settings) -> None:
    settings.TIME_ZONE = "America/Los_Angeles"
    run = ControlTowerRun.objects.create(
        run_type=RunType.COMMAND,
        command_type="sync_data",
        executed_by="olivia",
        mode="stub",
        executed_at=datetime(2026, 12, 3, 5, 40, 12, tzinfo=UTC),
    )

    html = operator.get(f"/runs/{run.pk}/").content.decode()

    assert '<time datetime="2026-12-02T21:40:12-08:00">2026-12-02 21:40:12 PST</time>' in html


# --- actions refused while halted -------------------------------------------------------

REFUSAL = "Refused while halted: emergency stop by alice at 2026-12-03 05:40:12 UTC — resume first"


def _button(html: str, element_id: str) -> str:
    return re.search(rf'<(?:button|a)[^>]*id="{element_id}"[^>]*>', html).group(0)


def _halt() -> None:
    from controltower.models import TowerState

    TowerState.objects.filter(pk=1).update(
        emergency_stop_active=True,
        halted_by="alice",
        halt_reason="spike",
        halted_at=datetime(2026, 12, 3, 5, 40, 12, tzinfo=UTC),
    )


REFUSED = {
    "/": ["command-start_all"],
    "/modules/10.5/": ["module-start", "module-restart", "module-clear_cache", "module-reset_module"],
}
STILL_ALLOWED = {
    "/": ["command-stop_all", "command-sync_data", "command-optimize", "command-health_check"],
    "/modules/10.5/": ["module-stop"],
}


def test_it_shows_actions_the_server_refuses_while_halted_as_disabled_with_the_reason(operator: Client) -> None:
    _halt()

    for url, ids in REFUSED.items():
        html = operator.get(url).content.decode()
        for element_id in ids:
            button = _button(html, element_id)
            assert button.startswith("<button") and " disabled " in button and 'aria-disabled="true"' in button
            assert f'title="{REFUSAL}"' in button
        for element_id in STILL_ALLOWED[url]:
            assert "disabled" not in _button(html, element_id)
    assert f"{REFUSAL}." in operator.get("/modules/10.5/actions/reset_module/").content.decode()


def test_it_enables_every_action_when_not_halted(operator: Client) -> None:
    for url, ids in REFUSED.items():
        html = operator.get(url).content.decode()
        for element_id in ids + STILL_ALLOWED[url]:
            assert "disabled" not in _button(html, element_id) and "Refused while halted" not in html


def test_the_server_still_refuses_what_the_page_shows_disabled(operator: Client) -> None:
    from django_celery_beat.models import PeriodicTask

    from controltower.models import RecoveryAttempt

    PeriodicTask.objects.filter(meta_module__isnull=False).update(enabled=False)
    _halt()

    for url in (
        "/commands/start_all/",
        "/modules/10.5/actions/start/",
        "/modules/10.5/actions/restart/",
        "/modules/10.5/actions/clear_cache/",
        "/modules/10.5/actions/reset_module/",
    ):
        page = operator.post(url, {"reason": "forcing it"}, follow=True).content.decode()
        assert 'class="msg msg-error"' in page, url

    assert not PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).exists()
    assert not RecoveryAttempt.objects.exists()


# --- the run page's tables --------------------------------------------------------------


def _table(html: str, element_id: str) -> tuple[list[str], list[list[str]]]:
    """Headers and rows (cell texts) of the table with this id."""
    table = re.search(rf'<table[^>]*id="{element_id}".*?</table>', html, re.S).group(0)
    headers = re.findall(r"<th>(.*?)</th>", table)
    rows = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(<td>.*?)</tr>", table, re.S)]
    return headers, rows


def test_it_shows_a_real_stops_actions_as_a_table_not_json(operator: Client, meta_sandbox) -> None:
    from controltower import killswitch

    active = meta_sandbox.campaigns(status="ACTIVE")
    result = killswitch.emergency_stop(killswitch.StopRequest(reason="Budget spike", actor="olivia"))

    html = operator.get(f"/runs/{result.run_id}/").content.decode()

    headers, rows = _table(html, "run-actions")
    assert headers[:2] == ["Action", "Modules"] and headers[-1] == "Other"
    assert [row[0] for row in rows] == ["disable_schedulers", "pause_campaigns", "alerts"]
    pause = dict(zip(headers, rows[1]))
    assert pause["Paused"] == str(len(active)) and pause["Pending"] == "0" and pause["Failed"] == "0"
    for account in {c["account_id"] for c in active}:
        paused = sum(c["account_id"] == account for c in active)
        assert re.search(rf"by_account: .*act_{account} paused {paused}\b", pause["Other"])
    assert "10.1, 10.2," in dict(zip(headers, rows[0]))["Modules"]
    assert '{"' not in html and "{&quot;" not in html and "&quot;action&quot;" not in html


def test_it_keeps_unknown_keys_in_the_last_column_and_errors_and_recoveries_as_tables() -> None:
    from controltower.console import tables

    table = tables.record_table(
        [
            {"action": "run", "module": "10.2", "outcome": "failure", "took": {"ms": 12}},
            {"action": "restart", "cancelled_in_flight": {"10.2": 1}},
        ]
    )
    errors = tables.record_table(["10.2: failure"], text_key="error")

    assert table.headers == ["Action", "Module", "Outcome", "Other"]
    assert table.rows == [
        [["run"], ["10.2"], ["failure"], ["took: ms 12"]],
        [["restart"], [], [], ["cancelled_in_flight: 10.2 1"]],
    ]
    assert errors.headers == ["Error"] and errors.rows == [[["10.2: failure"]]]
    assert tables.cell([{"campaign_id": "c1", "reason": "edited"}, {"campaign_id": "c2", "reason": None}]) == [
        "campaign_id c1, reason edited",
        "campaign_id c2, reason —",
    ]


# --- browsable API and Swagger ----------------------------------------------------------

API = "/meta/control-tower"


def _breadcrumbs(html: str) -> list[str]:
    crumbs = re.search(r'<ul class="breadcrumb">(.*?)</ul>', html, re.S).group(1)
    return re.findall(r"<a [^>]*>(.*?)</a>", crumbs)


@pytest.mark.parametrize(
    "path,crumbs",
    [
        ("/status", ["Control Tower API", "Status"]),
        ("/runs/", ["Control Tower API", "Run List"]),
        ("/modules/10.5/", ["Control Tower API", "Module List", "Module Instance"]),
        ("/", ["Control Tower API"]),
    ],
)
def test_the_browsable_api_has_no_unknown_endpoint_breadcrumb(operator: Client, path: str, crumbs: list[str]) -> None:
    html = operator.get(f"{API}{path}", HTTP_ACCEPT="text/html").content.decode()

    assert _breadcrumbs(html) == crumbs and "Unknown Endpoint" not in html
    assert '<a class="navbar-brand" id="api-console-link" href="/">← Control Tower console</a>' in html


def test_the_api_root_lists_every_endpoint_and_the_way_back(operator: Client) -> None:
    links = operator.get(f"{API}/", HTTP_ACCEPT="application/json").json()

    assert links["status"] == f"http://testserver{API}/status" and links["console"] == "http://testserver/"
    assert {
        "health",
        "command",
        "emergency-stop",
        "resume",
        "recovery",
        "report",
        "run-list",
        "health-log-list",
        "module-list",
        "schema",
        "docs",
    } <= set(links)
    for name, url in links.items():
        answered = operator.get(url.removeprefix("http://testserver"), HTTP_ACCEPT="text/html").status_code
        # readiness: 404 until the first check, saying so
        assert answered in (200, 405) or (name, answered) == ("readiness", 404), name
    assert operator.get(f"{API}/no-such-thing").status_code == 404  # everything else is still unknown


def test_swagger_links_back_to_the_console_and_uses_no_cdn(operator: Client) -> None:
    html = operator.get("/api/docs/").content.decode()

    assert '<nav id="docs-console-link"' in html and '<a href="/" ' in html and "← Control Tower console" in html
    assert '<link rel="icon" href="/favicon.ico">' in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # every asset from this server


# --- notifications: channel as a choice -------------------------------------------------


def test_it_filters_notifications_by_a_choice_of_the_known_channels(operator: Client) -> None:
    Notification.objects.create(channel="email", subject="by email", body="b", ok=True)
    Notification.objects.create(channel="slack", subject="by slack", body="b", ok=True)
    Notification.objects.create(channel="pager", subject="by an old transport", body="b", ok=True)

    page = operator.get("/notifications/").content.decode()
    slack = operator.get("/notifications/?channel=slack").content.decode()

    select = re.search(r'<select name="channel"[^>]*>(.*?)</select>', page, re.S).group(1)
    assert re.findall(r'<option value="([^"]*)"', select) == ["", "email", "slack", "webhook", "pager"]
    assert "by slack" in slack and "by email" not in slack and "1 notification." in slack


def test_an_unknown_channel_is_a_400_with_the_field_error(operator: Client) -> None:
    Notification.objects.create(channel="email", subject="by email", body="b", ok=True)

    response = operator.get("/notifications/?channel=carrier-pigeon")

    html = response.content.decode()
    assert response.status_code == 400 and "Select a valid choice" in html and "carrier-pigeon" in html
    assert "0 notifications." in html and "by email" not in html  # not every row, as if unfiltered
