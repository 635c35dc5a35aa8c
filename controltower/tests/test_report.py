"""GET report: hand-computed fixtures for every figure, range validation, constant query count, schema."""

from __future__ import annotations

from copy import deepcopy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from jsonschema import Draft7Validator
from rest_framework.test import APIClient

from controltower import reports
from controltower.models import Alert, ControlTowerRun, RecoveryAttempt, SystemHealthLog
from controltower.tests.test_api_status_health import _openapi_to_json_schema
from meta_modules.models import MetaModule, ModuleRun

pytestmark = pytest.mark.django_db

REPORT = "/meta/control-tower/report"
T0 = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday: ISO week 2025-W02
HOUR = 3600.0


def approx(value: float) -> Any:
    return pytest.approx(value, abs=1e-3)  # the report rounds to 3 decimals


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def period(start: float, end: float) -> reports.Period:
    return reports.Period(at(start), at(end))


def run(
    hours: float, status: str, run_type: str = "health_check", state: str = "completed", **extra: Any
) -> ControlTowerRun:
    return ControlTowerRun.objects.create(
        run_type=run_type,
        state=state,
        system_status=status,
        executed_at=at(hours),
        executed_by=extra.pop("executed_by", "scheduler"),
        mode="stub",
        **extra,
    )


def checks(codes: tuple[str, ...], table: dict[float, tuple[str, ...]]) -> None:
    """One completed health check per hour of `table`, logging each module's status, as the cycle does."""
    for hours, statuses in table.items():
        check = run(hours, "healthy")
        SystemHealthLog.objects.bulk_create(
            SystemHealthLog(
                run=check,
                module_name=code,
                module_full_name=f"Module {code}",
                health_status=status,
                checked_at=check.executed_at,
                mode="stub",
            )
            for code, status in zip(codes, statuses)
        )


def shares(distribution: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    return {row["status"]: (row["seconds"], row["pct"]) for row in distribution if row["seconds"]}


# --- system uptime ------------------------------------------------------------------------------


def test_uptime_is_time_weighted_between_checks() -> None:
    run(0, "healthy"), run(6, "degraded"), run(9, "healthy")

    uptime = reports.system_uptime(period(0, 12))

    # healthy 00–06 and 09–12 (9 h), degraded 06–09 (3 h): 75 %.
    assert uptime["uptime_pct"] == approx(75.0)
    assert shares(uptime["distribution"]) == {
        "healthy": (approx(9 * HOUR), approx(75.0)),
        "degraded": (approx(3 * HOUR), approx(25.0)),
    }
    assert uptime["known_seconds"] == approx(12 * HOUR) and uptime["unknown_seconds"] == approx(0)
    assert uptime["points"] == 3


def test_time_before_the_first_check_is_unknown_and_left_out() -> None:
    run(-1, "critical")  # before the period: not carried into it
    run(3, "healthy"), run(6, "critical")

    uptime = reports.system_uptime(period(0, 12))

    assert uptime["unknown_seconds"] == approx(3 * HOUR) and uptime["known_seconds"] == approx(9 * HOUR)
    assert uptime["uptime_pct"] == approx(100 / 3)  # 3 h healthy of 9 h known


def test_only_completed_checks_and_stop_resume_runs_make_the_timeline() -> None:
    run(0, "healthy")
    run(2, "critical", state="skipped")  # a cycle that found another one running: no verdict
    run(3, "critical", run_type="command", command_type="stop_all")  # commands do not set the status
    run(6, "emergency_stop", run_type="emergency_stop")
    run(8, "healthy", run_type="resume")

    uptime = reports.system_uptime(period(0, 12))

    assert shares(uptime["distribution"]) == {
        "healthy": (approx(10 * HOUR), approx(250 / 3)),
        "emergency_stop": (approx(2 * HOUR), approx(50 / 3)),
    }


def test_no_check_in_the_period_means_unknown_uptime() -> None:
    uptime = reports.system_uptime(period(0, 12))

    assert uptime["uptime_pct"] is None and uptime["unknown_seconds"] == approx(12 * HOUR)
    assert all(row["seconds"] == 0 for row in uptime["distribution"])


# --- module availability ---------------------------------------------------------------------------


def test_unknown_time_is_never_negative_when_a_check_opens_the_period() -> None:
    # Sub-millisecond ends: SQLite's julianday() rounds each to the millisecond, so the summed spans
    # overshoot the period (the report once said unknown_seconds -0.001 here).
    since, until = T0 + timedelta(microseconds=400), at(1) + timedelta(microseconds=600)
    ControlTowerRun.objects.create(
        run_type="health_check",
        state="completed",
        system_status="healthy",
        executed_at=since,
        executed_by="scheduler",
        mode="stub",
    )

    uptime = reports.system_uptime(reports.Period(since, until))

    assert uptime["unknown_seconds"] == 0.0 and uptime["known_seconds"] == round((until - since).total_seconds(), 3)


@pytest.mark.parametrize(
    ("first", "unknown"),
    [
        (None, 12 * HOUR),  # no point: all of it
        (0, 0.0),  # a point at the start
        (3, 3 * HOUR),
        (-1, 0.0),  # a point before the start (the timeline never has one): nothing unknown, not negative
        (12, 12 * HOUR),  # at the end, or after it: all of it, never more
        (13, 12 * HOUR),
    ],
)
def test_unknown_seconds_boundaries(first: float | None, unknown: float) -> None:
    assert reports.unknown_seconds(period(0, 12), None if first is None else at(first)) == unknown


def test_a_period_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError):
        period(2, 1)


