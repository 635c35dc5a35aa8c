#!/usr/bin/env python3
"""Drill: is the way to the button open under fire? (issue 14)

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres CELERY_BROKER_URL=redis://127.0.0.1:6379/7 \
        .venv/bin/python bench/web_drill.py [--seconds 25] [--slow 200] [--probes 2] [--gunicorn OPTION ...]

Starts the web process as `tower.py up` starts it (tower.web_command: gunicorn + uvicorn workers,
gunicorn.conf.py, 2 workers) on a fresh PostgreSQL database of its own, and the Meta sandbox as a
process of its own with every Graph call failing (fault `error_rate` 1.0: a stop retries until
its deadline, EMERGENCY_STOP_DEADLINE_SECONDS, 20 s by default). Then, in one run, measures
`GET /meta/control-tower/status` (API token) and the console's dashboard `GET /` (session) with
--probes sequential clients each, for at least --seconds per phase:

  rest   nothing else;
  a      two operators press stop at the same moment (POST emergency-stop, API);
  b      --slow connections send their request headers a byte every half second, never ending;
  c      a and b at once.

Reports per phase and endpoint p50/p99, failures (non-200, timeout 30 s, connection error) and
the ratio of p99 to p99 at rest; per stop the status code, whether it joined the other, and how
long it took to answer. The stops of c re-sweep the halt a left in force (the same work: list Meta,
retry to the deadline). Prints a JSON line per phase and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from common import ROOT, free_port, own_database, setup_django, tower_env

import tower  # the web process as tower.py up starts it (importable once common has set the path)

STATUS = "/meta/control-tower/status"
DASHBOARD = "/"
ANSWER_S = 30.0


def prepare(env: dict[str, str]) -> tuple[str, str]:
    """Migrate, sync modules, collect static files, one superuser. → (API token, session id)."""
    setup_django(env)
    from django.core.management import call_command

    call_command("collectstatic", "--no-input", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from controltower.models import ApiToken

    user = get_user_model().objects.create_user("drill", password=None, is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    token = ApiToken.issue(user, "bench", None, created_by="bench")[1]
    connection.close()
    return token, client.cookies["sessionid"].value


def request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None, timeout: float = ANSWER_S
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(port: int, headers: dict[str, str]) -> None:
    for _ in range(600):
        try:
            if request(port, "GET", STATUS, headers, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the web process did not answer")


class Probe(threading.Thread):
    """One client asking `path` again and again (a new connection each time, as a browser tab
    refreshing would), recording each latency and each failure."""

    def __init__(self, port: int, path: str, headers: dict[str, str], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.headers, self.stop = port, path, headers, stop
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                status, _ = request(self.port, "GET", self.path, self.headers)
                if status != 200:
                    self.failures.append(f"HTTP {status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(type(exc).__name__)
            self.latencies.append(time.perf_counter() - started)
            time.sleep(0.05)


class SlowHeaders:
    """`count` connections sending their headers a byte every half second, never finishing them."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.done = threading.Event()
        self.sockets: list[socket.socket] = []
        self.closed_by_server = 0

    def __enter__(self) -> SlowHeaders:
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(f"GET {STATUS} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
            self.sockets.append(sock)
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()
        return self

    def _trickle(self) -> None:
        while not self.done.wait(0.5):
            for sock in list(self.sockets):
                try:
                    sock.sendall(b"a")
                except OSError:
                    self.closed_by_server += 1
                    self.sockets.remove(sock)

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def press_stop(port: int, token: str, who: str, out: dict[str, Any]) -> None:
    started = time.perf_counter()
    try:
        status, body = request(
            port,
            "POST",
            "/meta/control-tower/emergency-stop",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            json.dumps({"reason": f"Drill: {who} pressed stop"}).encode(),
            timeout=120,
        )
        answer = json.loads(body)
        out[who] = {
            "status": status,
            "joined": answer.get("joined"),
            "run_id": answer.get("run_id"),
            "seconds": round(time.perf_counter() - started, 2),
        }
    except (OSError, http.client.HTTPException, ValueError) as exc:
        out[who] = {
            "status": None,
            "error": f"{type(exc).__name__}: {exc}",
            "seconds": round(time.perf_counter() - started, 2),
        }


def percentiles(latencies: list[float]) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


def phase(name: str, port: int, token: str, session: str, args: argparse.Namespace) -> dict[str, Any]:
    stop = threading.Event()
    probes = {
        path: [Probe(port, path, headers, stop) for _ in range(args.probes)]
        for path, headers in (
            (STATUS, {"Authorization": f"Bearer {token}"}),
            (DASHBOARD, {"Cookie": f"sessionid={session}"}),
        )
    }
    stops: dict[str, Any] = {}
    with ExitStack() as stack:
        slow = stack.enter_context(SlowHeaders(port, args.slow)) if name in ("b", "c") else None
        for probe in (p for group in probes.values() for p in group):
            probe.start()
        pressers = (
            [threading.Thread(target=press_stop, args=(port, token, who, stops)) for who in ("first", "second")]
            if name in ("a", "c")
            else []
        )
        for presser in pressers:
            presser.start()
        time.sleep(args.seconds)
        for presser in pressers:
            presser.join()
        stop.set()
        for probe in (p for group in probes.values() for p in group):
            probe.join()
        slow_closed = slow.closed_by_server if slow else None
    result: dict[str, Any] = {"phase": name}
    for path, group in probes.items():
        latencies = [x for p in group for x in p.latencies]
        failures = [x for p in group for x in p.failures]
        result[path] = {
            "requests": len(latencies),
            "failures": len(failures),
            "failure_kinds": sorted(set(failures)),
            **percentiles(latencies),
        }
    result["stops"] = stops
    if slow_closed is not None:
        result["slow_connections_closed_by_server"] = slow_closed
    return result


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "loadavg": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=25, help="each phase lasts at least this long")
    parser.add_argument("--slow", type=int, default=200, help="slow-header connections in phases b and c")
    parser.add_argument("--probes", type=int, default=2, help="sequential clients per endpoint")
    parser.add_argument(
        "--gunicorn",
        nargs=argparse.REMAINDER,
        default=[],
        help="further gunicorn options (must come last), e.g. the model before issue 14: "
        "--gunicorn --worker-class sync config.wsgi:application",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="web-drill-"))
    with ExitStack() as stack:
        database_url = stack.enter_context(own_database("web_drill"))
        sandbox_port, port = free_port(), free_port()
        env = tower_env(database_url, tmp, META_MODE="stub", META_GRAPH_URL=f"http://127.0.0.1:{sandbox_port}")
        token, session = prepare(env)
        child = {**os.environ, **env}
        processes = []
        stack.callback(lambda: [(p.send_signal(signal.SIGTERM), p.wait(timeout=30)) for p in processes])
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "manage.py"),
                    "meta_sandbox",
                    "--port",
                    str(sandbox_port),
                    "--store",
                    str(tmp / "sandbox.sqlite3"),
                ],
                cwd=ROOT,
                env=child,
                stdout=subprocess.DEVNULL,
                stderr=open(tmp / "sandbox.log", "w"),
            )
        )
        web_log = tmp / "web.log"
        processes.append(
            subprocess.Popen(
                [*tower.web_command("127.0.0.1", port), *args.gunicorn],
                cwd=ROOT,
                env=child,
                stdout=open(web_log, "w"),
                stderr=subprocess.STDOUT,
            )
        )
        wait_ready(port, {"Authorization": f"Bearer {token}"})
        for _ in range(100):
            try:
                request(
                    sandbox_port,
                    "POST",
                    "/_sandbox/faults",
                    {"Content-Type": "application/json"},
                    json.dumps({"error_rate": 1.0}).encode(),
                )
                break
            except OSError:
                time.sleep(0.1)
        static = request(port, "GET", "/static/controltower/console.css", {})[0]
        for _ in range(20):  # warm both workers' first requests (imports, templates) out of the figures at rest
            request(port, "GET", STATUS, {"Authorization": f"Bearer {token}"})
            request(port, "GET", DASHBOARD, {"Cookie": f"sessionid={session}"})
        results = [phase(name, port, token, session, args) for name in ("rest", "a", "b", "c")]
        for result in results:
            print(json.dumps(result), flush=True)
        access_logged = f"GET {STATUS}" in web_log.read_text()
    rest = results[0]
    print(
        json.dumps(
            {
                "machine": machine(),
                "gunicorn_options": args.gunicorn,
                "seconds": args.seconds,
                "slow": args.slow,
                "probes": args.probes,
                "static_file_status": static,
                "access_log_written": access_logged,
            }
        )
    )
    print(
        "\n| phase | status p50 / p99 (ms) | p99 ÷ rest | dashboard p50 / p99 (ms) | p99 ÷ rest | failures"
        " | stops (code, joined, s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for result in results:
        s, d = result[STATUS], result[DASHBOARD]
        stops = (
            "; ".join(
                f"{who}: {v.get('status')}{' joined' if v.get('joined') else ''} in {v['seconds']} s"
                for who, v in result["stops"].items()
            )
            or "—"
        )
        print(
            f"| {result['phase']} | {s['p50_ms']} / {s['p99_ms']} ({s['requests']} req) | "
            f"{s['p99_ms'] / rest[STATUS]['p99_ms']:.2f}x | {d['p50_ms']} / {d['p99_ms']} ({d['requests']} req) | "
            f"{d['p99_ms'] / rest[DASHBOARD]['p99_ms']:.2f}x | {s['failures'] + d['failures']} | {stops} |"
        )


if __name__ == "__main__":
    main()
