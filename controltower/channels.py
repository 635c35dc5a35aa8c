"""Alert transports: email (Django mail), Slack incoming webhook, generic JSON webhook.

Every attempt is written as a Notification row with its error, so a failed delivery is
visible in the console instead of lost in a log. HTTP transports retry transient failures
(connection errors, 5xx) a few times; a 4xx is permanent.

A message's subject and body are plain text, and much of it comes from outside: operators'
reasons, external modules' error messages, Meta campaign and account names. Each transport
renders the plain text for its medium, so none of it can act as markup there: Slack escapes the
whole text (the only mrkdwn in a Slack message is the bold subject added here), an email subject
is one line, the webhook carries JSON. The email body is plain text, which needs no escaping.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.core.mail import send_mail

from controltower.models import ControlTowerRun, Notification

logger = logging.getLogger(__name__)
HTTP_ATTEMPTS = 3
CHANNELS = ("email", "slack", "webhook")  # every transport _send knows


@dataclass
class Message:
    kind: str
    subject: str
    body: str
    payload: dict[str, Any] = field(default_factory=dict)  # structured form for the JSON webhook
    alert_keys: list[str] = field(default_factory=list)


def configured() -> list[str]:
    return [name for name, on in (("email", bool(settings.ALERT_EMAILS)), ("slack", bool(settings.SLACK_WEBHOOK_URL)),
                                  ("webhook", bool(settings.ALERT_WEBHOOK_URL))) if on]


def slack_text(text: str) -> str:
    """Plain text that Slack's mrkdwn shows as written. Slack's escaping rule
    (https://api.slack.com/reference/surfaces/formatting#escaping): & as &amp;, < as &lt;, > as &gt;,
    and only these three (other entities are shown as typed). This turns <!channel>, <!here>, <@U123>
    and disguised links such as <https://evil.example|Console> into text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header_text(text: str) -> str:
    """One line for an email header: Django refuses a header with a line break (the delivery would
    fail), and a line break in a header could start another one."""
    return " ".join(text.splitlines())


def _post_json(url: str, payload: dict[str, Any]) -> None:
    for attempt in range(HTTP_ATTEMPTS):
        try:
            response = requests.post(url, json=payload, timeout=settings.ALERT_HTTP_TIMEOUT_SECONDS)
        except requests.RequestException:
            if attempt == HTTP_ATTEMPTS - 1:
                raise
        else:
            if response.status_code < 500 or attempt == HTTP_ATTEMPTS - 1:
                response.raise_for_status()
                return
        time.sleep(0.5 * 2**attempt)


def _send(channel: str, message: Message) -> None:
    if channel == "email":
        send_mail(header_text(f"[Control Tower] {message.subject}"), message.body, settings.DEFAULT_FROM_EMAIL,
                  settings.ALERT_EMAILS, fail_silently=False)
    elif channel == "slack":
        _post_json(settings.SLACK_WEBHOOK_URL,
                   {"text": f"*{slack_text(header_text(message.subject))}*\n{slack_text(message.body)}"})
    elif channel == "webhook":
        _post_json(settings.ALERT_WEBHOOK_URL, {"subject": message.subject, "kind": message.kind, **message.payload})
    else:
        raise ValueError(f"unknown channel {channel}")


def deliver(message: Message, run: ControlTowerRun | None = None) -> list[Notification]:
    """Send on every configured channel; one Notification row per channel, ok or with its error."""
    sent = []
    for channel in configured():
        error = ""
        try:
            _send(channel, message)
        except Exception as exc:  # a broken channel must not stop the others or the caller
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("Alert delivery via %s failed: %s", channel, error)
        sent.append(Notification.objects.create(
            channel=channel, kind=message.kind, subject=message.subject[:300], body=message.body,
            alert_keys=message.alert_keys, run=run, ok=not error, error=error,
        ))
    return sent