def test_module_availability_is_time_weighted_and_leaves_out_stopped_time() -> None:
    checks(("10.4",), {-2: ("offline",)})  # before the period
    checks(
        ("10.1", "10.2", "10.3"),
        {
            0: ("online", "online", "unknown"),
            4: ("online", "stopped", "unknown"),  # 10.2 stopped on purpose 04–08
            6: ("degraded", "stopped", "online"),  # 10.3 waited for its first run until 06: left out
            8: ("degraded", "online", "online"),
            9: ("online", "online", "online"),
        },
    )

    availability = reports.module_availability(period(0, 12), {"10.1": "Meta Models", "10.2": "Meta Ads Client"})

    by_code = {m["module"]: m for m in availability["modules"]}
    assert list(by_code) == ["10.1", "10.2", "10.3"]
    assert by_code["10.1"]["availability_pct"] == approx(75.0) and by_code["10.1"]["name"] == "Meta Models"
    assert by_code["10.2"]["availability_pct"] == approx(100.0)
    assert by_code["10.2"]["counted_seconds"] == approx(8 * HOUR)
    assert shares(by_code["10.2"]["distribution"])["stopped"] == (approx(4 * HOUR), approx(100 / 3))
    assert by_code["10.3"]["availability_pct"] == approx(100.0) and by_code["10.3"]["checks"] == 5
    assert by_code["10.3"]["counted_seconds"] == approx(6 * HOUR)
    # (9 + 8 + 6) h ONLINE of (12 + 8 + 6) h counted.
    assert availability["overall_pct"] == approx(100 * 23 / 26)


# --- MTTR --------------------------------------------------------------------------------------------


def test_mttr_from_episodes_of_known_length() -> None:
    checks(
        ("10.5", "10.6", "10.7"),
        {  # 10.6 fails from the start of the period; 10.7 is only stopped on purpose
            0: ("online", "offline", "online"),
            1: ("offline", "online", "online"),  # 10.5 episode 1 begins; 10.6's ends (1 h)
            2: ("degraded", "online", "online"),
            3: ("online", "online", "online"),  # 10.5 episode 1 ends: 2 h
            4: ("online", "online", "stopped"),
            5: ("degraded", "online", "stopped"),  # 10.5 episode 2 begins
            6: ("stopped", "online", "online"),  # stopped and unknown neither end nor begin one
            7: ("unknown", "online", "online"),
            8: ("online", "online", "online"),  # 10.5 episode 2 ends: 3 h
            9: ("online", "online", "online"),
            10: ("offline", "online", "online"),  # still open at the end of the period (12:00)
            11: ("degraded", "online", "online"),
        },
    )

    result = reports.mttr(period(0, 12), {})

    by_code = {m["module"]: m for m in result["modules"]}
    assert set(by_code) == {"10.5", "10.6"}
    assert by_code["10.5"] == {
        "module": "10.5",
        "name": "",
        "episodes": 2,
        "mean_seconds": approx(2.5 * HOUR),
        "longest_seconds": approx(3 * HOUR),
    }
    assert by_code["10.6"]["episodes"] == 1 and by_code["10.6"]["mean_seconds"] == approx(HOUR)
    assert result["episodes"] == 3 and result["mean_seconds"] == approx(2 * HOUR)
    assert result["open_episodes"] == [
        {"module": "10.5", "name": "", "since": at(10), "open_seconds": approx(2 * HOUR)}
    ]


