"""Alert channels an operator can see and test: who a stop will tell, and what each delivery did."""

from __future__ import annotations

import re
import time

import pytest
from django.core import mail
from django.utils import timezone

from controltower import channels, killswitch
from controltower.killswitch import StopRequest
from controltower.models import Notification, RunType
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from tests.support import admin_client, api_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

SECRET_PATH = "/services/T000/B000/XXXXsecretXXXX"
NONE_CONFIGURED = "No alert channel is configured — nobody will be told of a stop, a resume or an outage"
WARNING = "no alert channel is configured (ALERT_EMAILS, SLACK_WEBHOOK_URL, ALERT_WEBHOOK_URL)"
STOP_FORM = {"reason": "Budget spike", "pause_campaigns": "on", "stop_schedulers": "on", "send_alerts": "on"}


def _section(html: str, element_id: str) -> str:
    match = re.search(rf'<(\w+)[^>]*id="{element_id}".*?</\1>', html, re.DOTALL)
    assert match, f"#{element_id} missing"
    return match.group(0)


def _row(html: str, kind: str) -> str:
    match = re.search(rf'<tr data-channel="{kind}".*?</tr>', _section(html, "alert-channels"), re.DOTALL)
    assert match, f"no row for {kind}"
    return match.group(0)


@pytest.fixture
def operator():
    return admin_client("olivia", OPERATORS_GROUP)


@pytest.fixture
def viewer():
    return admin_client("victor", VIEWERS_GROUP)


@pytest.fixture
def webhook(settings, http_receiver):
    settings.ALERT_WEBHOOK_URL = f"{http_receiver.url}{SECRET_PATH}"
    return http_receiver


# --- delivery over HTTP: urllib3's retries against a real local receiver ----------------------
NEWS = channels.Message(kind=Notification.Kind.ALERT, subject="Beat is down", body="Celery Beat is not running")


def test_a_5xx_then_a_200_is_delivered_once_after_one_retry(webhook) -> None:
    webhook.statuses = [503]

    sent = channels.deliver(NEWS)

    assert [n.ok for n in sent] == [True] and Notification.objects.count() == 1
    assert len(webhook.received) == 2 and webhook.received[0] == webhook.received[1]


def test_a_4xx_is_permanent_and_not_retried(webhook) -> None:
    webhook.status = 400

    [sent] = channels.deliver(NEWS)

    assert not sent.ok and "HTTPError: 400" in sent.error
    assert len(webhook.received) == 1


def test_it_gives_up_after_three_attempts_and_records_the_last_status(webhook) -> None:
    webhook.status = 502

    [sent] = channels.deliver(NEWS)

    assert not sent.ok and "HTTPError: 502" in sent.error
    assert len(webhook.received) == 3


def test_a_429_is_retried_after_its_retry_after(webhook) -> None:
    webhook.statuses, webhook.headers = [429], {"Retry-After": "1"}
    started = time.monotonic()

    [sent] = channels.deliver(NEWS)

    assert sent.ok and len(webhook.received) == 2
    assert time.monotonic() - started >= 1.0  # the first retry waits for nothing but Retry-After


# --- what the channels say about themselves (pure over settings) -----------------------------


def test_it_describes_no_channel_as_nobody_alerted(settings) -> None:
    assert channels.configured() == []
    assert channels.describe() == "none configured — nobody will be alerted (see docs/settings.md, Alerts)"


def test_it_describes_configured_channels_without_their_secret_path(settings) -> None:
    settings.ALERT_EMAILS = ["ops@example.com", "cto@example.com"]
    settings.SLACK_WEBHOOK_URL = f"https://hooks.slack.com{SECRET_PATH}"
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:8099{SECRET_PATH}?token=abc"

    assert channels.describe() == "email (2 recipients), slack (hooks.slack.com), webhook (127.0.0.1:8099)"


def test_it_shows_only_the_host_of_a_webhook_url() -> None:
    assert channels.url_host(f"https://user:pw@hooks.slack.com{SECRET_PATH}?x=1") == "hooks.slack.com"
    assert channels.url_host("http://127.0.0.1:8099/hook") == "127.0.0.1:8099"
    assert channels.url_host("http://example.com:notaport/secret") == "example.com"


def test_it_says_why_no_alert_went_out() -> None:
    failed = Notification(channel="slack", ok=False, error="HTTPError: 404")
    delivered = Notification(channel="email", ok=True)

    assert channels.outcome(False, []) == "alerts not requested"
    assert channels.outcome(True, []) == "no alert channel configured"
    assert channels.outcome(True, [delivered, failed]) == "email delivered; slack failed: HTTPError: 404"


# --- dashboard ---------------------------------------------------------------------------


def test_the_dashboard_says_plainly_when_no_channel_is_configured(operator) -> None:
    html = operator.get("/").content.decode()

    section = _section(html, "alert-channels")
    assert NONE_CONFIGURED in section
    for kind in channels.KINDS:
        assert "not configured" in _row(html, kind) and "data-test-channel" not in _row(html, kind)


