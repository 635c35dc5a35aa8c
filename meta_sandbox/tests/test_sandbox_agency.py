"""An agency-sized seed: hundreds of ad accounts, exact ACTIVE / PAUSED / ARCHIVED counts per account,
and listing, paging and batch writes that stay exact at that scale."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import pytest

from meta_sandbox.cli import add_arguments, seed_config
from meta_sandbox.store import SeedConfig
from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import graph_batch, graph_get

COUNTS = {"ACTIVE": 40, "PAUSED": 8, "ARCHIVED": 4}


@pytest.fixture(scope="module")
def agency() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=50, statuses=COUNTS, delivery_issues=[]) as running:
        yield running


def parse(*argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m meta_sandbox")
    add_arguments(parser)
    return vars(parser.parse_args(argv))


def walk(sandbox: RunningSandbox, account: str, **params: Any) -> tuple[list[str], int]:
    """Every id an edge lists, following the `after` cursor; and the number of pages."""
    ids: list[str] = []
    pages = 0
    while True:
        page = graph_get(sandbox, f"{account}/campaigns", fields="id,account_id", **params).json()
        pages += 1
        assert all(row["account_id"] == account[4:] for row in page["data"])
        ids += [row["id"] for row in page["data"]]
        if "next" not in page.get("paging", {}):
            return ids, pages
        params["after"] = page["paging"]["cursors"]["after"]


def test_every_account_gets_the_exact_counts_per_status(agency: RunningSandbox) -> None:
    accounts = agency.state()["accounts"]
    assert len(accounts) == 50
    assert [a["id"] for a in accounts][-1] == "act_1000000050"
    assert all(a["campaigns"] == {**COUNTS, "DELETED": 0} for a in accounts)


def test_paging_an_account_lists_exactly_its_active_campaigns_once(agency: RunningSandbox) -> None:
    for account in ("act_1000000001", "act_1000000025", "act_1000000050"):
        truth = [c["id"] for c in agency.campaigns(account=account, status="ACTIVE")]
        ids, pages = walk(agency, account, effective_status='["ACTIVE"]', limit=7)
        assert ids == sorted(truth, key=int) and len(ids) == 40
        assert pages == 6  # 7 x 5 + 5
        paused, _ = walk(agency, account, effective_status='["PAUSED"]', limit=100)
        assert len(paused) == 8
        unfiltered, _ = walk(agency, account, limit=25)
        assert len(unfiltered) == 48  # ARCHIVED is hidden unless asked for
        summary = graph_get(agency, f"{account}/campaigns", effective_status='["ACTIVE"]', summary="true", limit=1)
        assert summary.json()["summary"] == {"total_count": 40}


def test_a_batch_of_pauses_changes_only_the_campaigns_it_names() -> None:
    with start_sandbox(accounts=50, statuses=COUNTS, delivery_issues=[]) as sandbox:
        targets = [c["id"] for c in sandbox.campaigns(account="act_1000000050", status="ACTIVE")][:40]
        items = [{"method": "POST", "relative_url": f"{c}/", "body": "status=PAUSED"} for c in targets]
        assert [item["code"] for item in graph_batch(sandbox, items[:30]).json()] == [200] * 30
        assert [item["code"] for item in graph_batch(sandbox, items[30:]).json()] == [200] * 10
        assert sandbox.campaigns(account="act_1000000050", status="ACTIVE") == []
        assert len(sandbox.campaigns(account="act_1000000050", status="PAUSED")) == 48
        counts = {a["id"]: a["campaigns"]["ACTIVE"] for a in sandbox.state()["accounts"]}
        assert counts.pop("act_1000000050") == 0 and set(counts.values()) == {40}
        read_back = graph_get(sandbox, targets[0], fields="status,effective_status").json()
        assert (read_back["status"], read_back["effective_status"]) == ("PAUSED", "PAUSED")
        assert (
            json.loads(graph_batch(sandbox, [{"relative_url": f"{targets[0]}?fields=status"}]).json()[0]["body"])[
                "status"
            ]
            == "PAUSED"
        )


def test_hundreds_of_accounts_are_accepted_and_the_bound_is_clear() -> None:
    with start_sandbox(accounts=1, campaigns_per_account=1) as sandbox:
        state = sandbox.reset(accounts=300, campaigns_per_account=1, adsets_per_campaign=0)
        assert len(state["accounts"]) == 300
        assert state["accounts"][-1]["id"] == "act_1000000300"
        with pytest.raises(ValueError, match=r"accounts must be an integer in \[1, 1000\]"):
            sandbox.reset(accounts=1001)


def test_the_command_line_seeds_exact_counts_and_keeps_the_default_seed() -> None:
    assert seed_config(parse()) == SeedConfig()  # the small seed the other tests rely on
    agency = seed_config(
        parse(
            "--accounts",
            "300",
            "--campaigns-per-account",
            "100",
            "--paused-per-account",
            "20",
            "--archived-per-account",
            "10",
        )
    )
    assert (agency.accounts, agency.statuses) == (300, {"ACTIVE": 100, "PAUSED": 20, "ARCHIVED": 10})
    only_paused = seed_config(parse("--campaigns-per-account", "5", "--paused-per-account", "2"))
    assert only_paused.statuses == {"ACTIVE": 5, "PAUSED": 2, "ARCHIVED": 0}
    assert seed_config(parse("--campaigns-per-account", "5")).statuses is None  # the random mix, as before


@pytest.mark.parametrize(
    "argv",
    [("--accounts", "0"), ("--accounts", "1001"), ("--paused-per-account", "-1"), ("--campaigns-per-account", "x")],
)
def test_the_command_line_rejects_bad_seed_sizes(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
    assert "must be an integer in" in capsys.readouterr().err


def test_graph_requests_read_no_table_from_end_to_end() -> None:
    """Each statement a list, a cursor page, a batch of pauses or a GET runs is an index search (its
    account's rows, or one row), never a full scan: the cost stays O(account) at 30,000 campaigns."""
    with start_sandbox(accounts=20, statuses=COUNTS) as sandbox:
        account = "act_1000000020"
        targets = [c["id"] for c in sandbox.campaigns(account=account, status="ACTIVE")][:20]
        store = sandbox.server.sandbox.store
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        try:
            first = graph_get(sandbox, f"{account}/campaigns", effective_status='["ACTIVE"]', limit=10).json()
            after = first["paging"]["cursors"]["after"]
            graph_get(sandbox, f"{account}/campaigns", effective_status='["ACTIVE"]', limit=10, after=after)
            graph_get(sandbox, f"{account}/campaigns", summary="true")
            graph_batch(
                sandbox, [{"method": "POST", "relative_url": f"{c}/", "body": "status=PAUSED"} for c in targets]
            )
            graph_get(sandbox, targets[0], fields="id,status")
            graph_get(sandbox, f"{targets[0]}/adsets")
        finally:
            store._conn.set_trace_callback(None)
        queries = [sql for sql in statements if sql.split()[0].upper() in ("SELECT", "UPDATE")]
        assert any("UPDATE campaigns" in sql for sql in queries)
        with store._lock:
            for sql in queries:
                plan = [row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql)]
                assert not [step for step in plan if step.startswith("SCAN")], (sql, plan)
