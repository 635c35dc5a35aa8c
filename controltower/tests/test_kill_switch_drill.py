"""Fault drill (issues 9 and 13): a randomized emergency stop and resume, property-based.

Each example seeds the Meta sandbox (accounts × a status mix, some campaigns reading IN_PROCESS
or WITH_ISSUES over a configured ACTIVE or PAUSED status), lets a "human" edit campaigns before
the stop through the ordinary Graph API, turns faults on (transient 500s, HTML pages from Meta's
edge — a 502 applied, a 500/503 not —, timed-out requests and batch items, a development
rate-limit tier with short windows on some accounts, the mutation rate, the account limit's
three codes, usage headers as all or BUC only), stops, runs the background sweeps the stop
leaves until they are done, lets the human edit again during the halt (statuses, names, and
budgets and spend caps that Meta does not stamp in updated_time; Meta's delivery states
change too), and resumes with the faults still on, running the background re-activations it
leaves until they are done.

The expected outcome is derived from the sandbox's own truth (GET /_sandbox/campaigns) and
the edit history, never from the tower's ledger:

- after the stop and its sweeps: no campaign is ACTIVE; exactly the campaigns ACTIVE just
  before the stop are held, every hold confirmed paused with the updated_time Meta shows;
  every other campaign is untouched (status, budget, updated_time); each held campaign was
  paused exactly once (the sandbox's write counter; with slow batches, whose lost answers
  must be asked again, only the next check applies), and a second stop writes nothing;
- after resume: a held campaign is ACTIVE iff it is still PAUSED with the updated_time, name
  and budgets our pause left (held and unchanged); every other campaign is exactly as the human
  left it (status and updated_time), so a deliberate re-activation stays ACTIVE and a campaign a
  person paused is never ACTIVE, whatever its effective status; every held campaign not
  re-activated is reported with the reason the truth implies, and the ledger agrees; one write
  per re-activated campaign (lost answers aside);
- the tower never called an ad account while it was blocked (lost answers aside: what the
  calls of a lost answer cost the account, the client cannot know).

BUC-only headers say nothing of when a score decays, so the client holds a high reading for
Meta's 300 s window: the drill gives them only to standard-tier accounts (the sandbox's
one-second development windows would otherwise outlast the drill, not Meta's).

Repeatable in CI: the examples are fixed (derandomize=True) and the sandbox's fault RNG is
seeded from each example; accounts are worked on in parallel and share that RNG, so a
failure may not replay exactly (hypothesis then reports it as flaky, which fails the test
too). No shrinking: an example takes seconds, so a failure shows it as generated. Each
example runs in one database transaction rolled back at its end (the kill switch's own
atomics nest as savepoints), on a freshly reseeded sandbox.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from controltower import commander, killswitch
from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import CampaignHold, TowerState
from meta_modules import graph

pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.usefixtures("synced")]

# What a human may do to a campaign on Meta (POST /{id}); the sandbox applies Meta's rules
# (ARCHIVED only to DELETED, DELETED is final, same status is a no-op).
ACTIONS = (
    "activate",
    "pause",
    "archive",
    "delete",
    "budget",
    "spend_cap",
    "rename",
    "issues",
    "in_process",
    "delivering",
)
DELIVERY = {"issues": "WITH_ISSUES", "in_process": "IN_PROCESS", "delivering": None}


@dataclass(frozen=True)
class Edit:
    pick: int  # which campaign: an index into the seeded campaigns, modulo their number
    action: str


@dataclass(frozen=True)
class Faults:
    error_rate: float
    timeout_rate: float
    per_item_ms: int  # slow batches: big ones outlast the client's timeout, and Meta applies them anyway
    development: tuple[int, ...]  # indexes of the ad accounts on the development tier
    decay_s: int
    block_s: int
    rate_limit_code: int
    fault_seed: int
    html_rate: float = 0.0  # HTML pages instead of answers, per request and per batch item
    mutation_rate_per_s: int = 0
    buc_only: bool = False

    def body(self, accounts: list[str], phase: int) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "timeout_rate": self.timeout_rate,
            "timeout_ms": TIMEOUT_MS,
            "per_item_ms": self.per_item_ms,
            "tier": {accounts[i]: "development" for i in self.development if i < len(accounts)},
            "tier_params": {"development": {"decay_s": self.decay_s, "block_s": self.block_s}},
            "rate_limit_code": self.rate_limit_code,
            "fault_seed": self.fault_seed * 2 + phase,
            "html_error_rate": self.html_rate,
            "html_item_rate": self.html_rate,
            "html_statuses": [500, 502, 503],
            "mutation_rate_per_s": self.mutation_rate_per_s,
            "usage_headers": "buc_only" if self.buc_only else "all",
        }

    @property
    def answers_may_be_lost(self) -> bool:
        """Meta may apply a call whose answer never arrives (a slow batch, a 502 page): a second
        request for it is then the only way to learn its outcome."""
        return bool(self.per_item_ms or self.html_rate)


@dataclass(frozen=True)
class Issue:
    nth: int  # the nth campaign of its configured status in each account
    of: str  # "nth_paused" or "nth_active"
    effective_status: str


@dataclass(frozen=True)
class Drill:
    accounts: int
    mix: dict[str, int]
    seed: int
    before_stop: tuple[Edit, ...]
    during_halt: tuple[Edit, ...]
    faults: Faults
    issues: tuple[Issue, ...] = ()


CLIENT_TIMEOUT_S = 1.0  # the Graph client's timeout in the drill
SLOW_CLIENT_TIMEOUT_S = 0.5  # ... with the slow-batch fault,
SLOW_ITEM_MS = 30  # where a batch of 17 calls or more outlasts it (and Meta applies it all the same)
TIMEOUT_MS = 1100  # a timed-out single request answers (and applies) after this: past the client's timeout
MAX_ACTIVE = 30

edits = st.lists(st.builds(Edit, pick=st.integers(0, 10_000), action=st.sampled_from(ACTIONS)), max_size=6).map(tuple)
faults = st.builds(
    Faults,
    error_rate=st.sampled_from([0.0, 0.1, 0.2, 0.3]),
    timeout_rate=st.sampled_from([0.0, 0.05, 0.1]),
    per_item_ms=st.sampled_from([0, 0, 0, 0, SLOW_ITEM_MS]),
    development=st.lists(st.integers(0, 2), max_size=2, unique=True).map(tuple),
    decay_s=st.integers(1, 2),
    block_s=st.integers(1, 2),
    rate_limit_code=st.sampled_from([80004, 17, 613]),
    fault_seed=st.integers(1, 2**16),
    html_rate=st.sampled_from([0.0, 0.0, 0.1, 0.2]),
    mutation_rate_per_s=st.sampled_from([0, 0, 20]),
    buc_only=st.booleans(),
).map(lambda f: replace(f, development=()) if f.buc_only else f)
issues = st.lists(
    st.builds(
        Issue,
        nth=st.integers(1, 3),
        of=st.sampled_from(["nth_paused", "nth_active"]),
        effective_status=st.sampled_from(["WITH_ISSUES", "IN_PROCESS"]),
    ),
    max_size=3,
).map(tuple)
drills = st.builds(
    Drill,
    accounts=st.integers(1, 3),
    mix=st.fixed_dictionaries(
        {"ACTIVE": st.integers(1, MAX_ACTIVE), "PAUSED": st.integers(0, 5), "ARCHIVED": st.integers(0, 2)}
    ),
    seed=st.integers(1, 10_000),
    before_stop=edits,
    during_halt=edits,
    faults=faults,
    issues=issues,
)


# --- the human, and the sandbox's truth ---------------------------------------------------


def _human_edit(sandbox, campaign: dict[str, Any], action: str) -> bool:
    """One edit through the ordinary Graph API (or Meta's delivery system changing a campaign's
    effective status); False when Meta refuses it (e.g. an ARCHIVED one)."""
    if action in DELIVERY:
        if campaign["status"] not in ("ACTIVE", "PAUSED"):
            return False
        sandbox.set_delivery(campaign["id"], DELIVERY[action])
        return True
    fields = (
        {"daily_budget": str(int(campaign["daily_budget"] or 0) + 100)}
        if action == "budget"
        else {"spend_cap": str(int(campaign["spend_cap"] or 0) + 500_000)}
        if action == "spend_cap"
        else {"name": f"{campaign['name']} (edited)"}
        if action == "rename"
        else {"status": {"activate": "ACTIVE", "pause": "PAUSED", "archive": "ARCHIVED", "delete": "DELETED"}[action]}
    )
    data = urllib.parse.urlencode({**fields, "access_token": "human"}).encode()
    try:
        with urllib.request.urlopen(f"{sandbox.url}/v26.0/{campaign['id']}", data=data, timeout=30) as response:
            return bool(json.loads(response.read()).get("success"))
    except urllib.error.HTTPError as exc:
        assert exc.code == 400, exc.read()  # refused by Meta's rules; the faults are off for humans
        return False


def _edit(sandbox, plan: tuple[Edit, ...]) -> None:
    """The human's edits, with the faults off (only the tower is under test) and no account blocked."""
    sandbox.faults()
    while any(a["blocked_until"] for a in sandbox.state()["accounts"]):
        time.sleep(0.2)
    campaigns = sandbox.campaigns()
    for step in plan:
        if campaigns:
            target = campaigns[step.pick % len(campaigns)]
            _human_edit(sandbox, target, step.action)
            campaigns = sandbox.campaigns()


