#!/usr/bin/env python3
"""Benchmark: the Meta sandbox's own cost per request at agency scale (issue 17, point 1).

    .venv/bin/python bench/sandbox_cost.py [--accounts 300 --campaigns-per-account 100 --paused 20 --archived 10]
                                           [--requests 200 --clients 32 --overlap 300]

1. Seeding: Store.reset of the agency seed in this process (timed), then the server's start with the
   same seed (`python -m meta_sandbox --reset ...`, its own process; spawn to its "listening" line).
2. With zero latency, per request type — an account's ACTIVE campaigns in one page of 100; the same
   list walked page by page with limit=25 and the `after` cursor; a batch of 50 pauses (each item a
   real change); a GET of one campaign — `--requests` requests sequentially on one keep-alive
   connection, then `--clients` concurrent keep-alive connections: wall time per request, throughput,
   and the server process's CPU seconds per request (utime + stime from /proc/<pid>/stat, so the
   client's own work is not counted).
3. A stop's shape under the issue's profile (100 ms per request + 20 ms per batch item, 1 ms per listed
   object), on a fresh seed: for every account one list of its ACTIVE campaigns (limit=100) and a batch
   of 50 pauses per 50 of them, over `--stop-clients` keep-alive connections: wall time, and the
   server's CPU seconds against that wall time (its share of a core while a stop runs).
4. Overlap: with latency_ms=1000, `--overlap` clients each open a connection and send one GET at once.
   A server that answered one request at a time would take `--overlap` seconds (the naive baseline);
   the sandbox's wall time, its peak of requests in flight and its thread count are printed.
Prints a table and writes bench/results/sandbox_cost.json. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from common import ROOT, save_results

from meta_sandbox.store import SeedConfig, Store

TOKEN = "bench-token"
LIST_FIELDS = "id,name,status,effective_status,updated_time"
TICK = os.sysconf("SC_CLK_TCK")
# The profile: 100 ms per request + 20 ms per batch item (+ the live profile's 1 ms per listed object).
PROFILE = {"latency_ms": 100.0, "per_item_ms": 20.0, "per_object_ms": 1.0}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class Client:
    """One keep-alive connection to the sandbox."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def call(self, method: str, path: str, params: dict[str, str] | None = None) -> Any:
        params = {"access_token": TOKEN, **(params or {})}
        if method == "GET":
            self.conn.request("GET", f"{path}?{urlencode(params)}")
        else:
            body = urlencode(params)
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            self.conn.request("POST", path, body=body, headers=headers)
        response = self.conn.getresponse()
        payload = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {payload}")
        return payload

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body) if body is not None else None
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        return json.loads(response.read())


Job = Callable[[Client], int]  # one unit of work; returns the HTTP requests it made


def list_page(account: str) -> Job:
    def job(client: Client) -> int:
        params = {"fields": LIST_FIELDS, "effective_status": '["ACTIVE"]', "limit": "100"}
        assert client.call("GET", f"/v25.0/{account}/campaigns", params)["data"]
        return 1

    return job


def list_walk(account: str) -> Job:
    def job(client: Client) -> int:
        params = {"fields": LIST_FIELDS, "effective_status": '["ACTIVE"]', "limit": "25"}
        requests = 0
        while True:
            page = client.call("GET", f"/v25.0/{account}/campaigns", params)
            requests += 1
            if "next" not in page.get("paging", {}):
                return requests
            params["after"] = page["paging"]["cursors"]["after"]

    return job


def pause_batch(campaign_ids: list[str]) -> Job:
    items = [{"method": "POST", "relative_url": f"{c}/", "body": "status=PAUSED"} for c in campaign_ids]

    def job(client: Client) -> int:
        results = client.call("POST", "/v25.0/", {"batch": json.dumps(items)})
        assert all(item["code"] == 200 for item in results), results
        return 1

    return job


def get_campaign(campaign_id: str) -> Job:
    def job(client: Client) -> int:
        client.call("GET", f"/v25.0/{campaign_id}", {"fields": LIST_FIELDS})
        return 1

    return job


