"""The Graph API client over real HTTP against the Meta sandbox."""

from __future__ import annotations

import json
import time

import pytest

from controltower.models import TowerState
from controltower.schedules import sync_modules
from meta_modules.graph import (
    BatchCall,
    ErrorKind,
    GraphClient,
    MetaError,
    WriteRefused,
    batch_limit_after_timeout,
    client,
)
from meta_modules.models import ModuleRun
from meta_modules.runs import execute
from meta_sandbox.tests.sandbox_http import exhaust_score

pytestmark = pytest.mark.django_db

FIELDS = ["id", "name", "status", "effective_status", "updated_time"]
# The default seed has campaigns configured ACTIVE that read WITH_ISSUES (the sandbox errs to the harsh side).
RUNNING = ["ACTIVE", "IN_PROCESS", "WITH_ISSUES"]


def _pause_calls(campaigns: list[dict]) -> list[BatchCall]:
    return [BatchCall(c["id"], "POST", f"{c['id']}/", {"status": "PAUSED"}) for c in campaigns]


def _writes(sandbox) -> int:
    return sandbox.state()["counters"]["writes"]


def test_it_pages_through_500_campaigns_exactly_once(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 500}, adsets_per_campaign=1, ads_per_adset=1)
    account = client().ad_accounts()[0]
    before = meta_sandbox.state()["counters"]["requests"]

    campaigns = client().campaigns(account, FIELDS, effective_status=RUNNING)

    assert len(campaigns) == 500
    assert len({c["id"] for c in campaigns}) == 500
    assert meta_sandbox.state()["counters"]["requests"] - before == 5  # pages of 100, stops without `next`


def test_a_batch_reports_every_failure_by_campaign_id(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 120})
    account = client().ad_accounts()[0]
    campaigns = client().campaigns(account, FIELDS, RUNNING)
    meta_sandbox.faults(error_rate=0.1, fault_seed=11)

    result = GraphClient(max_retries=0).batch(account, _pause_calls(campaigns))

    still_active = {c["id"] for c in meta_sandbox.campaigns(account=account, status="ACTIVE")}
    assert result.failed and set(result.failed) == still_active
    assert set(result.succeeded) | set(result.failed) == {c["id"] for c in campaigns}
    assert all(error.kind == ErrorKind.TRANSIENT and error.code in (1, 2) for error in result.failed.values())
    assert result.requests == 3  # 50 + 50 + 20


def test_a_batch_retries_transient_failures_and_timeouts_until_done(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 120})
    account = client().ad_accounts()[0]
    campaigns = client().campaigns(account, FIELDS, RUNNING)
    meta_sandbox.faults(error_rate=0.2, timeout_rate=0.05, fault_seed=5)

    result = GraphClient(sleep=lambda s: None).batch(account, _pause_calls(campaigns))

    assert not result.failed and len(result.succeeded) == 120
    assert meta_sandbox.campaigns(account=account, status="ACTIVE") == []


def test_on_the_development_tier_it_waits_and_sends_nothing_while_blocked(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 30})
    account = client().ad_accounts()[0]
    meta_sandbox.faults(tier={account: "development"}, tier_params={"development": {"decay_s": 1.5, "block_s": 2}})
    campaigns = client().campaigns(account, FIELDS, RUNNING)  # 1 point: the client learns the tier

    result = client().batch(account, _pause_calls(campaigns))  # 90 points > 60: needs two windows

    assert not result.failed and len(result.succeeded) == 30
    state = meta_sandbox.state()
    assert state["counters"]["rate_limited"] == 0
    assert state["accounts"][0]["rejected_while_blocked"] == 0
    assert result.requests == 2  # sized to the budget: 19 writes (57 of 60 points after the read), then 11


def test_a_blocked_account_is_left_alone_for_the_longer_of_metas_two_figures(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 5})
    account = client().ad_accounts()[0]
    meta_sandbox.faults(tier={account: "development"}, tier_params={"development": {"block_s": 2}})
    exhaust_score(meta_sandbox, account)
    rejected_before = meta_sandbox.state()["accounts"][0]["rejected_while_blocked"]

    with pytest.raises(MetaError) as refused:
        GraphClient(max_wait=5).campaigns(account, FIELDS, RUNNING)

    # reset_time_duration says 2 s, estimated_time_to_regain_access 1 minute: the longer stands.
    assert refused.value.kind == ErrorKind.RATE_LIMITED and 55 < refused.value.retry_after <= 60
    # One call learns of the block; nothing more is sent while it lasts.
    assert meta_sandbox.state()["accounts"][0]["rejected_while_blocked"] - rejected_before == 1


