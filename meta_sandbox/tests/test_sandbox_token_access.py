"""Tokens, permissions and ad-account access over HTTP, as Meta documents and answers them
(docs/meta-sandbox.md, "Tokens, permissions and account access")."""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.campaign import Campaign
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from meta_sandbox.access import APP_ID, DEFAULT_SCOPES, TASKS
from meta_sandbox.cli import add_arguments, start_token
from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import TOKEN, graph_batch, graph_get

ACT = "act_1000000001"
OTHER_ACT = "act_1000000002"
APP_TOKEN = f"{APP_ID}|sandbox-app-secret"
DAY = 86_400


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=2, statuses={"ACTIVE": 3, "PAUSED": 1}, delivery_issues=[]) as running:
        yield running


def sdk_api(sandbox: RunningSandbox) -> FacebookAdsApi:
    session = FacebookSession(None, None, TOKEN, timeout=10)
    session.GRAPH = sandbox.url
    return FacebookAdsApi(session, api_version="v25.0")


def debug(sandbox: RunningSandbox, input_token: str = TOKEN, token: str = APP_TOKEN) -> requests.Response:
    return graph_get(sandbox, "debug_token", token=token, input_token=input_token)


def active_campaign(sandbox: RunningSandbox, account: str = ACT) -> str:
    return sandbox.campaigns(account=account, status="ACTIVE")[0]["id"]


def pause(sandbox: RunningSandbox, campaign_id: str) -> FacebookRequestError | None:
    """Pause through the SDK; the error Meta answered, or None."""
    try:
        Campaign(campaign_id, api=sdk_api(sandbox)).api_update(params={"status": "PAUSED"})
    except FacebookRequestError as error:
        return error
    return None


def status_of(sandbox: RunningSandbox, campaign_id: str) -> str:
    return next(c["status"] for c in sandbox.campaigns() if c["id"] == campaign_id)


