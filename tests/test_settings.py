"""Settings come from the environment and refuse bad values with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import ROOT


def _load_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default']['ENGINE'])"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def test_it_refuses_to_start_without_secret_key_when_debug_is_off() -> None:
    result = _load_settings(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_it_refuses_a_bad_database_url() -> None:
    result = _load_settings(SECRET_KEY="k" * 50, DATABASE_URL="foo://nowhere/db")
    assert result.returncode != 0
    assert "DATABASE_URL='foo://nowhere/db' is not a usable database URL" in result.stderr


def test_it_refuses_a_malformed_boolean() -> None:
    result = _load_settings(SECRET_KEY="k" * 50, DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_it_defaults_to_sqlite_and_accepts_postgres_urls(tmp_path) -> None:
    default = _load_settings(SECRET_KEY="k" * 50, TOWER_VAR_DIR=str(tmp_path))
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == "django.db.backends.sqlite3"
    postgres = _load_settings(
        SECRET_KEY="k" * 50, DATABASE_URL="postgres://u@db.example:5432/tower", TOWER_VAR_DIR=str(tmp_path)
    )
    assert postgres.returncode == 0, postgres.stderr
    assert postgres.stdout.strip() == "django.db.backends.postgresql"


def test_it_refuses_an_unknown_meta_mode() -> None:
    result = _load_settings(SECRET_KEY="k" * 50, META_MODE="sandboxed")
    assert result.returncode != 0
    assert "META_MODE='sandboxed' must be one of: stub, live" in result.stderr


def test_live_mode_without_a_token_refuses_to_start() -> None:
    result = _load_settings(SECRET_KEY="k" * 50, META_MODE="live")
    assert result.returncode != 0
    assert "META_MODE=live needs META_ACCESS_TOKEN" in result.stderr


def test_live_mode_points_the_same_client_at_graph_facebook_com(tmp_path) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL", "META_GRAPH_URL")}
    clean.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="k" * 50,
        META_MODE="live",
        META_ACCESS_TOKEN="EAAB-live",
        TOWER_VAR_DIR=str(tmp_path),
    )
    code = (
        "import django; django.setup(); from meta_modules.graph import GraphClient; "
        "c = GraphClient(); print(c.api._session.GRAPH, c.api._session.access_token)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["https://graph.facebook.com", "EAAB-live"]


def test_gunicorn_outlasts_an_emergency_stop_and_its_alerts() -> None:
    # gunicorn kills a worker past its timeout (30 s by default): a stop with a slow Slack would be cut short.
    env = {
        **os.environ,
        "EMERGENCY_STOP_DEADLINE_SECONDS": "45",
        "EMAIL_TIMEOUT": "15",
        "ALERT_HTTP_TIMEOUT_SECONDS": "20",
    }
    printed = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "config.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    timeout = int(next(line for line in printed.splitlines() if line.startswith("timeout ")).split("=")[1])
    assert timeout > 45 + 15 + 2 * 3 * 20


def test_it_refuses_claims_that_would_lapse_before_a_stop_ends() -> None:
    result = _load_settings(SECRET_KEY="k" * 50, EMERGENCY_STOP_DEADLINE_SECONDS="30", HOLD_CLAIM_SECONDS="30")
    assert result.returncode != 0
    assert "HOLD_CLAIM_SECONDS=30 must exceed EMERGENCY_STOP_DEADLINE_SECONDS=30" in result.stderr


def test_live_mode_sends_the_pinned_version_and_trusts_a_given_ca_bundle(tmp_path) -> None:
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DATABASE_URL", "META_GRAPH_URL", "META_API_VERSION")
    }
    clean.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="k" * 50,
        META_MODE="live",
        META_ACCESS_TOKEN="EAAB-live",
        TOWER_VAR_DIR=str(tmp_path),
        META_CA_BUNDLE=str(bundle),
    )
    code = (
        "import django; django.setup(); from meta_modules.graph import GraphClient; "
        "c = GraphClient(); print(c.api.API_VERSION, c.api._api_version, c.session.requests.verify)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["v26.0", "v26.0", str(bundle)]  # the SDK's own line and what is sent


def test_it_refuses_a_missing_ca_bundle_and_a_malformed_version() -> None:
    missing = _load_settings(SECRET_KEY="k" * 50, META_CA_BUNDLE="/nowhere/ca.pem")
    assert missing.returncode != 0 and "META_CA_BUNDLE='/nowhere/ca.pem' is not a file" in missing.stderr
    version = _load_settings(SECRET_KEY="k" * 50, META_API_VERSION="26")
    assert version.returncode != 0 and "META_API_VERSION='26' must look like v26.0" in version.stderr