def run_jobs(url: str, pid: int, jobs: list[Job], clients: int) -> dict[str, float]:
    """The jobs over `clients` keep-alive connections (round robin): wall, requests, server CPU."""
    connections = [Client(url) for _ in range(clients)]
    for conn in connections:
        conn.call("GET", "/v25.0/me")  # connect outside the measurement
    shares = [jobs[i::clients] for i in range(clients)]
    counts = [0] * clients
    start = threading.Barrier(clients + 1)

    def work(i: int) -> None:
        start.wait()
        for job in shares[i]:
            counts[i] += job(connections[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    cpu0 = cpu_seconds(pid)
    started = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu0
    requests = sum(counts)
    return {
        "clients": clients,
        "requests": requests,
        "wall_s": round(wall, 3),
        "wall_ms_per_request": round(wall / requests * 1000 * clients, 2),
        "requests_per_s": round(requests / wall, 1),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_ms_per_request": round(cpu / requests * 1000, 2),
    }


def start_server(args: argparse.Namespace, store: Path) -> tuple[subprocess.Popen[str], str, float]:
    command = [
        sys.executable,
        "-m",
        "meta_sandbox",
        "--port",
        "0",
        "--store",
        str(store),
        "--reset",
        "--accounts",
        str(args.accounts),
        "--campaigns-per-account",
        str(args.campaigns_per_account),
        "--paused-per-account",
        str(args.paused),
        "--archived-per-account",
        str(args.archived),
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        raise RuntimeError(f"the sandbox did not start: {line!r}")
    return proc, line.split("listening on ")[1].split()[0], time.perf_counter() - started


def stop_shape(url: str, pid: int, clients: int) -> dict[str, Any]:
    """Every account listed once and every ACTIVE campaign paused in batches of 50, under PROFILE."""
    control = Client(url)
    control.control("POST", "/_sandbox/reset", control.control("GET", "/_sandbox/state")["seed"])
    rows = control.control("GET", "/_sandbox/campaigns?status=ACTIVE")["data"]
    by_account: dict[str, list[str]] = {}
    for row in rows:
        by_account.setdefault(row["account_id"], []).append(row["id"])
    control.control("POST", "/_sandbox/faults", PROFILE)

    def account_job(account: str, ids: list[str]) -> Job:
        def job(client: Client) -> int:
            requests = list_page(f"act_{account}")(client)
            for i in range(0, len(ids), 50):
                requests += pause_batch(ids[i : i + 50])(client)
            return requests

        return job

    measured = run_jobs(url, pid, [account_job(a, ids) for a, ids in by_account.items()], clients)
    control.control("POST", "/_sandbox/faults", {})
    left = control.control("GET", "/_sandbox/campaigns?status=ACTIVE")["data"]
    return {
        **measured,
        "accounts": len(by_account),
        "campaigns_paused": len(rows) - len(left),
        "server_cores_busy": round(measured["server_cpu_s"] / measured["wall_s"], 2),
    }


def overlap(url: str, pid: int, clients: int) -> dict[str, Any]:
    """`clients` connections, one GET each, with 1 s of latency per request."""
    control = Client(url)
    control.control("POST", "/_sandbox/faults", {"latency_ms": 1000})
    connections = [Client(url) for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def work(conn: Client) -> None:
        start.wait()
        try:
            conn.call("GET", "/v25.0/me")
        except (OSError, RuntimeError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in connections]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    start.wait()
    time.sleep(0.5)
    threads_mid = proc_status(pid, "Threads")
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    state = control.control("GET", "/_sandbox/state")
    control.control("POST", "/_sandbox/faults", {})
    return {
        "clients": clients,
        "latency_ms": 1000,
        "wall_s": round(wall, 3),
        "serialized_baseline_s": clients * 1.0,
        "errors": len(errors),
        "peak_in_flight": state["load"]["peak_in_flight"],
        "server_threads_mid_request": threads_mid,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--campaigns-per-account", type=int, default=100, help="ACTIVE campaigns per account")
    parser.add_argument("--paused", type=int, default=20, help="PAUSED campaigns per account")
    parser.add_argument("--archived", type=int, default=10, help="ARCHIVED campaigns per account")
    parser.add_argument("--requests", type=int, default=200, help="requests per type and phase")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--stop-clients", type=int, default=64, help="connections of the stop-shaped run")
    parser.add_argument("--overlap", type=int, default=300, help="concurrent connections of the overlap check")
    args = parser.parse_args()

    seed = SeedConfig(
        accounts=args.accounts,
        statuses={"ACTIVE": args.campaigns_per_account, "PAUSED": args.paused, "ARCHIVED": args.archived},
    )
    results: dict[str, Any] = {
        "machine": f"{platform.node()}, {os.cpu_count()} cores, {_cpu_model()}, CPython {platform.python_version()}",
        "seed": seed.to_json(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        started = time.perf_counter()
        Store(Path(tmp) / "seed.sqlite3").reset(seed)
        results["seed_s_in_process"] = round(time.perf_counter() - started, 2)
        proc, url, start_s = start_server(args, Path(tmp) / "served.sqlite3")
        results["server_start_with_seed_s"] = round(start_s, 2)
        try:
            results.update(measure(args, url, proc.pid))
            results["server_max_rss_mb"] = round(proc_status(proc.pid, "VmHWM") / 1024, 1)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    report(results)
    out = save_results("sandbox_cost.json", results)
    print(f"\nwritten to {out.relative_to(ROOT)}")


def measure(args: argparse.Namespace, url: str, pid: int) -> dict[str, Any]:
    control = Client(url)
    rows = control.control("GET", "/_sandbox/campaigns?status=ACTIVE")["data"]
    accounts = sorted({row["account_id"] for row in rows})
    by_account: dict[str, list[str]] = {a: [] for a in accounts}
    for row in rows:
        by_account[row["account_id"]].append(row["id"])
    # Distinct chunks of 50 ACTIVE campaigns: every pause is a real change, none a no-op.
    chunks = [ids[i : i + 50] for ids in by_account.values() for i in range(0, len(ids) - 49, 50)]
    n, c = args.requests, args.clients
    account = [f"act_{accounts[i % len(accounts)]}" for i in range(2 * n)]
    if len(chunks) < 2 * n:
        raise SystemExit(f"{len(chunks)} chunks of 50 ACTIVE campaigns; --requests {n} needs {2 * n}")
    types: dict[str, tuple[list[Job], list[Job], dict[str, float]]] = {
        "list ACTIVE, limit=100 (1 page)": (
            [list_page(a) for a in account[:n]],
            [list_page(a) for a in account[n:]],
            {"objects": args.campaigns_per_account - 1},  # the seed's first ACTIVE campaign reads WITH_ISSUES
        ),
        "list ACTIVE, limit=25 walked with after": (
            [list_walk(a) for a in account[: n // 4]],
            [list_walk(a) for a in account[n : n + n // 4]],
            {"objects": 25},
        ),
        "batch of 50 pauses": (
            [pause_batch(chunk) for chunk in chunks[:n]],
            [pause_batch(chunk) for chunk in chunks[n : 2 * n]],
            {"items": 50},
        ),
        "GET one campaign": (
            [get_campaign(rows[i * 97 % len(rows)]["id"]) for i in range(n)],
            [get_campaign(rows[i * 89 % len(rows)]["id"]) for i in range(n)],
            {},
        ),
    }
    measured: dict[str, Any] = {}
    for name, (sequential, concurrent, shape) in types.items():
        seq = run_jobs(url, pid, sequential, 1)
        par = run_jobs(url, pid, concurrent, c)
        profile_ms = (
            PROFILE["latency_ms"]
            + PROFILE["per_item_ms"] * shape.get("items", 0)
            + PROFILE["per_object_ms"] * shape.get("objects", 0)
        )
        measured[name] = {"sequential": seq, "concurrent": par, "profile_wall_ms": profile_ms}
    state = control.control("GET", "/_sandbox/state")
    return {
        "types": measured,
        "counters": state["counters"],
        "stop_shape": stop_shape(url, pid, args.stop_clients),
        "overlap": overlap(url, pid, args.overlap),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def report(results: dict[str, Any]) -> None:
    print(results["machine"])
    print(
        f"seed {results['seed']['accounts']} accounts x {results['seed']['statuses']}: "
        f"{results['seed_s_in_process']} s in process; "
        f"server start with that seed {results['server_start_with_seed_s']} s"
    )
    clients = next(iter(results["types"].values()))["concurrent"]["clients"]
    print(
        f"| request | seq ms/req | seq server CPU ms/req | {clients} clients req/s | {clients} clients CPU ms/req "
        "| profile ms | CPU share |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, row in results["types"].items():
        seq, par = row["sequential"], row["concurrent"]
        share = par["server_cpu_ms_per_request"] / row["profile_wall_ms"] * 100
        print(
            f"| {name} | {seq['wall_ms_per_request']} | {seq['server_cpu_ms_per_request']} | "
            f"{par['requests_per_s']} | {par['server_cpu_ms_per_request']} | {row['profile_wall_ms']:g} "
            f"| {share:.1f} % |"
        )
    s = results["stop_shape"]
    print(
        f"stop shape under {PROFILE}: {s['accounts']} accounts, {s['campaigns_paused']} campaigns paused in "
        f"{s['requests']} requests over {s['clients']} connections: {s['wall_s']} s; server CPU {s['server_cpu_s']} s "
        f"({s['server_cpu_ms_per_request']} ms/request, {s['server_cores_busy']} of a core)"
    )
    o = results["overlap"]
    print(
        f"overlap: {o['clients']} connections x 1 request of {o['latency_ms']} ms: {o['wall_s']} s "
        f"(serialized: {o['serialized_baseline_s']:g} s), peak in flight {o['peak_in_flight']}, "
        f"server threads {o['server_threads_mid_request']}, errors {o['errors']}"
    )
    print(f"server peak RSS {results['server_max_rss_mb']} MB; counters {results['counters']}")


if __name__ == "__main__":
    main()
