"""What a run recorded (lists of JSON objects: actions, errors, recoveries) as a table an operator
reads at a glance, instead of JSON to decode. Pure: records in, headers and cells out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Keys that get a column of their own, in this order, when any record has them. Every other key
# is shown in a last "Other" column as `key value`: nothing a run recorded is dropped.
COLUMNS = (
    "action",
    "module",
    "modules",
    "target",
    "outcome",
    "count",
    "sent",
    "paused",
    "resumed",
    "pending",
    "failed",
    "skipped",
    "attempt",
    "confidence",
    "reason",
    "detail",
    "error",
    "run_id",
)
OTHER = "Other"


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[list[str]]]  # row → cell → lines of the cell


def inline(value: Any) -> str:
    """One value as one line of text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {inline(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(inline(item) for item in value)
    return str(value)


def cell(value: Any) -> list[str]:
    """One value as the lines of a cell: an object or a list of objects gets a line per entry."""
    if isinstance(value, Mapping):
        return [f"{key}: {inline(item)}" for key, item in value.items()]
    if isinstance(value, (list, tuple)) and any(isinstance(item, Mapping) for item in value):
        return [inline(item) for item in value]
    return [inline(value)]


def header(key: str) -> str:
    return key.replace("_", " ").capitalize()


def record_table(items: Sequence[Any], text_key: str = "detail") -> Table:
    """A table of `items`: a column per known key present in any of them, then the others. An item
    that is not an object (an error message) is shown under `text_key`."""
    records = [item if isinstance(item, Mapping) else {text_key: item} for item in items]
    present = {key for record in records for key in record}
    columns = [key for key in COLUMNS if key in present]
    has_other = bool(present - set(COLUMNS))
    rows = []
    for record in records:
        cells = [cell(record[key]) if key in record else [] for key in columns]
        if has_other:
            cells.append([f"{key}: {inline(value)}" for key, value in record.items() if key not in COLUMNS])
        rows.append(cells)
    return Table([header(key) for key in columns] + ([OTHER] if has_other else []), rows)
