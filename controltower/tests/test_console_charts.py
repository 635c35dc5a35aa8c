"""charts.py: pure SVG functions (no database)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from controltower.console import charts
from controltower.console.charts import RunPoint

T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def test_no_data_draws_an_empty_chart_with_a_message() -> None:
    svg = charts.run_durations([])

    root = _parse(svg)
    assert root.tag == f"{SVG}svg" and not root.findall(f"{SVG}circle")
    assert "No runs recorded yet." in svg


def test_one_point_is_centred_and_has_a_tooltip() -> None:
    svg = charts.run_durations([RunPoint(T0, 1500, "success", "schedule")])

    runs = [c for c in _parse(svg).iter(f"{SVG}circle") if "run" in c.get("class", "")]
    assert len(runs) == 1
    frame = charts.Frame()
    assert float(runs[0].get("cx")) == frame.left + frame.plot_width / 2
    assert runs[0].find(f"{SVG}title").text == "2025-01-15 12:00:00 UTC · success · 1.5 s · schedule"


def test_points_are_placed_by_time_and_duration_and_coloured_by_outcome() -> None:
    points = [
        RunPoint(T0, 1000, "success"),
        RunPoint(T0 + timedelta(hours=1), 2000, "failure"),
        RunPoint(T0 + timedelta(hours=2), None, "running"),
    ]

    runs = [c for c in _parse(charts.run_durations(points)).iter(f"{SVG}circle") if "run" in c.get("class", "")]

    frame = charts.Frame()
    xs = [float(c.get("cx")) for c in runs]
    ys = [float(c.get("cy")) for c in runs]
    assert xs == [frame.left, frame.left + frame.plot_width / 2, frame.left + frame.plot_width]
    assert ys[1] == frame.top and ys[0] == frame.top + frame.plot_height / 2  # 2 s is the top of a 2 s axis
    assert ys[2] == frame.top + frame.plot_height  # no duration: on the baseline
    assert [c.get("fill") for c in runs] == [charts.OUTCOME_COLOURS[o] for o in ("success", "failure", "running")]
    assert "no duration" in runs[2].find(f"{SVG}title").text


def test_labels_and_titles_are_escaped() -> None:
    hostile = '<script>alert("x")</script> & "quotes"'

    svg = charts.run_durations([RunPoint(T0, 10, 'odd"><script>', hostile)], title=hostile)

    assert "<script>" not in svg and 'odd">' not in svg
    root = _parse(svg)
    assert root.get("aria-label") == hostile and root.find(f"{SVG}title").text == hostile
    tooltip = next(c for c in root.iter(f"{SVG}circle") if "run" in c.get("class", "")).find(f"{SVG}title").text
    assert tooltip.endswith(hostile)
    assert charts.OTHER_COLOUR in svg  # an unknown outcome is drawn grey


def test_axis_helpers() -> None:
    assert [charts.nice_ceiling(v) for v in (0, 0.4, 7, 10, 11, 1234, 5001)] == [1, 1, 10, 10, 20, 2000, 10000]
    assert [charts.format_ms(v) for v in (0, 999, 1500, 90_000)] == ["0 ms", "999 ms", "1.5 s", "1.5 min"]
    assert re.fullmatch(r"[\d.]+ (ms|s|min)", charts.format_ms(12345))


# --- labels are never clipped -------------------------------------------------------------

LONG = "10.13 Creative Intelligence and Cross-Account Attribution Reconciliation"


def _text_boxes(svg: str) -> tuple[float, list[tuple[float, float, str]]]:
    """The picture's width and each <text>'s estimated horizontal extent (its anchor applied)."""
    root = _parse(svg)
    width = float(root.get("viewBox").split()[2])
    boxes = []
    for text in root.iter(f"{SVG}text"):
        content = text.text or ""
        x, extent = float(text.get("x")), charts.text_width(content, float(text.get("font-size", 14)))
        anchor = text.get("text-anchor", "start")
        start = x - extent if anchor == "end" else x - extent / 2 if anchor == "middle" else x
        boxes.append((start, start + extent, content))
    return width, boxes


def _assert_inside(svg: str) -> None:
    width, boxes = _text_boxes(svg)
    assert boxes
    for start, end, content in boxes:
        assert start >= 0 and end <= width, (content, start, end, width)


@pytest.mark.parametrize(
    "rows",
    [
        [("10.1 Meta Models", 100.0), ("10.13 Creative Intelligence", 93.2), ("10.17 Creative Production", None)],
        [(LONG, 99.5), ("10.2 Meta Ads Client", 0.0)],
        [("x", 50.0)],
    ],
)
def test_every_bar_label_fits_inside_the_picture(rows) -> None:
    _assert_inside(charts.availability_bars(rows))


def test_a_label_too_long_is_cut_with_an_ellipsis_and_whole_in_its_tooltip() -> None:
    root = _parse(charts.availability_bars([(LONG, 99.5), ("10.1 Meta Models", 100.0)]))

    labels = [t for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert labels[0].text.endswith("…") and LONG.startswith(labels[0].text[:-1])
    assert charts.text_width(labels[0].text, 12) <= charts.MAX_LABEL_PX
    assert labels[0].find(f"{SVG}title").text == LONG
    assert labels[1].text == "10.1 Meta Models" and labels[1].find(f"{SVG}title") is None


def test_the_margin_grows_with_the_longest_label_and_the_bars_start_after_it() -> None:
    short, long = (
        charts.availability_bars([(label, 90.0)]) for label in ("10.1 Models", "10.13 Creative Intelligence")
    )

    def bar_x(svg: str) -> float:
        return float(next(r for r in _parse(svg).iter(f"{SVG}rect")).get("x"))

    assert bar_x(long) > bar_x(short)
    width, boxes = _text_boxes(long)
    assert boxes[0][1] < bar_x(long)  # the label ends before its bar begins


@pytest.mark.parametrize("duration_ms", [5, 1500, 59_000, 3_600_000, 90_000_000])
def test_run_duration_axis_and_time_labels_fit_inside_the_picture(duration_ms: int) -> None:
    points = [
        RunPoint(T0, duration_ms, "success"),
        RunPoint(T0 + timedelta(days=7), 1, "failure"),
        RunPoint(T0 + timedelta(days=3), None, "timeout"),
        RunPoint(T0 + timedelta(days=4), 2, "skipped"),
        RunPoint(T0 + timedelta(days=5), 3, "running"),
    ]

    _assert_inside(charts.run_durations(points))


def test_the_status_timeline_labels_fit_inside_the_picture() -> None:
    svg = charts.status_timeline([(T0, "healthy"), (T0 + timedelta(hours=5), "critical")], T0, T0 + timedelta(days=1))

    _assert_inside(svg)
    width, boxes = _text_boxes(svg)
    assert [content for *_, content in boxes] == ["2025-01-15 12:00:00 UTC", "2025-01-16 12:00:00 UTC"]
