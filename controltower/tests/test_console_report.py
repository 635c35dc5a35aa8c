"""The console's report page: the report's figures with its two charts, for staff only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone as django_timezone

from controltower.console import charts
from controltower.models import ControlTowerRun, SystemHealthLog

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]


def _check(at: datetime, status: str, module_status: str) -> None:
    run = ControlTowerRun.objects.create(
        run_type="health_check",
        system_status=status,
        executed_by="scheduler",
        executed_at=at,
        mode="stub",
        total_modules_checked=1,
    )
    SystemHealthLog.objects.create(
        run=run,
        module_name="10.5",
        module_full_name="ROAS Engine",
        health_status=module_status,
        checked_at=at,
        mode="stub",
    )


def _viewer(client) -> None:
    user = User.objects.create_user("victor", is_staff=True)
    user.groups.add(Group.objects.get(name="Tower viewers"))
    client.force_login(user)


def test_the_report_page_shows_uptime_availability_and_both_charts(client, meta_sandbox) -> None:
    now = django_timezone.now()
    _check(now - timedelta(hours=12), "healthy", "online")
    _check(now - timedelta(hours=6), "degraded", "degraded")
    _check(now - timedelta(hours=3), "healthy", "online")
    _viewer(client)

    response = client.get("/report/?days=1")

    assert response.status_code == 200
    page = response.content.decode()
    assert "75.00% HEALTHY" in page  # 9 of 12 known hours
    assert "75.00% ONLINE overall" in page
    assert 'aria-label="System status over time"' in page and 'class="slice st-degraded"' in page
    assert 'aria-label="Availability per module"' in page and "10.5 ROAS Engine: 75.0% ONLINE" in page
    assert "<form" in page and "emergency-stop-button" not in page  # a viewer: no actions


def test_a_one_day_report_counts_its_stops_and_does_not_extrapolate_a_week(client) -> None:
    for hours in (2, 5, 9):
        ControlTowerRun.objects.create(
            run_type="emergency_stop",
            command_type="emergency_stop",
            executed_by="alice",
            executed_at=django_timezone.now() - timedelta(hours=hours),
            mode="stub",
        )
        ControlTowerRun.objects.create(
            run_type="resume",
            command_type="resume",
            executed_by="bob",
            state="completed",
            executed_at=django_timezone.now() - timedelta(hours=hours - 1),
            mode="stub",
        )
    _viewer(client)

    day = client.get("/report/?days=1").content.decode()
    fortnight = client.get("/report/?days=14").content.decode()

    assert '<p id="stop-frequency">3 in 1 day.</p>' in day and "per week" not in day
    assert '<p id="stop-frequency">3 in 14 days, 1.5 per week.</p>' in fortnight


def test_a_bad_period_is_a_400_with_the_error(client) -> None:
    _viewer(client)
    response = client.get("/report/?days=0")
    assert response.status_code == 400 and "greater than or equal to 1" in response.content.decode()


def test_anonymous_is_sent_to_login(client) -> None:
    response = client.get("/report/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


START = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_timeline_keeps_a_status_until_the_next_check_and_shows_the_worst_of_a_slice() -> None:
    points = [
        (START, "healthy"),
        (START + timedelta(hours=5), "critical"),
        (START + timedelta(hours=5, minutes=1), "healthy"),
    ]

    svg = str(charts.status_timeline(points, START, START + timedelta(hours=10), slices=10))

    slices = [part.split('"')[0] for part in svg.split('class="slice st-')[1:]]
    assert slices == ["healthy"] * 5 + ["critical"] + ["healthy"] * 4


def test_the_charts_say_so_when_empty_and_escape_labels() -> None:
    assert "No checks in this period." in charts.status_timeline([], START, START + timedelta(days=1))
    assert "No module checks" in charts.availability_bars([])
    svg = str(charts.availability_bars([("<script>x</script>", 50.0), ("10.2 Ads", None)]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "no data" in svg
