"""Canned Graph errors as Meta marks them, and the fault plan that answers them on matching calls.

Pure data and matching: server.py decides when a call matches and applies a read_after_write
write before answering. Each preset names its source in docs/meta-sandbox.md.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .store import GraphError

# The newest Marketing API version in the reference's changelog table (v27.0, 2026-11-04).
LATEST_VERSION = "v27.0"
DEFAULT_MIN_VERSION = "v25.0"  # v25.0 expires 2027-02-23; every older version has expired
_VERSION = re.compile(r"^v(\d+)\.(\d+)$")
# Insights data-size subcodes and their codes (reference: 100/1487534, 100/1504018, 2/1504038, -3/1504045).
DATA_SIZE_CODES = {1487534: 100, 1504018: 100, 1504038: 2, 1504045: -3}
TARGETS = ("any", "read", "write", "insights", "batch_item")


def version_key(version: str) -> tuple[int, int]:
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not a Graph version like v25.0")
    return int(match.group(1)), int(match.group(2))


def deprecated_version() -> GraphError:
    return GraphError(
        f"(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version: "
        f"{LATEST_VERSION}.",
        code=2635,
    )


def preset_error(name: str, subcode: int | None = None, original_response: Any = None) -> GraphError:
    """The body of preset ``name`` (read_after_write carries the write's normal answer)."""
    if name == "not_linked_delegate_page":
        return GraphError(
            "An unknown error occurred",
            code=1,
            subcode=2853001,
            is_transient=False,
            user_title="profile is not linked to delegate page",
            user_msg="profile should always be linked to delegate page",
        )
    if name == "reduce_data":
        return GraphError(
            "Please reduce the amount of data you're asking for, then retry your request",
            code=1,
            http_status=500,
        )
    if name == "insights_data_size":
        sub = subcode or 1504018
        code = DATA_SIZE_CODES[sub]
        return GraphError(
            f"(#{code}) The request for insights is too large: ask for fewer days, objects or fields, or use an "
            "asynchronous report run.",
            code=code,
            subcode=sub,
            http_status=400 if code == 100 else 500,
        )
    if name == "deprecated_version":
        return deprecated_version()
    if name == "read_after_write":
        return GraphError(
            "An unknown error occurred",
            code=1,
            http_status=500,
            extra={"original_response": original_response},
        )
    if name == "transient_user_title":
        return GraphError(
            "(#2) Service temporarily unavailable",
            code=2,
            is_transient=True,
            user_title="Temporary problem",
            user_msg="Something went wrong on our side. Wait a few minutes and try the request again.",
        )
    raise ValueError(f"unknown preset {name!r}")


PRESETS = (
    "not_linked_delegate_page",
    "reduce_data",
    "insights_data_size",
    "deprecated_version",
    "read_after_write",
    "transient_user_title",
)


@dataclass(frozen=True)
class ErrorRule:
    """``{"preset", "on", "account"?, "times", "subcode"?}``: the next ``times`` matching calls answer it."""

    preset: str
    on: str = "any"
    account: int | None = None
    times: int = 1
    subcode: int | None = None

    @classmethod
    def from_json(cls, raw: Any) -> ErrorRule:
        form = '{"preset": "reduce_data", "on": "any|read|write|insights|batch_item", "account": "act_X", "times": 1}'
        if not isinstance(raw, Mapping) or set(raw) - {"preset", "on", "account", "times", "subcode"}:
            raise ValueError(f"each errors entry looks like {form}")
        if raw.get("preset") not in PRESETS:
            raise ValueError(f"errors.preset must be one of {list(PRESETS)}")
        if raw.get("on", "any") not in TARGETS:
            raise ValueError(f"errors.on must be one of {list(TARGETS)}")
        if raw["preset"] == "read_after_write" and raw.get("on", "any") in ("read", "insights"):
            raise ValueError("errors: read_after_write answers writes carrying fields=; on cannot be read or insights")
        times = raw.get("times", 1)
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 1_000_000:
            raise ValueError("errors.times must be an integer in [1, 1000000]")
        account = None
        if raw.get("account") is not None:
            digits = str(raw["account"]).removeprefix("act_")
            if not digits.isdigit():
                raise ValueError("errors.account must be an ad account id like act_1000000001")
            account = int(digits)
        subcode = raw.get("subcode")
        if subcode is not None and (raw["preset"] != "insights_data_size" or subcode not in DATA_SIZE_CODES):
            raise ValueError(f"errors.subcode is for insights_data_size: one of {sorted(DATA_SIZE_CODES)}")
        return cls(raw["preset"], raw.get("on", "any"), account, times, subcode)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"preset": self.preset, "on": self.on, "times": self.times}
        if self.account is not None:
            body["account"] = f"act_{self.account}"
        if self.subcode is not None:
            body["subcode"] = self.subcode
        return body


@dataclass(frozen=True)
class CallKind:
    """What a call is, for matching rules."""

    write: bool
    insights: bool
    batch_item: bool
    account: int | None
    read_after_write: bool  # a write carrying fields=

    def matches(self, rule: ErrorRule) -> bool:
        if rule.account is not None and rule.account != self.account:
            return False
        if rule.preset == "read_after_write" and not self.read_after_write:
            return False
        return {
            "any": True,
            "read": not self.write,
            "write": self.write,
            "insights": self.insights,
            "batch_item": self.batch_item,
        }[rule.on]


class ErrorPlan:
    """The rules of the ``errors`` fault with their remaining counts; deterministic (first match wins)."""

    def __init__(self, rules: Sequence[ErrorRule] = ()) -> None:
        self._lock = threading.Lock()
        self._rules = list(rules)
        self._left = [rule.times for rule in rules]

    def take(self, call: CallKind) -> ErrorRule | None:
        """The rule this call answers, counting it down; None if no rule (with calls left) matches."""
        with self._lock:
            for i, rule in enumerate(self._rules):
                if self._left[i] > 0 and call.matches(rule):
                    self._left[i] -= 1
                    return rule
        return None

    def remaining(self) -> list[int]:
        with self._lock:
            return list(self._left)
