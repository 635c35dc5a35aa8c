"""Would the kill switch work right now? Asked of Meta at every health cycle and on demand, without
writing anything there: the token (debug_token, else /me/permissions), each ad account (one read:
its status, the tasks the token's user has in it, and the rate budget its answer reports), and the
campaign mirror's ACTIVE count. The verdicts are readiness_policy's; each check is recorded.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from controltower import fanout, rules
from controltower import readiness_policy as policy
from controltower.findings import CRITICAL, WARNING, AlertCondition
from controltower.models import ControlTowerRun, ReadinessCheck, RunState, RunType, TowerState
from meta_modules import graph, throttle
from meta_modules.models import AdAccount, Campaign

ACCOUNT_FIELDS = "name,account_status,disable_reason,user_tasks,timezone_name,currency"


def _moment(epoch: Any) -> datetime | None:
    """Meta's expiry figures: epoch seconds, 0 meaning never."""
    if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or epoch <= 0:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC)


def _granted(meta: graph.GraphClient) -> tuple[str, ...]:
    listed = meta.paginate("me/permissions")
    return tuple(p["permission"] for p in listed if p.get("status") == "granted" and p.get("permission"))


def token_facts() -> policy.TokenFacts:
    """debug_token, asked with the app token when META_APP_ID and META_APP_SECRET are set (else with
    the token itself); the permissions from /me/permissions when debug_token does not list them."""
    probe = {"timeout": settings.PROBE_TIMEOUT_SECONDS, "max_retries": 0, "max_wait": 0}
    if settings.META_APP_ID and settings.META_APP_SECRET:
        # No appsecret_proof with an app token: the proof belongs to the user token.
        asker = graph.GraphClient(
            access_token=f"{settings.META_APP_ID}|{settings.META_APP_SECRET}", app_secret="", **probe
        )
    else:
        asker = graph.GraphClient(**probe)
    try:
        data = asker.get("debug_token", {"input_token": settings.META_ACCESS_TOKEN})
    except graph.MetaError as exc:
        debug, debug_error = {}, str(exc)
    else:
        debug, debug_error = (data.get("data") if isinstance(data.get("data"), dict) else {}), ""
    if debug:
        error = debug.get("error") if isinstance(debug.get("error"), dict) else {}
        scopes = debug.get("scopes")
        return policy.TokenFacts(
            checked=True,
            valid=bool(debug.get("is_valid")),
            type=str(debug.get("type") or ""),
            expires_at=_moment(debug.get("expires_at")),
            data_access_expires_at=_moment(debug.get("data_access_expires_at")),
            scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else None,
            source="debug_token",
            error=str(error.get("message") or ""),
        )
    try:
        scopes = _granted(graph.GraphClient(**probe))
    except graph.MetaError as exc:
        if exc.kind == graph.ErrorKind.AUTH:
            return policy.TokenFacts(checked=True, valid=False, source="permissions", error=str(exc))
        return policy.TokenFacts(checked=False, error=f"{exc} (debug_token: {debug_error})")
    return policy.TokenFacts(checked=True, valid=True, scopes=scopes, source="permissions", error="")


def _mirror() -> dict[str, tuple[int, int, datetime | None]]:
    """Per ad account in the mirror (module 10.2 keeps it): its configured ACTIVE campaigns, those the
    stop's listing returns (its pages), and when 10.2 last synced it."""
    listed = Q(effective_status__in=rules.LISTED_EFFECTIVE_STATUSES)
    counts = {
        row["account_id"]: (row["active"], row["listed"])
        for row in Campaign.objects.filter(Q(status="ACTIVE") | listed)
        .values("account_id")
        .annotate(active=Count("id", filter=Q(status="ACTIVE")), listed=Count("id", filter=listed))
    }
    return {pk: (*counts.get(pk, (0, 0)), synced) for pk, synced in AdAccount.objects.values_list("pk", "synced_at")}


