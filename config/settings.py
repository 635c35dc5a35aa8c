"""Control Tower settings. Every knob is an environment variable, documented in docs/settings.md
(tests/test_settings_documented.py keeps that list complete).

Defaults run the whole console on one machine with nothing but Python: SQLite, a
file-system Celery broker and the bundled Meta sandbox. DATABASE_URL, CELERY_BROKER_URL
and META_MODE=live switch to the production parts.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime files of the embedded defaults (SQLite file, broker folders, file cache, sandbox store).
VAR_DIR = Path(env_str("TOWER_VAR_DIR", str(BASE_DIR / "var")))


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents readable by the owner only (0700): the embedded database,
    broker and cache hold every run, reason and queued task. A folder that exists is left as it is."""
    for folder in reversed([p for p in (path, *path.parents) if not p.exists()]):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off "
            "(e.g. SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))'))."
        )
    SECRET_KEY = "django-insecure-debug-only-key"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "meta_modules",
    "controltower",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a lockout into its 429 response.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out username+IP before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # Every console page shows instants: |timestamp and |zoned need no {% load %}.
            "builtins": ["controltower.templatetags.tower_time"],
        },
    },
]


# --- Database -------------------------------------------------------------------------
def _database(url: str) -> dict:
    try:
        config = dj_database_url.parse(
            url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0), conn_health_checks=True
        )
    except Exception as exc:  # noqa: BLE001 - the library raises several types for a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL={url!r} is not a usable database URL: {exc}") from None
    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        # Web, worker and beat share the file: WAL lets readers run beside one writer, an
        # IMMEDIATE transaction takes the write lock up front (no upgrade deadlock) and the
        # timeout makes a writer wait instead of failing with "database is locked".
        name = Path(config["NAME"])
        if config["NAME"] not in ("", ":memory:"):
            private_dir(name.parent)
            # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o600))
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
        # Tests share their database file with real worker processes, so it cannot be in memory.
        config["TEST"] = {"NAME": str(name.with_name("test_" + name.name))}
    elif engine not in ("django.db.backends.postgresql",):
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// or sqlite:// URL, got engine {engine}.")
    return config


DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LOGIN_URL = "admin:login"

# The shared cache (module cache namespaces, throttling): Redis when CACHE_URL is set, else
# files under var/ — shared by every process on one machine, like the embedded broker.
CACHE_URL = env_str("CACHE_URL")
# A Redis that stops answering fails a cache call within 2 s instead of hanging the request.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
    if CACHE_URL
    else {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(private_dir(VAR_DIR / "cache")),
    }
}

# --- Security -------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Login brute-force protection (django-axes, admin/console login form): after AXES_FAILURE_LIMIT
# failed logins for one username from one IP address, that pair gets 429 for AXES_COOLOFF_MINUTES.
# API tokens are not covered (a wrong token is a 401 that costs nothing to try, but keys are 40 hex).
# Client IP = REMOTE_ADDR: behind a reverse proxy that is the proxy's address.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429

# The console's staff sessions end after this many idle seconds (every request renews it).
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_SECONDS", 1800, minimum=60)
SESSION_SAVE_EVERY_REQUEST = True

# Prometheus /metrics: a bearer token (METRICS_TOKEN) and/or client addresses allowed without
# one (METRICS_ALLOWED_IPS, comma-separated); with neither set, /metrics answers 403 to everyone.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS")


# --- Django REST framework / OpenAPI --------------------------------------------------
def _throttle_rate(name: str, default: str) -> str | None:
    """DRF's "<number>/<s|min|hour|day>"; an empty value switches the throttle off."""
    value = env_str(name, default).strip()
    if value and not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate like '30/min' (per s, min, hour or day).")
    return value or None


# Per user and endpoint: emergency-stop and resume share the first rate, command and recovery the second.
KILL_SWITCH_THROTTLE_RATE = _throttle_rate("KILL_SWITCH_THROTTLE_RATE", "30/min")
# Emergency-stop dry runs count apart: previewing never uses up the real stop's budget.
KILL_SWITCH_PREVIEW_THROTTLE_RATE = _throttle_rate("KILL_SWITCH_PREVIEW_THROTTLE_RATE", "60/min")
COMMAND_THROTTLE_RATE = _throttle_rate("COMMAND_THROTTLE_RATE", "60/min")
# Lifetime of a new API token (manage.py issue_token --days overrides it); 0 = tokens never expire.
API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 90, minimum=0)

