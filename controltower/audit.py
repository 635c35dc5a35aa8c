"""One structured log line per operator-visible action, for `grep` and log shippers.

Every emergency stop (a joining press too), resume, command and recovery attempt ends with one
INFO line on the `controltower.audit` logger, in logfmt (`key=value`, values quoted when they need
it). Much of a line comes from people (an operator's reason, a module's error), so a value can
neither break the line nor fake a key: quotes, backslashes and every non-printable character
(newlines included) are escaped inside a quoted value.
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger("controltower.audit")
KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    return char if char.isprintable() else f"\\u{ord(char):04x}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(_text(item) for item in (sorted(value) if isinstance(value, (set, frozenset)) else value))
    return str(value)


def value(raw: Any) -> str:
    """One logfmt value: bare when it is a plain token, else quoted with escapes."""
    text = _text(raw)
    escaped = "".join(_escaped(char) for char in text)
    if text and escaped == text and not any(char in text for char in ' ="'):
        return text
    return f'"{escaped}"'


def logfmt(**fields: Any) -> str:
    """`key=value` pairs in the order given. Keys are ours (code), so a bad one is a bug: ValueError."""
    for key in fields:
        if not KEY.match(key):
            raise ValueError(f"not a logfmt key: {key!r}")
    return " ".join(f"{key}={value(raw)}" for key, raw in fields.items())


def record(event: str, **fields: Any) -> None:
    """Write the action's one audit line (event first, then the fields as given)."""
    logger.info("%s", logfmt(event=event, **fields))
