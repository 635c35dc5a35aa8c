"""Server-side SVG charts: pure functions from data to markup (no JavaScript, no CDN).

Every piece of text that reaches the markup goes through `escape`, so a module name or an
error message can never break out of the SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from html import escape
from math import ceil

from django.utils.safestring import SafeString, mark_safe

from controltower.console import times

# Outcome → colour; also the legend's order. Anything else is drawn grey.
OUTCOME_COLOURS = {
    "success": "#2e7d32",
    "failure": "#c62828",
    "timeout": "#ef6c00",
    "running": "#1565c0",
    "skipped": "#9e9e9e",
}
OTHER_COLOUR = "#757575"
# The server has no font metrics: a text's width is estimated on the wide side (0.62 em a character,
# more than a sans-serif's average glyph), so the estimated box holds the drawn one and margins
# computed from it never clip a label.
CHAR_EM = 0.62
EDGE = 4  # px kept clear between a text and the edge of the picture
MAX_LABEL_PX = 260  # a longer bar label is cut with an ellipsis; its <title> has it whole


@dataclass(frozen=True)
class RunPoint:
    """One run on the chart; a run without a duration (still running) sits on the baseline."""

    at: datetime
    duration_ms: int | None
    outcome: str
    label: str = ""


@dataclass(frozen=True)
class Frame:
    width: int = 720
    height: int = 220
    left: int = 56
    right: int = 12
    top: int = 12
    bottom: int = 40

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom


def _text(value: object) -> str:
    return escape(str(value), quote=True)


def text_width(text: str, font_size: float) -> float:
    """The estimated width of `text` drawn at `font_size` px (on the wide side)."""
    return len(text) * font_size * CHAR_EM


def fit(text: str, font_size: float, max_px: float) -> str:
    """`text` if it fits in `max_px`, else as much of its start as fits, with an ellipsis."""
    if text_width(text, font_size) <= max_px:
        return text
    keep = max(1, int(max_px / (font_size * CHAR_EM)) - 1)
    return text[:keep].rstrip() + "…"


def format_ms(ms: float) -> str:
    """A duration for an axis or a tooltip: ms below a second, seconds below a minute, else minutes."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def nice_ceiling(value: float) -> float:
    """The smallest 1/2/5 × 10^n at or above `value`, so axis labels are round numbers."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _open(frame: Frame, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="100%" role="img" aria-label="{_text(title)}">',
        f"<title>{_text(title)}</title>",
    ]


def _empty(frame: Frame, title: str, message: str) -> SafeString:
    parts = _open(frame, title)
    parts.append(
        f'<text x="{frame.width / 2:.0f}" y="{frame.height / 2:.0f}" text-anchor="middle" '
        f'class="chart-empty">{_text(message)}</text></svg>'
    )
    return mark_safe("".join(parts))


AXIS_FONT = 11
Y_TICKS = (0.0, 0.5, 1.0)


def _time_labels(frame: Frame, start: datetime, end: datetime) -> list[str]:
    """The period's ends under the plot: the start from its left edge, the end up to its right edge."""
    y = frame.top + frame.plot_height + 16
    parts = [f'<text x="{frame.left}" y="{y}" font-size="{AXIS_FONT}">{_text(times.zoned(start))}</text>']
    if end != start:
        parts.append(
            f'<text x="{frame.left + frame.plot_width}" y="{y}" text-anchor="end" font-size="{AXIS_FONT}">'
            f"{_text(times.zoned(end))}</text>"
        )
    return parts


def _axes(frame: Frame, y_max: float, start: datetime, end: datetime) -> list[str]:
    base_y, right_x = frame.top + frame.plot_height, frame.left + frame.plot_width
    parts = [
        f'<line class="axis" x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" y2="{base_y}" stroke="#999"/>',
        f'<line class="axis" x1="{frame.left}" y1="{base_y}" x2="{right_x}" y2="{base_y}" stroke="#999"/>',
    ]
    for fraction in Y_TICKS:
        y = base_y - fraction * frame.plot_height
        parts.append(f'<line x1="{frame.left}" y1="{y:.1f}" x2="{right_x}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(
            f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="{AXIS_FONT}">'
            f"{_text(format_ms(fraction * y_max))}</text>"
        )
    return parts + _time_labels(frame, start, end)


def _legend(frame: Frame, outcomes: set[str]) -> list[str]:
    parts, x, y = [], frame.left, frame.height - 8
    for outcome in [o for o in OUTCOME_COLOURS if o in outcomes] + sorted(outcomes - set(OUTCOME_COLOURS)):
        colour = OUTCOME_COLOURS.get(outcome, OTHER_COLOUR)
        parts.append(
            f'<circle cx="{x + 4:.1f}" cy="{y - 4}" r="4" fill="{colour}"/>'
            f'<text x="{x + 12:.1f}" y="{y}" font-size="{AXIS_FONT}">{_text(outcome)}</text>'
        )
        x += 24 + text_width(outcome, AXIS_FONT)
    return parts


