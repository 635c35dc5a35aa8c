"""The audit log: one logfmt line per stop, resume, command and recovery attempt, on the process log."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from controltower import audit, commander, killswitch
from controltower.killswitch import ResumeRequest, StopRequest
from tests.support import ROOT, child_env

PAIR = re.compile(r'([a-z][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)')
ESCAPE = re.compile(r'\\(["\\nrt]|u[0-9a-f]{4})')
UNESCAPED = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def parse(line: str) -> dict[str, str]:
    """A strict logfmt reader: the whole line must be key=value pairs (quoted values unescaped)."""
    fields, at = {}, 0
    for match in PAIR.finditer(line):
        assert match.start() == at, f"garbage at {at} in {line!r}"
        key, raw = match.groups()
        assert key not in fields, f"key {key} twice in {line!r}"
        fields[key] = (
            ESCAPE.sub(lambda m: UNESCAPED.get(m[1]) or chr(int(m[1][1:], 16)), raw[1:-1])
            if raw.startswith('"')
            else raw
        )
        at = match.end()
    assert at == len(line), f"garbage at {at} in {line!r}"
    return fields


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    return [parse(r.getMessage()) for r in caplog.records if r.name == "controltower.audit"]


# --- logfmt (pure) ----------------------------------------------------------------------


def test_it_leaves_plain_tokens_bare_and_quotes_values_with_spaces() -> None:
    line = audit.logfmt(event="emergency_stop", actor="alice", reason="Budget spike: $10k in 1h", paused=24)
    assert line == 'event=emergency_stop actor=alice reason="Budget spike: $10k in 1h" paused=24'


def test_it_writes_booleans_empty_values_and_lists_parseably() -> None:
    line = audit.logfmt(ok=True, halted=False, error="", missing=None, modules=["10.1", "10.5"])
    assert line == 'ok=true halted=false error="" missing="" modules=10.1,10.5'
    assert parse(line) == {"ok": "true", "halted": "false", "error": "", "missing": "", "modules": "10.1,10.5"}


def test_it_keeps_a_reason_with_newlines_quotes_and_fake_keys_inside_one_value() -> None:
    reason = 'spike"\nevent=resume actor=mallory outcome=ok\r\u2028\\ done'
    line = audit.logfmt(event="emergency_stop", reason=reason, actor="alice")

    assert "\n" not in line and "\r" not in line and "\u2028" not in line and len(line.splitlines()) == 1
    fields = parse(line)
    assert fields == {"event": "emergency_stop", "reason": reason, "actor": "alice"}


def test_it_quotes_a_value_that_has_an_equals_sign_or_a_quote() -> None:
    assert audit.logfmt(reason="a=b") == 'reason="a=b"'
    assert audit.logfmt(reason='say "stop"') == r'reason="say \"stop\""'


def test_it_refuses_a_key_that_is_not_a_plain_name() -> None:
    with pytest.raises(ValueError):
        audit.logfmt(**{"bad key": 1})


def test_it_reaches_the_process_log_on_stderr_at_info() -> None:
    """The project's LOGGING sends it to stderr, where `tower.py up` and a shipper read it."""
    code = "import django; django.setup(); from controltower import audit; audit.record('probe', reason='why not')"
    env = child_env(DATABASE_URL="sqlite:///:memory:")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r' INFO controltower\.audit: event=probe reason="why not"$', done.stderr, re.MULTILINE), (
        done.stderr
    )


# --- one line per action ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("synced", "meta_sandbox")
def test_it_logs_one_line_for_a_stop_with_its_counts_and_one_for_the_resume(caplog, settings) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    caplog.set_level("INFO", logger="controltower.audit")

    stop = killswitch.emergency_stop(StopRequest(reason="Budget spike\nevent=fake", actor="alice"))
    lines = audit_lines(caplog)
    assert len(lines) == 1
    assert lines[0] == {
        "event": "emergency_stop",
        "actor": "alice",
        "reason": "Budget spike\nevent=fake",
        "run_id": stop.run_id,
        "outcome": "ok",
        "already_halted": "false",
        "schedulers_stopped": "17",
        "campaigns_paused": str(stop.campaigns_paused),
        "campaigns_pending": "0",
        "campaigns_failed": "0",
        "alerts": "email delivered",
    }
    assert stop.campaigns_paused > 0

    caplog.clear()
    resumed = commander.resume(ResumeRequest(actor="bob", reason="fixed", run_health_check=False))
    lines = audit_lines(caplog)
    assert [line["event"] for line in lines] == ["resume"]
    assert lines[0]["actor"] == "bob" and lines[0]["reason"] == "fixed" and lines[0]["run_id"] == resumed.run_id
    assert lines[0]["campaigns_resumed"] == str(stop.campaigns_paused) and lines[0]["schedulers_resumed"] == "17"
    assert lines[0]["outcome"] == "ok" and lines[0]["alerts"] == "email delivered"


