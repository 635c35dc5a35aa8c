"""Who gets what: every API endpoint and console page × {anonymous, non-staff, viewer, operator}.

API: anonymous 401, non-staff 403, viewer 200 on reads and 403 on writes, operator never
401/403 (writes use dry runs or bodies the endpoint refuses with a 4xx, so nothing real
happens). Console: anonymous 302 to the login page, non-staff 403, viewer 200 on pages and
403 on action pages, operator 200. /metrics has its own key (METRICS_TOKEN): no user gets in.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.test import APIClient

from controltower.api.permissions import OPERATORS_GROUP, VIEWERS_GROUP
from tests.support import api_token

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "non_staff", "viewer", "operator")
MODULE = "10.1"
API = "/meta/control-tower"

API_READS = [
    f"{API}/status", f"{API}/health", f"{API}/report", f"{API}/runs/", f"{API}/health-logs/",
    f"{API}/modules/", f"{API}/modules/{MODULE}/", "/api/schema/", "/api/docs/",
]
# (path, JSON body): safe for an operator to send (dry run, refused in this state, or invalid).
API_WRITES = [
    (f"{API}/command", {}),  # 400: command_type is required
    (f"{API}/emergency-stop", {"reason": "permission matrix", "dry_run": True}),  # 200, changes nothing
    (f"{API}/resume", {}),  # 409: not halted
    (f"{API}/recovery", {}),  # 400: module_code and action are required
    (f"{API}/modules/{MODULE}/start", {}),  # 200: already running
    (f"{API}/modules/{MODULE}/stop", {"reason": "permission matrix"}),
    (f"{API}/modules/{MODULE}/restart", {"reason": "permission matrix"}),
    (f"{API}/modules/{MODULE}/runs", {}),  # 409: 10.1 is not an external module
]
CONSOLE_PAGES = ["/", "/report/", "/runs/", "/notifications/", f"/modules/{MODULE}/"]
CONSOLE_ACTION_PAGES = ["/emergency-stop/", "/resume/"]


def _user(role: str) -> User | None:
    if role == "anonymous":
        return None
    existing = User.objects.filter(username=role).first()
    if existing is not None:
        return existing
    user = User.objects.create_user(role, password="unused", is_staff=role != "non_staff")
    group = {"viewer": VIEWERS_GROUP, "operator": OPERATORS_GROUP}.get(role)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def _api_client(role: str) -> APIClient:
    client = APIClient()
    user = _user(role)
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(user)}")
    return client


def _console_client(role: str) -> Client:
    client = Client()
    user = _user(role)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def world(synced, meta_sandbox) -> None:
    """Modules, groups and a sandbox to talk to (health, dry-run stop, restart)."""


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url", API_READS)
def test_api_reads(world, url: str, role: str) -> None:
    response = _api_client(role).get(url)

    expected = {"anonymous": 401, "non_staff": 403, "viewer": 200, "operator": 200}[role]
    assert response.status_code == expected, (url, role, response.status_code, response.content[:300])
    if role == "anonymous":
        assert response["WWW-Authenticate"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("url", "body"), API_WRITES, ids=[url for url, _ in API_WRITES])
def test_api_writes(world, url: str, body: dict, role: str) -> None:
    response = _api_client(role).post(url, body, format="json")

    if role == "operator":
        assert response.status_code not in (401, 403, 429), (url, response.status_code, response.content[:300])
        assert response.status_code < 500, (url, response.status_code, response.content[:300])
    else:
        expected = {"anonymous": 401, "non_staff": 403, "viewer": 403}[role]
        assert response.status_code == expected, (url, role, response.status_code, response.content[:300])


@pytest.mark.parametrize("role", ROLES)
def test_metrics_needs_its_own_key_not_a_user(world, settings, role: str) -> None:
    settings.METRICS_TOKEN = "metrics-scrape-key-for-the-matrix"
    settings.METRICS_ALLOWED_IPS = []

    assert _api_client(role).get("/metrics").status_code == 403
    assert _console_client(role).get("/metrics").status_code == 403


def test_metrics_answers_its_key(world, settings) -> None:
    settings.METRICS_TOKEN = "metrics-scrape-key-for-the-matrix"

    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-scrape-key-for-the-matrix").status_code == 200


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url", CONSOLE_PAGES + CONSOLE_ACTION_PAGES)
def test_console_pages(world, url: str, role: str) -> None:
    response = _console_client(role).get(url)

    if role == "anonymous":
        assert response.status_code == 302, (url, response.status_code)
        assert response["Location"].startswith("/admin/login/?next="), response["Location"]
        return
    if role == "non_staff":
        expected = 403
    elif role == "viewer":
        expected = 403 if url in CONSOLE_ACTION_PAGES else 200
    else:
        expected = 200
    assert response.status_code == expected, (url, role, response.status_code)
