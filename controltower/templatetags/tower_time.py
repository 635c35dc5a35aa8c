"""Template filters for instants (a builtin of every template, see settings.TEMPLATES):
`{{ t|timestamp }}` is a <time> element, `{{ t|zoned }}` plain text for titles and attributes."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from controltower.console import times

register = template.Library()


@register.filter
def timestamp(instant: datetime | None) -> SafeString:
    if instant is None:
        return mark_safe('<span class="muted">—</span>')
    return format_html('<time datetime="{}">{}</time>', times.iso(instant), times.zoned(instant))


@register.filter
def zoned(instant: datetime | None) -> str:
    return "—" if instant is None else times.zoned(instant)
