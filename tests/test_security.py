"""Security baseline: login lockout (django-axes), write throttling, `check --deploy`, no secrets in logs."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.test import APIClient

from config.logging_filters import SecretMaskingFilter, mask_secrets
from controltower.roles import OPERATORS_GROUP
from tests.support import ROOT, api_token

API = "/meta/control-tower"
LOGIN = "/admin/login/?next=/"
PASSWORD = "correct horse battery staple"

# The production environment documented in README.md ("Security"): `check --deploy` must be clean.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "q7Vt9-Lr2xN8sKp4Hw6ZbJ1mYc3FgD5eUa0Qo_RiTnXlVjMkEzBhGySdCfWuPvIt",
    "ALLOWED_HOSTS": "tower.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://tower.example.com",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "USE_X_FORWARDED_PROTO": "1",
}


def _manage(*args: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in (*PRODUCTION_ENV, "DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings", TOWER_VAR_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def _python(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in (*PRODUCTION_ENV, "DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings", TOWER_VAR_DIR=str(tmp_path), SECRET_KEY="k" * 50)
    code = "import django; django.setup(); from django.conf import settings as s; " + code
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


# --- check --deploy ----------------------------------------------------------------------


def test_check_deploy_is_clean_with_the_documented_production_environment(tmp_path) -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **PRODUCTION_ENV)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_flags_a_development_environment(tmp_path) -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, SECRET_KEY="k" * 50)

    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W009", "security.W012", "security.W016"):
        assert check in result.stderr, check


def test_security_settings_come_from_the_environment(tmp_path) -> None:
    code = (
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.KILL_SWITCH_THROTTLE_RATE, "
        "s.COMMAND_THROTTLE_RATE, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD)"
    )
    defaults = _python(code, tmp_path)
    assert defaults.returncode == 0, defaults.stderr
    assert defaults.stdout.split() == ["5", "900.0", "30/min", "60/min", "False", "False"]

    custom = _python(
        code,
        tmp_path,
        AXES_FAILURE_LIMIT="3",
        AXES_COOLOFF_MINUTES="60",
        KILL_SWITCH_THROTTLE_RATE="5/s",
        COMMAND_THROTTLE_RATE="",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
    )
    assert custom.returncode == 0, custom.stderr
    assert custom.stdout.split() == ["3", "3600.0", "5/s", "None", "True", "True"]

    bad = _python(code, tmp_path, KILL_SWITCH_THROTTLE_RATE="thirty")
    assert bad.returncode != 0
    assert "KILL_SWITCH_THROTTLE_RATE='thirty' is not a rate like '30/min'" in bad.stderr


# --- django-axes ---------------------------------------------------------------------------


def test_axes_is_wired_as_its_docs_require() -> None:
    assert django_settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert django_settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"
    assert django_settings.AXES_ENABLED is not False  # on in the tests too
    assert django_settings.AXES_FAILURE_LIMIT == 5
    assert timedelta(minutes=15) == django_settings.AXES_COOLOFF_TIME
    assert django_settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def _login(password: str, username: str = "olivia", ip: str = "203.0.113.7"):
    return Client(REMOTE_ADDR=ip).post(LOGIN, {"username": username, "password": password})


@pytest.mark.django_db
def test_a_username_and_address_is_locked_out_after_five_failures() -> None:
    User.objects.create_user("olivia", password=PASSWORD, is_staff=True)

    for _ in range(4):
        assert _login("wrong").status_code == 200  # the form again, with an error
    assert _login("wrong").status_code == 429  # the 5th failure locks the pair out
    # Locked out: even the right password is refused, for the cool-off period.
    assert _login(PASSWORD).status_code == 429
    # Only this username from this address: the same user elsewhere, and others here, still get in.
    assert _login(PASSWORD, ip="198.51.100.9").status_code == 302
    User.objects.create_user("victor", password=PASSWORD, is_staff=True)
    assert _login(PASSWORD, username="victor").status_code == 302


@pytest.mark.django_db
def test_a_successful_login_resets_the_failure_count() -> None:
    User.objects.create_user("olivia", password=PASSWORD, is_staff=True)

    for _ in range(4):
        _login("wrong")
    assert _login(PASSWORD).status_code == 302
    for _ in range(4):
        assert _login("wrong").status_code == 200


@pytest.mark.django_db
def test_the_lockout_lifts_after_the_cool_off(settings) -> None:
    from axes.models import AccessAttempt

    User.objects.create_user("olivia", password=PASSWORD, is_staff=True)
    for _ in range(5):
        _login("wrong")
    assert _login(PASSWORD).status_code == 429

    # 16 minutes later (the attempt's clock moved back rather than the test's forward).
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16))
    assert _login(PASSWORD).status_code == 302


@pytest.mark.django_db
def test_force_login_and_tokens_are_not_affected_by_a_lockout() -> None:
    user = User.objects.create_user("olivia", password=PASSWORD, is_staff=True)
    for _ in range(5):
        _login("wrong", ip="127.0.0.1")
    assert _login(PASSWORD, ip="127.0.0.1").status_code == 429

    session = Client()
    session.force_login(user)
    assert session.get(f"{API}/status").status_code == 200
    token = APIClient()
    token.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(user)}")
    assert token.get(f"{API}/status").status_code == 200


# --- throttling ----------------------------------------------------------------------------

WRITES = [
    (f"{API}/emergency-stop", "KILL_SWITCH_THROTTLE_RATE"),
    (f"{API}/resume", "KILL_SWITCH_THROTTLE_RATE"),
    (f"{API}/command", "COMMAND_THROTTLE_RATE"),
    (f"{API}/recovery", "COMMAND_THROTTLE_RATE"),
]
# A body each endpoint refuses with 400, so the throttled requests change nothing.
INVALID = {
    f"{API}/emergency-stop": {"reason": ""},
    f"{API}/resume": {"resume_schedulers": "maybe"},
    f"{API}/command": {},
    f"{API}/recovery": {},
}


def _operator(name: str = "olivia") -> APIClient:
    user = User.objects.create_user(name, is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(user)}")
    return client


@pytest.mark.parametrize(("url", "rate_setting"), WRITES, ids=[url.rsplit("/", 1)[1] for url, _ in WRITES])
def test_writes_are_throttled_per_user_with_retry_after(synced, settings, url: str, rate_setting: str) -> None:
    setattr(settings, rate_setting, "2/min")
    olivia = _operator()

    # Invalid bodies (400) still count: the throttle runs before the view, and changes nothing here.
    for _ in range(2):
        assert olivia.post(url, INVALID[url], format="json").status_code == 400
    throttled = olivia.post(url, INVALID[url], format="json")

    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert "throttled" in throttled.json()["detail"].lower()
    # Per user: another operator still gets through.
    assert _operator("victor").post(url, INVALID[url], format="json").status_code == 400


def test_each_write_endpoint_has_its_own_budget(synced, settings) -> None:
    settings.KILL_SWITCH_THROTTLE_RATE = "1/min"
    olivia = _operator()

    stop, resume = f"{API}/emergency-stop", f"{API}/resume"
    assert olivia.post(stop, INVALID[stop], format="json").status_code == 400
    assert olivia.post(stop, INVALID[stop], format="json").status_code == 429
    assert olivia.post(resume, INVALID[resume], format="json").status_code == 400  # resume is not used up


MODULE_COMMANDS = [f"{API}/modules/10.1/{verb}" for verb in ("start", "stop", "restart")]


@pytest.mark.parametrize("url", MODULE_COMMANDS, ids=["start", "stop", "restart"])
def test_module_commands_share_the_command_budget(synced, settings, url: str) -> None:
    settings.COMMAND_THROTTLE_RATE = "2/min"
    olivia = _operator()

    assert olivia.post(url, {"reason": ["not text"]}, format="json").status_code == 400
    assert olivia.post(f"{API}/command", INVALID[f"{API}/command"], format="json").status_code == 400
    throttled = olivia.post(url, {"reason": ["not text"]}, format="json")

    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    assert olivia.post(f"{API}/command", INVALID[f"{API}/command"], format="json").status_code == 429
    assert olivia.get(f"{API}/modules/10.1/").status_code == 200  # reading the module is not throttled


def test_the_schema_documents_the_429_of_the_module_commands() -> None:
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    for verb in ("start", "stop", "restart"):
        assert "429" in paths[f"{API}/modules/{{code}}/{verb}"]["post"]["responses"], verb


def test_dry_runs_do_not_use_up_the_real_stops_budget(synced, meta_sandbox, settings) -> None:
    settings.KILL_SWITCH_THROTTLE_RATE = "2/min"
    olivia = _operator()
    stop = f"{API}/emergency-stop"

    for _ in range(2):
        assert olivia.post(stop, {"reason": "preview", "dry_run": True}, format="json").status_code == 200
    response = olivia.post(stop, {"reason": "spike"}, format="json")

    assert response.status_code == 200 and response.json()["run_id"]
    assert meta_sandbox.campaigns(status="ACTIVE") == []


def test_dry_runs_have_their_own_budget(synced, meta_sandbox, settings) -> None:
    settings.KILL_SWITCH_PREVIEW_THROTTLE_RATE = "1/min"
    olivia = _operator()
    stop = f"{API}/emergency-stop"

    assert olivia.post(stop, {"reason": "preview", "dry_run": True}, format="json").status_code == 200
    assert olivia.post(stop, {"reason": "preview", "dry_run": True}, format="json").status_code == 429
    # Only a body that is a dry run counts as one: a false or malformed dry_run is a real stop's request.
    assert olivia.post(stop, {"reason": "", "dry_run": False}, format="json").status_code == 400
    assert olivia.post(stop, {"reason": "", "dry_run": "true"}, format="json").status_code == 400


def test_the_console_confirmation_page_does_not_use_up_the_stops_budget(synced, meta_sandbox, settings) -> None:
    settings.KILL_SWITCH_THROTTLE_RATE = "1/min"
    user = User.objects.create_user("olivia", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    console = Client()
    console.force_login(user)

    for _ in range(3):  # each one previews the stop (a dry run read from Meta)
        assert console.get("/emergency-stop/").status_code == 200
    response = console.post("/emergency-stop/", {"reason": "spike", "pause_campaigns": "on"})

    assert response.status_code == 302
    assert meta_sandbox.campaigns(status="ACTIVE") == []


def test_an_empty_rate_switches_the_throttle_off(synced, settings) -> None:
    settings.COMMAND_THROTTLE_RATE = None
    olivia = _operator()

    assert all(olivia.post(f"{API}/command", {}, format="json").status_code == 400 for _ in range(5))


def test_reads_are_not_throttled(synced, settings) -> None:
    settings.KILL_SWITCH_THROTTLE_RATE = settings.COMMAND_THROTTLE_RATE = "1/min"
    olivia = _operator()

    for _ in range(5):
        assert olivia.get(f"{API}/status").status_code == 200
        assert olivia.get(f"{API}/modules/").status_code == 200


def test_the_console_forms_count_against_the_same_budget_as_the_api(synced, settings) -> None:
    settings.KILL_SWITCH_THROTTLE_RATE = "2/min"
    user = User.objects.create_user("olivia", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    console = Client()
    console.force_login(user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(user)}")

    assert console.post("/resume/", {}).status_code == 302  # refused (not halted): nothing changes
    assert api.post(f"{API}/resume", INVALID[f"{API}/resume"], format="json").status_code == 400
    throttled = console.post("/resume/", {})

    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    assert b"too many requests" in throttled.content
    assert api.post(f"{API}/resume", INVALID[f"{API}/resume"], format="json").status_code == 429
    assert console.get("/resume/").status_code == 200  # reading the confirmation page is not throttled


def test_the_schema_documents_the_429() -> None:
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    for url, _ in WRITES:
        assert "429" in paths[url]["post"]["responses"], url
    assert "429" not in paths["/meta/control-tower/status"]["get"]["responses"]


# --- hostile bodies ------------------------------------------------------------------------


def test_a_json_body_over_the_upload_limit_is_a_413_and_changes_nothing(synced, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    from controltower.models import TowerState

    response = _operator().post(f"{API}/emergency-stop", {"reason": "x" * 2000}, format="json")

    assert response.status_code == 413 and "larger than 1000 bytes" in response.json()["detail"]
    assert not TowerState.get().emergency_stop_active


# --- secrets in logs -----------------------------------------------------------------------

TOKEN = "EAABsecretAccessToken0123456789abcdef"
PROOF = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
API_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"


@pytest.mark.parametrize(
    "text",
    [
        f"GET /v21.0/act_1/campaigns?access_token={TOKEN}&limit=25",
        f"POST https://graph.facebook.com/v21.0/123?fields=id&appsecret_proof={PROOF}&access_token={TOKEN}",
        f'{{"access_token": "{TOKEN}", "appsecret_proof": "{PROOF}"}}',
        f"headers={{'Authorization': 'Bearer {API_KEY}'}}",
        f"Authorization: Token {API_KEY}",
        f"Authorization: Module {API_KEY}",
        f"HTTP_AUTHORIZATION=Bearer {API_KEY}",
        f"curl -H 'Authorization: bearer {API_KEY}'",
    ],
)
def test_mask_secrets(text: str) -> None:
    masked = mask_secrets(text)

    assert TOKEN not in masked and PROOF not in masked and API_KEY not in masked, masked
    assert "***" in masked


def test_mask_secrets_leaves_ordinary_text_alone() -> None:
    text = "Module 10.1 restarted by olivia; token_last_used_at updated; 3 campaigns paused"
    assert mask_secrets(text) == text


def _configured_handler() -> logging.Handler:
    handlers = [h for h in logging.getLogger().handlers if any(isinstance(f, SecretMaskingFilter) for f in h.filters)]
    assert handlers, "settings.LOGGING must attach SecretMaskingFilter to the root handler"
    return handlers[0]


def test_the_configured_logging_masks_secrets_in_messages_args_and_tracebacks() -> None:
    assert django_settings.LOGGING["handlers"]["console"]["filters"] == ["mask_secrets"]
    handler = _configured_handler()
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        log = logging.getLogger("meta_modules.graph")  # a child logger: records reach the root handler
        log.warning("Meta call failed: GET /me/adaccounts?access_token=%s&appsecret_proof=%s", TOKEN, PROOF)
        log.error("request headers: %r", {"Authorization": f"Bearer {API_KEY}"})
        try:
            raise ConnectionError(f"Max retries exceeded with url: /v21.0/me?access_token={TOKEN}")
        except ConnectionError:
            log.exception("sweep failed")
    finally:
        handler.setStream(previous)
    output = stream.getvalue()

    assert "Meta call failed" in output and "sweep failed" in output and "ConnectionError" in output
    assert TOKEN not in output and PROOF not in output and API_KEY not in output, output
    assert output.count("***") >= 5


# --- secrets in API responses ----------------------------------------------------------------


def test_a_transport_error_does_not_carry_the_access_token() -> None:
    from meta_modules.graph import GraphClient, MetaError

    client = GraphClient(graph_url="http://127.0.0.1:9", access_token=TOKEN, max_retries=0, sleep=lambda s: None)
    with pytest.raises(MetaError) as caught:
        client.get("me/adaccounts")

    assert TOKEN not in str(caught.value)
