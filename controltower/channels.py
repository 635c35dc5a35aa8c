"""Alert transports: email (Django mail), Slack incoming webhook, generic JSON webhook.

Every attempt is written as a Notification row with its error, so a failed delivery is
visible in the console instead of lost in a log. HTTP transports retry transient failures
(connection errors, timeouts, 5xx, 429) through urllib3's Retry, honouring Retry-After; any other
4xx is permanent. Email is sent once: Django's SMTP backend has no retry of its own.

A message's subject and body are plain text, and much of it comes from outside: operators'
reasons, external modules' error messages, Meta campaign and account names. Each transport
renders the plain text for its medium, so none of it can act as markup there: Slack escapes the
whole text (the only mrkdwn in a Slack message is the bold subject added here), an email subject
is one line, the webhook carries JSON. The email body is plain text, which needs no escaping.

Operators see which channels are configured (webhook URLs carry their secret in the path, so only
the host is ever shown), each one's last delivery, and can send a marked test message through one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import send_mail
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from controltower import audit
from controltower.models import ControlTowerRun, Notification

logger = logging.getLogger(__name__)
# Slack and webhook retries, by urllib3: 3 attempts in all, after a connection error, a timeout, a
# 5xx or a 429 (a 4xx otherwise is permanent). POST is retried too: an alert twice beats none. The
# waits: none, then 1 s (backoff_factor), or what a 429/503's Retry-After asks, up to
# RETRY_AFTER_MAX_SECONDS, since a stop's own alerts are sent within its request. After the last
# attempt the answer is returned rather than raised, so the recorded error names its status.
RETRY_AFTER_MAX_SECONDS = 5
HTTP_RETRY = Retry(
    total=2,
    allowed_methods=frozenset({"POST"}),
    status_forcelist=frozenset({429, *range(500, 600)}),
    backoff_factor=0.5,
    retry_after_max=RETRY_AFTER_MAX_SECONDS,
    raise_on_status=False,
)
KINDS = ("email", "slack", "webhook")
SETTINGS = {"email": "ALERT_EMAILS", "slack": "SLACK_WEBHOOK_URL", "webhook": "ALERT_WEBHOOK_URL"}
NONE_CONFIGURED = "no alert channel configured"
NOT_REQUESTED = "alerts not requested"


@dataclass
class Message:
    kind: str
    subject: str
    body: str
    payload: dict[str, Any] = field(default_factory=dict)  # structured form for the JSON webhook
    alert_keys: list[str] = field(default_factory=list)


def configured() -> list[str]:
    return [kind for kind in KINDS if getattr(settings, SETTINGS[kind])]


def url_host(url: str) -> str:
    """Where a webhook URL points, without its secret path: host[:port]."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:  # a malformed port: show the host alone rather than fail the page
        port = None
    return f"{host}:{port}" if port else host


def target(kind: str) -> str:
    """The configured destination as it may be shown: the recipients of email, only the host of a webhook URL."""
    if kind == "email":
        return ", ".join(settings.ALERT_EMAILS)
    return url_host(getattr(settings, SETTINGS[kind]))


def describe() -> str:
    """The channels in one line, for start-up output: who would be told of a stop."""
    return (
        ", ".join(_label(kind) for kind in configured())
        or "none configured — nobody will be alerted (see docs/settings.md, Alerts)"
    )


def _label(kind: str) -> str:
    if kind == "email":
        n = len(settings.ALERT_EMAILS)
        return f"email ({n} recipient{'' if n == 1 else 's'})"
    return f"{kind} ({target(kind)})"


@dataclass(frozen=True)
class ChannelState:
    """One channel kind for the dashboard: configured or not, and its latest delivery of any kind."""

    kind: str
    setting: str
    target: str  # empty when not configured
    last: Notification | None

    @property
    def configured(self) -> bool:
        return bool(self.target)


def states() -> list[ChannelState]:
    on = configured()
    return [
        ChannelState(
            kind,
            SETTINGS[kind],
            target(kind) if kind in on else "",
            Notification.objects.filter(channel=kind).order_by("-sent_at").first(),
        )
        for kind in KINDS
    ]


def outcome(requested: bool, deliveries: list[Notification]) -> str:
    """Why as many alerts went out as did. `deliver` tries every configured channel, so no
    delivery for a requested alert means no channel is configured."""
    if not requested:
        return NOT_REQUESTED
    if not deliveries:
        return NONE_CONFIGURED
    return "; ".join(f"{n.channel} delivered" if n.ok else f"{n.channel} failed: {n.error}" for n in deliveries)


def delivery_rows(deliveries: list[Notification]) -> list[dict[str, Any]]:
    """Per channel attempt, for API answers."""
    return [{"channel": n.channel, "ok": n.ok, "error": n.error} for n in deliveries]


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
    # A session per delivery: requests does not promise a Session is thread-safe, and alerts are too
    # rare to need a shared connection pool.
    with requests.Session() as session:
        adapter = HTTPAdapter(max_retries=HTTP_RETRY)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        response = session.post(url, json=payload, timeout=settings.ALERT_HTTP_TIMEOUT_SECONDS)
    response.raise_for_status()


def _send(channel: str, message: Message) -> None:
    if channel == "email":
        send_mail(
            header_text(f"[Control Tower] {message.subject}"),
            message.body,
            settings.DEFAULT_FROM_EMAIL,
            settings.ALERT_EMAILS,
            fail_silently=False,
        )
    elif channel == "slack":
        _post_json(
            settings.SLACK_WEBHOOK_URL,
            {"text": f"*{slack_text(header_text(message.subject))}*\n{slack_text(message.body)}"},
        )
    elif channel == "webhook":
        _post_json(settings.ALERT_WEBHOOK_URL, {"subject": message.subject, "kind": message.kind, **message.payload})
    else:
        raise ValueError(f"unknown channel {channel}")


def _deliver_one(channel: str, message: Message, run: ControlTowerRun | None, requested_by: str = "") -> Notification:
    error = ""
    try:
        _send(channel, message)
    except Exception as exc:  # noqa: BLE001 - a broken channel must not stop the others or the caller
        error = f"{type(exc).__name__}: {exc}"
        logger.warning("Alert delivery via %s failed: %s", channel, error)
    return Notification.objects.create(
        channel=channel,
        kind=message.kind,
        subject=message.subject[:300],
        body=message.body,
        alert_keys=message.alert_keys,
        run=run,
        ok=not error,
        error=error,
        requested_by=requested_by,
    )


def deliver(message: Message, run: ControlTowerRun | None = None) -> list[Notification]:
    """Send on every configured channel; one Notification row per channel, ok or with its error."""
    return [_deliver_one(channel, message, run) for channel in configured()]


class NotConfigured(Exception):
    """A test message was asked of a channel that has no destination set."""


def send_test(kind: str, actor: str) -> Notification:
    """A clearly marked test message through one configured channel, recorded with who asked."""
    if kind not in configured():
        raise NotConfigured(f"The {kind} channel is not configured (set {SETTINGS.get(kind, 'its setting')}).")
    sent = _deliver_one(
        kind,
        Message(
            kind=Notification.Kind.TEST,
            subject=f"TEST message requested by {actor} — no action needed",
            body=f"This is a test of the Control Tower {kind} alert channel, sent at {actor}'s request. "
            "Nothing has happened to the ad stack; alerts of stops, resumes and outages arrive this way.",
            payload={"event": "test", "actor": actor},
        ),
        None,
        requested_by=actor,
    )
    audit.record("alert_test", actor=actor, channel=kind, outcome="ok" if sent.ok else "failed", error=sent.error)
    return sent
