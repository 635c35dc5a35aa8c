"""Schemathesis against the OpenAPI schema served at /api/schema/: every operation, every check.

In-process against the WSGI app with an operator's token, on the test database (PostgreSQL or
SQLite), with the Meta sandbox behind emergency stop, resume and the commands: fuzzing really
halts the tower and pauses sandbox campaigns. Seeded, derandomized and without Hypothesis'
example database, so every run sends the same requests; bounded, since CI runs the suite twice
on 2 shared cores.

OpenAPI cannot say that a module code must exist or that `since` comes before `until`, so the
positive (schema-valid) cases are made to respect those rules before they are sent (see
`respect_the_rules`); negative cases go out as generated. Commands run in the request, never
queued: a queued one would run later in whatever worker consumes this test run's broker.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from rest_framework import serializers

from controltower.api.report_serializers import CLOCK_SKEW, EARLIEST, MAX_REPORT_DAYS
from controltower.api.serializers import ResumeParametersSerializer, StopParametersSerializer
from controltower.commander import canonical
from controltower.models import CampaignHold, Canary, ControlTowerRun, RunState, RunType
from controltower.roles import OPERATORS_GROUP
from meta_modules import registry
from meta_modules.models import ModuleRun
from tests.support import api_token

OPERATOR_KEY = "f022" * 16  # an API token key (64 hex characters), created for the test below
EXTERNAL_MODULE = "20.1"
MODULE_CODES = [*registry.BY_CODE, EXTERNAL_MODULE]
# A deeper run by hand: FUZZ_MAX_EXAMPLES=500 FUZZ_SEED=1 python3 tower.py test tests/test_api_fuzz.py
CONFIG = {
    "seed": int(os.environ.get("FUZZ_SEED", "20250115")),
    "headers": {"Authorization": f"Bearer {OPERATOR_KEY}"},
    "generation": {
        "mode": "all",
        "max-examples": int(os.environ.get("FUZZ_MAX_EXAMPLES", "25")),
        "deterministic": True,
        "database": "none",
    },
    # No stateful phase: it follows OpenAPI links between operations, and this schema declares none.
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
    "checks": {"enabled": True},  # every check (max_response_time needs a limit: none here)
}
API = "/meta/control-tower"
PARAMETERS = {
    "emergency_stop": set(StopParametersSerializer().fields),
    "resume": set(ResumeParametersSerializer().fields),
}


# --- the rules a positive case must follow beyond its schema -----------------------------------

DATE_TIMES = ("since", "until", "started_at", "finished_at")
SOME_INSTANT = "2025-01-15T10:00:00Z"


def _at(value: str) -> datetime:
    return serializers.DateTimeField().to_internal_value(value)


def _representable(case: schemathesis.Case) -> None:
    """OpenAPI cannot say that a date-time must fall within years 1 to 9999 once converted to UTC."""
    for values in (case.query, case.body):
        for name in DATE_TIMES if isinstance(values, dict) else ():
            if isinstance(values.get(name), str):
                try:
                    _at(values[name])
                except serializers.ValidationError:
                    values[name] = SOME_INSTANT


def _existing(code: object) -> str:
    """A registered module's code, the same one for the same generated value."""
    return MODULE_CODES[zlib.crc32(repr(code).encode()) % len(MODULE_CODES)]


def _ordered_window(case: schemathesis.Case) -> None:
    if {"since", "until"} <= case.query.keys() and _at(case.query["since"]) >= _at(case.query["until"]):
        del case.query["until"]


def _report_period(case: schemathesis.Case) -> None:
    query, now = case.query, timezone.now()
    if "until" in query and _at(query["until"]) == EARLIEST:  # no time before it: an empty period
        query["until"] = SOME_INSTANT
    if "since" not in query:
        return
    until = min(_at(query["until"]), now) if "until" in query else now
    since = _at(query["since"])
    if "days" in query or not since < until or until - since > timedelta(days=MAX_REPORT_DAYS):
        del query["since"]


def _reason_given(reason: Any) -> bool:
    """OpenAPI cannot say "not blank once trimmed" (Python's strip() also drops \x1c to \x1f)."""
    return isinstance(reason, str) and bool(reason.strip())


def _dry_run_page(case: schemathesis.Case) -> None:
    """A page of a dry run's campaigns only with dry_run, and one that exists (the first: how many
    pages there are depends on what Meta lists)."""
    if not isinstance(case.body, dict) or "campaigns" not in case.body:  # resume's body is optional
        return
    if not case.body.get("dry_run"):
        del case.body["campaigns"]
    elif "page" in case.body["campaigns"]:
        case.body["campaigns"]["page"] = 1


def _emergency_stop(case: schemathesis.Case) -> None:
    if not _reason_given(case.body.get("reason")):
        case.body["reason"] = "Fuzzing the kill switch"
    _dry_run_page(case)


def _command(case: schemathesis.Case) -> None:
    body = case.body
    command = canonical(body["command_type"])
    # Not a rule of the API: a queued command would run in whichever worker consumes this test run's
    # broker, at some later time (test_api_commands covers the queue with a worker of its own).
    body["execute_immediately"] = True
    if "target_modules" in body:
        body["target_modules"] = [_existing(code) for code in body["target_modules"]]
    if command == "restart_module" and not body.get("target_modules"):
        body["target_modules"] = ["10.7"]
    if command == "emergency_stop":
        _emergency_stop(case)
    if "parameters" in body:
        allowed = PARAMETERS.get(command, set())
        body["parameters"] = {name: value for name, value in body["parameters"].items() if name in allowed}


