"""The stop form and the API's dry run work when Meta does not: unreachable, token rejected, HTML 5xx."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from controltower.models import ControlTowerRun, TowerState
from controltower.roles import OPERATORS_GROUP
from meta_modules import graph
from tests.support import free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

SENTENCE = "— the stop will still halt every scheduler and keep pausing in the background when Meta answers"
FAILURES = ["unreachable", "token_rejected", "html_5xx"]


@pytest.fixture
def operator_user() -> User:
    user = User.objects.create_user("olivia", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    return user


@pytest.fixture(params=FAILURES)
def failing_meta(request, meta_sandbox, settings) -> str:
    settings.EMERGENCY_STOP_PREVIEW_SECONDS = 2
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 3
    if request.param == "unreachable":
        settings.META_GRAPH_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    elif request.param == "token_rejected":
        meta_sandbox.faults(expire_token=True)
    else:
        meta_sandbox.faults(html_error_rate=1.0)
    graph.reset_clients()
    return request.param


def test_the_confirmation_page_renders_with_the_reason_and_keeps_the_stop_button(failing_meta, operator_user) -> None:
    client = Client()
    client.force_login(operator_user)
    response = client.get("/emergency-stop/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="confirm-stop"' in page and "STOP EVERYTHING NOW" in page
    errors = page[page.index('id="preview-errors"') :]
    assert "Meta could not be listed: " in errors and SENTENCE in errors
    reason = errors.split("Meta could not be listed: ", 1)[1].split(SENTENCE, 1)[0].strip()
    assert reason  # the reason Meta gave (or why it could not be reached), not an empty sentence


def test_the_api_dry_run_answers_200_with_the_errors(failing_meta, operator_user) -> None:
    api = APIClient()
    api.force_authenticate(operator_user)
    response = api.post("/meta/control-tower/emergency-stop", {"reason": "checking", "dry_run": True}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["dry_run"] and not body["success"] and body["errors"]
    assert body["run_id"] is None and body["progress_url"] is None
    assert not TowerState.get().emergency_stop_active and not ControlTowerRun.objects.exists()


def test_the_stop_pressed_from_that_page_still_halts_every_scheduler(failing_meta, operator_user) -> None:
    client = Client()
    client.force_login(operator_user)
    response = client.post(
        "/emergency-stop/",
        {"reason": "Meta is down and spend is running", "pause_campaigns": "on", "stop_schedulers": "on"},
    )

    assert response.status_code == 302
    state = TowerState.get()
    assert state.emergency_stop_active and response["Location"] == f"/stops/{state.halt_run_id}/"
    assert not PeriodicTask.objects.filter(meta_module__isnull=False, enabled=True).exists()
