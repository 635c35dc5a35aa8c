"""Settings for the test suite: the real settings, with a throw-away SECRET_KEY and fast hashing."""

import os
from pathlib import Path

# Tests keep their own runtime folder (SQLite file, broker queue) apart from a running console.
os.environ.setdefault("TOWER_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production-0123456789abcdef")

from config.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
# Nothing answers broadcast pings in most tests: do not wait Celery's full second each cycle.
WORKER_PING_TIMEOUT_SECONDS = 0.1
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 (whitenoise warns about a missing folder)
# django-axes stays on (tests/test_security.py proves the lockout). Its attempts live in the
# database, which every test rolls back, so one test's failed logins never lock out another's.
AXES_ENABLED = True
