"""Errors as Meta marks them: canned presets answered on the next matching calls, and versions
older than the minimum answering 2635."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from facebook_business.adobjects.campaign import Campaign
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import TOKEN, graph_batch, graph_get, graph_post

ACT = "act_1000000001"
OTHER = "act_1000000002"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=2, statuses={"ACTIVE": 6}, delivery_issues=[]) as running:
        yield running


def active(sandbox: RunningSandbox, account: str = ACT) -> list[str]:
    return [c["id"] for c in sandbox.campaigns(account=account, status="ACTIVE")]


def status_of(sandbox: RunningSandbox, campaign_id: str) -> str:
    return next(c["status"] for c in sandbox.campaigns() if c["id"] == campaign_id)


def test_it_answers_the_not_linked_delegate_page_body_airbyte_recorded(sandbox: RunningSandbox) -> None:
    sandbox.faults(errors=[{"preset": "not_linked_delegate_page", "times": 2}])
    for _ in range(2):
        response = graph_get(sandbox, ACT)
        error = response.json()["error"]
        assert response.status_code == 400
        assert (error["code"], error["error_subcode"], error["is_transient"]) == (1, 2853001, False)
        assert error["error_user_title"] == "profile is not linked to delegate page"
        assert error["error_user_msg"] == "profile should always be linked to delegate page"
    assert graph_get(sandbox, ACT).status_code == 200  # counted down
    assert sandbox.state()["errors_left"] == [0] and sandbox.state()["counters"]["preset_errors"] == 2


def test_it_matches_rules_by_kind_of_call_and_account(sandbox: RunningSandbox) -> None:
    sandbox.faults(
        errors=[
            {"preset": "reduce_data", "on": "insights", "account": ACT, "times": 1},
            {"preset": "transient_user_title", "on": "write", "times": 1},
        ]
    )
    assert graph_get(sandbox, ACT).status_code == 200 and graph_get(sandbox, f"{OTHER}/insights").status_code == 200
    reduce = graph_get(sandbox, f"{ACT}/insights")
    assert reduce.status_code == 500 and reduce.json()["error"]["code"] == 1
    assert (
        reduce.json()["error"]["message"]
        == "Please reduce the amount of data you're asking for, then retry your request"
    )
    campaign = active(sandbox)[0]
    transient = graph_post(sandbox, campaign, status="PAUSED").json()["error"]
    assert (transient["code"], transient["is_transient"]) == (2, True)
    assert transient["error_user_title"] and transient["error_user_msg"]
    assert status_of(sandbox, campaign) == "ACTIVE"  # a preset error is not applied
    assert graph_post(sandbox, campaign, status="PAUSED").json() == {"success": True}


def test_it_answers_batch_items_and_insights_data_size_subcodes(sandbox: RunningSandbox) -> None:
    sandbox.faults(errors=[{"preset": "insights_data_size", "on": "batch_item", "subcode": 1504038, "times": 1}])
    assert graph_get(sandbox, f"{ACT}/insights").status_code == 200  # not a batch item
    items = graph_batch(sandbox, [{"method": "GET", "relative_url": f"{ACT}/insights"}] * 2).json()
    error = json.loads(items[0]["body"])["error"]
    assert (items[0]["code"], error["code"], error["error_subcode"]) == (500, 2, 1504038)
    assert items[1]["code"] == 200
    for subcode, code in ((1487534, 100), (1504018, 100), (1504045, -3)):
        sandbox.faults(errors=[{"preset": "insights_data_size", "subcode": subcode}])
        error = graph_get(sandbox, f"{ACT}/insights").json()["error"]
        assert (error["code"], error["error_subcode"]) == (code, subcode)


def test_it_applies_a_write_then_fails_its_read_with_the_original_response(sandbox: RunningSandbox) -> None:
    campaign = active(sandbox)[0]
    sandbox.faults(errors=[{"preset": "read_after_write", "times": 2}])
    assert graph_get(sandbox, campaign).status_code == 200  # only writes carrying fields= match
    response = graph_post(sandbox, campaign, status="PAUSED", fields="status,updated_time")
    error = response.json()["error"]
    assert response.status_code == 500 and error["original_response"] == {"success": True}
    assert status_of(sandbox, campaign) == "PAUSED"  # the write WAS applied

    session = FacebookSession(None, None, TOKEN, timeout=10)
    session.GRAPH = sandbox.url
    api = FacebookAdsApi(session, api_version="v25.0")
    second = active(sandbox)[0]
    with pytest.raises(FacebookRequestError) as caught:
        Campaign(second, api=api).api_update(params={"status": "PAUSED", "fields": "status"})
    assert caught.value.body()["error"]["original_response"] == {"success": True}
    assert status_of(sandbox, second) == "PAUSED"


def test_it_answers_2635_for_versions_older_than_the_minimum(sandbox: RunningSandbox) -> None:
    old = graph_get(sandbox, ACT, version="v24.0").json()["error"]
    assert old["code"] == 2635 and "deprecated version of the Ads API" in old["message"]
    assert graph_get(sandbox, ACT, version="v25.0").status_code == 200
    sandbox.faults(min_version="v26.0")
    assert graph_get(sandbox, ACT, version="v25.0").json()["error"]["code"] == 2635
    assert graph_get(sandbox, ACT, version="v26.0").status_code == 200
    sandbox.faults(errors=[{"preset": "deprecated_version"}])
    assert graph_get(sandbox, ACT).json()["error"]["code"] == 2635


def test_it_validates_error_rules(sandbox: RunningSandbox) -> None:
    for bad in (
        [{"preset": "nope"}],
        [{"preset": "reduce_data", "on": "sometimes"}],
        [{"preset": "reduce_data", "times": 0}],
        [{"preset": "reduce_data", "subcode": 1504018}],
        [{"preset": "read_after_write", "on": "read"}],
        {"preset": "reduce_data"},
    ):
        with pytest.raises(ValueError, match="errors"):
            sandbox.faults(errors=bad)
    with pytest.raises(ValueError, match="version"):
        sandbox.faults(min_version="25")