REST_FRAMEWORK = {
    # Tokens (`Authorization: Bearer <key>` or `Token <key>`, manage.py issue_token) first, so a
    # 401 says WWW-Authenticate: Bearer; sessions serve the browsable API (CSRF enforced). No Basic.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controltower.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Staff only by default; write endpoints add IsTowerOperator.
    "DEFAULT_PERMISSION_CLASSES": ["controltower.api.permissions.IsTowerViewer"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # JSON bodies only: a form cannot carry the nested fields and lists, and it turns every value
    # into a string that DRF then coerces ("0" for false). Another content type is a 415.
    # Bounded by DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): a larger body is a 413. A key given twice or
    # nesting past controltower.api.parsers.MAX_JSON_DEPTH is a 400.
    "DEFAULT_PARSER_CLASSES": ["controltower.api.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "controltower.api.views.api_exception_handler",
    # Writes only (emergency stop, resume, commands, recovery): per user and endpoint, counted in
    # the shared cache; a throttled request gets 429 with Retry-After. Reads are not throttled.
    # controltower.rate_limits reads the rates from these settings at request time.
    "DEFAULT_THROTTLE_RATES": {
        "emergency_stop": KILL_SWITCH_THROTTLE_RATE,
        "resume": KILL_SWITCH_THROTTLE_RATE,
        "emergency_stop_preview": KILL_SWITCH_PREVIEW_THROTTLE_RATE,
        "command": COMMAND_THROTTLE_RATE,
        "recovery": COMMAND_THROTTLE_RATE,
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Control Tower API",
    "DESCRIPTION": "Supervision and control of the Meta Ads automation stack (modules 10.1–10.17).",
    "VERSION": "1.0.0",
    "SERVE_PERMISSIONS": ["controltower.api.permissions.IsTowerViewer"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "/favicon.ico",  # the console's icon (controltower.console.views.favicon)
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One stable name per choice set, whatever the field is called in each serializer.
    "ENUM_NAME_OVERRIDES": {
        "SystemStatusEnum": "controltower.models.SystemStatus",
        "ModuleStatusEnum": "controltower.models.ModuleStatus",
        "ModeEnum": "controltower.models.Mode",
        "AlertSeverityEnum": "controltower.models.Alert.Severity",
        "RecommendationSeverityEnum": "controltower.api.serializers.RECOMMENDATION_SEVERITIES",
        "DesiredStateEnum": "meta_modules.models.MetaModule.DesiredState",
        "RunOutcomeEnum": "meta_modules.models.ModuleRun.Outcome",
        "LivenessEnum": "controltower.api.serializers.LIVENESS",
        "RunStateEnum": "controltower.models.RunState",
        "HoldStateEnum": "controltower.models.CampaignHold.State",
        "ResumeActionEnum": "controltower.campaign_lists.PREVIEW_ACTIONS",
    },
}

# --- Celery ---------------------------------------------------------------------------
# Without CELERY_BROKER_URL the broker is a folder on disk: it needs no server, so the
# console runs on a fresh machine (it cannot broadcast, so worker pings are unavailable).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("queue", "control"):
        private_dir(_broker_dir / _folder)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers an unacknowledged task after the visibility timeout; it must exceed
    # the longest task and any countdown we use (reference: reliability-security.md §1).
    CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540, minimum=5)
# Acks-late is switched on per task, only for idempotent ones.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 10.0
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Beat writes each task's last_run_at to the database as soon as it sends it (default: every
# 3 min), so "Beat alive, workers dead" can be told apart from "Beat dead" within a minute.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
DJANGO_CELERY_BEAT_TZ_AWARE = True

# --- Meta -----------------------------------------------------------------------------
# stub: the bundled Meta sandbox (a real HTTP server speaking the Graph API wire format);
# live: graph.facebook.com. The code path is the same; only the URL and credentials differ.
META_MODE = env_choice("META_MODE", "stub", ("stub", "live"))
META_SANDBOX_PORT = env_int("META_SANDBOX_PORT", 8765, minimum=1)
META_GRAPH_URL = env_str("META_GRAPH_URL").rstrip("/") or (
    f"http://127.0.0.1:{META_SANDBOX_PORT}" if META_MODE == "stub" else "https://graph.facebook.com"
)
# Sent with every call. The pinned SDK line (facebook-business 26.x) speaks v26.0; Meta answers a
# version past its expiry with error 2635, which the tower alerts on.
META_API_VERSION = env_str("META_API_VERSION") or "v26.0"
if not re.fullmatch(r"v\d+\.\d+", META_API_VERSION):
    raise ImproperlyConfigured(f"META_API_VERSION={META_API_VERSION!r} must look like v26.0.")
META_ACCESS_TOKEN = env_str("META_ACCESS_TOKEN") or ("sandbox-token" if META_MODE == "stub" else "")
META_APP_ID = env_str("META_APP_ID")
META_APP_SECRET = env_str("META_APP_SECRET")  # when set, every call carries appsecret_proof
# Ad accounts to supervise ("act_123,act_456"); empty = every account the token can see.
META_AD_ACCOUNT_IDS = env_list("META_AD_ACCOUNT_IDS")
META_TIMEOUT_SECONDS = env_float("META_TIMEOUT_SECONDS", 10.0, minimum=0.1)
META_MAX_RETRIES = env_int("META_MAX_RETRIES", 4, minimum=0)
# How long a module keeps the discovered list of ad accounts in its cache namespace.
META_ACCOUNTS_CACHE_SECONDS = env_int("META_ACCOUNTS_CACHE_SECONDS", 300, minimum=0)
# Longest a call waits for an ad account's rate-limit block to lift before giving up.
META_MAX_RATE_LIMIT_WAIT_SECONDS = env_float("META_MAX_RATE_LIMIT_WAIT_SECONDS", 120.0, minimum=0.0)
# Longest an async insights report run is waited for before the read gives up.
META_INSIGHTS_ASYNC_TIMEOUT_SECONDS = env_float("META_INSIGHTS_ASYNC_TIMEOUT_SECONDS", 600.0, minimum=1.0)
# A CA bundle for a proxy that inspects TLS (the SDK otherwise trusts only its own bundle).
META_CA_BUNDLE = env_str("META_CA_BUNDLE")
if META_CA_BUNDLE and not Path(META_CA_BUNDLE).is_file():
    raise ImproperlyConfigured(f"META_CA_BUNDLE={META_CA_BUNDLE!r} is not a file.")
if META_MODE == "live" and not META_ACCESS_TOKEN:
    raise ImproperlyConfigured("META_MODE=live needs META_ACCESS_TOKEN (a system-user token with ads_management).")

# --- Control Tower --------------------------------------------------------------------
# Seconds between two health cycles run by Celery Beat (spec: every hour).
HEALTH_CYCLE_INTERVAL_SECONDS = env_int("HEALTH_CYCLE_INTERVAL_SECONDS", 3600, minimum=10)
# A periodic task's message is dropped if it waited longer than this share of its interval,
# so a backlog built during an outage does not fire all at once (PeriodicTask.expire_seconds).
PERIODIC_TASK_EXPIRY_RATIO = env_float("PERIODIC_TASK_EXPIRY_RATIO", 0.9, minimum=0.1, maximum=1.0)

# Health thresholds (see controltower/rules.py for how they combine).
MODULE_ONLINE_SUCCESS_RATE = env_float("MODULE_ONLINE_SUCCESS_RATE", 0.95, minimum=0.0, maximum=1.0)
MODULE_OFFLINE_SUCCESS_RATE = env_float("MODULE_OFFLINE_SUCCESS_RATE", 0.70, minimum=0.0, maximum=1.0)
MODULE_MAX_ERRORS_24H = env_int("MODULE_MAX_ERRORS_24H", 50, minimum=0)
SCHEDULER_GRACE_SECONDS = env_int("SCHEDULER_GRACE_SECONDS", 600, minimum=0)
# A module expected to run (created, or started by an operator) reads UNKNOWN and the system
# STARTING until its first run finishes; past this it is OFFLINE. The default covers the staggered
# first runs (START_STAGGER_SECONDS apart: about 4 min for 17), SCHEDULER_GRACE_SECONDS, and slow first runs.
STARTING_GRACE_MINUTES = env_int("STARTING_GRACE_MINUTES", 30, minimum=1)
DB_HEALTHY_LATENCY_MS = env_float("DB_HEALTHY_LATENCY_MS", 250.0, minimum=1.0)
API_MAX_ERROR_RATIO = env_float("API_MAX_ERROR_RATIO", 0.2, minimum=0.0, maximum=1.0)
# Beat schedules a heartbeat that a worker executes; older than the stale limit = dead.
HEARTBEAT_INTERVAL_SECONDS = env_int("HEARTBEAT_INTERVAL_SECONDS", 60, minimum=5)
HEARTBEAT_STALE_SECONDS = env_int("HEARTBEAT_STALE_SECONDS", 300, minimum=10)
WATCHDOG_INTERVAL_SECONDS = env_int("WATCHDOG_INTERVAL_SECONDS", 60, minimum=5)
PROBE_TIMEOUT_SECONDS = env_float("PROBE_TIMEOUT_SECONDS", 3.0, minimum=0.1)
# How long the cycle waits for workers to answer a broadcast ping (Celery's default: 1 s).
WORKER_PING_TIMEOUT_SECONDS = env_float("WORKER_PING_TIMEOUT_SECONDS", 1.0, minimum=0.05)
HEALTH_CYCLE_LOCK_SECONDS = env_int("HEALTH_CYCLE_LOCK_SECONDS", 600, minimum=30)
RETENTION_DAYS = env_int("RETENTION_DAYS", 90, minimum=1)
MODULE_RUN_RETENTION_DAYS = env_int("MODULE_RUN_RETENTION_DAYS", 30, minimum=1)

# Kill-switch readiness (controltower.readiness), checked at every health cycle and on demand.
# A token (or its data access) expiring within this many days makes readiness DEGRADED.
READINESS_TOKEN_WARN_DAYS = env_int("READINESS_TOKEN_WARN_DAYS", 7, minimum=0)
READINESS_DEADLINE_SECONDS = env_float("READINESS_DEADLINE_SECONDS", 10.0, minimum=1.0)
# Meta's own time per batch item, for the stop's time estimate (docs/meta-sandbox.md: live batch timings).
READINESS_BATCH_ITEM_MS = env_float("READINESS_BATCH_ITEM_MS", 20.0, minimum=0.0)
READINESS_RETENTION_DAYS = env_int("READINESS_RETENTION_DAYS", 7, minimum=1)

# start_all and resume space the modules' first runs this far apart instead of firing all at once.
START_STAGGER_SECONDS = env_int("START_STAGGER_SECONDS", 15, minimum=0)
# Kill switch. The stop works inside the web request for at most this long; what is not
# confirmed paused by then stays pending and is swept again in the background.
EMERGENCY_STOP_DEADLINE_SECONDS = env_float("EMERGENCY_STOP_DEADLINE_SECONDS", 20.0, minimum=1.0)
# The stop form's preview lists Meta for at most this long: with Meta down the form (and its
# STOP button) appears after this, saying what could not be listed.
EMERGENCY_STOP_PREVIEW_SECONDS = env_float("EMERGENCY_STOP_PREVIEW_SECONDS", 5.0, minimum=1.0)
KILL_SWITCH_PARALLELISM = env_int("KILL_SWITCH_PARALLELISM", 150, minimum=1)
KILL_SWITCH_ACCOUNTS_PER_GROUP = env_int("KILL_SWITCH_ACCOUNTS_PER_GROUP", 10, minimum=1)
KILL_SWITCH_RETRY_ATTEMPTS = env_int("KILL_SWITCH_RETRY_ATTEMPTS", 10, minimum=1)
KILL_SWITCH_RETRY_BASE_SECONDS = env_int("KILL_SWITCH_RETRY_BASE_SECONDS", 15, minimum=1)
# How long a stop may work on its claimed campaigns before another sweep may take them over.
HOLD_CLAIM_SECONDS = env_int("HOLD_CLAIM_SECONDS", 120, minimum=10)
if HOLD_CLAIM_SECONDS <= EMERGENCY_STOP_DEADLINE_SECONDS:  # a live stop's claims would lapse mid-stop
    raise ImproperlyConfigured(
        f"HOLD_CLAIM_SECONDS={HOLD_CLAIM_SECONDS} must exceed "
        f"EMERGENCY_STOP_DEADLINE_SECONDS={EMERGENCY_STOP_DEADLINE_SECONDS:g}."
    )


def _crontab(name: str) -> str:
    """A crontab expression "minute hour day-of-month month day-of-week" (Celery's syntax, in
    CELERY_TIMEZONE); empty = off. Refused at start when Celery could not schedule it."""
    value = " ".join(env_str(name).split())
    if not value:
        return ""
    fields = value.split(" ")
    if len(fields) != 5:
        raise ImproperlyConfigured(
            f"{name}={value!r} must have 5 fields, 'minute hour day-of-month month day-of-week' "
            "(e.g. '30 4 * * 1': Mondays at 04:30 UTC); empty switches it off."
        )
    from celery.schedules import crontab

    try:
        crontab(*fields[:2], day_of_week=fields[4], day_of_month=fields[2], month_of_year=fields[3])
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not a valid crontab expression: {exc}") from None
    return value


# Fire drills on the canary campaigns (controltower/drills.py), on this crontab schedule; "" = off.
DRILL_SCHEDULE = _crontab("DRILL_SCHEDULE")
# Two-person rule for resume: a second, different operator must approve within the TTL.
RESUME_REQUIRES_SECOND_APPROVER = env_bool("RESUME_REQUIRES_SECOND_APPROVER", False)
RESUME_APPROVAL_TTL_SECONDS = env_int("RESUME_APPROVAL_TTL_SECONDS", 1800, minimum=60)

# Auto-recovery (controltower/recovery_policy.py): procedures at or above the threshold run by
# themselves; restarts back off exponentially, at most RECOVERY_MAX_ATTEMPTS per window, then
# the module needs a human; more than RECOVERY_BREAKER_SHARE of modules failing = no restarts.
RECOVERY_AUTO_EXECUTE_THRESHOLD = env_float("RECOVERY_AUTO_EXECUTE_THRESHOLD", 0.85, minimum=0.0, maximum=1.0)
RECOVERY_ERROR_THRESHOLD = env_int("RECOVERY_ERROR_THRESHOLD", 50, minimum=0)
RECOVERY_BACKOFF_BASE_SECONDS = env_int("RECOVERY_BACKOFF_BASE_SECONDS", 30, minimum=0)
RECOVERY_BACKOFF_CAP_SECONDS = env_int("RECOVERY_BACKOFF_CAP_SECONDS", 600, minimum=0)
RECOVERY_MAX_ATTEMPTS = env_int("RECOVERY_MAX_ATTEMPTS", 3, minimum=1)
RECOVERY_WINDOW_SECONDS = env_int("RECOVERY_WINDOW_SECONDS", 6 * 3600, minimum=60)
RECOVERY_RESET_AFTER_HEALTHY_SECONDS = env_int("RECOVERY_RESET_AFTER_HEALTHY_SECONDS", 600, minimum=0)
RECOVERY_BREAKER_SHARE = env_float("RECOVERY_BREAKER_SHARE", 0.5, minimum=0.0, maximum=1.0)

# --- Alerts ---------------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if env_str("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "control-tower@localhost")
# Comma-separated addresses that receive alerts; empty = no email alerts.
ALERT_EMAILS = env_list("ALERT_EMAILS")
# Slack incoming-webhook URL and a generic JSON webhook URL; empty = channel off.
SLACK_WEBHOOK_URL = env_str("SLACK_WEBHOOK_URL")
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL")
# An alert still open is sent again after this long (Alertmanager's repeat_interval).
ALERT_REPEAT_SECONDS = env_int("ALERT_REPEAT_SECONDS", 4 * 3600, minimum=60)
ALERT_HTTP_TIMEOUT_SECONDS = env_float("ALERT_HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Masks Meta access tokens, appsecret_proof and Authorization header values in every record.
    "filters": {"mask_secrets": {"()": "config.logging_filters.SecretMaskingFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_secrets"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Module jobs ---
# 10.1: an ad account whose last sync is older than this is reported stale.
MIRROR_STALE_HOURS = env_float("MIRROR_STALE_HOURS", 2.0, minimum=0.1)
# 10.4: days of daily insights collected per run, today included (older days are final on Meta).
INSIGHTS_LOOKBACK_DAYS = env_int("INSIGHTS_LOOKBACK_DAYS", 7, minimum=1)
# The module jobs that work per ad account run as one Celery task per this many accounts (a part of
# the run); a part not reported by its deadline (capped by the module's own interval) is recorded lost.
MODULE_ACCOUNTS_PER_TASK = env_int("MODULE_ACCOUNTS_PER_TASK", 1, minimum=1)
MODULE_PART_DEADLINE_SECONDS = env_int("MODULE_PART_DEADLINE_SECONDS", 600, minimum=5)
# 10.6: budgets follow ROAS against this target; within ±ROAS_BAND (a fraction of it) nothing changes.
TARGET_ROAS = env_float("TARGET_ROAS", 2.0, minimum=0.0)
ROAS_BAND = env_float("ROAS_BAND", 0.10, minimum=0.0, maximum=1.0)
BUDGET_STEP = env_float("BUDGET_STEP", 0.20, minimum=0.0, maximum=1.0)
# Proposals changing the budget by at most this fraction are approved by policy; bigger ones wait for a human.
BUDGET_AUTO_APPROVE_LIMIT = env_float("BUDGET_AUTO_APPROVE_LIMIT", 0.20, minimum=0.0)
# 10.7 guardrails: daily budget bounds (minor units), largest change per application, and at most
# one change per campaign per interval (Meta allows about 4 budget changes an hour).
BUDGET_FLOOR_CENTS = env_int("BUDGET_FLOOR_CENTS", 1_000, minimum=1)
BUDGET_CEILING_CENTS = env_int("BUDGET_CEILING_CENTS", 1_000_000, minimum=1)
BUDGET_MAX_CHANGE = env_float("BUDGET_MAX_CHANGE", 0.50, minimum=0.0)
BUDGET_MIN_INTERVAL_MINUTES = env_int("BUDGET_MIN_INTERVAL_MINUTES", 60, minimum=0)
# 10.9: a spike is today's hourly spend rate at least SPIKE_RATIO × the baseline, with at least
# SPIKE_MIN_SPEND (account currency) spent today. The opt-in flag asks the tower for an emergency stop.
SPIKE_RATIO = env_float("SPIKE_RATIO", 3.0, minimum=1.0)
SPIKE_MIN_SPEND = env_float("SPIKE_MIN_SPEND", 50.0, minimum=0.0)
SPIKE_REQUESTS_EMERGENCY_STOP = env_bool("SPIKE_REQUESTS_EMERGENCY_STOP", False)
# 10.10: copy variants for the top ads by 14-day CTR among those with enough impressions.
COPY_VARIANTS_TOP_N = env_int("COPY_VARIANTS_TOP_N", 5, minimum=1)
COPY_VARIANTS_MIN_IMPRESSIONS = env_int("COPY_VARIANTS_MIN_IMPRESSIONS", 1_000, minimum=0)
# 10.12: an ad set is weak above this multiple of its account's cost per purchase.
AUDIENCE_WEAK_FACTOR = env_float("AUDIENCE_WEAK_FACTOR", 1.5, minimum=1.0)
# 10.15: fatigue = CTR of the last 7 days more than this fraction below the 7 days before,
# with at least FATIGUE_MIN_IMPRESSIONS in each window.
FATIGUE_CTR_DROP = env_float("FATIGUE_CTR_DROP", 0.20, minimum=0.0, maximum=1.0)
FATIGUE_MIN_IMPRESSIONS = env_int("FATIGUE_MIN_IMPRESSIONS", 1_000, minimum=0)
# 10.16: significance level of the winner's two-proportion z-test.
WINNER_P_VALUE = env_float("WINNER_P_VALUE", 0.05, minimum=0.0, maximum=1.0)