# --- auto-recovery -----------------------------------------------------------------------------------


def test_recovery_success_rate_over_verified_automatic_attempts() -> None:
    def attempt(
        hours: float, action: str = "restart_scheduler", trigger: str = "auto", healed: bool | None = None
    ) -> None:
        RecoveryAttempt.objects.create(
            module_code="10.5",
            action=action,
            confidence=0.9,
            reason="test",
            trigger=trigger,
            executed_by="test",
            started_at=at(hours),
            outcome="succeeded",
            healed=healed,
        )

    attempt(1, healed=True), attempt(2, healed=True), attempt(3, "reset_module", healed=True)
    attempt(4, healed=False)
    attempt(5)  # not verified yet
    attempt(6, "alert_admin")  # the escalation, not a recovery
    attempt(7, "clear_cache", trigger="operator", healed=True)  # by hand: not automatic
    attempt(13, healed=False)  # after the period

    result = reports.auto_recovery(period(0, 12))

    assert (result["attempts"], result["verified"], result["healed"]) == (5, 4, 3)
    assert result["success_pct"] == approx(75.0)
    assert result["escalations"] == 1 and result["operator_attempts"] == 1
    assert {a["action"]: (a["attempts"], a["success_pct"]) for a in result["by_action"]} == {
        "reset_module": (1, 100.0),
        "restart_scheduler": (4, approx(200 / 3)),
    }


# --- false positives -----------------------------------------------------------------------------------


def test_false_positives_are_alerts_cleared_by_the_next_check_without_any_action() -> None:
    for hours in (0, 1, 2, 3):
        run(hours, "healthy")

    def alert(key: str, opened: float, resolved: float | None, module: str = "") -> None:
        Alert.objects.create(
            key=key,
            severity="warning",
            title=key,
            module_code=module,
            opened_at=at(opened),
            last_seen_at=at(opened),
            resolved_at=at(resolved) if resolved is not None else None,
        )

    alert("module:10.5:degraded", 1, 2, "10.5")  # cleared at the next check, nobody acted: false positive
    alert("module:10.6:offline", 1, 2, "10.6")  # cleared, but auto-recovery restarted it meanwhile
    RecoveryAttempt.objects.create(
        module_code="10.6",
        action="restart_scheduler",
        confidence=0.95,
        reason="x",
        executed_by="engine",
        started_at=at(1.01),
        outcome="succeeded",
    )
    alert("module:10.7:offline", 1, 2, "10.7")  # cleared, but an operator started it meanwhile
    run(1.5, "healthy", run_type="command", command_type="start_all", modules_affected=["10.7", "10.17"])
    alert("module:10.8:degraded", 1, 2, "10.8")  # a command on 10.18 (not 10.8) does not count: false positive
    run(1.6, "healthy", run_type="command", command_type="stop_all", modules_affected=["10.18"])
    alert("module:10.9:offline", 1, 3, "10.9")  # lasted two checks: real
    alert("system:critical", 3, None)  # opened at the latest check: not judged yet
    alert("spend_spike:123", 1, 2)  # not judged: a spike is money
    alert("infra:beat", 1, 2)  # not judged: infrastructure is probed directly
    alert("module:10.5:offline", -5, -4, "10.5")  # before the period

    result = reports.false_positives(period(0, 12))

    assert (result["opened"], result["judged"], result["false_positives"]) == (6, 5, 2)
    assert result["false_positive_pct"] == approx(40.0)
    assert result["excluded_prefixes"] == ["spend_spike", "infra"]


def test_an_emergency_stop_is_an_action_for_every_alert() -> None:
    run(0, "critical"), run(1, "healthy")
    Alert.objects.create(
        key="system:critical", severity="critical", title="x", opened_at=at(0), last_seen_at=at(0), resolved_at=at(1)
    )
    run(0.5, "emergency_stop", run_type="emergency_stop")

    assert reports.false_positives(period(0, 12))["false_positives"] == 0