def test_the_dashboard_shows_each_channel_its_masked_target_and_last_delivery(operator, settings, webhook) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.SLACK_WEBHOOK_URL = f"https://hooks.slack.com{SECRET_PATH}"
    Notification.objects.create(
        channel="webhook",
        kind=Notification.Kind.ALERT,
        subject="s",
        body="b",
        ok=False,
        error="HTTPError: 503 Server Error",
        sent_at=timezone.now(),
    )
    Notification.objects.create(channel="email", kind=Notification.Kind.EMERGENCY, subject="s", body="b", ok=True)

    html = operator.get("/").content.decode()

    assert NONE_CONFIGURED not in html and SECRET_PATH not in html
    assert "ops@example.com" in _row(html, "email") and ">ok<" in _row(html, "email")
    assert "hooks.slack.com" in _row(html, "slack") and "none yet" in _row(html, "slack")
    webhook_row = _row(html, "webhook")
    assert webhook.url.removeprefix("http://") in webhook_row
    assert ">failed<" in webhook_row and "HTTPError: 503 Server Error" in webhook_row
    assert 'data-test-channel="webhook"' in webhook_row


# --- stop and resume pages ---------------------------------------------------------------


@pytest.mark.usefixtures("meta_sandbox")
def test_the_stop_and_resume_pages_warn_that_nobody_will_be_alerted(operator) -> None:
    stop = operator.get("/emergency-stop/").content.decode()
    resume = operator.get("/resume/").content.decode()

    assert WARNING in _section(stop, "alert-warning") and WARNING in _section(resume, "alert-warning")
    assert "Alert admins (no alert channel is configured: nobody will be told)" in stop


@pytest.mark.usefixtures("meta_sandbox")
def test_the_stop_page_names_the_channels_when_one_is_configured(operator, settings, webhook) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]

    stop = operator.get("/emergency-stop/").content.decode()
    resume = operator.get("/resume/").content.decode()

    assert 'id="alert-warning"' not in stop and 'id="alert-warning"' not in resume
    assert "Alert admins (email, webhook)" in stop
    assert "Alerts go to: email (1 recipient), webhook (127.0.0.1:" in stop


# --- what a stop did with its alerts -----------------------------------------------------


@pytest.mark.usefixtures("meta_sandbox")
def test_the_stop_result_lists_each_delivery(operator, settings, webhook) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    response = operator.post("/emergency-stop/", STOP_FORM, follow=True)

    html = response.content.decode()
    deliveries = _section(html, "alert-deliveries")
    assert re.search(r'data-channel="email" data-delivery="ok"', deliveries)
    assert re.search(r'data-channel="webhook" data-delivery="ok"', deliveries)
    assert "email delivered; webhook delivered" in _section(html, "alerts-outcome")
    assert webhook.received[0]["json"]["event"] == "emergency_stop" and len(mail.outbox) == 1


@pytest.mark.usefixtures("meta_sandbox")
def test_the_stop_result_shows_a_failed_delivery_with_its_error(operator, webhook) -> None:
    webhook.status = 404
    html = operator.post("/emergency-stop/", STOP_FORM, follow=True).content.decode()

    deliveries = _section(html, "alert-deliveries")
    assert 'data-channel="webhook" data-delivery="failed"' in deliveries and "404" in deliveries
    assert "webhook failed: HTTPError: 404" in _section(html, "alerts-outcome")


@pytest.mark.usefixtures("meta_sandbox")
@pytest.mark.parametrize(
    "form, why",
    [
        (STOP_FORM, "no alert channel configured"),
        ({k: v for k, v in STOP_FORM.items() if k != "send_alerts"}, "alerts not requested"),
    ],
)
def test_the_stop_result_says_why_no_alert_was_sent(operator, form, why) -> None:
    html = operator.post("/emergency-stop/", form, follow=True).content.decode()

    assert _section(html, "alerts-outcome").endswith(f">{why}</span>")
    assert Notification.objects.count() == 0


@pytest.mark.usefixtures("meta_sandbox")
def test_the_api_answers_say_why_and_list_deliveries(settings, webhook) -> None:
    client = api_client("olivia", OPERATORS_GROUP)

    dry = client.post("/meta/control-tower/emergency-stop", {"reason": "look", "dry_run": True}, format="json").json()
    assert dry["alerts_outcome"].startswith("dry run, nothing sent; a stop would alert: webhook (127.0.0.1:")
    stop = client.post("/meta/control-tower/emergency-stop", {"reason": "spike"}, format="json").json()
    assert stop["alerts_sent"] == 1 and stop["alerts_outcome"] == "webhook delivered"
    assert stop["alert_deliveries"] == [{"channel": "webhook", "ok": True, "error": ""}]

    settings.ALERT_WEBHOOK_URL = ""
    resume = client.post("/meta/control-tower/resume", {"run_health_check": False}, format="json").json()
    assert resume["alerts_sent"] == 0 and resume["alerts_outcome"] == "no alert channel configured"
    assert resume["alert_deliveries"] == []


# --- test-send -----------------------------------------------------------------------------