def run_durations(points: Sequence[RunPoint], title: str = "Run durations", frame: Frame = Frame()) -> SafeString:
    """Runs over time: one dot per run at its duration, coloured by outcome, each with a tooltip."""
    if not points:
        return _empty(frame, title, "No runs recorded yet.")
    ordered = sorted(points, key=lambda p: p.at)
    start, end = ordered[0].at, ordered[-1].at
    span = (end - start).total_seconds()
    y_max = nice_ceiling(max((p.duration_ms or 0) for p in ordered))
    # Room on the left for the widest duration on the axis (a long run reads "1000.0 min").
    widest = max(text_width(format_ms(fraction * y_max), AXIS_FONT) for fraction in Y_TICKS)
    frame = replace(frame, left=max(frame.left, ceil(EDGE + widest + 6)))
    base_y = frame.top + frame.plot_height
    parts = _open(frame, title) + _axes(frame, y_max, start, end)
    for point in ordered:
        # A single instant (one run, or runs in the same second) is centred.
        fraction = (point.at - start).total_seconds() / span if span else 0.5
        x = frame.left + fraction * frame.plot_width
        y = base_y - (point.duration_ms or 0) / y_max * frame.plot_height
        colour = OUTCOME_COLOURS.get(point.outcome, OTHER_COLOUR)
        duration = format_ms(point.duration_ms) if point.duration_ms is not None else "no duration"
        tooltip = " · ".join(filter(None, [times.zoned(point.at), point.outcome, duration, point.label]))
        parts.append(
            f'<circle class="run run-{_text(point.outcome)}" cx="{x:.1f}" cy="{y:.1f}" r="3.5" '
            f'fill="{colour}"><title>{_text(tooltip)}</title></circle>'
        )
    parts += _legend(frame, {p.outcome for p in ordered})
    parts.append("</svg>")
    return mark_safe("".join(parts))


# Status → colour for the report's charts (the page's CSS uses the same palette).
STATUS_COLOURS = {
    "healthy": "#2e7d32",
    "online": "#2e7d32",
    "degraded": "#b26a00",
    "critical": "#c62828",
    "offline": "#c62828",
    "emergency_stop": "#7f0000",
    "unknown": "#6b6b6b",
    "stopped": "#455a64",
    "starting": "#1565c0",
}
# Worst first: a time slice holding several checks shows the worst of them.
SEVERITY = ("emergency_stop", "critical", "offline", "degraded", "starting", "unknown", "stopped", "healthy", "online")


def status_timeline(
    points: Sequence[tuple[datetime, str]],
    start: datetime,
    end: datetime,
    slices: int = 120,
    title: str = "System status over time",
    frame: Frame = Frame(height=90, bottom=30),
) -> SafeString:
    """The period cut into equal slices, each coloured by the worst status checked in it; a
    slice with no check keeps the status before it (a status holds until the next check)."""
    span = (end - start).total_seconds()
    if not points or span <= 0:
        return _empty(frame, title, "No checks in this period.")
    worst: list[str | None] = [None] * slices
    last: list[str | None] = [None] * slices  # what holds after the slice
    for at, status in sorted(points):
        index = min(slices - 1, max(0, int((at - start).total_seconds() / span * slices)))
        current = worst[index]
        if current is None or SEVERITY.index(status) < SEVERITY.index(current):
            worst[index] = status
        last[index] = status
    parts = _open(frame, title)
    width = frame.plot_width / slices
    held: str | None = None
    for index in range(slices):
        shown = worst[index] or held
        held = last[index] or held
        if shown is None:
            continue  # before the first check: unknown, left blank
        x = frame.left + index * width
        parts.append(
            f'<rect class="slice st-{_text(shown)}" x="{x:.2f}" y="{frame.top}" width="{width + 0.2:.2f}" '
            f'height="{frame.plot_height}" fill="{STATUS_COLOURS.get(shown, OTHER_COLOUR)}">'
            f"<title>{_text(shown.upper())}</title></rect>"
        )
    parts += _time_labels(frame, start, end)
    parts.append("</svg>")
    return mark_safe("".join(parts))


BAR_FONT = 12


def availability_bars(rows: Sequence[tuple[str, float | None]], title: str = "Availability per module") -> SafeString:
    """One horizontal bar per module: % of its counted time ONLINE (null = no data, drawn empty).
    The left margin fits the longest label; one longer than MAX_LABEL_PX is cut, whole in its tooltip."""
    shown = [fit(label, BAR_FONT, MAX_LABEL_PX) for label, _ in rows]
    left = ceil(EDGE + max((text_width(label, BAR_FONT) for label in shown), default=0) + 8)
    frame = Frame(height=22 * max(len(rows), 1) + 20, left=left, right=60, top=10, bottom=10)
    if not rows:
        return _empty(frame, title, "No module checks in this period.")
    parts = _open(frame, title)
    for index, ((label, value), short) in enumerate(zip(rows, shown)):
        y = frame.top + index * 22
        tooltip = f"<title>{_text(label)}</title>" if short != label else ""
        parts.append(
            f'<text x="{frame.left - 8}" y="{y + 14}" text-anchor="end" font-size="{BAR_FONT}">'
            f"{_text(short)}{tooltip}</text>"
        )
        parts.append(f'<rect x="{frame.left}" y="{y + 3}" width="{frame.plot_width}" height="14" fill="#eee"/>')
        if value is not None:
            colour = (
                STATUS_COLOURS["online"]
                if value >= 99
                else STATUS_COLOURS["degraded"]
                if value >= 90
                else STATUS_COLOURS["offline"]
            )
            parts.append(
                f'<rect class="bar" x="{frame.left}" y="{y + 3}" width="{frame.plot_width * value / 100:.1f}" '
                f'height="14" fill="{colour}"><title>{_text(f"{label}: {value:.1f}% ONLINE")}</title></rect>'
            )
        text = "no data" if value is None else f"{value:.1f}%"
        parts.append(
            f'<text x="{frame.left + frame.plot_width + 6}" y="{y + 14}" font-size="{BAR_FONT}">{_text(text)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))
