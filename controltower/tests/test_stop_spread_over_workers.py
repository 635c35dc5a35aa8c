"""A stop and a resume at agency scale: the ad accounts in groups, shared between the web process
and real Celery workers, with the same outcome as the web process alone — and nothing lost when a
worker dies in the middle of its group.

50 ad accounts over HTTP against the Meta sandbox, some of them harsh: one whose pauses Meta
refuses (no permission), one whose campaigns cannot be listed, one blocked by its rate limit.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connections

from controltower.models import AccountGroup, CampaignHold, ControlTowerRun, TowerState
from controltower.roles import OPERATORS_GROUP
from meta_modules import graph
from tests.support import api_client, child_env, private_broker, start_worker, stop_process, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ACCOUNTS = 50
MIX = {"ACTIVE": 4, "PAUSED": 1, "ARCHIVED": 1}
REFUSES_PAUSES, UNLISTABLE, BLOCKED = "act_1000000003", "act_1000000017", "act_1000000031"
TIMING = {
    "KILL_SWITCH_ACCOUNTS_PER_GROUP": 5,  # 10 groups
    "KILL_SWITCH_PARALLELISM": 5,  # the web process works on one group at a time: the workers get a share
    "HOLD_CLAIM_SECONDS": 12,
    "EMERGENCY_STOP_DEADLINE_SECONDS": 10,
    "KILL_SWITCH_RETRY_BASE_SECONDS": 1,
}


@dataclass
class Agency:
    sandbox: Any
    env: dict[str, str]
    folder: Path

    def seed(self, latency_ms: int) -> None:
        """Fresh accounts, fresh rate budgets, fresh faults: each run starts from the same Meta."""
        self.sandbox.reset(accounts=ACCOUNTS, statuses=MIX, adsets_per_campaign=1, ads_per_adset=1, seed=7)
        self.sandbox.faults(
            latency_ms=latency_ms,
            async_job_seconds=0,
            tier={BLOCKED: "development"},
            tier_params={"development": {"max": 3, "block_s": 600}},
            errors=[
                {"preset": "not_linked_delegate_page", "on": "batch_item", "account": REFUSES_PAUSES, "times": 10_000},
                {"preset": "not_linked_delegate_page", "on": "read", "account": UNLISTABLE, "times": 10_000},
            ],
        )
        cache.clear()
        graph.reset_clients()

    def truth(self) -> dict[str, str]:
        return {c["id"]: c["status"] for c in self.sandbox.campaigns()}

    def worker(self, name: str) -> Any:
        return start_worker(
            self.env,
            self.folder / f"{name}.log",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--hostname",
            f"{name}@%h",
        )


@pytest.fixture
def agency(meta_sandbox, synced, settings, tmp_path: Path) -> Iterator[Agency]:
    for name, value in TIMING.items():
        setattr(settings, name, value)
    with private_broker(tmp_path) as broker_env:
        yield Agency(
            meta_sandbox,
            child_env(META_GRAPH_URL=meta_sandbox.url, **broker_env, **{k: str(v) for k, v in TIMING.items()}),
            tmp_path,
        )


def _settled() -> bool:
    return not AccountGroup.objects.filter(finished_at__isnull=True).exists()


def _ledger() -> dict[str, tuple[str, bool]]:
    """Per campaign held: its state, and whether it carries an error (or a note, after resume)."""
    return {
        h.campaign_id: (h.state, bool(h.last_error or h.resume_note))
        for h in CampaignHold.objects.order_by("campaign_id")
    }


def _stop_and_resume(agency: Agency, client: Any) -> tuple[dict, dict, dict, dict, list[str]]:
    """Stop over HTTP, wait until every group is done; the same for resume. → ledgers, Meta, group takers."""
    stopped = client.post("/meta/control-tower/emergency-stop", {"reason": "Agency drill"}, format="json")
    assert stopped.status_code == 200, stopped.content
    wait_for(_settled, timeout=120, interval=0.2, message="every account group of the stop to be swept")
    after_stop, meta_after_stop = _ledger(), agency.truth()
    takers = list(AccountGroup.objects.values_list("taken_by", flat=True))
    resumed = client.post(
        "/meta/control-tower/resume", {"reason": "Agency drill over", "run_health_check": False}, format="json"
    )
    assert resumed.status_code == 200, resumed.content
    wait_for(_settled, timeout=120, interval=0.2, message="every account group of the resume to be re-activated")
    return (
        after_stop,
        meta_after_stop,
        _ledger(),
        agency.truth(),
        takers + list(AccountGroup.objects.exclude(taken_by__in=takers).values_list("taken_by", flat=True)),
    )


def _reset_tower() -> None:
    TowerState.objects.filter(pk=1).update(
        emergency_stop_active=False, halt_run=None, held_task_ids=[], last_stop_at=None, halt_swept_at=None
    )
    AccountGroup.objects.all().delete()
    CampaignHold.objects.all().delete()
    ControlTowerRun.objects.all().delete()


def test_a_stop_and_resume_shared_with_a_worker_end_as_in_the_web_process_alone(agency: Agency) -> None:
    agency.seed(latency_ms=150)
    before = agency.truth()
    client = api_client("olga", OPERATORS_GROUP)
    alone = _stop_and_resume(agency, client)
    assert {t.split()[0] for t in alone[4]} == {"web"}  # nobody consumes the private broker yet

    _reset_tower()
    agency.seed(latency_ms=150)
    worker = agency.worker("agency")
    try:
        shared = _stop_and_resume(agency, client)
    finally:
        stop_process(worker)

    assert {t.split()[0] for t in shared[4]} == {"web", "worker"}, shared[4]  # really shared
    assert shared[:4] == alone[:4]
    # And that outcome is the right one, account by account.
    stop_ledger, meta_stopped, _, meta_resumed, _ = alone
    running = {cid for cid, status in before.items() if status == "ACTIVE"}
    by_account = _accounts_of(agency)
    states = {
        a: {stop_ledger[cid][0] for cid in running if by_account[cid] == a and cid in stop_ledger} for a in _all()
    }
    assert states[REFUSES_PAUSES] == {CampaignHold.State.FAILED}
    assert states[UNLISTABLE] == set()  # never listed, never held
    assert CampaignHold.State.PAUSED not in states[BLOCKED]
    assert all(states[a] == {CampaignHold.State.PAUSED} for a in _healthy_accounts())
    paused = {cid for cid, (state, _) in stop_ledger.items() if state == CampaignHold.State.PAUSED}
    assert {cid for cid, status in meta_stopped.items() if status == "ACTIVE"} == running - paused
    assert meta_resumed == before  # what was paused is running again; nothing else was touched


def _all() -> list[str]:
    return [f"act_{1000000001 + i}" for i in range(ACCOUNTS)]


def _healthy_accounts() -> list[str]:
    return [a for a in _all() if a not in (REFUSES_PAUSES, UNLISTABLE, BLOCKED)]


def _accounts_of(agency: Agency) -> dict[str, str]:
    return {c["id"]: f"act_{c['account_id']}" for c in agency.sandbox.campaigns()}


def test_a_worker_killed_in_the_middle_of_its_group_loses_nothing(agency: Agency) -> None:
    agency.seed(latency_ms=600)
    before = agency.truth()
    worker = agency.worker("doomed")
    try:
        client = api_client("olga", OPERATORS_GROUP)
        killed: list[int] = []

        def kill_a_worker_mid_group() -> bool:
            group = AccountGroup.objects.filter(taken_by__startswith="worker", finished_at__isnull=True).first()
            if group is None or not CampaignHold.objects.filter(account_id__in=group.accounts).exists():
                return False
            pid = int(group.taken_by.rsplit(":", 1)[1])
            os.kill(pid, signal.SIGKILL)  # the pool process sweeping the group, as the OOM killer would
            killed.append(pid)
            return True

        def press_stop() -> None:
            try:
                client.post("/meta/control-tower/emergency-stop", {"reason": "Drill"}, format="json")
            finally:
                connections.close_all()  # this thread's own database connection

        press = threading.Thread(target=press_stop)
        press.start()
        wait_for(kill_a_worker_mid_group, timeout=60, interval=0.05, message="a worker to be sweeping a group")
        press.join()

        # What the dead worker held lapses, and the background sweep finishes the halt.
        wait_for(
            lambda: (
                not CampaignHold.objects.filter(
                    state=CampaignHold.State.PENDING, account_id__in=_healthy_accounts()
                ).exists()
            ),
            timeout=180,
            interval=0.5,
            message="the background sweep to finish the dead worker's group",
        )
    finally:
        stop_process(worker)
    assert killed
    truth = agency.truth()
    healthy = set(_healthy_accounts())
    holds = {h.campaign_id: h for h in CampaignHold.objects.all()}
    for cid, hold in holds.items():
        if hold.account_id in healthy:
            assert hold.state == CampaignHold.State.PAUSED and truth[cid] == "PAUSED", (cid, hold.state, truth[cid])
    running_before = {cid for cid, s in before.items() if s == "ACTIVE"}
    assert {cid for cid, s in truth.items() if s == "ACTIVE"} <= {
        cid for cid in running_before if holds.get(cid) is None or holds[cid].account_id not in healthy
    }
    state = TowerState.get()
    assert state.emergency_stop_active and not (state.halt_swept_at and state.halt_swept_at >= state.last_stop_at)
