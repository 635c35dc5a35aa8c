"""Polish that reads as care: the favicon, times with their zone, refused actions shown disabled with
the reason, the run page's tables, the notifications' channel choice, the browsable API and Swagger."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.test import Client

from controltower.api.permissions import OPERATORS_GROUP
from controltower.models import ControlTowerRun, Notification, RunType
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
    run = ControlTowerRun.objects.create(run_type=RunType.COMMAND, command_type="sync_data", executed_by="olivia",
                                         mode="stub", executed_at=datetime(2026, 12, 3, 5, 40, 12, 345678, tzinfo=UTC))
    Notification.objects.create(channel="email", subject="s", body="b", ok=True, sent_at=run.executed_at, run=run)

    pages = {url: operator.get(url).content.decode()
             for url in ("/", "/modules/10.5/", "/runs/", f"/runs/{run.pk}/", "/notifications/", "/report/")}

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
    run = ControlTowerRun.objects.create(run_type=RunType.COMMAND, command_type="sync_data", executed_by="olivia",
                                         mode="stub", executed_at=datetime(2026, 12, 3, 5, 40, 12, tzinfo=UTC))

    html = operator.get(f"/runs/{run.pk}/").content.decode()

    assert '<time datetime="2026-12-02T21:40:12-08:00">2026-12-02 21:40:12 PST</time>' in html

