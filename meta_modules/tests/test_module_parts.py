"""Module jobs that work per ad account run as parts over real Celery worker processes, against the
Meta sandbox over HTTP, and still record one run per module (meta_modules/parts.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.utils import timezone

from controltower.models import TowerState
from controltower.schedules import sync_modules
from meta_modules import jobs, parts
from meta_modules.models import Campaign, ModuleRun, ModuleRunPart
from tests.support import broken_broker, child_env, private_broker, start_worker, stop_process, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEADLINE_SECONDS = 20  # the workers' MODULE_PART_DEADLINE_SECONDS: room for a loaded machine


@pytest.fixture
def workers(meta_sandbox, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts real `celery worker` processes on a broker of this test's own, pointed at the sandbox."""
    sync_modules()
    started: list[subprocess.Popen] = []
    with private_broker(tmp_path) as broker_env:
        env = child_env(
            META_GRAPH_URL=meta_sandbox.url, MODULE_PART_DEADLINE_SECONDS=str(DEADLINE_SECONDS), **broker_env
        )

        def start(concurrency: int = 2) -> subprocess.Popen:
            name = f"parts{len(started)}"
            proc = start_worker(
                env,
                tmp_path / f"{name}.log",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}@%h",
            )
            started.append(proc)
            return proc

        yield start
        for proc in started:
            stop_process(proc)


def sandbox_accounts(sandbox) -> list[str]:
    return [account["id"] for account in sandbox.state()["accounts"]]


def closed_run(code: str, timeout: float = 60) -> ModuleRun:
    return wait_for(
        lambda: ModuleRun.objects.filter(module__code=code).exclude(outcome=ModuleRun.Outcome.RUNNING).first(),
        timeout=timeout,
        interval=0.2,
        message=f"the run of {code} to close",
    )


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_module_over_n_accounts_runs_as_n_part_tasks_on_a_worker_and_records_one_run(
    meta_sandbox, workers, tmp_path: Path
) -> None:
    meta_sandbox.reset(accounts=4, campaigns_per_account=3, adsets_per_campaign=1, ads_per_adset=1)
    accounts = sandbox_accounts(meta_sandbox)
    workers()

    jobs.sync_campaigns.apply_async()
    run = closed_run("10.2")

    pieces = list(run.parts.all())
    assert ModuleRun.objects.filter(module__code="10.2").count() == 1
    assert run.outcome == ModuleRun.Outcome.SUCCESS, run.error_message
    assert sorted(account for part in pieces for account in part.accounts) == sorted(accounts)
    assert {len(part.accounts) for part in pieces} == {1}
    assert all(part.queued and part.state == ModuleRunPart.State.DONE for part in pieces)
    assert len({part.celery_task_id for part in pieces} - {""}) == 4  # four tasks of their own
    assert (run.summary["parts_queued"], run.summary["parts_here"], run.summary["accounts_done"]) == (4, 0, 4)
    assert run.summary["campaigns_created"] == 12
    assert {part.results[part.accounts[0]]["campaigns_created"] for part in pieces} == {3}
    assert set(Campaign.objects.values_list("account_id", flat=True)) == set(accounts)
    assert run.api_calls > sum(part.api_calls for part in pieces) > 0  # the dispatch listed the accounts
    assert run.finished_at >= max(part.finished_at for part in pieces)
    assert (tmp_path / "parts0.log").read_text().count("Task meta_modules.parts.run_part[") >= 4


def test_a_blocked_and_a_failing_account_do_not_stop_the_others_and_are_reported(meta_sandbox, workers) -> None:
    meta_sandbox.reset(accounts=4, campaigns_per_account=3, adsets_per_campaign=1, ads_per_adset=1)
    blocked, failing, *others = sandbox_accounts(meta_sandbox)
    meta_sandbox.faults(
        async_job_seconds=0,
        tier={blocked: "development"},
        tier_params={"development": {"max": 2, "block_s": 600}},  # blocked for 10 minutes at its third call
        errors=[{"preset": "deprecated_version", "account": failing, "times": 1000}],
    )
    workers()

    jobs.sync_campaigns.apply_async()
    run = closed_run("10.2")

    assert run.outcome == ModuleRun.Outcome.FAILURE
    assert run.error_message.startswith(f"1 of 4 ad accounts failed: {failing}: ")
    assert list(run.summary["failed"]) == [failing] and "deprecated" in run.summary["failed"][failing]
    assert list(run.summary["deferred"]) == [blocked] and "rate-limited" in run.summary["deferred"][blocked]
    assert run.summary["accounts_done"] == 2
    assert set(Campaign.objects.values_list("account_id", flat=True)) == set(others)
    assert ModuleRun.objects.filter(module__code="10.2").count() == 1


