#!/usr/bin/env python3
"""Benchmark: GET /meta/control-tower/status (and /health) under 50 concurrent clients via gunicorn.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/status_load.py \
        [--clients 50] [--seconds 20] [--workers 2] [--in-process 2000] [--gunicorn OPTION ...]

With a postgres:// DATABASE_URL the script creates its own database (bench_status_<pid>) on that
server and drops it at the end; without one it uses a SQLite file in a temporary TOWER_VAR_DIR.
It prepares the database (migrate, sync_modules, a staff user with a DRF token, one completed
health-check ControlTowerRun as a cycle would have written it), starts
the web process as `tower.py up` starts it (tower.web_command, `--workers 2`) on a free loopback
port (DEBUG=0), then drives
--clients concurrent keep-alive clients for --seconds against each endpoint with wrk when it is
installed (a Lua script reports p50/p95/p99 and non-2xx), else with Python threads + http.client.
Reports requests/s, latency percentiles, errors, and the peak RSS (VmHWM) of each gunicorn worker.
The load generator and the server share the machine's cores, so each load run also says where the
machine's CPU went per request: the gunicorn workers, the PostgreSQL backends of our database, wrk,
and the whole machine (the rest is other load), from /proc. Before gunicorn starts, --in-process N
requests per endpoint go through config.wsgi.application in this process (no network, no load
generator): CPU and wall time per request (the least disturbed of 10 rounds) and the SQL queries,
the service time that bounds what 2 workers can serve. Writes bench/results/status_load.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    database_name,
    free_port,
    machine,
    own_database,
    postgres_server,
    save_results,
    setup_django,
    tower_env,
)

import tower  # the web process as tower.py up starts it (importable once common has set the path)

ENDPOINTS = ("/meta/control-tower/status", "/meta/control-tower/health")
WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
    .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, '
    .. '"max_us": %d}\\n', summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, latency:percentile(50),
    latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def prepare(env: dict[str, str]) -> str:
    """Migrate, sync modules, one staff user with a token, one completed health check. → token."""
    setup_django(env)
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from controltower.models import ApiToken, ControlTowerRun
    from meta_modules.models import MetaModule

    user = get_user_model().objects.create_user("bench", password=None, is_staff=True)
    token = ApiToken.issue(user, "bench", None, created_by="bench")[1]
    codes = list(MetaModule.objects.values_list("code", flat=True))
    ControlTowerRun.objects.create(
        run_type="health_check",
        state="completed",
        system_status="healthy",
        total_modules_checked=len(codes),
        online_modules=len(codes),
        module_health_details=dict.fromkeys(codes, "online"),
        executed_by="bench",
        mode=settings.META_MODE,
    )
    from django.db import connection

    connection.close()
    return token


def wait_ready(port: int, token: str) -> None:
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", ENDPOINTS[0], headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                return
            raise SystemExit(f"status answered {response.status}: {body[:300]!r}")
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gunicorn did not answer")


def load_wrk(port: int, path: str, token: str, clients: int, seconds: int, tmp: Path) -> dict[str, Any]:
    script = tmp / "report.lua"
    script.write_text(WRK_LUA)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(clients),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-H",
            f"Authorization: Bearer {token}",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    raw = json.loads(out.strip().splitlines()[-1])
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return {
        "tool": "wrk -t2",
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
        "error_detail": {k: v for k, v in raw.items() if k.endswith(("errors", "timeouts"))},
    }


def load_threads(port: int, path: str, token: str, clients: int, seconds: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                ok = False
            mine.append(time.perf_counter() - started)
            if not ok:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return {
        "tool": "python threads + http.client",
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p95_ms": round(q[94] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "errors": errors[0],
    }


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (/proc/<pid>/stat), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK"), sum(values) / os.sysconf("SC_CLK_TCK")


def database_backends(name: str | None) -> list[int]:
    """The PostgreSQL server processes serving our database (its cmdline names it)."""
    if name is None:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if name.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def in_process(path: str, token: str, count: int) -> dict[str, Any]:
    """The request through config.wsgi.application in this process, as gunicorn calls it: no
    network, no load generator, so per-request CPU and queries are comparable across runs."""
    import io

    from django.db import connection

    from config.wsgi import application

    def call() -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": f"Bearer {token}",
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        statuses: list[str] = []
        response = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(response)
        response.close()
        assert statuses[0].startswith("200"), statuses

    for _ in range(count // 10):
        call()
    queries: list[str] = []  # not CaptureQueriesContext: every request starts by resetting its log

    def record(execute: Any, sql: str, *args: Any) -> Any:
        queries.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(record):
        call()
    rounds, per_round = [], max(1, count // 10)
    for _ in range(10):  # the minimum of 10 rounds: the least disturbed by other load on the machine
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(per_round):
            call()
        rounds.append(((time.process_time() - cpu) / per_round, (time.perf_counter() - wall) / per_round))
    connection.close()
    return {
        "requests": per_round * 10,
        "queries": len(queries),
        "cpu_ms_min_round": round(min(r[0] for r in rounds) * 1000, 3),
        "cpu_ms_median_round": round(statistics.median(r[0] for r in rounds) * 1000, 3),
        "wall_ms_min_round": round(min(r[1] for r in rounds) * 1000, 3),
    }


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def vm_hwm_mb(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-client", action="store_true", help="use Python threads even if wrk exists")
    parser.add_argument(
        "--gunicorn",
        nargs=argparse.REMAINDER,
        default=[],
        help="further gunicorn options, e.g. --gunicorn --threads 4 (must come last)",
    )
    parser.add_argument(
        "--in-process",
        type=int,
        default=2000,
        metavar="N",
        help="first N requests per endpoint through the WSGI app in this process (0: skip)",
    )
    args = parser.parse_args()

    loadavg_at_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-status-"))
    databases = contextlib.ExitStack()
    if postgres_server():
        database_url = databases.enter_context(own_database("bench_status"))
        name: str | None = database_name(database_url)
    else:
        name, database_url = None, f"sqlite:///{tmp / 'db.sqlite3'}"
    env = tower_env(database_url, tmp)
    gunicorn = None
    results: dict[str, Any] = {}
    try:
        token = prepare(env)
        service = {path: in_process(path, token, args.in_process) for path in ENDPOINTS} if args.in_process else {}
        for path, figures in service.items():
            print(path, "in-process", json.dumps(figures), flush=True)
        port = free_port()
        gunicorn = subprocess.Popen(
            [*tower.web_command("127.0.0.1", port), "--workers", str(args.workers), *args.gunicorn],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "gunicorn.log", "w"),
        )
        wait_ready(port, token)
        use_wrk = shutil.which("wrk") and not args.threads_client
        runs = {}
        workers = worker_pids(gunicorn.pid)
        for path in ENDPOINTS:
            backends = database_backends(name)
            before = (
                cpu_seconds(workers),
                cpu_seconds(backends),
                resource.getrusage(resource.RUSAGE_CHILDREN),
                machine_busy(),
            )
            runs[path] = (
                load_wrk(port, path, token, args.clients, args.seconds, tmp)
                if use_wrk
                else load_threads(port, path, token, args.clients, args.seconds)
            )
            after = (
                cpu_seconds(workers),
                cpu_seconds(database_backends(name)),
                resource.getrusage(resource.RUSAGE_CHILDREN),
                machine_busy(),
            )
            done = runs[path]["requests"]
            loader = (
                (after[2].ru_utime + after[2].ru_stime - before[2].ru_utime - before[2].ru_stime) if use_wrk else None
            )
            busy, total = after[3][0] - before[3][0], after[3][1] - before[3][1]
            # Where the machine's CPU went, per request: ours (workers, database, wrk) and everything else.
            runs[path]["cpu_ms_per_request"] = {
                "gunicorn_workers": round((after[0] - before[0]) / done * 1000, 3),
                "database_backends": round((after[1] - before[1]) / done * 1000, 3) if name else None,
                "wrk": round(loader / done * 1000, 3) if loader is not None else None,
                "whole_machine": round(busy / done * 1000, 3),
            }
            runs[path]["machine_busy_pct"] = round(busy / total * 100, 1)
            runs[path]["loadavg_after"] = os.getloadavg()
            print(path, json.dumps(runs[path]), flush=True)
        rss = {pid: vm_hwm_mb(pid) for pid in worker_pids(gunicorn.pid)}
        results = {
            "machine": machine(),
            "database": "postgresql" if name else "sqlite",
            "gunicorn_workers": args.workers,
            "gunicorn_options": args.gunicorn,
            "clients": args.clients,
            "seconds_per_endpoint": args.seconds,
            "note": "load generator and server share the same cores (loopback)",
            "loadavg_at_start": loadavg_at_start,
            "in_process": service,
            "endpoints": runs,
            "worker_peak_rss_mb": list(rss.values()),
        }
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(timeout=30)
        databases.close()

    print(json.dumps(results, indent=2))
    save_results("status_load.json", results)


if __name__ == "__main__":
    main()
