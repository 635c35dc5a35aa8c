"""charts.py: pure SVG functions (no database)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from controltower.console import charts
from controltower.console.charts import RunPoint

T0 = datetime(2025, 1, 15, 12, 0, tzinfo=timezone.utc)
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
    points = [RunPoint(T0, 1000, "success"), RunPoint(T0 + timedelta(hours=1), 2000, "failure"),
              RunPoint(T0 + timedelta(hours=2), None, "running")]

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
