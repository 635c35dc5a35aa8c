"""Alerts: sent on a flip, not repeated within the interval, resolved with a notice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from controltower import alerts, commander
from controltower.findings import AlertCondition
from controltower.models import Alert, ControlTowerRun, Notification, TowerState
from meta_modules.models import MetaModule, ModuleRun
from meta_modules.registry import MODULES

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced", "meta_sandbox")]


@pytest.fixture
def channels(settings, http_receiver):
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.SLACK_WEBHOOK_URL = f"{http_receiver.url}/slack"
    return http_receiver


def _runs(code: str, successes: int, failures: int) -> None:
    module = MetaModule.objects.get(code=code)
    now = timezone.now()
    ModuleRun.objects.bulk_create(
        [
            ModuleRun(
                module=module,
                started_at=now - timedelta(minutes=i + 1),
                finished_at=now,
                duration_ms=10,
                outcome=ModuleRun.Outcome.SUCCESS,
            )
            for i in range(successes)
        ]
        + [
            ModuleRun(
                module=module,
                started_at=now - timedelta(minutes=successes + i + 1),
                finished_at=now,
                duration_ms=10,
                outcome=ModuleRun.Outcome.FAILURE,
                error_message="Meta said no",
            )
            for i in range(failures)
        ]
    )


def _healthy_stack() -> None:
    for spec in MODULES:
        _runs(spec.code, 10, 0)


def _break(code: str) -> None:
    ModuleRun.objects.filter(module__code=code).delete()
    _runs(code, 5, 5)


def test_a_flip_sends_once_and_is_not_resent_within_the_repeat_interval(channels) -> None:
    _healthy_stack()
    commander.health_cycle("test")
    assert not mail.outbox and not channels.received  # healthy: nothing to say

    _break("10.5")
    commander.health_cycle("test")
    commander.health_cycle("test")

    assert len(mail.outbox) == 1
    assert "Module 10.5 ROAS Engine is OFFLINE" in mail.outbox[0].body
    assert mail.outbox[0].to == ["ops@example.com"]
    assert len(channels.received) == 1
    slack = channels.received[0]
    assert slack["path"] == "/slack" and "Module 10.5 ROAS Engine is OFFLINE" in slack["json"]["text"]
    assert Alert.objects.filter(key="module:10.5:offline", resolved_at__isnull=True).count() == 1
    assert set(Notification.objects.values_list("channel", flat=True)) == {"email", "slack"}
    assert Notification.objects.filter(ok=True).count() == 2


def test_a_still_open_alert_is_repeated_after_the_interval(channels, settings) -> None:
    _healthy_stack()
    _break("10.5")
    commander.health_cycle("test")
    Alert.objects.update(last_notified_at=timezone.now() - timedelta(seconds=settings.ALERT_REPEAT_SECONDS + 1))

    commander.health_cycle("test")

    assert len(mail.outbox) == 2
    assert "Still open" in mail.outbox[1].body


def test_a_resolved_notice_follows_recovery(channels) -> None:
    _healthy_stack()
    _break("10.5")
    commander.health_cycle("test")
    ModuleRun.objects.filter(module__code="10.5", outcome=ModuleRun.Outcome.FAILURE).delete()

    run = commander.health_cycle("test")

    assert run.system_status == "healthy"
    assert len(mail.outbox) == 2 and "Resolved" in mail.outbox[1].body
    assert mail.outbox[1].subject.startswith("[Control Tower] RESOLVED")
    alert = Alert.objects.get(key="module:10.5:offline")
    assert alert.resolved_at is not None


def test_a_module_stopped_on_purpose_raises_nothing(channels) -> None:
    _healthy_stack()
    MetaModule.objects.filter(code="10.8").update(desired_state=MetaModule.DesiredState.STOPPED)
    ModuleRun.objects.filter(module__code="10.8").delete()  # it has not run for ages: still fine

    run = commander.health_cycle("test")

    assert run.system_status == "healthy" and run.alerts == []
    assert not mail.outbox and not Alert.objects.exists()


def test_module_alerts_are_suppressed_while_halted(channels) -> None:
    _healthy_stack()
    _break("10.5")
    commander.health_cycle("test")
    state = TowerState.get()
    state.emergency_stop_active = True
    state.save()
    ModuleRun.objects.filter(module__code="10.5", outcome=ModuleRun.Outcome.FAILURE).delete()
    _break("10.6")

    run = commander.health_cycle("test")

    assert run.system_status == "emergency_stop" and run.alerts == []
    assert len(mail.outbox) == 1  # only the alert from before the halt
    assert Alert.objects.get(key="module:10.5:offline").resolved_at is None  # neither fires nor resolves


def test_a_failing_channel_is_recorded_and_does_not_stop_the_others(settings, http_receiver) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.SLACK_WEBHOOK_URL = f"{http_receiver.url}/slack"
    http_receiver.status = 404  # permanent: not retried
    news = alerts.update([AlertCondition("infra:beat", "critical", "Celery Beat is not running")], None, halted=False)

    sent = alerts.notify(news, "critical", None)

    by_channel = {n.channel: n for n in sent}
    assert by_channel["email"].ok and len(mail.outbox) == 1
    assert not by_channel["slack"].ok and "404" in by_channel["slack"].error
    assert len(http_receiver.received) == 1


def test_the_json_webhook_gets_structured_news(settings, http_receiver) -> None:
    settings.ALERT_WEBHOOK_URL = f"{http_receiver.url}/hook"
    _healthy_stack()
    _break("10.5")

    run = commander.health_cycle("test")

    payload = http_receiver.received[0]["json"]
    assert payload["system_status"] == "critical" and payload["kind"] == "alert"
    assert {a["key"] for a in payload["opened"]} == {"system:critical", "module:10.5:offline"}
    assert Notification.objects.get(channel="webhook").run == ControlTowerRun.objects.get(pk=run.pk)
