"""Server-side SVG charts: pure functions from data to markup (no JavaScript, no CDN).

Every piece of text that reaches the markup goes through `escape`, so a module name or an
error message can never break out of the SVG.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe

# Outcome → colour; also the legend's order. Anything else is drawn grey.
OUTCOME_COLOURS = {
    "success": "#2e7d32",
    "failure": "#c62828",
    "timeout": "#ef6c00",
    "running": "#1565c0",
    "skipped": "#9e9e9e",
}
OTHER_COLOUR = "#757575"


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
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {frame.width} {frame.height}" '
            f'width="100%" role="img" aria-label="{_text(title)}">', f"<title>{_text(title)}</title>"]


def _empty(frame: Frame, title: str, message: str) -> SafeString:
    parts = _open(frame, title)
    parts.append(f'<text x="{frame.width / 2:.0f}" y="{frame.height / 2:.0f}" text-anchor="middle" '
                 f'class="chart-empty">{_text(message)}</text></svg>')
    return mark_safe("".join(parts))


def _axes(frame: Frame, y_max: float, start: datetime, end: datetime) -> list[str]:
    base_y, right_x = frame.top + frame.plot_height, frame.left + frame.plot_width
    parts = [f'<line class="axis" x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" y2="{base_y}" stroke="#999"/>',
             f'<line class="axis" x1="{frame.left}" y1="{base_y}" x2="{right_x}" y2="{base_y}" stroke="#999"/>']
    for fraction in (0.0, 0.5, 1.0):
        y = base_y - fraction * frame.plot_height
        parts.append(f'<line x1="{frame.left}" y1="{y:.1f}" x2="{right_x}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                     f"{_text(format_ms(fraction * y_max))}</text>")
    label_y = base_y + 16
    parts.append(f'<text x="{frame.left}" y="{label_y}" font-size="11">{_text(f"{start:%Y-%m-%d %H:%M}")}</text>')
    if end != start:
        parts.append(f'<text x="{right_x}" y="{label_y}" text-anchor="end" font-size="11">'
                     f'{_text(f"{end:%Y-%m-%d %H:%M}")}</text>')
    return parts


def _legend(frame: Frame, outcomes: set[str]) -> list[str]:
    parts, x, y = [], frame.left, frame.height - 8
    for outcome in [o for o in OUTCOME_COLOURS if o in outcomes] + sorted(outcomes - set(OUTCOME_COLOURS)):
        colour = OUTCOME_COLOURS.get(outcome, OTHER_COLOUR)
        parts.append(f'<circle cx="{x + 4}" cy="{y - 4}" r="4" fill="{colour}"/>'
                     f'<text x="{x + 12}" y="{y}" font-size="11">{_text(outcome)}</text>')
        x += 24 + 7 * len(outcome)
    return parts


def run_durations(points: Sequence[RunPoint], title: str = "Run durations", frame: Frame = Frame()) -> SafeString:
    """Runs over time: one dot per run at its duration, coloured by outcome, each with a tooltip."""
    if not points:
        return _empty(frame, title, "No runs recorded yet.")
    ordered = sorted(points, key=lambda p: p.at)
    start, end = ordered[0].at, ordered[-1].at
    span = (end - start).total_seconds()
    y_max = nice_ceiling(max((p.duration_ms or 0) for p in ordered))
    base_y = frame.top + frame.plot_height
    parts = _open(frame, title) + _axes(frame, y_max, start, end)
    for point in ordered:
        # A single instant (one run, or runs in the same second) is centred.
        fraction = (point.at - start).total_seconds() / span if span else 0.5
        x = frame.left + fraction * frame.plot_width
        y = base_y - (point.duration_ms or 0) / y_max * frame.plot_height
        colour = OUTCOME_COLOURS.get(point.outcome, OTHER_COLOUR)
        duration = format_ms(point.duration_ms) if point.duration_ms is not None else "no duration"
        tooltip = " · ".join(filter(None, [f"{point.at:%Y-%m-%d %H:%M:%S}", point.outcome, duration, point.label]))
        parts.append(f'<circle class="run run-{_text(point.outcome)}" cx="{x:.1f}" cy="{y:.1f}" r="3.5" '
                     f'fill="{colour}"><title>{_text(tooltip)}</title></circle>')
    parts += _legend(frame, {p.outcome for p in ordered})
    parts.append("</svg>")
    return mark_safe("".join(parts))


# Status → colour for the report's charts (the page's CSS uses the same palette).
STATUS_COLOURS = {
    "healthy": "#2e7d32", "online": "#2e7d32", "degraded": "#b26a00", "critical": "#c62828", "offline": "#c62828",
    "emergency_stop": "#7f0000", "unknown": "#6b6b6b", "stopped": "#455a64", "starting": "#1565c0",
}
# Worst first: a time slice holding several checks shows the worst of them.
SEVERITY = ("emergency_stop", "critical", "offline", "degraded", "starting", "unknown", "stopped", "healthy", "online")


def status_timeline(points: Sequence[tuple[datetime, str]], start: datetime, end: datetime, slices: int = 120,
                    title: str = "System status over time", frame: Frame = Frame(height=90, bottom=30)) -> SafeString:
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
        parts.append(f'<rect class="slice st-{_text(shown)}" x="{x:.2f}" y="{frame.top}" width="{width + 0.2:.2f}" '
                     f'height="{frame.plot_height}" fill="{STATUS_COLOURS.get(shown, OTHER_COLOUR)}">'
                     f"<title>{_text(shown.upper())}</title></rect>")
    label_y = frame.top + frame.plot_height + 16
    parts.append(f'<text x="{frame.left}" y="{label_y}" font-size="11">{_text(f"{start:%Y-%m-%d %H:%M}")}</text>')
    parts.append(f'<text x="{frame.left + frame.plot_width}" y="{label_y}" text-anchor="end" font-size="11">'
                 f'{_text(f"{end:%Y-%m-%d %H:%M}")}</text></svg>')
    return mark_safe("".join(parts))


def availability_bars(rows: Sequence[tuple[str, float | None]], title: str = "Availability per module") -> SafeString:
    """One horizontal bar per module: % of its counted time ONLINE (null = no data, drawn empty)."""
    frame = Frame(height=22 * max(len(rows), 1) + 20, left=170, right=60, top=10, bottom=10)
    if not rows:
        return _empty(frame, title, "No module checks in this period.")
    parts = _open(frame, title)
    for index, (label, value) in enumerate(rows):
        y = frame.top + index * 22
        parts.append(f'<text x="{frame.left - 8}" y="{y + 14}" text-anchor="end" font-size="12">{_text(label)}</text>')
        parts.append(f'<rect x="{frame.left}" y="{y + 3}" width="{frame.plot_width}" height="14" fill="#eee"/>')
        if value is not None:
            colour = STATUS_COLOURS["online"] if value >= 99 else STATUS_COLOURS["degraded"] if value >= 90 else STATUS_COLOURS["offline"]
            parts.append(f'<rect class="bar" x="{frame.left}" y="{y + 3}" width="{frame.plot_width * value / 100:.1f}" '
                         f'height="14" fill="{colour}"><title>{_text(f"{label}: {value:.1f}% ONLINE")}</title></rect>')
        text = "no data" if value is None else f"{value:.1f}%"
        parts.append(f'<text x="{frame.left + frame.plot_width + 6}" y="{y + 14}" font-size="12">{_text(text)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))