def _truth(sandbox) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in sandbox.campaigns()}


def _writes(sandbox) -> int:
    return sandbox.state()["counters"]["writes"]


AS_PAUSED = ("status", "updated_time", "name", "daily_budget", "lifetime_budget", "spend_cap")


def _as_paused(truth: dict[str, Any], stopped: dict[str, Any]) -> bool:
    """Still exactly as our pause left it: what resume must find to re-activate a held campaign."""
    return all(truth[field] == stopped[field] for field in AS_PAUSED)


def _expected_skip_reason(now: dict[str, Any] | None) -> str:
    """The start of the reason resume must give for a held campaign it does not re-activate."""
    if now is None or now["status"] == "DELETED":
        return "no longer on Meta"
    if now["status"] == "ARCHIVED":
        return "ARCHIVED since the stop"
    if now["status"] == "ACTIVE":
        return "already ACTIVE again"
    return "edited on Meta since the stop"


# --- the drill ----------------------------------------------------------------------------


def _settle(drill: Drill) -> None:
    """Let Meta finish what it is still applying: a slow batch whose answer the client gave up
    on is applied when its sleep ends (as on Meta, a lost answer is not a failed call)."""
    if drill.faults.per_item_ms:
        time.sleep(MAX_ACTIVE * drill.faults.per_item_ms / 1000 + 0.2)


