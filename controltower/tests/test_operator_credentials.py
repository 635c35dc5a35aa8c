"""Credentials a person can follow: the start-up summary shows a generated password once, a lost one is
reset by a command that records who did it, and no password reaches a log record or a file."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from controltower.management.commands.startup_summary import mode_line
from tests.support import ROOT


def _run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def _password_works(username: str, password: str) -> bool:
    return get_user_model().objects.get(username=username).check_password(password)


def _field(output: str, label: str) -> str:
    return next(line.split(None, 1)[1] for line in output.splitlines() if line.startswith(label))


@pytest.fixture(autouse=True)
def _operator_env(monkeypatch) -> None:
    monkeypatch.delenv("TOWER_OPERATOR_USERNAME", raising=False)
    monkeypatch.delenv("TOWER_OPERATOR_PASSWORD", raising=False)


@pytest.mark.django_db
def test_it_creates_the_operator_and_shows_the_generated_password_only_the_first_time() -> None:
    first = _run("startup_summary", "--url", "http://127.0.0.1:8123/")
    password = _field(first, "password").split()[0]

    assert _field(first, "console") == "http://127.0.0.1:8123/"
    assert _field(first, "admin") == "http://127.0.0.1:8123/admin/"
    assert _field(first, "API") == "http://127.0.0.1:8123/meta/control-tower/"
    assert _field(first, "username") == "admin"
    assert _password_works("admin", password)
    second = _run("startup_summary")
    assert password not in second
    assert _field(second, "password") == "as set before — forgot it? python3 tower.py reset-password admin"


@pytest.mark.django_db
def test_a_password_given_in_the_environment_is_never_printed(monkeypatch) -> None:
    monkeypatch.setenv("TOWER_OPERATOR_USERNAME", "ops")
    monkeypatch.setenv("TOWER_OPERATOR_PASSWORD", "given-by-the-admin-1")

    output = _run("startup_summary")

    assert "given-by-the-admin-1" not in output
    assert _field(output, "password") == "from TOWER_OPERATOR_PASSWORD"
    assert _password_works("ops", "given-by-the-admin-1")


@pytest.mark.django_db
def test_it_says_nobody_will_be_alerted_until_a_channel_is_configured(settings) -> None:
    settings.ALERT_EMAILS, settings.SLACK_WEBHOOK_URL, settings.ALERT_WEBHOOK_URL = [], "", ""
    assert _field(_run("startup_summary"), "alerts").startswith("none configured — nobody will be alerted")

    settings.ALERT_EMAILS, settings.ALERT_WEBHOOK_URL = ["ops@example.com"], "http://127.0.0.1:9/hook"
    assert _field(_run("startup_summary"), "alerts") == "email (1 recipient), webhook (127.0.0.1:9)"


def test_it_names_the_target_the_tower_acts_on() -> None:
    assert mode_line("stub", "http://127.0.0.1:8765", "v26.0", []).startswith(
        "STUB — the Meta sandbox at http://127.0.0.1:8765"
    )
    assert mode_line("live", "https://graph.facebook.com", "v26.0", ["act_1", "act_2"]) == (
        "LIVE Meta — https://graph.facebook.com v26.0, act_1, act_2"
    )
    assert mode_line("live", "https://graph.facebook.com", "v26.0", []).endswith("every ad account the token sees")


@pytest.mark.django_db
def test_reset_password_replaces_it_records_who_and_lifts_the_lockout() -> None:
    user = get_user_model().objects.create_superuser("admin", "", "forgotten-password-1")
    AccessAttempt.objects.create(
        username="admin",
        ip_address="127.0.0.1",
        user_agent="",
        http_accept="",
        path_info="/admin/login/",
        get_data="",
        post_data="",
        failures_since_start=5,
    )

    output = _run("reset_password")
    password = output.splitlines()[0].rsplit(" ", 1)[1]

    assert not _password_works("admin", "forgotten-password-1")
    assert _password_works("admin", password)
    entry = LogEntry.objects.get(object_id=str(user.pk))
    assert entry.user_id == user.pk and entry.change_message.startswith("Password reset on the command line by OS ")
    assert not AccessAttempt.objects.filter(username="admin").exists()


@pytest.mark.django_db
def test_reset_password_of_an_unknown_account_names_the_staff_accounts() -> None:
    get_user_model().objects.create_superuser("ops", "", "x-password-1")

    with pytest.raises(CommandError, match="No account named 'admn'. Staff accounts: ops."):
        call_command("reset_password", "admn")


@pytest.mark.django_db
def test_no_log_record_carries_a_generated_password(caplog) -> None:
    caplog.set_level(logging.DEBUG)

    created = _field(_run("startup_summary"), "password").split()[0]
    reset = _run("reset_password").splitlines()[0].rsplit(" ", 1)[1]

    records = [(r.getMessage(), repr(r.args)) for r in caplog.records]
    assert any("operator account 'admin' created" in m for m, _ in records)
    assert any("password of 'admin' reset" in m for m, _ in records)
    assert not [r for r in records if created in str(r) or reset in str(r)]


def test_the_real_commands_on_a_fresh_machine_write_no_password_to_a_file(tmp_path: Path) -> None:
    """As a person runs them: embedded defaults in a fresh var/, the generated secret key, then a reset."""
    var = tmp_path / "var"
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "CELERY_BROKER_URL", "CACHE_URL", "REDIS_URL")
    }
    env.update(TOWER_VAR_DIR=str(var), LOG_LEVEL="DEBUG")
    start = subprocess.run(
        [
            sys.executable,
            "-c",
            "import tower; env = tower.base_env(); tower.manage(env, 'migrate', '--no-input', '-v0');"
            " tower.manage(env, 'startup_summary')",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert start.returncode == 0, start.stderr
    reset = subprocess.run(
        [sys.executable, "tower.py", "reset-password", "admin"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reset.returncode == 0, reset.stderr

    passwords = [_field(start.stdout, "password").split()[0], reset.stdout.splitlines()[-2].rsplit(" ", 1)[1]]
    assert "password of 'admin' reset on the command line" in reset.stderr  # the log: who, not what
    files = [f for f in var.rglob("*") if f.is_file()]
    assert any(f.name == "db.sqlite3" for f in files)
    for secret in passwords:
        assert len(secret) == 16 and secret not in start.stderr + reset.stderr
        assert not [f for f in files if secret.encode() in f.read_bytes()]