def test_a_part_whose_worker_is_killed_is_closed_as_lost_after_its_deadline(meta_sandbox, workers) -> None:
    meta_sandbox.reset(accounts=3, campaigns_per_account=2, adsets_per_campaign=1, ads_per_adset=1)
    jobs.sync_campaigns()  # the mirror, here
    meta_sandbox.faults(async_job_seconds=0, latency_ms=1500)
    worker = workers(concurrency=1)

    jobs.poll_today_spend.apply_async()
    killed = wait_for(
        lambda: ModuleRunPart.objects.filter(run__module__code="10.14", state=ModuleRunPart.State.RUNNING).first(),
        message="a part to be running",
        interval=0.05,
    )
    os.kill(children(worker.pid)[0], signal.SIGKILL)  # the child running the part, as the OOM killer would
    run = closed_run("10.14", timeout=DEADLINE_SECONDS + 30)

    killed.refresh_from_db()
    [account] = killed.accounts
    assert killed.state == ModuleRunPart.State.LOST
    assert run.outcome == ModuleRun.Outcome.TIMEOUT, run.error_message
    assert run.error_message == f"1 of 3 ad accounts not done by the run's deadline: {account}: {parts.LOST_REASON}"
    assert run.summary["lost"] == {account: parts.LOST_REASON} and run.summary["accounts_done"] == 2
    assert run.finished_at >= killed.deadline_at  # closed by the deadline's check, not before


def test_parts_queued_before_a_stop_refuse_to_act_after_it(meta_sandbox, workers) -> None:
    meta_sandbox.reset(accounts=2, campaigns_per_account=2, adsets_per_campaign=1, ads_per_adset=1)
    jobs.sync_campaigns()
    run = parts.run_module("10.14", queue=True)  # sent, and no worker is up yet
    assert run.outcome == ModuleRun.Outcome.RUNNING and run.parts.filter(queued=True).count() == 2
    TowerState.objects.filter(pk=TowerState.get().pk).update(emergency_stop_active=True)  # the halt, as recorded
    requests_before = meta_sandbox.state()["counters"]["requests"]

    workers()
    run = closed_run("10.14")

    assert run.outcome == ModuleRun.Outcome.SKIPPED and run.error_message.startswith("Emergency stop active")
    assert set(run.parts.values_list("state", flat=True)) == {ModuleRunPart.State.REFUSED}
    assert meta_sandbox.state()["counters"]["requests"] == requests_before  # nothing sent to Meta


def test_parts_run_in_the_module_task_when_the_broker_cannot_take_them(meta_sandbox) -> None:
    sync_modules()
    meta_sandbox.reset(accounts=3, campaigns_per_account=2, adsets_per_campaign=1, ads_per_adset=1)

    with broken_broker():
        run = parts.run_module("10.2", queue=True)

    assert run.outcome == ModuleRun.Outcome.SUCCESS, run.error_message
    assert (run.summary["parts_queued"], run.summary["parts_here"], run.summary["accounts_done"]) == (0, 3, 3)
    assert not run.parts.filter(queued=True).exists()
    assert Campaign.objects.count() == 6


def test_verdict_reports_every_account_and_puts_failure_before_loss_before_deferral() -> None:
    done = {"status": parts.DONE, "rows": 2, "days": ["2024-03-11"]}
    results = {
        "act_1": done,
        "act_2": {**done, "days": ["2024-03-12"]},
        "act_3": {"status": parts.DEFERRED, "reason": "Rate-limited"},
    }
    found = parts.verdict(results)
    assert found.outcome == ModuleRun.Outcome.SUCCESS
    assert found.summary["rows"] == 4 and found.summary["days"] == ["2024-03-11", "2024-03-12"]
    assert found.summary["deferred"] == {"act_3": "Rate-limited"} and found.summary["accounts_deferred"] == 1

    lost = parts.verdict({**results, "act_4": {"status": parts.LOST, "reason": parts.LOST_REASON}})
    assert lost.outcome == ModuleRun.Outcome.TIMEOUT
    failed = parts.verdict({**results, "act_4": {"status": parts.LOST}, "act_5": {"status": "failed", "error": "x"}})
    assert failed.outcome == ModuleRun.Outcome.FAILURE and failed.error.startswith("1 of 5 ad accounts failed")
    assert parts.verdict({"act_3": results["act_3"]}).outcome == ModuleRun.Outcome.FAILURE  # nothing done
    assert parts.verdict({}).outcome == ModuleRun.Outcome.SUCCESS


def test_the_next_dispatch_closes_a_run_whose_parts_never_reported(meta_sandbox, settings, tmp_path: Path) -> None:
    sync_modules()
    meta_sandbox.reset(accounts=2, campaigns_per_account=2, adsets_per_campaign=1, ads_per_adset=1)
    jobs.sync_campaigns()
    settings.MODULE_PART_DEADLINE_SECONDS = 5
    with private_broker(tmp_path):
        abandoned = parts.run_module("10.14", queue=True)  # sent to a broker no worker ever reads
    assert abandoned.outcome == ModuleRun.Outcome.RUNNING

    wait_for(lambda: timezone.now() > abandoned.parts_deadline, timeout=10, message="the deadline to pass")
    settings.MODULE_PART_DEADLINE_SECONDS = 600
    following = parts.run_module("10.2", queue=False)

    abandoned.refresh_from_db()
    assert abandoned.outcome == ModuleRun.Outcome.TIMEOUT and abandoned.summary["accounts_lost"] == 2
    assert set(abandoned.parts.values_list("state", flat=True)) == {ModuleRunPart.State.LOST}
    assert following.outcome == ModuleRun.Outcome.SUCCESS