# --- emergency stops -----------------------------------------------------------------------------------


def test_emergency_stops_with_who_why_duration_and_count_per_iso_week() -> None:
    run(-30, "emergency_stop", run_type="emergency_stop", executed_by="zoe")  # began before the period
    run(-20, "healthy", run_type="resume")
    first = run(1, "emergency_stop", run_type="emergency_stop", executed_by="alice", reason="Budget spike: $10k in 1h")
    run(2, "emergency_stop", run_type="emergency_stop", executed_by="bob", reason="re-sweep")  # same halt
    run(3, "emergency_stop", run_type="resume", state="failed")  # overtaken: the halt goes on
    run(5, "healthy", run_type="resume", executed_by="carol")
    second = run(8 * 24, "emergency_stop", run_type="emergency_stop", executed_by="dave", reason="Creative leak")
    now = at(9 * 24)

    result = reports.emergency_stops(period(0, 14 * 24), now)

    assert result["count"] == 2
    assert result["stops"][0] == {
        "run_id": first.pk,
        "stopped_at": at(1),
        "stopped_by": "alice",
        "reason": "Budget spike: $10k in 1h",
        "resumed_at": at(5),
        "resumed_by": "carol",
        "still_active": False,
        "duration_seconds": approx(4 * HOUR),
    }
    assert result["stops"][1]["run_id"] == second.pk and result["stops"][1]["still_active"] is True
    assert result["stops"][1]["duration_seconds"] == approx(24 * HOUR)
    assert result["per_week"] == [{"week": "2025-W02", "count": 1}, {"week": "2025-W03", "count": 1}]
    assert result["mean_per_week"] == approx(1.0)


def test_a_short_period_counts_its_stops_without_extrapolating_a_week() -> None:
    # Three stops in one day are "3 in 1 day", never "21 per week".
    assert reports.mean_per_week(3, 24 * HOUR) is None
    assert reports.stop_frequency(3, 24 * HOUR) == "3 in 1 day"
    assert reports.stop_frequency(1, 6 * HOUR) == "1 in 6 h"
    assert reports.stop_frequency(0, 45 * 60) == "0 in 45 min"
    assert reports.stop_frequency(2, 36 * HOUR) == "2 in 1.5 days"
    assert reports.mean_per_week(3, 7 * 24 * HOUR - 1) is None  # a second short of a week is still short


def test_a_period_of_a_week_or_more_also_gives_the_weekly_mean() -> None:
    assert reports.mean_per_week(3, 7 * 24 * HOUR) == 3.0
    assert reports.stop_frequency(3, 7 * 24 * HOUR) == "3 in 7 days, 3 per week"
    assert reports.stop_frequency(6, 14 * 24 * HOUR) == "6 in 14 days, 3 per week"
    assert reports.stop_frequency(1, 30 * 24 * HOUR) == "1 in 30 days, 0.23 per week"
    assert reports.stop_frequency(0, 7 * 24 * HOUR) == "0 in 7 days, 0 per week"


def test_iso_weeks_cover_the_period_across_a_year_boundary() -> None:
    since = datetime(2024, 12, 28, tzinfo=UTC)  # a Saturday in 2024-W52
    assert reports.iso_weeks(since, since + timedelta(days=10)) == ["2024-W52", "2025-W01", "2025-W02"]
    assert reports.iso_weeks(T0, T0 + timedelta(days=7)) == ["2025-W02"]


# --- totals, top errors ------------------------------------------------------------------------------


@pytest.fixture
def modules() -> list[MetaModule]:
    return [
        MetaModule.objects.create(code=code, name=f"Module {code}", function="test", position=i)
        for i, code in enumerate(["10.1", "10.2"])
    ]


