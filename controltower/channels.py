"""Alert transports: email (Django mail), Slack incoming webhook, generic JSON webhook.

Every attempt is written as a Notification row with its error, so a failed delivery is
visible in the console instead of lost in a log. HTTP transports retry transient failures
(connection errors, 5xx) a few times; a 4xx is permanent.
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
        send_mail(f"[Control Tower] {message.subject}", message.body, settings.DEFAULT_FROM_EMAIL,
                  settings.ALERT_EMAILS, fail_silently=False)
    elif channel == "slack":
        _post_json(settings.SLACK_WEBHOOK_URL, {"text": f"*{message.subject}*\n{message.body}"})
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
