"""Alert lifecycle: open on a new condition, repeat while it lasts, resolve when it clears.

One check's news (opened, repeated, resolved) goes out as one grouped message per channel.
Repeats wait ALERT_REPEAT_SECONDS since the alert's last notification. While the tower is
halted, module, system and spend-spike alerts neither fire nor resolve (the stop is the alert).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from controltower import channels
from controltower.findings import AlertCondition
from controltower.models import Alert, ControlTowerRun, Notification


@dataclass
class AlertNews:
    opened: list[Alert] = field(default_factory=list)
    repeated: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.opened or self.repeated or self.resolved)


def _suppressed_while_halted(key: str) -> bool:
    return key.startswith(("module:", "system:", "spend_spike:", "recovery:"))


def update(
    conditions: list[AlertCondition], run: ControlTowerRun | None, halted: bool, now: datetime | None = None
) -> AlertNews:
    """Apply one check's conditions to the open alerts (state only; nothing is sent). A fixed number
    of queries however many conditions (a spike per campaign at agency scale): one read, then each
    kind of change in bulk."""
    now = now or timezone.now()
    repeat = timedelta(seconds=settings.ALERT_REPEAT_SECONDS)
    news = AlertNews()
    seen: list[Alert] = []
    with transaction.atomic():
        open_alerts = {alert.key: alert for alert in Alert.objects.select_for_update().filter(resolved_at__isnull=True)}
        for condition in conditions:
            alert = open_alerts.pop(condition.key, None)
            if alert is None:
                news.opened.append(
                    Alert(
                        key=condition.key,
                        severity=condition.severity,
                        title=condition.title,
                        detail=condition.detail,
                        module_code=condition.module_code,
                        opened_at=now,
                        last_seen_at=now,
                        opened_by_run=run,
                    )
                )
                continue
            alert.severity, alert.title, alert.detail, alert.last_seen_at = (
                condition.severity,
                condition.title,
                condition.detail,
                now,
            )
            seen.append(alert)
            if alert.last_notified_at is None or now - alert.last_notified_at >= repeat:
                news.repeated.append(alert)
        news.resolved = [a for a in open_alerts.values() if not (halted and _suppressed_while_halted(a.key))]
        for alert in news.resolved:
            alert.resolved_at = now
        Alert.objects.bulk_create(news.opened)
        Alert.objects.bulk_update(seen, ["severity", "title", "detail", "last_seen_at"])
        Alert.objects.filter(pk__in=[a.pk for a in news.resolved]).update(resolved_at=now)
    return news


def _lines(title: str, alerts: list[Alert]) -> list[str]:
    if not alerts:
        return []
    return [f"{title}:"] + [
        f"  [{a.severity.upper()}] {a.title}" + (f" — {a.detail}" if a.detail else "") for a in alerts
    ]


def message(news: AlertNews, system_status: str) -> channels.Message:
    counts = [f"{len(news.opened)} new", f"{len(news.repeated)} still open", f"{len(news.resolved)} resolved"]
    worst = (
        "CRITICAL"
        if any(a.severity == Alert.Severity.CRITICAL for a in news.opened + news.repeated)
        else ("WARNING" if news.opened or news.repeated else "RESOLVED")
    )
    body = "\n".join(
        _lines("New", news.opened) + _lines("Still open", news.repeated) + _lines("Resolved", news.resolved)
    )
    return channels.Message(
        kind=Notification.Kind.ALERT,
        subject=f"{worst}: system {system_status.upper()} ({', '.join(counts)})",
        body=body,
        payload={
            "system_status": system_status,
            "opened": [_json(a) for a in news.opened],
            "repeated": [_json(a) for a in news.repeated],
            "resolved": [_json(a) for a in news.resolved],
        },
        alert_keys=[a.key for a in news.opened + news.repeated + news.resolved],
    )


def _json(alert: Alert) -> dict[str, str]:
    return {
        "key": alert.key,
        "severity": alert.severity,
        "title": alert.title,
        "detail": alert.detail,
        "opened_at": alert.opened_at.isoformat(),
    }


def notify(news: AlertNews, system_status: str, run: ControlTowerRun | None) -> list[Notification]:
    """Send one grouped message for the news and mark the alerts notified."""
    if not news:
        return []
    sent = channels.deliver(message(news, system_status), run)
    notified = [a.pk for a in news.opened + news.repeated + news.resolved]
    Alert.objects.filter(pk__in=notified).update(
        last_notified_at=timezone.now(), notifications_sent=F("notifications_sent") + 1
    )
    return sent