def test_run_totals_and_top_errors(modules: list[MetaModule]) -> None:
    first, second = modules

    def module_run(
        module: MetaModule, hours: float, outcome: str, error: str = "", calls: int = 0, failed: int = 0
    ) -> None:
        ModuleRun.objects.create(
            module=module,
            started_at=at(hours),
            outcome=outcome,
            error_message=error,
            api_calls=calls,
            api_errors=failed,
        )

    module_run(first, 1, "success", calls=10), module_run(first, 2, "success", calls=5, failed=1)
    for hours in (3, 4, 5):
        module_run(first, hours, "failure", "GraphError: rate limited", calls=2, failed=2)
    module_run(second, 6, "failure", "GraphError: rate limited")
    module_run(second, 7, "timeout", "Soft time limit exceeded.")
    module_run(second, 8, "skipped", "Emergency stop active")
    module_run(second, 13, "failure", "after the period")

    period_ = period(0, 12)
    totals, top = reports.module_run_totals(period_), reports.top_errors(period_)

    assert totals == {
        "module_runs": 8,
        "successes": 2,
        "failures": 4,
        "timeouts": 1,
        "skipped": 1,
        "running": 0,
        "api_calls": 21,
        "api_errors": 7,
        "errors": 5,
    }
    assert [(e["message"], e["module"], e["count"]) for e in top] == [
        ("GraphError: rate limited", "10.1", 3),
        ("Soft time limit exceeded.", "10.2", 1),
        ("GraphError: rate limited", "10.2", 1),
    ]
    assert top[0]["last_seen"] == at(5)


# --- the whole report: constant query count ------------------------------------------------------------


def _history(days: int) -> None:
    for hour in range(days * 24):
        status = "degraded" if hour % 10 == 0 else "healthy"
        check = run(-hour, status)
        SystemHealthLog.objects.bulk_create(
            SystemHealthLog(
                run=check,
                module_name=code,
                module_full_name=code,
                mode="stub",
                checked_at=at(-hour),
                health_status="offline" if hour % 7 == 0 and code == "10.2" else "online",
            )
            for code in ("10.1", "10.2")
        )
        if hour % 24 == 0:
            Alert.objects.create(
                key="module:10.2:offline",
                severity="critical",
                title="x",
                module_code="10.2",
                opened_at=at(-hour),
                last_seen_at=at(-hour),
                resolved_at=at(-hour + 1),
            )
            RecoveryAttempt.objects.create(
                module_code="10.2",
                action="restart_scheduler",
                confidence=0.9,
                reason="x",
                executed_by="engine",
                started_at=at(-hour),
                outcome="succeeded",
                healed=True,
            )
    run(-5, "emergency_stop", run_type="emergency_stop"), run(-4, "healthy", run_type="resume")