@pytest.mark.django_db
@pytest.mark.usefixtures("synced", "meta_sandbox")
def test_it_logs_a_press_that_joins_a_running_stop_as_joined(caplog) -> None:
    running, _, _ = killswitch.stop._begin_halt(StopRequest(reason="Budget spike", actor="alice"))
    caplog.set_level("INFO", logger="controltower.audit")

    result = killswitch.emergency_stop(StopRequest(reason="me too", actor="bob"))

    lines = audit_lines(caplog)
    assert len(lines) == 1 and result.joined
    assert lines[0]["event"] == "emergency_stop" and lines[0]["outcome"] == "joined" and lines[0]["actor"] == "bob"
    assert lines[0]["joined_run_id"] == str(running.pk) and lines[0]["run_id"] != str(running.pk)


@pytest.mark.django_db
@pytest.mark.usefixtures("synced")
def test_it_logs_a_command_with_the_modules_it_affected(caplog) -> None:
    caplog.set_level("INFO", logger="controltower.audit")

    run = commander.execute(
        commander.Command("stop_all", actor="carol", reason="maintenance window", target_modules=["10.5", "10.6"])
    )

    lines = audit_lines(caplog)
    assert len(lines) == 1
    assert {
        k: lines[0][k]
        for k in ("event", "command", "actor", "reason", "run_id", "outcome", "modules_affected", "modules", "errors")
    } == {
        "event": "command",
        "command": "stop_all",
        "actor": "carol",
        "reason": "maintenance window",
        "run_id": str(run.pk),
        "outcome": "ok",
        "modules_affected": "10.5,10.6",
        "modules": "2",
        "errors": "0",
    }


@pytest.mark.django_db
@pytest.mark.usefixtures("synced")
def test_it_logs_a_refused_command_as_refused(caplog) -> None:
    killswitch.stop._begin_halt(StopRequest(reason="halted", actor="alice"))
    caplog.set_level("INFO", logger="controltower.audit")

    with pytest.raises(commander.CommandRefused):
        commander.execute(commander.Command("start_all", actor="carol"))

    lines = audit_lines(caplog)
    assert len(lines) == 1 and lines[0]["command"] == "start_all" and lines[0]["outcome"] == "refused"


@pytest.mark.django_db
@pytest.mark.usefixtures("synced", "meta_sandbox")
def test_it_logs_a_health_check_command_with_the_status_it_found(caplog) -> None:
    caplog.set_level("INFO", logger="controltower.audit")

    run = commander.execute(commander.Command("run_health_check", actor="carol"))

    lines = audit_lines(caplog)
    assert len(lines) == 1 and lines[0]["command"] == "health_check" and lines[0]["run_id"] == str(run.pk)
    assert lines[0]["system_status"] == run.system_status and lines[0]["modules_checked"] == "17"


@pytest.mark.django_db
@pytest.mark.usefixtures("synced")
def test_it_logs_each_recovery_attempt(caplog) -> None:
    caplog.set_level("INFO", logger="controltower.audit")

    attempt = commander.recover("10.5", "clear_cache", "dave", "stale cache")

    lines = audit_lines(caplog)
    assert len(lines) == 1
    assert {
        k: lines[0][k] for k in ("event", "action", "module", "actor", "trigger", "reason", "run_id", "outcome")
    } == {
        "event": "recovery",
        "action": "clear_cache",
        "module": "10.5",
        "actor": "dave",
        "trigger": "operator",
        "reason": "stale cache",
        "run_id": str(attempt.pk),
        "outcome": "succeeded",
    }
