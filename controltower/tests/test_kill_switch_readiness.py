"""Ready to stop: the readiness check against the Meta sandbox over HTTP — each way it can drop,
its alerts, and its headroom estimate against what a real stop then does."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import requests
from django.core import mail
from django.core.cache import cache
from django.utils import timezone

from controltower import commander, readiness
from controltower import readiness_policy as policy
from controltower.killswitch import StopRequest
from controltower.models import Alert, CampaignHold, ControlTowerRun, ReadinessCheck
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from meta_modules import graph, jobs
from meta_modules.models import AdAccount
from tests.support import api_client

pytestmark = pytest.mark.django_db
API = "/meta/control-tower"


@pytest.fixture
def mirrored(meta_sandbox, synced, settings):
    """Two accounts of 6 ACTIVE + 2 PAUSED campaigns, mirrored by 10.2's sync; the app's credentials
    set, so debug_token is asked with the app token (a system user's token may not inspect itself)."""
    meta_sandbox.reset(accounts=2, statuses={"ACTIVE": 6, "PAUSED": 2})
    jobs.sync_campaigns.apply()
    graph.reset_clients()
    _app_credentials(meta_sandbox, settings)
    return meta_sandbox


def _app_credentials(sandbox, settings) -> None:
    settings.META_APP_ID, settings.META_APP_SECRET = sandbox.token()["app_id"], "app-secret"


def _accounts(sandbox) -> list[str]:
    return [a["id"] for a in sandbox.state()["accounts"]]


def _by_account(check: ReadinessCheck) -> dict[str, dict]:
    return {a["account_id"]: a for a in check.accounts}


def test_a_healthy_stack_is_ready_and_says_what_a_stop_would_do(mirrored) -> None:
    found = commander.check_readiness("alice")

    assert found.verdict == "ready", found.reasons
    assert found.summary.startswith("READY: a stop now would pause 12 campaigns in 2 accounts in about ")
    assert (found.campaigns_active, found.paused_at_once, found.left_pending) == (12, 12, 0)
    assert found.token["source"] == "debug_token" and "ads_management" in found.token["scopes"]
    assert found.token["valid"] is True and found.executed_by == "alice"
    for account in found.accounts:
        assert account["reachable"] and account["editable"] and account["account_status_name"] == "ACTIVE"
        assert account["tier"] == "standard_access" and account["active_campaigns"] == 6
        assert account["currency"] and account["timezone_name"] and account["latency_ms"] > 0
    assert found.estimated_seconds is not None


def _expire(sandbox, settings) -> None:
    sandbox.token(expires_in_s=-60)


def _expiring(sandbox, settings) -> None:
    sandbox.token(expires_in_s=3 * 86_400 + 3_600)


def _revoke(sandbox, settings) -> None:
    # As an app or the user does it on Meta: DELETE /me/permissions/{permission}.
    answer = requests.delete(
        f"{settings.META_GRAPH_URL}/{settings.META_API_VERSION}/me/permissions/ads_management",
        params={"access_token": settings.META_ACCESS_TOKEN},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def _disable(sandbox, settings) -> None:
    sandbox.account(_accounts(sandbox)[1], account_status=2, disable_reason=3)


def _analyst_only(sandbox, settings) -> None:
    sandbox.account(_accounts(sandbox)[1], user_tasks=["ANALYZE"])


def _development_tier(sandbox, settings) -> None:
    sandbox.faults(tier={_accounts(sandbox)[1]: "development"})


CASES = {
    "expired token": (_expire, "not_ready", "readiness:token", "expired", ()),
    "expiring token": (_expiring, "degraded", "readiness:token_expiring", "expires in 3 days", ()),
    "ads_management revoked": (_revoke, "not_ready", "readiness:permission", "lacks the ads_management", ()),
    "account disabled": (_disable, "degraded", "readiness:account:{1}", "is DISABLED", ("not_ready",)),
    "account not editable": (_analyst_only, "degraded", "readiness:account:{1}", "may not edit", ("not_ready",)),
    "development tier": (_development_tier, "degraded", "readiness:tier:{1}", "development tier", ("degraded",)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_way_readiness_drops_says_why_alerts_once_and_resolves(case, meta_sandbox, synced, settings) -> None:
    # 30 ACTIVE in the second account: more than the development tier's window takes at once.
    meta_sandbox.reset(accounts=2, statuses={"ACTIVE": 30})
    jobs.sync_campaigns.apply()
    graph.reset_clients()
    accounts = _accounts(meta_sandbox)
    _app_credentials(meta_sandbox, settings)
    settings.ALERT_EMAILS = ["ops@example.com"]
    drop, verdict, key, words, account_verdict = CASES[case]
    key = key.format(*accounts)
    commander.health_cycle("test")
    assert not Alert.objects.filter(key__startswith="readiness:").exists()

    drop(meta_sandbox, settings)
    commander.health_cycle("test")
    commander.health_cycle("test")

    found = ReadinessCheck.latest()
    assert found.verdict == verdict, found.reasons
    assert words in " ".join(found.reasons)
    if account_verdict:
        assert _by_account(found)[accounts[1]]["verdict"] == account_verdict[0]
        assert _by_account(found)[accounts[0]]["verdict"] == "ready"
    opened = Alert.objects.filter(key=key)
    assert opened.count() == 1 and opened.get().resolved_at is None  # one alert, seen at both cycles
    assert opened.get().last_seen_at > opened.get().opened_at and opened.get().notifications_sent == 1
    title = opened.get().title
    assert sum(title in m.body for m in mail.outbox) == 1  # told once, not at every cycle

    meta_sandbox.reset(accounts=2, statuses={"ACTIVE": 30})  # the token, permissions and accounts as before
    meta_sandbox.faults()
    commander.health_cycle("test")

    assert ReadinessCheck.latest().verdict == "ready", ReadinessCheck.latest().reasons
    assert Alert.objects.get(key=key).resolved_at is not None
    assert "Resolved:" in mail.outbox[-1].body and title in mail.outbox[-1].body


def test_the_headroom_estimate_is_exactly_what_a_stop_then_does(meta_sandbox, synced, settings) -> None:
    meta_sandbox.reset(accounts=2, statuses={"ACTIVE": 30, "PAUSED": 5})
    jobs.sync_campaigns.apply()
    _app_credentials(meta_sandbox, settings)
    small, large = _accounts(meta_sandbox)
    meta_sandbox.faults(tier={small: "development"})  # 60 points per 300 s: not 30 pauses at once
    settings.EMERGENCY_STOP_DEADLINE_SECONDS = 2
    graph.reset_clients()

    found = commander.check_readiness("alice")
    graph.reset_clients()  # the stop runs in another process: it knows nothing the check learnt
    result = commander.emergency_stop(StopRequest(actor="alice", reason="Checking the estimate"))

    estimate = {a["account_id"]: a["headroom"] for a in found.accounts}
    assert estimate[small]["pending"] > 0 and estimate[large]["pending"] == 0
    holds = Counter(CampaignHold.objects.values_list("account_id", "state"))
    for account in (small, large):
        assert holds[(account, "paused")] == estimate[account]["at_once"]
        assert holds[(account, "pending")] == estimate[account]["pending"]
    assert (result.campaigns_paused, result.campaigns_pending) == (found.paused_at_once, found.left_pending)
    assert meta_sandbox.state()["accounts"][0]["rejected_while_blocked"] == 0
    assert found.verdict == "degraded" and f"{small} is on Meta's development tier" in " ".join(found.reasons)
    assert found.stop_factor is None  # no stop seen before it: Meta's part alone
    assert found.estimated_seconds == found.meta_seconds

    after = commander.check_readiness("alice")  # the stop just seen scales the next estimate

    took = ControlTowerRun.objects.get(pk=result.run_id).execution_time_ms / 1000
    assert after.stop_factor == policy.stop_factor(took, found.meta_seconds) >= 1
    assert after.estimated_seconds == round(after.meta_seconds * after.stop_factor, 1)
    assert after.summary.startswith("DEGRADED: halted; the token and 2 accounts let the kill switch re-sweep")


def test_with_no_usage_headers_the_estimate_is_still_what_the_stop_does(meta_sandbox, synced, settings) -> None:
    # Meta sends usage headers only once enough calls were made: the client then counts nothing
    # against the window and sends batches sized to the strictest tier's, one after the other.
    meta_sandbox.reset(accounts=1, statuses={"ACTIVE": 40})
    jobs.sync_campaigns.apply()
    _app_credentials(meta_sandbox, settings)
    meta_sandbox.faults(usage_headers="none")
    graph.reset_clients()
    cache.clear()  # nor has any process learnt the account's tier

    found = commander.check_readiness("alice")
    graph.reset_clients()
    result = commander.emergency_stop(StopRequest(actor="alice", reason="Checking the estimate"))

    (account,) = found.accounts
    assert account["tier"] == "" and account["headroom"]["at_once"] == 40 and found.verdict == "ready"
    assert (result.campaigns_paused, result.campaigns_pending) == (found.paused_at_once, found.left_pending) == (40, 0)


def test_a_mirror_10_2_has_not_synced_lately_makes_the_counts_doubtful(mirrored, settings) -> None:
    stale = timezone.now() - timedelta(hours=settings.MIRROR_STALE_HOURS, minutes=1)
    AdAccount.objects.filter(pk=_accounts(mirrored)[0]).update(synced_at=stale)

    found = commander.check_readiness("alice")

    assert found.verdict == "degraded"
    assert f"{_accounts(mirrored)[0]}: its campaigns in the mirror were last synced" in " ".join(found.reasons)


def test_without_app_credentials_the_permissions_come_from_me_permissions(mirrored, settings) -> None:
    settings.META_APP_ID = settings.META_APP_SECRET = ""  # a system user's token may not debug itself

    found = readiness.token_facts()

    assert found.checked and found.valid and found.source == "permissions"
    assert "ads_management" in found.scopes and found.expires_at is None


def test_the_api_answers_the_latest_check_and_checks_on_demand(mirrored) -> None:
    viewer, operator = api_client("vera", VIEWERS_GROUP), api_client("otto", OPERATORS_GROUP)
    assert viewer.get(f"{API}/readiness").status_code == 404
    assert viewer.get(f"{API}/status").json()["kill_switch_ready"] is None

    assert viewer.post(f"{API}/readiness").status_code == 403  # checking spends Meta's budget: operators
    checked = operator.post(f"{API}/readiness")

    assert checked.status_code == 200 and checked.json()["verdict"] == "ready"
    assert checked.json()["executed_by"] == "otto" and len(checked.json()["accounts"]) == 2
    status = viewer.get(f"{API}/status").json()["kill_switch_ready"]
    assert status["ready"] is True and status["paused_at_once"] == 12 and status["summary"].startswith("READY")
    health = viewer.get(f"{API}/health").json()["kill_switch_readiness"]
    assert {a["account_id"] for a in health["accounts"]} == set(_accounts(mirrored))
    assert health["accounts"][0]["headroom"]["at_once"] == 6


def test_metrics_carry_readiness_and_token_expiry(mirrored, settings) -> None:
    from django.test import Client
    from prometheus_client.parser import text_string_to_metric_families

    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "scrape", []
    mirrored.token(expires_in_s=2 * 86_400)
    commander.check_readiness("test")

    body = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape").content.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }

    assert samples[("tower_kill_switch_readiness", (("status", "degraded"),))] == 1
    assert samples[("tower_kill_switch_readiness", (("status", "ready"),))] == 0
    left = samples[("tower_meta_token_expires_in_seconds", ())]
    assert timedelta(days=2) - timedelta(minutes=5) < timedelta(seconds=left) <= timedelta(days=2)
    assert samples[("tower_kill_switch_stop_campaigns", (("outcome", "paused_at_once"),))] == 12
    assert all(samples[("tower_ad_account_ready", (("account", a),))] == 1.0 for a in _accounts(mirrored))


def test_old_checks_are_pruned(mirrored, settings) -> None:
    from controltower import retention

    old = commander.check_readiness("test")
    ReadinessCheck.objects.filter(pk=old.pk).update(checked_at=timezone.now() - timedelta(days=8))
    commander.check_readiness("test")

    assert retention.prune()["readiness_checks"] == 1 and ReadinessCheck.objects.count() == 1