def test_an_operator_test_send_reaches_the_receiver_and_is_recorded(operator, webhook) -> None:
    response = operator.post("/alert-channels/webhook/test/", follow=True)

    assert response.status_code == 200
    assert "Test message delivered via webhook" in response.content.decode()
    assert len(webhook.received) == 1 and webhook.received[0]["path"] == SECRET_PATH
    assert webhook.received[0]["json"] == {
        "subject": "TEST message requested by olivia — no action needed",
        "kind": "test",
        "event": "test",
        "actor": "olivia",
    }
    sent = Notification.objects.get()
    assert (sent.kind, sent.channel, sent.ok, sent.requested_by, sent.run) == ("test", "webhook", True, "olivia", None)
    assert ">ok<" in _row(response.content.decode(), "webhook")


def test_a_failed_test_send_says_so(operator, webhook) -> None:
    webhook.status = 404
    html = operator.post("/alert-channels/webhook/test/", follow=True).content.decode()

    assert "Test message via webhook failed: HTTPError: 404" in html
    assert Notification.objects.get().ok is False


def test_a_test_send_by_email_is_marked_as_a_test(operator, settings) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    operator.post("/alert-channels/email/test/")

    assert mail.outbox[0].subject == "[Control Tower] TEST message requested by olivia — no action needed"
    assert mail.outbox[0].to == ["ops@example.com"]


def test_a_viewer_sees_no_test_button_and_cannot_post_one(viewer, webhook) -> None:
    assert "data-test-channel" not in viewer.get("/").content.decode()

    response = viewer.post("/alert-channels/webhook/test/")

    assert response.status_code == 403
    assert webhook.received == [] and not Notification.objects.exists()


def test_a_test_send_needs_the_csrf_token(webhook) -> None:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user = User.objects.create_user("olivia", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.post("/alert-channels/webhook/test/").status_code == 403
    assert webhook.received == []


def test_a_test_send_to_an_unconfigured_channel_is_refused(operator) -> None:
    response = operator.post("/alert-channels/slack/test/")

    assert response.status_code == 409 and "SLACK_WEBHOOK_URL" in response.content.decode()
    assert operator.post("/alert-channels/pager/test/").status_code == 404
    assert operator.get("/alert-channels/slack/test/").status_code == 405


@pytest.mark.usefixtures("meta_sandbox")
def test_a_joined_press_says_the_running_stop_alerts(settings, webhook) -> None:
    killswitch.stop._begin_halt(StopRequest(reason="Budget spike", actor="alice"))

    result = killswitch.emergency_stop(StopRequest(reason="me too", actor="bob"))

    assert result.joined and result.alerts_outcome == "joined the running stop, which sends the alerts"
    assert webhook.received == [] and Notification.objects.filter(run__run_type=RunType.EMERGENCY_STOP).count() == 0


# --- the API -----------------------------------------------------------------------------


def test_the_api_lists_the_channels_without_secrets(settings, webhook) -> None:
    settings.SLACK_WEBHOOK_URL = f"https://hooks.slack.com{SECRET_PATH}"
    Notification.objects.create(
        channel="webhook",
        kind=Notification.Kind.ALERT,
        subject="s",
        body="b",
        ok=False,
        error="ConnectionError: refused",
    )

    response = api_client("victor", VIEWERS_GROUP).get("/meta/control-tower/alert-channels")

    assert response.status_code == 200 and SECRET_PATH not in response.content.decode()
    rows = {row["channel"]: row for row in response.json()}
    assert rows["email"] == {
        "channel": "email",
        "setting": "ALERT_EMAILS",
        "configured": False,
        "target": "",
        "last_delivery": None,
    }
    assert rows["slack"]["configured"] and rows["slack"]["target"] == "hooks.slack.com"
    assert rows["webhook"]["last_delivery"]["ok"] is False
    assert rows["webhook"]["last_delivery"]["error"] == "ConnectionError: refused"


def test_the_api_test_send_delivers_and_logs_who_asked(webhook, caplog) -> None:
    caplog.set_level("INFO", logger="controltower.audit")

    response = api_client("olivia", OPERATORS_GROUP).post("/meta/control-tower/alert-channels/webhook/test")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["channel"], body["ok"], body["error"], body["requested_by"]) == ("webhook", True, "", "olivia")
    assert body["notification_id"] == str(Notification.objects.get(kind="test").pk)
    assert len(webhook.received) == 1
    assert [r.getMessage() for r in caplog.records if r.name == "controltower.audit"] == [
        'event=alert_test actor=olivia channel=webhook outcome=ok error=""'
    ]


def test_the_api_test_send_refuses_viewers_unconfigured_and_unknown_channels(webhook) -> None:
    operator = api_client("olivia", OPERATORS_GROUP)

    assert (
        api_client("victor", VIEWERS_GROUP).post("/meta/control-tower/alert-channels/webhook/test").status_code == 403
    )
    unconfigured = operator.post("/meta/control-tower/alert-channels/slack/test")
    assert unconfigured.status_code == 409 and "SLACK_WEBHOOK_URL" in unconfigured.json()["detail"]
    assert operator.post("/meta/control-tower/alert-channels/pager/test").status_code == 404
    assert webhook.received == [] and not Notification.objects.exists()