def test_the_query_count_does_not_grow_with_the_period(modules: list[MetaModule]) -> None:
    _history(days=30)

    def queries(days: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            reports.build(reports.Period(at(-24 * days), at(1)), now=at(1))
        return len(captured)

    one_day, month = queries(1), queries(30)

    assert one_day == month <= 20


# --- the endpoint ---------------------------------------------------------------------------------------


@pytest.fixture
def staff() -> APIClient:
    client = APIClient()
    client.force_login(User.objects.create_user("staff", is_staff=True))
    return client


def _assert_matches_schema(body: dict[str, Any]) -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    ref = schema["paths"][REPORT]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    document = _openapi_to_json_schema({"allOf": [deepcopy(ref)], "components": schema["components"]})
    errors = sorted(Draft7Validator(document).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_the_report_defaults_to_the_last_7_days_and_matches_its_schema(staff: APIClient, modules) -> None:
    now = timezone.now()
    check = ControlTowerRun.objects.create(
        run_type="health_check",
        system_status="critical",
        executed_by="scheduler",
        executed_at=now - timedelta(days=2),
        mode="stub",
    )
    SystemHealthLog.objects.create(
        run=check,
        module_name="10.1",
        module_full_name="x",
        health_status="offline",
        checked_at=check.executed_at,
        mode="stub",
    )
    ControlTowerRun.objects.create(
        run_type="emergency_stop",
        system_status="emergency_stop",
        executed_by="alice",
        executed_at=now - timedelta(days=1),
        reason="spike",
        mode="stub",
    )

    response = staff.get(REPORT)

    assert response.status_code == 200, response.content
    body = response.json()
    since, until = datetime.fromisoformat(body["period"]["since"]), datetime.fromisoformat(body["period"]["until"])
    assert until - since == timedelta(days=7) and abs(until - now) < timedelta(seconds=30)
    assert body["system_uptime"]["distribution"][0] == {"status": "healthy", "seconds": 0.0, "pct": 0.0}
    assert body["emergency_stops"]["count"] == 1 and body["emergency_stops"]["stops"][0]["still_active"] is True
    assert body["mttr"]["open_episodes"][0]["module"] == "10.1"
    assert {r["module"] for r in body["recommendations"]} >= {"10.1", "10.2"}  # never ran yet: current advice
    _assert_matches_schema(body)


def test_the_report_takes_since_and_until(staff: APIClient) -> None:
    run(0, "healthy"), run(6, "degraded"), run(9, "healthy")

    body = staff.get(REPORT, {"since": "2025-01-06T00:00:00Z", "until": "2025-01-06T12:00:00Z"}).json()

    assert body["system_uptime"]["uptime_pct"] == approx(75.0)
    assert body["period"]["seconds"] == 12 * HOUR


def test_a_future_until_is_taken_as_now(staff: APIClient) -> None:
    body = staff.get(REPORT, {"days": 2, "until": (timezone.now() + timedelta(days=30)).isoformat()}).json()

    assert datetime.fromisoformat(body["period"]["until"]) <= timezone.now()


@pytest.mark.parametrize(
    "params, field",
    [
        ({"days": 0}, "days"),
        ({"days": 367}, "days"),
        ({"days": "week"}, "days"),
        ({"days": 3, "since": "2025-01-01T00:00:00Z"}, "days"),
        ({"since": "2025-01-06T00:00:00Z", "until": "2025-01-06T00:00:00Z"}, "since"),
        ({"since": "2025-01-07T00:00:00Z", "until": "2025-01-06T00:00:00Z"}, "since"),
        ({"since": "2023-01-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-45T99:00:00Z"}, "until"),
        ({"since": "2999-01-01T00:00:00Z", "until": "2999-01-02T00:00:00Z"}, "since"),
        # Found by schemathesis: an empty, repeated or misspelt parameter was dropped (a 7-day report).
        ({"days": ""}, "days"),
        ({"until": ""}, "until"),
        ({"days": ["3", "30"]}, "days"),
        ({"day": 30}, "day"),
        ({"until": "0001-01-01T00:00:00Z"}, "until"),  # nothing before it: an empty period
    ],
)
def test_bad_periods_are_400_with_field_errors(staff: APIClient, params: dict, field: str) -> None:
    response = staff.get(REPORT, params)

    assert response.status_code == 400
    assert field in response.json()


def test_a_period_reaching_before_year_1_starts_at_year_1(staff: APIClient) -> None:
    # Found by schemathesis: `until` minus `days` before 0001-01-01 overflowed (a 500).
    response = staff.get(REPORT, {"days": 100, "until": "0001-01-05T18:00:00Z"})

    assert response.status_code == 200, response.content
    assert response.json()["period"]["since"] == "0001-01-01T00:00:00Z"


def test_the_report_is_for_staff_only() -> None:
    assert APIClient().get(REPORT).status_code == 401
    member = APIClient()
    member.force_login(User.objects.create_user("member"))
    assert member.get(REPORT).status_code == 403


# --- OpenAPI ----------------------------------------------------------------------------------------------

NEW_OPERATIONS = {
    ("/meta/control-tower/report", "get"),
    ("/meta/control-tower/runs", "get"),
    ("/meta/control-tower/runs/{id}", "get"),
    ("/meta/control-tower/health-logs", "get"),
    ("/meta/control-tower/health-logs/{id}", "get"),
    ("/meta/control-tower/modules", "get"),
    ("/meta/control-tower/modules/{code}", "get"),
    ("/meta/control-tower/modules/{code}/start", "post"),
    ("/meta/control-tower/modules/{code}/stop", "post"),
    ("/meta/control-tower/modules/{code}/restart", "post"),
    ("/meta/control-tower/modules/{code}/runs", "post"),
}


def test_the_schema_lists_every_new_endpoint_with_its_errors_and_validates() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)

    validate_schema(schema)
    for path, method in NEW_OPERATIONS:
        responses = schema["paths"][path][method]["responses"]
        assert {"401", "403"} <= set(responses), (path, method)
        assert ("400" in responses) == (method == "post" or path.endswith(("report", "runs", "logs", "modules")))
        # Lists: a page past the last one.
        assert ("404" in responses) == ("{" in path or method == "get" and not path.endswith("report")), (path, method)
    for action in ("start", "stop", "restart", "runs"):
        assert "409" in schema["paths"][f"/meta/control-tower/modules/{{code}}/{action}"]["post"]["responses"]
    assert not any("metrics" in path for path in schema["paths"])