def control(sandbox: RunningSandbox, method: str, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(sandbox.url + path, data=raw, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --------------------------------------------------------------------------- debug_token


def test_debug_token_describes_a_system_user_token_that_never_expires(sandbox: RunningSandbox) -> None:
    response = debug(sandbox)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["type"] == "SYSTEM_USER" and data["app_id"] == APP_ID and data["user_id"] == "100000000000001"
    assert (data["is_valid"], data["expires_at"]) == (True, 0)
    assert data["scopes"] == list(DEFAULT_SCOPES)
    assert data["granular_scopes"] == [{"scope": s} for s in DEFAULT_SCOPES]
    assert abs(data["issued_at"] - time.time()) < 60
    assert data["data_access_expires_at"] == data["issued_at"] + 90 * DAY
    assert "error" not in data and data["application"]
    assert sandbox.token() == {**data, "declined": []}


def test_a_system_user_token_cannot_inspect_itself_but_a_user_token_can(sandbox: RunningSandbox) -> None:
    refused = debug(sandbox, token=TOKEN)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 100
    assert "app access token" in refused.json()["error"]["message"]
    assert debug(sandbox, token="").status_code == 400
    stranger = debug(sandbox, token="999|secret")
    assert stranger.status_code == 400 and stranger.json()["error"]["code"] == 190
    sandbox.token(type="USER")
    assert debug(sandbox, token=TOKEN).json()["data"]["type"] == "USER"


def test_debug_token_shows_an_expiring_token_that_still_works(sandbox: RunningSandbox) -> None:
    state = sandbox.token(expires_in_s=3600)
    data = debug(sandbox).json()["data"]
    assert data["is_valid"] is True and abs(data["expires_at"] - (time.time() + 3600)) < 60
    assert data["expires_at"] == state["expires_at"]
    assert graph_get(sandbox, ACT, fields="name").status_code == 200


def test_an_expired_token_fails_every_graph_call_and_debug_token_says_why(sandbox: RunningSandbox) -> None:
    campaign_id = active_campaign(sandbox)
    sandbox.token(expires_in_s=3600)
    sandbox.set_clock(time.time() + 2 * 3600)  # expiry follows the business clock
    with pytest.raises(FacebookRequestError) as caught:
        AdAccount(ACT, api=sdk_api(sandbox)).api_get(fields=["name"])
    error = caught.value
    assert (error.http_status(), error.api_error_code(), error.api_error_subcode()) == (400, 190, 463)
    assert error.api_error_type() == "OAuthException" and "Session has expired on" in error.api_error_message()
    assert pause(sandbox, campaign_id).api_error_code() == 190
    for path in ("me", "me/permissions", "me/adaccounts"):
        assert graph_get(sandbox, path).json()["error"]["error_subcode"] == 463
    batch = graph_batch(sandbox, [{"method": "GET", "relative_url": ACT}])
    assert batch.status_code == 400 and batch.json()["error"]["code"] == 190
    assert status_of(sandbox, campaign_id) == "ACTIVE"

    answer = debug(sandbox)
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["is_valid"] is False and data["expires_at"] == sandbox.token()["expires_at"]
    assert data["error"]["code"] == 190 and data["error"]["subcode"] == 463
    assert "Session has expired" in data["error"]["message"]
    assert "issued_at" not in data and data["data_access_expires_at"] > 0 and data["scopes"]

    sandbox.set_clock()
    assert graph_get(sandbox, "me").status_code == 200


def test_an_invalidated_token_answers_190_460_until_it_is_valid_again(sandbox: RunningSandbox) -> None:
    assert sandbox.token(valid=False)["is_valid"] is False
    error = graph_get(sandbox, ACT).json()["error"]
    assert (error["code"], error["error_subcode"]) == (190, 460) and "invalidated" in error["message"]
    data = debug(sandbox).json()["data"]
    assert (data["is_valid"], data["error"]["subcode"]) == (False, 460)
    sandbox.token(invalid_subcode=467)
    assert graph_get(sandbox, "me").json()["error"]["error_subcode"] == 467
    sandbox.token(valid=True)
    assert graph_get(sandbox, "me").status_code == 200 and debug(sandbox).json()["data"]["is_valid"] is True


def test_debug_token_of_an_unknown_token_is_invalid() -> None:
    with start_sandbox(token=TOKEN, accounts=1, campaigns_per_account=1) as sandbox:
        unknown = debug(sandbox, input_token="not-the-token")
        assert unknown.status_code == 200
        data = unknown.json()["data"]
        assert data["is_valid"] is False and data["error"]["code"] == 190 and data["scopes"] == []
        assert debug(sandbox).json()["data"]["is_valid"] is True
        app = debug(sandbox, input_token=APP_TOKEN).json()["data"]
        assert (app["type"], app["is_valid"]) == ("APP", True)
        assert graph_get(sandbox, "me", token=APP_TOKEN).json()["error"]["code"] == 200  # an app token manages no ads


# --------------------------------------------------------------------------- permissions


def test_permissions_are_listed_and_a_revoked_one_reads_declined(sandbox: RunningSandbox) -> None:
    listed = graph_get(sandbox, "me/permissions").json()["data"]
    assert listed == [{"permission": p, "status": "granted"} for p in DEFAULT_SCOPES]
    revoked = requests.delete(f"{sandbox.url}/v25.0/me/permissions/ads_management", params={"access_token": TOKEN})
    assert revoked.status_code == 200 and revoked.json() == {"success": True}
    assert graph_get(sandbox, "me/permissions").json()["data"] == [
        {"permission": "ads_read", "status": "granted"},
        {"permission": "business_management", "status": "granted"},
        {"permission": "ads_management", "status": "declined"},
    ]
    assert "ads_management" not in debug(sandbox).json()["data"]["scopes"]
    never = requests.delete(f"{sandbox.url}/v25.0/me/permissions/pages_show_list", params={"access_token": TOKEN})
    assert never.status_code == 400 and never.json()["error"]["code"] == 100
    assert sandbox.token(scopes=list(DEFAULT_SCOPES))["declined"] == []


def test_a_write_without_ads_management_is_refused_alone_and_in_a_batch(sandbox: RunningSandbox) -> None:
    campaign_id = active_campaign(sandbox)
    sandbox.token(scopes=["ads_read", "business_management"])
    error = pause(sandbox, campaign_id)
    assert error is not None and (error.http_status(), error.api_error_code()) == (403, 200)
    assert error.api_error_message() == "(#200) Requires ads_management permission to manage the object"
    items = graph_batch(
        sandbox,
        [
            {"method": "POST", "relative_url": f"{campaign_id}/", "body": "status=PAUSED"},
            {"method": "GET", "relative_url": f"{campaign_id}?fields=status"},
        ],
    ).json()
    assert [item["code"] for item in items] == [403, 200]
    assert json.loads(items[0]["body"])["error"]["code"] == 200
    assert json.loads(items[1]["body"])["status"] == "ACTIVE"
    assert status_of(sandbox, campaign_id) == "ACTIVE"
    campaigns = AdAccount(ACT, api=sdk_api(sandbox)).get_campaigns(fields=["status"])
    assert len(list(campaigns)) == 4  # reads still work with ads_read


def test_without_ads_read_nor_ads_management_reads_fail_too(sandbox: RunningSandbox) -> None:
    sandbox.token(scopes=["business_management"])
    refused = graph_get(sandbox, f"{ACT}/campaigns")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "(#200) Ad account owner has NOT grant ads_management or ads_read permission"
    )
    assert graph_get(sandbox, f"{active_campaign(sandbox)}/insights").status_code == 403
    assert graph_get(sandbox, "me").status_code == 200


# --------------------------------------------------------------------------- ad accounts


def test_account_access_fields_read_on_the_node_and_the_list(sandbox: RunningSandbox) -> None:
    fields = "account_status,disable_reason,user_tasks,timezone_name,currency,name"
    node = graph_get(sandbox, ACT, fields=fields).json()
    assert node == {
        "id": ACT,
        "account_status": 1,
        "disable_reason": 0,
        "user_tasks": list(TASKS),
        "timezone_name": "America/Los_Angeles",
        "currency": "USD",
        "name": "Sandbox Account 1",
    }
    sandbox.account(OTHER_ACT, account_status=9, user_tasks=["ANALYZE"])
    listed = graph_get(sandbox, "me/adaccounts", fields=fields).json()["data"]
    assert [(a["id"], a["account_status"], a["user_tasks"]) for a in listed] == [
        (ACT, 1, list(TASKS)),
        (OTHER_ACT, 9, ["ANALYZE"]),
    ]


def test_a_disabled_account_refuses_a_pause(sandbox: RunningSandbox) -> None:
    campaign_id = active_campaign(sandbox)
    assert sandbox.account(ACT, account_status=2, disable_reason=1) == {
        "id": ACT,
        "account_status": 2,
        "disable_reason": 1,
        "user_tasks": list(TASKS),
    }
    error = pause(sandbox, campaign_id)
    assert error is not None and (error.http_status(), error.api_error_code()) == (403, 200)
    assert error.body()["error"]["error_user_title"] == "Ad account not active"
    assert "DISABLED" in error.body()["error"]["error_user_msg"]
    assert status_of(sandbox, campaign_id) == "ACTIVE"
    assert graph_get(sandbox, ACT, fields="account_status,disable_reason").json()["account_status"] == 2
    assert pause(sandbox, active_campaign(sandbox, OTHER_ACT)) is None  # the other account is not touched
    for closed in (101, 3):
        sandbox.account(ACT, account_status=closed)
        assert pause(sandbox, campaign_id) is not None
    sandbox.account(ACT, account_status=9)  # in its grace period, an account still runs
    assert pause(sandbox, campaign_id) is None and status_of(sandbox, campaign_id) == "PAUSED"


def test_an_analyze_only_account_is_readable_but_refuses_a_pause(sandbox: RunningSandbox) -> None:
    campaign_id = active_campaign(sandbox)
    sandbox.account(ACT, user_tasks=["ANALYZE"])
    assert graph_get(sandbox, f"{ACT}/campaigns").status_code == 200
    assert graph_get(sandbox, campaign_id, fields="status").json()["status"] == "ACTIVE"
    error = pause(sandbox, campaign_id)
    assert error is not None and (error.api_error_code(), error.api_error_message()) == (
        200,
        "(#200) Permissions error",
    )
    assert status_of(sandbox, campaign_id) == "ACTIVE"
    sandbox.account(ACT, user_tasks=["ADVERTISE", "ANALYZE"])
    assert pause(sandbox, campaign_id) is None


def test_a_no_role_account_is_unreachable_and_not_listed(sandbox: RunningSandbox) -> None:
    campaign_id = active_campaign(sandbox)
    sandbox.account(ACT, user_tasks=[])
    for path in (ACT, f"{ACT}/campaigns", campaign_id, f"{campaign_id}/insights"):
        error = graph_get(sandbox, path).json()["error"]
        assert (error["code"], error["error_subcode"], error["type"]) == (100, 33, "GraphMethodException"), path
    assert pause(sandbox, campaign_id).api_error_subcode() == 33
    listed = graph_get(sandbox, "me/adaccounts", summary="true").json()
    assert [a["id"] for a in listed["data"]] == [OTHER_ACT] and listed["summary"] == {"total_count": 1}
    item = graph_batch(sandbox, [{"method": "GET", "relative_url": ACT}]).json()[0]
    assert item["code"] == 400 and json.loads(item["body"])["error"]["error_subcode"] == 33
    state = next(a for a in sandbox.state()["accounts"] if a["id"] == ACT)
    assert (state["account_status"], state["user_tasks"]) == (1, [])


# --------------------------------------------------------------------------- control


def test_reset_restores_the_token_and_the_accounts(sandbox: RunningSandbox) -> None:
    sandbox.token(valid=False, scopes=["ads_read"], type="USER", expires_in_s=60)
    sandbox.account(ACT, account_status=101, disable_reason=5, user_tasks=[])
    state = sandbox.reset(accounts=2, statuses={"ACTIVE": 3, "PAUSED": 1}, delivery_issues=[])
    token = state["token"]
    assert (token["is_valid"], token["type"], token["expires_at"], token["scopes"]) == (
        True,
        "SYSTEM_USER",
        0,
        list(DEFAULT_SCOPES),
    )
    first = state["accounts"][0]
    assert (first["account_status"], first["disable_reason"], first["user_tasks"]) == (1, 0, list(TASKS))
    assert pause(sandbox, active_campaign(sandbox)) is None


def test_bad_control_input_is_400_with_a_clear_message(sandbox: RunningSandbox) -> None:
    for body, words in (
        ({"valid": "no"}, "valid"),
        ({"expires_at": -5}, "expires_at"),
        ({"expires_at": 1, "expires_in_s": 5}, "not both"),
        ({"expires_in_s": "soon"}, "expires_in_s"),
        ({"data_access_expires_in_s": True}, "data_access_expires_in_s"),
        ({"scopes": "ads_read"}, "scopes"),
        ({"scopes": ["ads_read", "ads_read"]}, "scopes"),
        ({"type": "PAGE"}, "type"),
        ({"invalid_subcode": 999}, "invalid_subcode"),
        ({"colour": "red"}, "unknown token fields"),
    ):
        status, answer = control(sandbox, "POST", "/_sandbox/token", json.dumps(body).encode())
        assert status == 400 and words in answer["error"]["message"], (body, answer)
    for body, words in (
        ({"account_status": 4}, "account_status"),
        ({"account_status": True}, "account_status"),
        ({"disable_reason": -1}, "disable_reason"),
        ({"user_tasks": ["ADMIN"]}, "user_tasks"),
        ({"user_tasks": "MANAGE"}, "user_tasks"),
        ({"role": "admin"}, "unknown account fields"),
    ):
        status, answer = control(sandbox, "POST", f"/_sandbox/accounts/{ACT}", json.dumps(body).encode())
        assert status == 400 and words in answer["error"]["message"], (body, answer)
    assert control(sandbox, "POST", "/_sandbox/token", b"{not json")[0] == 400
    assert control(sandbox, "POST", "/_sandbox/token", b"[1]")[0] == 400
    assert control(sandbox, "POST", "/_sandbox/accounts/nope", b"{}")[0] == 400
    assert control(sandbox, "POST", "/_sandbox/accounts/act_1000000099", b"{}")[0] == 404
    assert sandbox.token()["is_valid"] is True and sandbox.state()["accounts"][0]["account_status"] == 1


def test_the_command_line_starts_with_an_expired_narrow_token() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = vars(parser.parse_args(["--token-expires-in-days", "0", "--scopes", "ads_read", "--token-type", "USER"]))
    assert start_token(options) == {"expires_in_s": 0, "scopes": ["ads_read"], "type": "USER"}
    assert start_token(vars(parser.parse_args([]))) == {}
    for bad in (["--token-expires-in-days", "soon"], ["--scopes", "a,a"], ["--token-type", "PAGE"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    with start_sandbox(token_state=start_token(options), accounts=1, campaigns_per_account=1) as sandbox:
        assert graph_get(sandbox, "me").json()["error"]["error_subcode"] == 463
        data = debug(sandbox, token=TOKEN).json()["data"]  # a USER token may inspect itself
        assert (data["is_valid"], data["scopes"]) == (False, ["ads_read"])
        sandbox.token(expires_at=0)
        assert graph_get(sandbox, "me").status_code == 200
        token = sandbox.reset(accounts=1, campaigns_per_account=1)["token"]  # back to the start options
        assert (token["is_valid"], token["scopes"], token["type"]) == (False, ["ads_read"], "USER")