def test_an_expired_token_fails_at_once_without_retries(meta_sandbox) -> None:
    meta_sandbox.faults(expire_token=True)
    before = meta_sandbox.state()["counters"]["requests"]

    with pytest.raises(MetaError) as raised:
        client().ad_accounts()

    assert raised.value.kind == ErrorKind.AUTH and raised.value.code == 190
    assert meta_sandbox.state()["counters"]["requests"] - before == 1


@pytest.mark.parametrize("status", ["ARCHIVED", "DELETED"])
def test_archived_and_deleted_campaigns_cannot_be_activated(meta_sandbox, status: str) -> None:
    account = client().ad_accounts()[0]
    campaign = client().campaigns(account, FIELDS, RUNNING)[0]
    if status == "DELETED":
        client().update(campaign["id"], account, status="ARCHIVED")
    client().update(campaign["id"], account, status=status)

    with pytest.raises(MetaError) as raised:
        client().update(campaign["id"], account, status="ACTIVE")

    assert raised.value.kind == ErrorKind.INVALID and raised.value.code == 100
    assert client().get(campaign["id"], {"fields": "status"}, account)["status"] == status


def test_the_write_guard_blocks_a_module_write_while_halted(meta_sandbox) -> None:
    sync_modules()
    account = client().ad_accounts()[0]
    campaign = client().campaigns(account, FIELDS, RUNNING)[0]
    state = TowerState.get()
    state.emergency_stop_active = True
    state.save()
    writes = _writes(meta_sandbox)

    with pytest.raises(WriteRefused):
        client().update(campaign["id"], account, status="PAUSED")
    with pytest.raises(WriteRefused):
        client().batch(account, _pause_calls([campaign]))

    assert _writes(meta_sandbox) == writes
    client().update(campaign["id"], account, status="PAUSED", allow_while_halted=True)  # the kill switch may
    assert _writes(meta_sandbox) == writes + 1


def test_calls_are_counted_into_the_current_module_run(meta_sandbox) -> None:
    sync_modules()
    meta_sandbox.faults(expire_token=True)

    def job(run) -> dict:
        try:
            client().ad_accounts()
        except MetaError:
            pass
        meta_sandbox.faults()
        accounts = client().ad_accounts()
        return {"accounts": len(accounts)}

    run = execute("10.2", job)

    assert run.outcome == ModuleRun.Outcome.SUCCESS
    assert (run.api_calls, run.api_errors) == (2, 1)
    assert run.summary == {"accounts": 2}


def test_it_speaks_the_version_and_token_it_is_configured_with(meta_sandbox, settings) -> None:
    settings.META_API_VERSION = "v25.0"
    api = GraphClient()
    response = api.api.call("GET", ("me",))
    assert response.headers()["facebook-api-version"] == "v25.0"
    assert json.loads(response.body())["id"]


def test_a_batch_that_times_out_goes_again_in_smaller_batches_until_answered(meta_sandbox) -> None:
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 40})
    account = client().ad_accounts()[0]
    campaigns = client().campaigns(account, FIELDS, RUNNING)
    meta_sandbox.faults(per_item_ms=30)  # 40 calls take 1.2 s: longer than the client waits

    result = GraphClient(timeout=0.5, max_retries=0).batch(account, _pause_calls(campaigns))

    assert not result.failed and len(result.succeeded) == 40  # answered, though no retry was allowed
    assert result.requests > 2


@pytest.mark.parametrize("timed_out, next_size", [(50, 25), (3, 1), (2, 1)])
def test_after_a_timed_out_batch_the_next_one_is_half_as_big(timed_out: int, next_size: int) -> None:
    assert batch_limit_after_timeout(timed_out) == next_size


def test_when_the_deadline_cuts_a_retry_short_the_error_is_what_meta_last_said(meta_sandbox) -> None:
    meta_sandbox.faults(html_error_rate=1.0, html_statuses=[500])
    deadline = time.monotonic() + 5
    # The pause before the retry uses up the time left: the retry is never sent.
    meta = GraphClient(max_retries=3, sleep=lambda s: time.sleep(max(0.0, deadline - time.monotonic())))

    with pytest.raises(MetaError) as raised, meta.bounded(deadline):
        meta.get("me/adaccounts", {"fields": "id"})

    assert "not a Graph API object" in str(raised.value) and not raised.value.deadline_only
    assert meta_sandbox.state()["counters"]["html_errors_injected"] == 1
