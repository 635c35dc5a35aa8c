"""Latency profiles: per request, per batch item and per listed object, as faults and on the command line.

Only lower bounds on time are asserted (a sleep cannot be shorter than asked); never upper bounds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from meta_sandbox.cli import add_arguments, start_faults
from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import TOKEN, graph_batch, graph_get

ACT = "act_1000000001"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=1, statuses={"ACTIVE": 100}, delivery_issues=[]) as running:
        yield running


def timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def parse(*argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m meta_sandbox")
    add_arguments(parser)
    return vars(parser.parse_args(argv))


def test_a_listing_waits_for_every_object_it_returns(sandbox: RunningSandbox) -> None:
    sandbox.faults(per_object_ms=10)
    page, seconds = timed(lambda: graph_get(sandbox, f"{ACT}/campaigns", limit=100, effective_status='["ACTIVE"]'))
    assert len(page.json()["data"]) == 100
    assert seconds >= 1.0  # 100 objects x 10 ms


def test_a_listing_inside_a_batch_waits_per_object_too(sandbox: RunningSandbox) -> None:
    sandbox.faults(per_object_ms=10)
    items = [{"method": "GET", "relative_url": f"{ACT}/campaigns?limit=60"}]
    answer, seconds = timed(lambda: graph_batch(sandbox, items))
    assert len(json.loads(answer.json()[0]["body"])["data"]) == 60
    assert seconds >= 0.6


def test_per_item_latency_adds_up_over_a_batch(sandbox: RunningSandbox) -> None:
    sandbox.faults(per_item_ms=20)
    ids = [c["id"] for c in sandbox.campaigns(account=ACT)][:50]
    items = [{"method": "POST", "relative_url": f"{c}/", "body": "status=PAUSED"} for c in ids]
    answer, seconds = timed(lambda: graph_batch(sandbox, items))
    assert [item["code"] for item in answer.json()] == [200] * 50
    assert seconds >= 1.0  # 50 items x 20 ms


def test_the_live_profile_presets_all_three_and_explicit_fields_win(sandbox: RunningSandbox) -> None:
    live = sandbox.faults(latency_profile="live")
    assert (live["latency_profile"], live["latency_ms"], live["per_item_ms"], live["per_object_ms"]) == (
        "live",
        100.0,
        20.0,
        1.0,
    )
    mixed = sandbox.faults(latency_profile="harsh", per_item_ms=5)
    assert (mixed["latency_ms"], mixed["per_item_ms"], mixed["per_object_ms"]) == (250.0, 5.0, 3.0)
    _, seconds = timed(lambda: graph_get(sandbox, "me"))
    assert seconds >= 0.25


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"per_object_ms": -1}, "per_object_ms"),
        ({"per_object_ms": "10"}, "per_object_ms"),
        ({"per_item_ms": 600_001}, "per_item_ms"),
        ({"latency_profile": "fast"}, "latency_profile"),
        ({"latency_profile": None}, "latency_profile"),
    ],
)
def test_bad_latency_values_get_400_naming_the_field(sandbox: RunningSandbox, body: dict[str, Any], field: str) -> None:
    answer = requests.post(f"{sandbox.url}/_sandbox/faults", json=body, timeout=10)
    assert answer.status_code == 400
    assert field in answer.json()["error"]["message"]
    assert sandbox.state()["faults"]["per_object_ms"] == 0.0  # the configuration is unchanged


def test_faults_given_at_start_are_in_force_and_come_back_on_reset() -> None:
    with start_sandbox(faults={"latency_profile": "live"}, accounts=1, campaigns_per_account=2) as sandbox:
        assert sandbox.state()["faults"]["latency_ms"] == 100.0
        _, seconds = timed(lambda: graph_get(sandbox, "me"))
        assert seconds >= 0.1
        assert sandbox.faults()["latency_ms"] == 0.0  # a faults body still replaces them
        assert sandbox.reset(accounts=1, campaigns_per_account=2)["faults"]["per_item_ms"] == 20.0


def test_a_bad_start_profile_is_refused_before_serving() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        start_sandbox(faults={"latency_ms": -5}, accounts=1)


def test_the_command_line_takes_a_profile_and_overrides() -> None:
    assert start_faults(parse()) == {}
    assert start_faults(parse("--latency-profile", "live")) == {"latency_profile": "live"}
    assert start_faults(parse("--latency-ms", "100", "--per-item-ms", "20", "--per-object-ms", "1")) == {
        "latency_ms": 100.0,
        "per_item_ms": 20.0,
        "per_object_ms": 1.0,
    }
    assert start_faults(parse("--latency-profile", "harsh", "--per-object-ms", "0")) == {
        "latency_profile": "harsh",
        "per_object_ms": 0.0,
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--latency-ms", "-1"), "argument --latency-ms: must be a number of milliseconds"),
        (("--per-object-ms", "many"), "argument --per-object-ms: must be a number of milliseconds"),
        (("--per-item-ms", "nan"), "argument --per-item-ms: must be a number of milliseconds"),
        (("--latency-profile", "fast"), "argument --latency-profile: invalid choice"),
    ],
)
def test_the_command_line_rejects_bad_latency_with_a_clear_error(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_hundreds_of_connections_wait_out_their_latency_at_the_same_time() -> None:
    clients = 300
    with start_sandbox(faults={"latency_ms": 4000}, accounts=1, campaigns_per_account=1) as sandbox:
        host, port = sandbox.server.server_address[:2]
        statuses: list[int] = []
        start = threading.Barrier(clients)

        def call() -> None:
            conn = http.client.HTTPConnection(host, port, timeout=60)
            start.wait()
            conn.request("GET", f"/v25.0/me?access_token={TOKEN}")
            statuses.append(conn.getresponse().status)
            conn.close()

        threads = [threading.Thread(target=call) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * clients
        # One at a time, the peak would be 1; every request sleeps 4 s, so they all overlap.
        assert sandbox.state()["load"]["peak_in_flight"] >= clients * 0.9
