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
