"""The way to the button stays open: the real web process, started as `tower.py up` starts it
(tower.web_command + gunicorn.conf.py), keeps answering `GET status`, the console and the stop
while hundreds of clients hold connections open sending nothing or their headers a byte at a
time, and while two operators press stop against a Meta that fails every call.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

import tower
from controltower.models import ControlTowerRun, RunState, RunType
from tests.support import ROOT, api_token, child_env, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("synced")]

IDLE = 100  # connections that send nothing
SLOW = 100  # connections that send their headers a byte every half second
DEADLINE = 8  # the stops' in-request deadline (s): long enough to overlap everything below
ANSWER = 30  # client timeout (s): an answer after this is no answer


@dataclass
class Web:
    url: str
    token: str
    session: str
    log: Path

    def get(self, path: str, session: bool = False) -> int:
        headers = {"Cookie": f"sessionid={self.session}"} if session else {"Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=ANSWER) as response:
            response.read()
            return response.status

    def stop(self, reason: str) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url + "/meta/control-tower/emergency-stop",
            method="POST",
            data=json.dumps({"reason": reason}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def web(meta_sandbox, tmp_path: Path) -> Iterator[Web]:
    user = User.objects.create_user("olga", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    port = free_port()
    log = tmp_path / "web.log"
    env = child_env(META_GRAPH_URL=meta_sandbox.url, EMERGENCY_STOP_DEADLINE_SECONDS=str(DEADLINE))
    env.pop("WEB_CONCURRENCY", None)  # the documented default
    proc = subprocess.Popen(
        tower.web_command("127.0.0.1", port),
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    server = Web(f"http://127.0.0.1:{port}", api_token(user), client.cookies["sessionid"].value, log)
    try:
        wait_for(lambda: _answers(server), timeout=60, message="the web process to answer")
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _answers(web: Web) -> bool:
    try:
        return web.get("/meta/control-tower/status") == 200
    except OSError:
        return False


@dataclass
class Attackers:
    """IDLE connections that send nothing and SLOW ones that never finish their headers."""

    address: tuple[str, int]
    sockets: list[socket.socket] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Attackers:
        for _ in range(IDLE + SLOW):
            self.sockets.append(socket.create_connection(self.address, timeout=5))
        slow = self.sockets[IDLE:]
        for sock in slow:
            sock.sendall(b"GET /meta/control-tower/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        self.trickle = threading.Thread(target=self._trickle, args=(slow,), daemon=True)
        self.trickle.start()
        return self

    def _trickle(self, slow: list[socket.socket]) -> None:
        while not self.done.wait(0.5):
            for sock in slow:
                try:
                    sock.sendall(b"a")
                except OSError:
                    pass  # the server may close a slow client: that is allowed

    def still_open(self) -> int:
        """How many of the connections the server has not closed (nothing arrives on an open one)."""
        count = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                count += sock.recv(1) != b""
            except BlockingIOError:
                count += 1
            except OSError:
                pass
        return count

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.trickle.join()
        for sock in self.sockets:
            sock.close()


def test_hundreds_of_idle_and_slow_header_connections_do_not_take_the_console_or_the_stop_offline(web: Web) -> None:
    with Attackers(("127.0.0.1", int(web.url.rsplit(":", 1)[1]))) as attackers:
        time.sleep(2)  # the slow ones have sent a few bytes more: they are mid-headers, not yet idle
        assert web.get("/meta/control-tower/status") == 200
        assert web.get("/", session=True) == 200  # the console's dashboard
        assert web.get("/emergency-stop/", session=True) == 200
        status, stop = web.stop("Budget spike: under a slowloris")
        # The attack was still on: nothing was served by closing the attackers' connections.
        assert attackers.still_open() == IDLE + SLOW

    assert status == 200 and stop["success"] and not stop["joined"], stop
    run = ControlTowerRun.objects.get(pk=stop["run_id"])
    assert run.state == RunState.COMPLETED and run.executed_by == "olga"
    assert stop["progress_url"] == f"/stops/{run.pk}/"
    assert "GET /meta/control-tower/status" in web.log.read_text()  # the access log is still written


def test_two_stops_against_a_failing_meta_never_block_status_and_the_second_joins_the_first(
    web: Web, meta_sandbox
) -> None:
    meta_sandbox.faults(error_rate=1.0)  # every Graph call fails transiently: the first stop retries to its deadline
    answers: dict[str, tuple[int, dict]] = {}

    def press(who: str) -> None:
        answers[who] = web.stop(f"Budget spike: {who} pressed")

    first = threading.Thread(target=press, args=("first",))
    first.start()
    running = ControlTowerRun.objects.filter(run_type=RunType.EMERGENCY_STOP, state=RunState.RUNNING)
    wait_for(running.exists, timeout=30, interval=0.05, message="the first stop to be running")
    second = threading.Thread(target=press, args=("second",))
    second.start()
    statuses = []
    while first.is_alive() and len(statuses) < 5:
        statuses.append((web.get("/meta/control-tower/status"), web.get("/", session=True), first.is_alive()))
    second.join(ANSWER)
    second_answered_during_first = first.is_alive()
    first.join(120)

    assert statuses and statuses[0] == (200, 200, True), statuses  # answered while the first stop ran
    assert {s[:2] for s in statuses} == {(200, 200)}
    assert second_answered_during_first  # joined at once, not after sweeping again
    code, joined = answers["second"]
    stop_run = ControlTowerRun.objects.get(pk=answers["first"][1]["run_id"])
    assert code == 202 and joined["joined"] and joined["run_id"] == str(stop_run.pk), joined
    assert joined["progress_url"] == f"/stops/{stop_run.pk}/"
    # The joining press is recorded: who, when, why, and which stop it joined.
    join = ControlTowerRun.objects.get(run_type=RunType.EMERGENCY_STOP, reason="Budget spike: second pressed")
    assert join.state == RunState.COMPLETED and join.executed_by == "olga"
    assert join.actions_executed == [{"action": "joined", "run_id": str(stop_run.pk)}]
    first_code, first_answer = answers["first"]
    assert first_code == 200 and not first_answer["joined"] and first_answer["errors"]  # Meta failed throughout


def test_the_web_process_keeps_no_database_connection_past_a_request() -> None:
    # Each ASGI request runs in a thread of its own: a kept connection could never be used again.
    probe = "import config.asgi; from django.db import connection; print(connection.settings_dict['CONN_MAX_AGE'])"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "x" * 50,
        "DATABASE_URL": "postgres://tower@127.0.0.1:5432/tower",
        "DB_CONN_MAX_AGE": "60",
    }
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
