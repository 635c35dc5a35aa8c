"""Fire drills: the process carrying out an emergency stop is SIGKILLed half-way.

Real processes over the real broker and database, against the Meta sandbox over HTTP, slowed
down so the kill lands while Meta has applied part of the pauses and the ledger has not yet
recorded them — the worst moment. Whatever dies, the ledger is picked up again (the task
redelivered to a new worker child; the watchdog after a web process), every campaign that was
ACTIVE ends PAUSED with exactly one pause request on Meta, and resume restores exactly them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

import tower
from controltower import commander, killswitch
from controltower.killswitch import ResumeRequest, StopRequest
from controltower.models import CampaignHold, ControlTowerRun, RunState, RunType, TowerState
from meta_modules import graph
from tests.support import ROOT, api_token, child_env, free_port, private_broker, start_worker, stop_process, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MIX = {"ACTIVE": 150, "PAUSED": 10, "ARCHIVED": 5}  # per account: 3 pause batches of 50 each
LATENCY_MS = 1000  # per Meta request: the kill lands between two batches of the same sweep
CLAIM_SECONDS = 10  # how long a dead sweeper's lease and claims hold everyone else off


@dataclass
class Drill:
    sandbox: object
    env: dict[str, str]
    folder: Path

    def truth(self) -> dict[str, dict]:
        return {c["id"]: c for c in self.sandbox.campaigns()}


@pytest.fixture
def drill(meta_sandbox, synced, settings, tmp_path: Path) -> Iterator[Drill]:
    meta_sandbox.reset(accounts=2, statuses=MIX, adsets_per_campaign=1, ads_per_adset=1)
    timing = {
        "HOLD_CLAIM_SECONDS": CLAIM_SECONDS,
        "EMERGENCY_STOP_DEADLINE_SECONDS": 5,
        "KILL_SWITCH_RETRY_BASE_SECONDS": 1,
    }
    for name, value in timing.items():
        setattr(settings, name, value)
    with private_broker(tmp_path) as broker_env:
        yield Drill(
            meta_sandbox,
            child_env(META_GRAPH_URL=meta_sandbox.url, **broker_env, **{k: str(v) for k, v in timing.items()}),
            tmp_path,
        )


def _active(truth: dict[str, dict]) -> set[str]:
    return {cid for cid, c in truth.items() if c["status"] == "ACTIVE"}


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _mid_pause(drill: Drill, active: set[str]) -> bool:
    """Meta has paused some of them; the ledger has confirmed none yet."""
    return any(drill.truth()[cid]["status"] == "PAUSED" for cid in active)


def _halt_complete() -> bool:
    state = TowerState.get()
    return bool(state.halt_swept_at and state.halt_swept_at >= state.last_stop_at)


def _assert_paused_once_and_resumed_exactly(drill: Drill, before: dict[str, dict]) -> None:
    active = _active(before)
    after = drill.truth()
    assert {cid for cid, c in after.items() if c["status"] == "PAUSED"} == {
        cid for cid, c in before.items() if c["status"] in ("ACTIVE", "PAUSED")
    }
    assert {cid: after[cid]["status_writes"] for cid in before} == {cid: int(cid in active) for cid in before}
    holds = {h.campaign_id: h for h in CampaignHold.objects.all()}
    assert set(holds) == active
    assert {h.state for h in holds.values()} == {CampaignHold.State.PAUSED}
    assert all(holds[cid].paused_updated_time == after[cid]["updated_time"] for cid in active)

    drill.sandbox.faults()  # latency off: resume is not what is drilled here
    graph.reset_clients()
    resumed = commander.resume(ResumeRequest(actor="bob", reason="drill over"))

    assert resumed.campaigns_resumed == len(active) and not resumed.campaigns_skipped, resumed
    assert {cid: c["status"] for cid, c in drill.truth().items()} == {cid: c["status"] for cid, c in before.items()}


def test_a_worker_killed_in_the_middle_of_a_sweep_loses_nothing_and_pauses_nothing_twice(drill: Drill) -> None:
    before = drill.truth()
    active = _active(before)
    drill.sandbox.faults(expire_token=True)  # the stop itself cannot list anything: all is left to the task
    result = killswitch.emergency_stop(StopRequest(reason="Budget spike: drill", actor="alice"))
    assert TowerState.get().emergency_stop_active and result.campaigns_paused == 0 and result.errors
    drill.sandbox.faults(latency_ms=LATENCY_MS)
    log = drill.folder / "drill-worker.log"
    worker = start_worker(drill.env, log, "--pool", "prefork", "--concurrency", "1", "--hostname", "drill@%h")
    try:
        wait_for(lambda: _mid_pause(drill, active), timeout=60, interval=0.05, message="the sweep to be half-way")
        assert not CampaignHold.objects.filter(state=CampaignHold.State.PAUSED).exists()
        os.kill(_children(worker.pid)[0], signal.SIGKILL)  # the child running the task, as the OOM killer would

        wait_for(_halt_complete, timeout=120, interval=0.5, message="the redelivered sweep to finish the halt")
    finally:
        stop_process(worker)

    assert "signal 9 (SIGKILL)" in log.read_text()  # the kill really hit a running task
    assert "ACTIVE" not in {c["status"] for c in drill.truth().values()}
    _assert_paused_once_and_resumed_exactly(drill, before)


def _operator_token() -> str:
    user = get_user_model().objects.create_user("olga", is_staff=True, is_superuser=True)
    return api_token(user)


def _post(url: str, token: str, body: dict) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=120).read()
    except OSError:
        pass  # the server is killed under this request


def test_a_web_process_killed_in_the_middle_of_a_stop_is_finished_by_the_watchdog(drill: Drill, http_receiver) -> None:
    port = free_port()
    before = drill.truth()
    active = _active(before)
    token = _operator_token()
    drill.sandbox.faults(latency_ms=LATENCY_MS)
    env = {**drill.env, "ALERT_WEBHOOK_URL": http_receiver.url, "WATCHDOG_INTERVAL_SECONDS": "5"}
    web = subprocess.Popen(
        [*tower.web_command("127.0.0.1", port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(drill.folder / "web.log", "w"),
    )
    try:
        wait_for(lambda: _answers(port), timeout=30, message="gunicorn to answer")
        press = threading.Thread(
            target=_post,
            args=(
                f"http://127.0.0.1:{port}/meta/control-tower/emergency-stop",
                token,
                {"reason": "Budget spike: drill"},
            ),
        )
        press.start()
        wait_for(lambda: _mid_pause(drill, active), timeout=60, interval=0.05, message="the stop to be half-way")
        assert CampaignHold.objects.count() == len(active)  # written before the pauses...
        assert not CampaignHold.objects.filter(state=CampaignHold.State.PAUSED).exists()  # ...none confirmed yet
        os.killpg(web.pid, signal.SIGKILL)  # master and worker: nothing of the request survives
        web.wait()
        press.join()
    finally:
        if web.poll() is None:
            os.killpg(web.pid, signal.SIGKILL)
    stop = ControlTowerRun.objects.get(run_type=RunType.EMERGENCY_STOP)
    assert stop.state == RunState.RUNNING and TowerState.get().emergency_stop_active

    watchdog = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "watchdog"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(drill.folder / "watchdog.log", "w"),
    )
    try:
        closed = ControlTowerRun.objects.filter(pk=stop.pk, state=RunState.FAILED)
        wait_for(
            lambda: _halt_complete() and closed.exists(),
            timeout=120,
            interval=0.5,
            message="the watchdog to finish the halt and close the stop",
        )
        wait_for(
            lambda: any(r["json"].get("event") == "emergency_stop_interrupted" for r in http_receiver.received),
            timeout=30,
            message="the interrupted-stop alert",
        )
    finally:
        stop_process(watchdog)

    stop.refresh_from_db()
    # The ledger as it stood when the watchdog closed the stop (its first sweep may end at its deadline
    # with answers still on their way: a later sweep reads them back).
    ledger = re.search(r"Ledger now: (\d+) paused, (\d+) pending, 0 failed\.$", stop.message)
    assert stop.message.startswith("Interrupted") and ledger, stop.message
    assert int(ledger.group(1)) + int(ledger.group(2)) == len(active)
    _assert_paused_once_and_resumed_exactly(drill, before)


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2).read()
        return True
    except OSError:
        return False