def _wait_out_blocks(accounts: list[str]) -> None:
    """Between background passes, wait out the rate-limit blocks the client has learnt, as the real
    passes' countdowns do (KILL_SWITCH_RETRY_BASE_SECONDS doubling): run back to back, ten passes
    would all fall inside one block (60 s when Meta names no time) and prove nothing."""
    throttle = graph.client().throttle
    wait = max(throttle.blocked_for(account, write=True) for account in accounts)
    if wait:
        time.sleep(min(wait, 90.0) + 0.1)


def run_drill(sandbox, drill: Drill) -> None:
    sandbox.reset(
        accounts=drill.accounts,
        statuses=drill.mix,
        seed=drill.seed,
        adsets_per_campaign=1,
        ads_per_adset=1,
        history_days=1,
        delivery_issues=[{i.of: i.nth, "effective_status": i.effective_status} for i in drill.issues],
    )
    graph.reset_clients()  # what the client learnt of rate limits belongs to the previous example
    accounts = [a["id"] for a in sandbox.state()["accounts"]]
    _edit(sandbox, drill.before_stop)

    before = _truth(sandbox)
    held = {cid for cid, c in before.items() if c["status"] == "ACTIVE"}  # configured ACTIVE, whatever its delivery
    writes = _writes(sandbox)
    sandbox.faults(**drill.faults.body(accounts, phase=0))

    result = killswitch.emergency_stop(StopRequest(reason="fault drill", actor="drill", send_alerts=False))
    halt_run_id = str(TowerState.get().halt_run_id)
    left, sweeps, outcome = result.campaigns_pending or result.errors, 0, {}
    while left:  # the background sweeps the stop left, run here until they are done
        assert sweeps < 10, f"still not done after {sweeps} sweeps: {outcome}"
        _wait_out_blocks(accounts)
        outcome = killswitch.resweep(halt_run_id, attempt=sweeps)
        left, sweeps = outcome["pending"] or outcome["errors"], sweeps + 1
    _settle(drill)

    stopped = _truth(sandbox)
    assert [cid for cid, c in stopped.items() if c["status"] == "ACTIVE"] == [], result
    assert {cid for cid, c in stopped.items() if c["status"] == "PAUSED" and cid in held} == held
    assert {cid: c for cid, c in stopped.items() if cid not in held} == {
        cid: c for cid, c in before.items() if cid not in held
    }, "the stop touched a campaign it did not hold"
    holds = {h.campaign_id: h for h in CampaignHold.objects.filter(halt_run_id=halt_run_id)}
    assert set(holds) == held, "the ledger must hold exactly the campaigns ACTIVE before the stop"
    assert {h.state for h in holds.values()} <= {CampaignHold.State.PAUSED}, "every hold confirmed paused"
    assert {cid: h.paused_updated_time for cid, h in holds.items()} == {
        cid: stopped[cid]["updated_time"] for cid in held
    }, "the ledger must record the updated_time Meta shows"
    if not drill.faults.answers_may_be_lost:  # every answer arrived: each held campaign was paused exactly once
        assert _writes(sandbox) - writes == len(held), "a campaign was paused more than once"
    writes = _writes(sandbox)
    again = killswitch.emergency_stop(StopRequest(reason="double click", actor="drill", send_alerts=False))
    assert again.already_halted and again.campaigns_paused == 0, again
    assert _writes(sandbox) == writes, "a second stop re-paused campaigns already confirmed paused"

    _edit(sandbox, drill.during_halt)
    halted = _truth(sandbox)
    unchanged = {cid for cid in held if _as_paused(halted[cid], stopped[cid])}
    expected = {cid: "ACTIVE" if cid in unchanged else c["status"] for cid, c in halted.items()}
    writes = _writes(sandbox)
    sandbox.faults(**drill.faults.body(accounts, phase=1))

    resumed = commander.resume(ResumeRequest(actor="drill", reason="drill over", run_health_check=False))
    background, attempts = resumed.campaigns_pending, 0
    while background:  # the background re-activations resume left, run here until they are done
        assert attempts < 10, f"still re-activating after {attempts} passes"
        _wait_out_blocks(accounts)
        background = killswitch.finish_resume(resumed.run_id, attempt=attempts, follow_up=False)["pending"]
        attempts += 1
    _settle(drill)

    after = _truth(sandbox)
    assert {cid: c["status"] for cid, c in after.items()} == expected, resumed
    paused_by_a_person = {cid for cid, c in before.items() if c["status"] == "PAUSED"}
    assert {cid for cid in paused_by_a_person if after[cid]["status"] == "ACTIVE"} <= {
        cid for cid in paused_by_a_person if halted[cid]["status"] == "ACTIVE"
    }, "resume re-activated a person's pause"
    assert {cid: c["updated_time"] for cid, c in after.items() if cid not in unchanged} == {
        cid: c["updated_time"] for cid, c in halted.items() if cid not in unchanged
    }, "resume touched a campaign it must leave"
    ledger = CampaignHold.objects.filter(halt_run_id=halt_run_id)
    skipped = {h.campaign_id: h.resume_note for h in ledger if h.state == CampaignHold.State.SKIPPED}
    assert set(skipped) == held - unchanged, skipped
    for cid, reason in skipped.items():
        assert reason.startswith(_expected_skip_reason(halted.get(cid))), (cid, halted.get(cid), reason)
    if not drill.faults.answers_may_be_lost:
        assert _writes(sandbox) - writes == len(unchanged), "a campaign was re-activated more than once"
    states = dict(CampaignHold.objects.filter(halt_run_id=halt_run_id).values_list("campaign_id", "state"))
    assert states == {
        cid: CampaignHold.State.RESUMED if cid in unchanged else CampaignHold.State.SKIPPED for cid in held
    }
    assert not TowerState.get().emergency_stop_active
    if not drill.faults.answers_may_be_lost:  # (what a lost answer's calls cost the account, the client cannot know)
        assert [a["rejected_while_blocked"] for a in sandbox.state()["accounts"]] == [0] * len(accounts), (
            "the tower called an ad account while it was blocked"
        )