def _recovery(case: schemathesis.Case) -> None:
    case.body["module_code"] = _existing(case.body["module_code"])


def _module(case: schemathesis.Case) -> None:
    case.path_parameters["code"] = _existing(case.path_parameters["code"])


def _without_nul(value: Any) -> Any:
    """OpenAPI 3.0 cannot say "no NUL in any string of this free-form object, keys included"."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _external_run(case: schemathesis.Case) -> None:
    case.path_parameters["code"] = EXTERNAL_MODULE
    body = case.body
    if "summary" in body:
        body["summary"] = _without_nul(body["summary"])
    if _at(body["started_at"]) > timezone.now() + CLOCK_SKEW:
        body["started_at"] = (timezone.now() - timedelta(hours=1)).isoformat()
    body["api_errors"] = min(body.get("api_errors", 0), body.get("api_calls", 0))
    if body["outcome"] == "running":
        body.pop("finished_at", None)
    elif body.get("finished_at") is not None and _at(body["finished_at"]) < _at(body["started_at"]):
        body["finished_at"] = body["started_at"]


def _canary(case: schemathesis.Case) -> None:
    """A canary is a campaign of that account on Meta, at most one per account, each once: the
    sandbox's first campaign (of act_1000000001), and no canary designated yet."""
    Canary.objects.all().delete()
    case.body.update(account_id="act_1000000001", campaign_id="1202100000000001")
    if not _reason_given(case.body.get("reason")):
        case.body["reason"] = "Fuzzing the canaries"


def _drill(case: schemathesis.Case) -> None:
    if not _reason_given(case.body.get("reason")):
        case.body["reason"] = "Fuzzing the fire drills"


RULES: dict[str, Callable[[schemathesis.Case], None]] = {
    f"GET {API}/runs": _ordered_window,
    f"GET {API}/health-logs": _ordered_window,
    f"GET {API}/report": _report_period,
    f"POST {API}/emergency-stop": _emergency_stop,
    f"POST {API}/resume": _dry_run_page,
    f"POST {API}/command": _command,
    f"POST {API}/recovery": _recovery,
    f"GET {API}/modules/{{code}}": _module,
    f"POST {API}/modules/{{code}}/start": _module,
    f"POST {API}/modules/{{code}}/stop": _module,
    f"POST {API}/modules/{{code}}/restart": _module,
    f"POST {API}/modules/{{code}}/runs": _external_run,
    f"POST {API}/canaries": _canary,
    f"POST {API}/drills": _drill,
}


def respect_the_rules(context: Any, case: schemathesis.Case) -> schemathesis.Case:
    """A schemathesis `map_case` hook: positive cases follow the rules OpenAPI cannot express."""
    if case.meta is not None and case.meta.generation.mode.is_positive:
        _representable(case)
        RULES.get(case.operation.label, lambda case: None)(case)
    return case


# --- the run -----------------------------------------------------------------------------------


@pytest.fixture
def _connection_kept() -> Iterator[None]:
    """Keep the test's database connection open between requests, as Django's test client does
    (a real server closes it at the end of each request)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def api_schema(
    synced: None, meta_sandbox: object, settings, _connection_kept: None
) -> Iterator[schemathesis.BaseSchema]:
    """/api/schema/ as the operator of OPERATOR_KEY gets it, over 17 modules and one external one."""
    # The throttles would answer most writes 429 (documented, so conformant) before any logic ran.
    settings.KILL_SWITCH_THROTTLE_RATE = settings.KILL_SWITCH_PREVIEW_THROTTLE_RATE = settings.COMMAND_THROTTLE_RATE = (
        ""
    )
    call_command(
        "register_external_module",
        EXTERNAL_MODULE,
        "Partner feed",
        "--function",
        "Catalog sync",
        "--every",
        "900",
        stdout=io.StringIO(),
    )
    user = User.objects.create_user("fuzz-operator", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    api_token(user, key=OPERATOR_KEY)
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json",
        get_wsgi_application(),
        config=schemathesis.Config.from_dict(CONFIG),
        headers=CONFIG["headers"],
    )
    schema.hook("map_case")(respect_the_rules)
    yield schema
    # The requests got past validation into the logic: a stop paused sandbox campaigns through the
    # ledger, a command ran, an external module's run was recorded.
    assert CampaignHold.objects.exclude(state__in=[CampaignHold.State.PENDING, CampaignHold.State.FAILED]).exists()
    assert ControlTowerRun.objects.filter(run_type=RunType.COMMAND, state=RunState.COMPLETED).exists()
    assert ModuleRun.objects.filter(module__code=EXTERNAL_MODULE, trigger=ModuleRun.Trigger.EXTERNAL).exists()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
# RECONNECT_DB (POST recovery) really closes the database connection: no test transaction survives it.
@pytest.mark.django_db(transaction=True)
def test_every_operation_rejects_hostile_input_and_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate()
