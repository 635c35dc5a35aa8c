"""Forms of the console: the kill switch, resume, commands, and the history filters."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from controltower import campaign_lists, channels
from controltower.commander import COMMANDS
from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import ControlTowerRun, Notification, RunType, SystemStatus

REASON_MAX = 2000


def _option(label: str, default: bool, help_text: str = "") -> forms.BooleanField:
    # Ticked as the request's default is; an unticked box is simply absent from the POST, as HTML sends it.
    return forms.BooleanField(label=label, required=False, initial=default, help_text=help_text)


class StopForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX,
        strip=True,
        label="Reason (required, recorded and sent with the alert)",
        widget=forms.Textarea(
            attrs={"id": "stop-reason", "rows": 3, "required": True, "placeholder": "e.g. Budget spike: $10k in 1h"}
        ),
        error_messages={"required": "Say why you are stopping everything: the reason is recorded and alerted."},
    )
    pause_campaigns = _option("Pause every ACTIVE campaign on Meta", StopRequest.pause_campaigns)
    stop_schedulers = _option("Stop every module scheduler", StopRequest.stop_schedulers)
    send_alerts = _option("Alert admins", StopRequest.send_alerts)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Name who will be told, as configured now: a ticked box that reaches nobody must say so.
        on = channels.configured()
        self.fields["send_alerts"].label = (
            f"Alert admins ({', '.join(on)})"
            if on
            else "Alert admins (no alert channel is configured: nobody will be told)"
        )


class ResumeForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX,
        strip=True,
        required=False,
        label="Reason (optional)",
        widget=forms.Textarea(attrs={"id": "resume-reason", "rows": 2}),
    )
    resume_schedulers = _option("Resume the schedulers that ran before the stop", ResumeRequest.resume_schedulers)
    resume_campaigns = _option(
        "Re-activate the campaigns the stop paused (if unchanged since)", ResumeRequest.resume_campaigns
    )
    run_health_check = _option("Run a health check afterwards", ResumeRequest.run_health_check)


class ReasonForm(forms.Form):
    """Commands and module actions: an optional reason, recorded on the run."""

    reason = forms.CharField(
        max_length=REASON_MAX,
        strip=True,
        required=False,
        label="Reason (optional)",
        widget=forms.TextInput(attrs={"size": 50}),
    )


class DrillForm(forms.Form):
    """Run a fire drill now: why is required (recorded with who and when)."""

    reason = forms.CharField(
        max_length=REASON_MAX, strip=True, label="Reason", widget=forms.TextInput(attrs={"size": 50})
    )


def _blank(choices: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [("", "any"), *choices]


class CampaignSearchForm(forms.Form):
    """GET search of a stop's, resume's or dry run's campaigns (campaign_lists), a page at a time.
    `states`: the states (or dry-run actions) to filter by; none, and the field is left out."""

    account = forms.RegexField(
        r"^act_\d{1,20}$", required=False, max_length=24, label="Ad account", widget=forms.TextInput(attrs={"size": 14})
    )
    state = forms.ChoiceField(required=False, label="State")
    q = forms.CharField(required=False, max_length=400, strip=True, label="Id or name contains")
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, data: Any, states: list[tuple[str, str]] | None = None) -> None:
        super().__init__(data)
        if states:
            self.fields["state"].choices = _blank(states)
        else:
            del self.fields["state"]

    def search(self) -> campaign_lists.Search | None:
        """The search asked for; None when a value is invalid (the page then shows why, with no rows)."""
        if not self.is_valid():
            return None
        data = {name: value for name, value in self.cleaned_data.items() if value}
        return campaign_lists.Search(**data)


class RunFilterForm(forms.Form):
    """GET filters of /runs/; every field optional, invalid values are reported, not ignored."""

    run_type = forms.ChoiceField(required=False, choices=_blank(RunType.choices), label="Type")
    status = forms.ChoiceField(required=False, choices=_blank(SystemStatus.choices), label="System status")
    command_type = forms.ChoiceField(required=False, choices=_blank([(c, c) for c in COMMANDS]), label="Command")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def filter(self, runs: QuerySet[ControlTowerRun]) -> QuerySet[ControlTowerRun]:
        if not self.is_valid():  # the page shows the errors (a 400), not every run as if unfiltered
            return runs.none()
        data: dict[str, Any] = self.cleaned_data
        if data.get("run_type"):
            runs = runs.filter(run_type=data["run_type"])
        if data.get("status"):
            runs = runs.filter(system_status=data["status"])
        if data.get("command_type"):
            runs = runs.filter(command_type=data["command_type"])
        if data.get("date_from"):
            runs = runs.filter(executed_at__gte=day_bounds(data["date_from"])[0])
        if data.get("date_to"):  # inclusive: the whole "to" day
            runs = runs.filter(executed_at__lt=day_bounds(data["date_to"])[1])
        return runs

    def clean_date_from(self) -> date | None:
        return _within_calendar(self.cleaned_data["date_from"])

    def clean_date_to(self) -> date | None:
        return _within_calendar(self.cleaned_data["date_to"])


class NotificationFilterForm(forms.Form):
    ok = forms.ChoiceField(
        required=False, label="Delivered", choices=[("", "any"), ("yes", "delivered"), ("no", "failed")]
    )
    kind = forms.ChoiceField(required=False, choices=_blank(Notification.Kind.choices))
    channel = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The tower's transports, then any other name a row carries (one no longer sent on, say).
        recorded = set(Notification.objects.order_by().values_list("channel", flat=True).distinct())
        names = [*channels.KINDS, *sorted(recorded - set(channels.KINDS))]
        self.fields["channel"].choices = _blank([(name, name) for name in names])

    def filter(self, rows: QuerySet[Notification]) -> QuerySet[Notification]:
        if not self.is_valid():
            return rows.none()
        data: dict[str, Any] = self.cleaned_data
        if data.get("ok"):
            rows = rows.filter(ok=data["ok"] == "yes")
        if data.get("kind"):
            rows = rows.filter(kind=data["kind"])
        if data.get("channel"):
            rows = rows.filter(channel=data["channel"])
        return rows


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of `day` in the current time zone. OverflowError when either end, in UTC (as the
    database compares them), is outside the calendar: 9999-12-31 has no next day to end at."""
    start, end = (timezone.make_aware(datetime.combine(d, time.min)) for d in (day, day + timedelta(days=1)))
    for instant in (start, end):
        instant.astimezone(UTC)  # raises OverflowError past either end of the calendar
    return start, end


def _within_calendar(day: date | None) -> date | None:
    if day is not None:
        try:
            day_bounds(day)
        except OverflowError:
            raise forms.ValidationError("Outside the calendar this filter can search.") from None
    return day


class ReportForm(forms.Form):
    days = forms.IntegerField(
        min_value=1, max_value=366, initial=7, required=False, help_text="Period: this many days up to now."
    )

    def period_days(self) -> int:
        return (self.cleaned_data.get("days") if self.is_valid() else None) or 7
