"""The parallel, deadline-bound Meta fan-out of the kill switch: accounts in parallel, calls
retried in rounds while the deadline allows, batches of per-campaign calls.

Stop, resume and the background sweeps act on many ad accounts at once and must answer within a
deadline whatever Meta does: each account gets its own thread and Graph client bound by that
deadline, and whatever one account raises becomes that account's error. Threads only talk to Meta;
the callers write the database in their own thread.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from django.conf import settings

from controltower import rules
from meta_modules import graph
from meta_modules.errors import RETRYABLE
from meta_modules.gate import operations_halted

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Campaign(Protocol):
    """What a batch item is sent for: a campaign of an ad account (a CampaignHold)."""

    campaign_id: str
    account_id: str


C = TypeVar("C", bound=Campaign)


def parallel(
    fn: Callable[[graph.GraphClient, str], T], accounts: Iterable[str], deadline: float
) -> dict[str, T | graph.MetaError]:
    """Run `fn(client, account)` for every account at once, each thread with its own Graph client
    bound by the deadline. Whatever one account raises becomes that account's error."""
    accounts = list(accounts)
    if not accounts:
        return {}

    def guarded(account: str) -> T | graph.MetaError:
        try:
            with graph.client().bounded(deadline) as meta:
                return fn(meta, account)
        except graph.MetaError as exc:
            return exc
        except graph.WriteRefused as exc:  # not sent, and no use trying again until the halt is lifted
            return graph.MetaError(graph.ErrorKind.INVALID, str(exc))
        except Exception as exc:  # noqa: BLE001 - a stop or resume must finish whatever one account does
            logger.exception("Unexpected failure on %s during a stop or resume", account)
            return graph.MetaError(graph.ErrorKind.TRANSIENT, f"unexpected {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=min(len(accounts), settings.KILL_SWITCH_PARALLELISM)) as pool:
        return dict(zip(accounts, pool.map(guarded, accounts)))


def within_deadline(call: Callable[[], T], deadline: float) -> T:
    """`call()`, tried again while it fails transiently or on a rate limit (after the client's own
    retries) and the deadline leaves time for another try."""
    rounds = 0
    last: graph.MetaError | None = None
    while True:
        rounds += 1
        try:
            return call()
        except graph.MetaError as exc:
            if exc.deadline_only and last is not None:
                raise last from exc  # the deadline came: what Meta last said is the reason
            last = exc
            delay = (
                rules.retry_delay(rounds, deadline - time.monotonic(), exc.retry_after or 0.0)
                if exc.kind in RETRYABLE
                else None
            )
            if delay is None:
                raise
        time.sleep(delay)


def not_before(errors: Iterable[graph.MetaError | None]) -> float:
    """The soonest any of these failures can be retried (0 unless each names an account's block)."""
    return min((e.retry_after or 0.0 if e is not None else 0.0 for e in errors), default=0.0)


def act_ids(accounts: Iterable[str]) -> list[str]:
    return [a if a.startswith("act_") else f"act_{a}" for a in accounts]


Answer = tuple[graph.MetaError | None, dict[str, Any] | None]
HALTED = "Meta write refused: the tower is halted (emergency stop)."

# The kill switch's calls, one per campaign: the stop's pause (with the read-after-write of what
# resume compares), its read, and resume's re-activation. Fire drills send exactly these.
PAUSED_FIELDS = ",".join(("status", "updated_time", *rules.SNAPSHOT_FIELDS))


def pause_call(campaign: Campaign) -> graph.BatchCall:
    return graph.BatchCall(
        campaign.campaign_id, "POST", f"{campaign.campaign_id}/", {"status": "PAUSED", "fields": PAUSED_FIELDS}
    )


def read_call(campaign: Campaign) -> graph.BatchCall:
    return graph.BatchCall(campaign.campaign_id, "GET", campaign.campaign_id, {"fields": PAUSED_FIELDS})


def reactivate_call(campaign: Campaign) -> graph.BatchCall:
    return graph.BatchCall(campaign.campaign_id, "POST", f"{campaign.campaign_id}/", {"status": "ACTIVE"})


def send(
    campaigns: list[C],
    call: Callable[[C], graph.BatchCall],
    deadline: float,
    allow_while_halted: bool = True,
    answered: dict[str, float] | None = None,
) -> tuple[dict[str, Answer], Counter[str]]:
    """One batch item per campaign, accounts in parallel. Items that fail transiently or on a rate
    limit (after the client's own retries) go again while the deadline allows.

    `allow_while_halted=False` (a write that must not happen during an emergency stop): the write
    guard is asked here, in the calling thread, before every round (threads only talk to Meta);
    while halted nothing is sent and each campaign's answer is the refusal. `answered`, when
    given, receives per account the time.monotonic() its last answer came back.

    Returns campaign id → (final error, answer), and how many requests went out per campaign.
    """
    answers: dict[str, Answer] = {}
    sent: Counter[str] = Counter()
    todo, rounds = campaigns, 0
    while todo:
        rounds += 1
        if not allow_while_halted and operations_halted():
            refused = graph.MetaError(graph.ErrorKind.INVALID, HALTED)
            answers.update({c.campaign_id: (refused, None) for c in todo})
            break
        by_account: dict[str, list[C]] = defaultdict(list)
        for campaign in todo:
            by_account[campaign.account_id].append(campaign)

        def batch(meta: graph.GraphClient, account: str) -> graph.BatchResult:
            result = meta.batch(account, [call(c) for c in by_account[account]], allow_while_halted=True)  # noqa: B023 - called within this iteration
            if answered is not None:
                answered[account] = time.monotonic()
            return result

        outcomes = parallel(batch, by_account, deadline)
        todo = []
        for account, outcome in outcomes.items():
            for campaign in by_account[account]:
                if isinstance(outcome, graph.MetaError):
                    error, body = outcome, None
                else:
                    error, body = outcome.failed.get(campaign.campaign_id), outcome.succeeded.get(campaign.campaign_id)
                if error is not None and error.deadline_only and campaign.campaign_id in answers:
                    continue  # not sent (the deadline): the previous answer says more
                sent[campaign.campaign_id] += error is None or not error.deadline_only
                answers[campaign.campaign_id] = (error, body)
                if body is None and (error is None or error.kind in RETRYABLE):
                    todo.append(campaign)
        delay = (
            rules.retry_delay(rounds, deadline - time.monotonic(), not_before(answers[c.campaign_id][0] for c in todo))
            if todo
            else None
        )
        if delay is None:
            break
        time.sleep(delay)
    return answers, sent