def _read_account(meta: graph.GraphClient, account: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    body = meta.get(account, {"fields": ACCOUNT_FIELDS}, account)
    return body, round((time.perf_counter() - started) * 1000, 1)


def _tasks(body: dict[str, Any]) -> tuple[str, ...] | None:
    tasks = body.get("user_tasks")
    return tuple(str(t) for t in tasks) if isinstance(tasks, list) else None


def account_facts(accounts: list[str], deadline: float) -> list[policy.AccountFacts]:
    """One read per ad account, in parallel; the budget its answer reported, as the stop's client learnt it."""
    mirror = _mirror()
    stale_before = timezone.now() - timedelta(hours=settings.MIRROR_STALE_HOURS)
    read = fanout.parallel(_read_account, accounts, deadline)
    known_tiers = throttle.learnt_tiers(accounts)
    budgets = graph.client().throttle
    found: list[policy.AccountFacts] = []
    for account in accounts:
        active, listed, synced = mirror.get(account, (0, 0, None))
        answer = read[account]
        if isinstance(answer, graph.MetaError):
            found.append(
                policy.AccountFacts(account, False, error=str(answer), active_campaigns=active, mirror_synced_at=synced)
            )
            continue
        body, latency = answer
        used, decays_in = budgets.reported(account)
        blocked = budgets.blocked_for(account, write=True)
        frees_in = blocked or decays_in  # a block ends before anything counts again
        status = body.get("account_status")
        reason = body.get("disable_reason")
        found.append(
            policy.AccountFacts(
                account_id=account,
                reachable=True,
                name=str(body.get("name") or ""),
                account_status=status if isinstance(status, int) else None,
                disable_reason=reason if isinstance(reason, int) else None,
                user_tasks=_tasks(body),
                timezone_name=str(body.get("timezone_name") or ""),
                currency=str(body.get("currency") or ""),
                tier=budgets.tier(account) or known_tiers.get(account, ""),
                used_pct=100.0 if blocked else used,
                frees_in_s=round(frees_in, 1) if frees_in else None,
                latency_ms=latency,
                active_campaigns=active,
                listed_campaigns=listed,
                mirror_synced_at=synced,
                mirror_stale=synced is None or synced < stale_before,
            )
        )
    return found


def _accounts(deadline: float) -> list[str] | graph.MetaError:
    """The ad accounts a stop would act on: the stop's own list."""
    try:
        with graph.client().bounded(deadline) as meta:
            return meta.ad_accounts()
    except graph.MetaError as exc:
        return exc


def _paused(actions: list[dict[str, Any]]) -> int:
    return sum(a.get("paused", 0) for a in actions if a.get("action") == "pause_campaigns")


def _stop_factor() -> float | None:
    """The latest emergency stop that paused campaigns (not one that joined another), against the
    estimate of the readiness check before it."""
    recent = (
        ControlTowerRun.objects.filter(
            run_type=RunType.EMERGENCY_STOP, state=RunState.COMPLETED, execution_time_ms__isnull=False
        )
        .order_by("-executed_at")
        .values("executed_at", "execution_time_ms", "actions_executed")[:10]
    )
    stop = next((run for run in recent if _paused(run["actions_executed"])), None)
    if stop is None:
        return None
    before = (
        ReadinessCheck.objects.filter(checked_at__lte=stop["executed_at"], meta_seconds__isnull=False)
        .values_list("meta_seconds", flat=True)
        .first()
    )
    return policy.stop_factor(stop["execution_time_ms"] / 1000.0, before)


def assess() -> policy.Readiness:
    now = timezone.now()
    deadline = time.monotonic() + settings.READINESS_DEADLINE_SECONDS
    token = policy.token_readiness(token_facts(), now, settings.READINESS_TOKEN_WARN_DAYS)
    if token.problem == "unasked":  # Meta did not answer: no account would either
        return policy.overall(token, [], settings.KILL_SWITCH_PARALLELISM, unlisted="Meta did not answer.")
    accounts = _accounts(deadline)
    if isinstance(accounts, graph.MetaError):
        return policy.overall(token, [], settings.KILL_SWITCH_PARALLELISM, unlisted=str(accounts))
    judged = [policy.account_readiness(f, settings.READINESS_BATCH_ITEM_MS) for f in account_facts(accounts, deadline)]
    halted = TowerState.get().emergency_stop_active
    return policy.overall(token, judged, settings.KILL_SWITCH_PARALLELISM, factor=_stop_factor(), halted=halted)


def check(executed_by: str) -> ReadinessCheck:
    """Assess and record one readiness check."""
    started = time.perf_counter()
    found = assess()
    return record(found, executed_by, round((time.perf_counter() - started) * 1000))


def record(found: policy.Readiness, executed_by: str, duration_ms: int = 0) -> ReadinessCheck:
    """One assessment as the ReadinessCheck row every reader (API, console, /metrics, alerts) reads."""
    token = found.token.facts
    return ReadinessCheck.objects.create(
        executed_by=executed_by,
        mode=settings.META_MODE,
        verdict=found.verdict,
        summary=found.summary,
        reasons=list(found.reasons),
        token=found.token.to_json(),
        accounts=[a.to_json() for a in found.accounts],
        campaigns_active=found.campaigns_active,
        paused_at_once=found.paused_at_once,
        left_pending=found.left_pending,
        out_of_reach=found.out_of_reach,
        estimated_seconds=found.estimated_seconds,
        meta_seconds=found.meta_seconds,
        stop_factor=found.stop_factor,
        token_expires_at=token.expires_at,
        data_access_expires_at=token.data_access_expires_at,
        duration_ms=duration_ms,
    )


def conditions(found: ReadinessCheck | None) -> list[AlertCondition]:
    """The alert conditions of a check: each cause its own alert, resolved when it clears. Meta not
    answering at all is the Meta API probe's alert, not repeated here."""
    token = found.token if found is not None else {}
    problem = token.get("problem", "")
    if found is None or problem == "unasked":
        return []
    raised: list[AlertCondition] = []
    why = " ".join(token.get("reasons") or [])
    if problem in ("invalid", "expired"):
        raised.append(AlertCondition("readiness:token", CRITICAL, "Kill switch NOT READY: Meta refuses the token", why))
    elif problem == "permission":
        raised.append(
            AlertCondition(
                "readiness:permission", CRITICAL, "Kill switch NOT READY: the token lacks ads_management", why
            )
        )
    elif problem == "expiring":
        raised.append(AlertCondition("readiness:token_expiring", WARNING, "The Meta access token expires soon", why))
    for account in found.accounts:
        account_id, reasons = account["account_id"], " ".join(account["reasons"])
        if account["verdict"] == policy.NOT_READY:
            raised.append(
                AlertCondition(
                    f"readiness:account:{account_id}", WARNING, f"The kill switch cannot pause {account_id}", reasons
                )
            )
        if account.get("tier") == "development_access":
            raised.append(
                AlertCondition(
                    f"readiness:tier:{account_id}", WARNING, f"{account_id} is on Meta's development tier", reasons
                )
            )
        elif (account.get("headroom") or {}).get("pending") and account["verdict"] != policy.NOT_READY:
            raised.append(
                AlertCondition(
                    f"readiness:headroom:{account_id}",
                    WARNING,
                    f"A stop could not pause all of {account_id} at once",
                    reasons,
                )
            )
    if found.verdict == policy.NOT_READY and not raised:
        raised.append(AlertCondition("readiness:not_ready", CRITICAL, "Kill switch NOT READY", found.summary))
    return raised
