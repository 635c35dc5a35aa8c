"""Text from outside (reasons, modules' error messages, Meta names) reaches Slack and email as text, never markup."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from controltower import channels, commander, killswitch
from controltower.models import Notification
from meta_modules import clock, days, jobs
from meta_modules.models import Campaign, MetaModule, ModuleRun, SpendSpike
from meta_modules.registry import MODULES

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced", "meta_sandbox")]

HOSTILE = "<!channel> <!here> <@U024BE7LH> <https://evil.example/login|Open the console> & co"
ESCAPED = (
    "&lt;!channel&gt; &lt;!here&gt; &lt;@U024BE7LH&gt; &lt;https://evil.example/login|Open the console&gt; &amp; co"
)


@pytest.fixture
def receivers(settings, http_receiver):
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.SLACK_WEBHOOK_URL = f"{http_receiver.url}/slack"
    return http_receiver


def _slack_text(receiver) -> str:
    (message,) = [r["json"]["text"] for r in receiver.received if r["path"] == "/slack"]
    return message


def _assert_inert(text: str) -> None:
    assert "<" not in text and ">" not in text  # no mention, broadcast or link can be formed without them


def test_an_operators_reason_reaches_slack_escaped_and_email_as_typed(receivers) -> None:
    killswitch.emergency_stop(killswitch.StopRequest(reason=HOSTILE, actor="alice"))

    slack = _slack_text(receivers)
    assert f"Reason: {ESCAPED}" in slack and slack.startswith("*EMERGENCY STOP by alice*\n")
    _assert_inert(slack)
    (email,) = mail.outbox
    assert f"Reason: {HOSTILE}" in email.body  # plain text: shown as typed, nothing to escape
    # What the console shows is the plain text too (its templates escape it for HTML).
    assert all(HOSTILE in n.body for n in Notification.objects.all())


def test_an_external_modules_error_message_reaches_slack_escaped(receivers) -> None:
    now = timezone.now()
    for spec in MODULES:
        module = MetaModule.objects.get(code=spec.code)
        broken = spec.code == "10.5"
        ModuleRun.objects.bulk_create(
            ModuleRun(
                module=module,
                started_at=now - timedelta(minutes=i + 1),
                finished_at=now,
                duration_ms=10,
                outcome=ModuleRun.Outcome.FAILURE if broken and i % 2 else ModuleRun.Outcome.SUCCESS,
                error_message=HOSTILE if broken and i % 2 else "",
            )
            for i in range(10)
        )

    commander.health_cycle("test")

    slack = _slack_text(receivers)
    assert "10.5" in slack and ESCAPED in slack
    _assert_inert(slack)
    assert HOSTILE in mail.outbox[0].body


def test_a_meta_campaign_name_reaches_slack_escaped(receivers) -> None:
    jobs.sync_campaigns.apply()
    campaign = Campaign.objects.filter(status="ACTIVE").select_related("account").first()
    Campaign.objects.filter(pk=campaign.pk).update(name=HOSTILE)  # as Meta named it
    SpendSpike.objects.create(
        campaign=campaign,
        day=days.local_today(clock.now(), campaign.account.zone),
        spend_today=Decimal("10000.00"),
        hourly_rate=Decimal("1000"),
        baseline_hourly_rate=Decimal("50"),
        ratio=20.0,
        requested_emergency_stop=True,
    )

    killswitch.stop_for_requested_spikes()

    slack = _slack_text(receivers)
    assert ESCAPED in slack
    _assert_inert(slack)


def test_a_line_break_cannot_reach_an_email_header(receivers) -> None:
    sent = channels.deliver(
        channels.Message(kind=Notification.Kind.EMERGENCY, subject="Stop by 10.9\r\nBcc: thief@evil.example", body="b")
    )

    assert all(n.ok for n in sent), [n.error for n in sent]
    (email,) = mail.outbox
    assert email.subject == "[Control Tower] Stop by 10.9 Bcc: thief@evil.example" and email.recipients() == [
        "ops@example.com"
    ]
    assert _slack_text(receivers).startswith("*Stop by 10.9 Bcc: thief@evil.example*\n")


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("a & b", "a &amp; b"),
        ("&lt;", "&amp;lt;"),  # an entity typed by someone stays as typed
        ("*bold* _it_ `code`", "*bold* _it_ `code`"),  # Slack has no escape for these; they cannot mention or link
        ("", ""),
    ],
)
def test_slack_text_escapes_exactly_what_slack_decodes(text: str, escaped: str) -> None:
    assert channels.slack_text(text) == escaped


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a\nb", "a b"),
        ("a\r\nb", "a b"),
        ("a\rb\u2028c", "a b c"),
        ("one line", "one line"),
    ],
)
def test_header_text_is_one_line(text: str, line: str) -> None:
    assert channels.header_text(text) == line
