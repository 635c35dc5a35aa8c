"""History filters at the ends of the calendar: a day or instant that cannot be searched is a 400, never a 500."""

from __future__ import annotations

from datetime import date

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.test import APIClient

from controltower.console.forms import day_bounds
from controltower.models import ControlTowerRun, RunType
from controltower.roles import VIEWERS_GROUP
from tests.support import api_token

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

API = "/meta/control-tower"


@pytest.fixture
def viewer() -> User:
    user = User.objects.create_user("victor", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS_GROUP))
    ControlTowerRun.objects.create(run_type=RunType.HEALTH_CHECK, executed_by="scheduler", mode="stub")
    return user


@pytest.fixture
def console(viewer: User) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture
def api(viewer: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(viewer)}")
    return client


@pytest.mark.parametrize("query", ["date_to=9999-12-31", "date_from=9999-12-31", "date_to=9999-12-31&run_type=command"])
def test_the_consoles_last_day_is_a_400_field_error(console: Client, query: str) -> None:
    response = console.get(f"/runs/?{query}")

    assert response.status_code == 400
    assert "Outside the calendar this filter can search." in response.content.decode()


def test_the_day_before_the_last_one_still_searches(console: Client) -> None:
    response = console.get("/runs/?date_from=2000-01-01&date_to=9999-12-30")

    assert response.status_code == 200 and "1 run." in response.content.decode()


def test_the_consoles_first_day_is_a_400_east_of_utc(console: Client, settings) -> None:
    settings.TIME_ZONE = "Asia/Tokyo"  # its midnight of 0001-01-01 is the day before, in UTC

    assert console.get("/runs/?date_from=0001-01-01").status_code == 400
    assert console.get("/runs/?date_from=0001-01-02").status_code == 200


def test_the_notifications_filter_answers_a_bad_value_with_a_400(console: Client) -> None:
    response = console.get("/notifications/?ok=perhaps")

    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()


@pytest.mark.parametrize(
    "query",
    [
        "until=9999-12-31T23:59:59-05:00",
        "since=0001-01-01T00:00:00%2B05:00",
        "date_to=9999-12-31",
    ],
)
def test_the_api_refuses_instants_outside_the_calendar(api: APIClient, query: str) -> None:
    for path in ("runs/", "health-logs/"):
        response = api.get(f"{API}/{path}?{query}")

        assert response.status_code == 400, (path, response.content)
        assert set(response.json()) == {query.split("=")[0]}


def test_day_bounds_span_one_local_day(settings) -> None:
    settings.TIME_ZONE = "Europe/Paris"

    start, end = day_bounds(date(2025, 3, 30))  # 23 hours long: summer time begins

    assert (start.isoformat(), end.isoformat()) == ("2025-03-30T00:00:00+01:00", "2025-03-31T00:00:00+02:00")
    with pytest.raises(OverflowError):
        day_bounds(date.max)
