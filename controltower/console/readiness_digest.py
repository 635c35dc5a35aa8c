"""A readiness check (controltower.readiness) as the console shows it: a few lines, whatever the
number of ad accounts.

300 development-tier accounts give 300 reasons that differ only in the account's id and its figures:
they are one line here ("act_1 is on Meta's development tier … — likewise act_2, act_3 and 297 more
accounts"), the first account's own words standing for the others. Pure: the recorded check in, the
lines out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Paginator

from controltower import readiness_policy as policy
from controltower.models import ReadinessCheck

REASONS_SHOWN = 3  # reason lines on the dashboard; the rest on the readiness page
ACCOUNTS_NAMED = 5  # accounts named per line
PAGE_SIZE = 50  # accounts per page on the readiness page
ACCOUNT = "{account}"
FIGURES = re.compile(r"\d[\d,.]*")  # counts, seconds, dates: an account's own figures
TRACE = re.compile(r"\[fbtrace_id [^\]]*\]")  # Meta's id of each error it answers, different every time


@dataclass
class ReasonLine:
    """One reason, and the other accounts it holds for word for word (but for their id and figures)."""

    text: str
    # The mildest verdict among the accounts it is given for (a reason also given for a DEGRADED account
    # is not what made another NOT READY); the token's, for the token's reasons.
    verdict: str
    accounts: list[str] = field(default_factory=list)  # the first is the one `text` names

    @property
    def also(self) -> list[str]:
        return self.accounts[1 : 1 + ACCOUNTS_NAMED]

    @property
    def also_more(self) -> int:
        return max(0, len(self.accounts) - 1 - ACCOUNTS_NAMED)


@dataclass(frozen=True)
class AccountCount:
    verdict: str
    label: str
    count: int


@dataclass(frozen=True)
class Digest:
    check: ReadinessCheck
    label: str
    lines: list[ReasonLine]  # every distinct reason, the worst first
    counts: list[AccountCount]  # accounts per verdict, NOT READY first
    stale: bool = False  # older than the health cycle should have left it: says little about now

    @property
    def shown(self) -> list[ReasonLine]:
        return self.lines[:REASONS_SHOWN]

    @property
    def more(self) -> int:
        return max(0, len(self.lines) - REASONS_SHOWN)


def _shape(text: str, account_id: str) -> str:
    return FIGURES.sub("#", TRACE.sub("", text.replace(account_id, ACCOUNT) if account_id else text))


def reason_lines(
    token: Mapping[str, Any], accounts: Iterable[Mapping[str, Any]], all_reasons: Sequence[str]
) -> list[ReasonLine]:
    """The token's reasons, then the others (why accounts could not be listed), then the accounts'
    reasons merged by their wording with the account's id and figures left out, the worst first."""
    token_reasons = list(token.get("reasons") or [])
    token_lines = [ReasonLine(text, str(token.get("verdict") or policy.NOT_READY)) for text in token_reasons]
    merged: dict[str, ReasonLine] = {}
    given: set[str] = set(token_reasons)
    for account in accounts:
        account_id = str(account.get("account_id") or "")
        verdict = str(account.get("verdict") or policy.DEGRADED)
        for text in account.get("reasons") or ():
            given.add(text)
            line = merged.setdefault(_shape(text, account_id), ReasonLine(text, verdict))
            line.verdict = min(line.verdict, verdict, key=policy.rank)
            if account_id and account_id not in line.accounts:
                line.accounts.append(account_id)
    general = [ReasonLine(text, policy.NOT_READY) for text in all_reasons if text not in given]
    by_account = sorted(merged.values(), key=lambda line: -policy.rank(line.verdict))  # stable: first seen first
    return token_lines + general + by_account


def account_counts(accounts: Iterable[Mapping[str, Any]]) -> list[AccountCount]:
    counts: dict[str, int] = {}
    for account in accounts:
        verdict = str(account.get("verdict") or "")
        counts[verdict] = counts.get(verdict, 0) + 1
    order = sorted(counts, key=lambda v: -policy.rank(v))
    return [AccountCount(v, policy.VERDICT_LABELS.get(v, v or "unknown"), counts[v]) for v in order]


def digest(check: ReadinessCheck, now: datetime | None = None, stale_after: timedelta | None = None) -> Digest:
    token = check.token or {}
    accounts = check.accounts or []
    lines = reason_lines(token, accounts, check.reasons or [])
    # A NOT READY summary is its first reason: not said twice (unless other accounts share it).
    lines = [line for line in lines if len(line.accounts) > 1 or line.text not in check.summary]
    stale = now is not None and stale_after is not None and now - check.checked_at > stale_after
    return Digest(check, check.get_verdict_display(), lines, account_counts(accounts), stale)


def by_account(check: ReadinessCheck | None) -> dict[str, dict[str, Any]]:
    """The check's verdict per ad account id (the stop confirmation's table)."""
    return {str(a.get("account_id")): a for a in (check.accounts if check else [])}


def ordered_accounts(check: ReadinessCheck, verdict: str = "") -> list[dict[str, Any]]:
    """The check's accounts, the worst first, then by id; only those of `verdict` when given."""
    rows = [a for a in check.accounts or [] if not verdict or a.get("verdict") == verdict]
    return sorted(rows, key=lambda a: (-policy.rank(str(a.get("verdict"))), str(a.get("account_id"))))


def page_of_accounts(rows: list[dict[str, Any]], page: Any) -> Any:
    return Paginator(rows, PAGE_SIZE).get_page(page)
