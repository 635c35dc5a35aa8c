"""Answers that are not JSON: Meta's edge sometimes answers 5xx with an HTML page, and the SDK
judges success by the body alone (only "Service Unavailable" counts as a failure)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from facebook_business.adobjects.campaign import Campaign
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import TOKEN, graph_batch, graph_post

ACT = "act_1000000001"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=1, statuses={"ACTIVE": 30}, delivery_issues=[]) as running:
        yield running


def sdk_api(url: str) -> FacebookAdsApi:
    session = FacebookSession(None, None, TOKEN, timeout=10)
    session.GRAPH = url
    return FacebookAdsApi(session, api_version="v25.0")


def status_of(sandbox: RunningSandbox, campaign_id: str) -> str:
    return next(c["status"] for c in sandbox.campaigns() if c["id"] == campaign_id)


def active(sandbox: RunningSandbox) -> list[str]:
    return [c["id"] for c in sandbox.campaigns(status="ACTIVE")]


@pytest.mark.parametrize(("status", "applied"), [(500, False), (502, True), (504, True)])
def test_it_answers_an_html_page_and_applies_the_call_only_behind_a_lost_gateway(
    sandbox: RunningSandbox,
    status: int,
    applied: bool,
) -> None:
    campaign_id = active(sandbox)[0]
    sandbox.faults(html_error_rate=1.0, html_statuses=[status])
    response = graph_post(sandbox, campaign_id, status="PAUSED")
    assert response.status_code == status
    assert response.headers["Content-Type"] == 'text/html; charset="utf-8"'
    assert response.text.startswith("<!DOCTYPE html>") and "<title>Facebook | Error</title>" in response.text
    assert status_of(sandbox, campaign_id) == ("PAUSED" if applied else "ACTIVE")
    assert sandbox.state()["counters"]["html_errors_injected"] == 1


def test_it_fools_the_sdk_unless_the_page_says_service_unavailable(sandbox: RunningSandbox) -> None:
    api = sdk_api(sandbox.url)
    first, second = active(sandbox)[:2]
    sandbox.faults(html_error_rate=1.0, html_statuses=[500])
    # The SDK takes the page for a success and then fails to parse it (SDK PR #579's TypeError).
    with pytest.raises(TypeError):
        Campaign(first, api=api).api_update(params={"status": "PAUSED"})
    assert status_of(sandbox, first) == "ACTIVE"  # ... and nothing was applied

    sandbox.faults(html_error_rate=1.0, html_statuses=[503])
    with pytest.raises(FacebookRequestError) as caught:
        Campaign(second, api=api).api_update(params={"status": "PAUSED"})
    assert caught.value.http_status() == 503 and "Service Unavailable" in caught.value.body()
    assert status_of(sandbox, second) == "ACTIVE"


def test_it_answers_html_for_a_whole_batch_after_applying_it_on_a_502(sandbox: RunningSandbox) -> None:
    targets = active(sandbox)[:5]
    sandbox.faults(html_error_rate=1.0, html_statuses=[502])
    items = [{"method": "POST", "relative_url": f"{c}/", "body": "status=PAUSED"} for c in targets]
    response = graph_batch(sandbox, items)
    assert response.status_code == 502 and response.text.startswith("<!DOCTYPE html>")
    assert {status_of(sandbox, c) for c in targets} == {"PAUSED"}


def test_it_answers_html_in_batch_items_that_the_sdk_reports_as_successes(sandbox: RunningSandbox) -> None:
    api = sdk_api(sandbox.url)
    targets = active(sandbox)[:20]
    sandbox.faults(html_item_rate=0.5, html_statuses=[500, 502, 503, 504], fault_seed=4)
    succeeded: dict[str, str] = {}
    failed: set[str] = set()
    batch = api.new_batch()
    for campaign_id in targets:
        Campaign(campaign_id, api=api).api_update(
            params={"status": "PAUSED"},
            batch=batch,
            success=lambda r, cid=campaign_id: succeeded.__setitem__(cid, r.body()),
            failure=lambda r, cid=campaign_id: failed.add(cid),
        )
    assert batch.execute() is None

    html = {cid: body for cid, body in succeeded.items() if body.startswith("<!DOCTYPE html>")}
    injected = sandbox.state()["counters"]["html_errors_injected"]
    assert injected == len(html) + len(failed) and html and failed  # 503 pages alone are caught
    not_applied = [cid for cid in html if status_of(sandbox, cid) == "ACTIVE"]
    assert not_applied, "a 500 page reads as success to the SDK yet nothing was applied"
    assert all(status_of(sandbox, cid) == "ACTIVE" for cid in failed)

    raw = graph_batch(sandbox, [{"method": "GET", "relative_url": ACT}] * 10).json()
    pages = [item for item in raw if item["code"] >= 500]
    assert pages and all(item["body"].startswith("<!DOCTYPE html>") for item in pages)
    assert {"name": "Content-Type", "value": 'text/html; charset="utf-8"'} in pages[0]["headers"]


def test_it_validates_the_html_faults(sandbox: RunningSandbox) -> None:
    assert sandbox.faults()["html_statuses"] == [500, 502, 503]
    for bad in ({"html_statuses": []}, {"html_statuses": [404]}, {"html_error_rate": 1.5}):
        with pytest.raises(ValueError, match="html_"):
            sandbox.faults(**bad)