@pytest.fixture
def drill_settings(settings) -> None:
    settings.META_MAX_RETRIES = 2  # the client gives up sooner: the kill switch's own retries are under test
    settings.ALERT_EMAILS = []


# Always run, whatever the generator draws: slow batches that outlast the client's timeout are
# applied by Meta all the same (their pauses were never confirmed before the fix). The drill's other
# finds (resume and the stop giving up after the client's retries) have focused regression tests in
# test_killswitch.py, which reproduce them exactly.
SLOW_BATCHES = Drill(
    accounts=1,
    mix={"ACTIVE": 30, "PAUSED": 2, "ARCHIVED": 0},
    seed=7,
    before_stop=(),
    during_halt=(),
    faults=Faults(
        error_rate=0.0,
        timeout_rate=0.0,
        per_item_ms=SLOW_ITEM_MS,
        development=(),
        decay_s=1,
        block_s=1,
        rate_limit_code=80004,
        fault_seed=1,
    ),
)


@hypothesis_settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drill=drills)
@example(drill=SLOW_BATCHES)
def test_stop_and_resume_under_random_states_edits_and_faults(meta_sandbox, drill_settings, drill: Drill) -> None:
    with transaction.atomic():  # one example, one transaction: each starts from the same database
        try:
            with override_settings(
                META_TIMEOUT_SECONDS=SLOW_CLIENT_TIMEOUT_S if drill.faults.per_item_ms else CLIENT_TIMEOUT_S
            ):
                run_drill(meta_sandbox, drill)
        finally:
            transaction.set_rollback(True)
