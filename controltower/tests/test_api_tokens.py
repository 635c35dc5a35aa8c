"""API tokens are secrets: stored as a sha256 only, shown once, several per user (named, with last use
and expiry), each revocable alone; `manage.py issue_token` and the admin issue, list and revoke them."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from importlib import import_module
from io import StringIO
from types import SimpleNamespace

import pytest
from django.apps import apps as global_apps
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from controltower.models import ApiToken
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from tests.support import admin_client

pytestmark = pytest.mark.django_db

STATUS = "/meta/control-tower/status"
TOKENS = "/admin/controltower/apitoken/"


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("staff", is_staff=True)


def _issue(username: str, *args: str) -> str:
    out = StringIO()
    call_command("issue_token", username, *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def _status_code(key: str, keyword: str = "Bearer") -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {key}")
    return client.get(STATUS).status_code


def test_issue_token_prints_a_256_bit_key_that_authenticates_and_stores_only_its_digest(staff: User) -> None:
    key = _issue("staff")

    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert _status_code(key) == 200 and _status_code(key, "Token") == 200
    token = ApiToken.objects.get(user=staff)
    assert token.digest == hashlib.sha256(key.encode()).hexdigest() and token.prefix == key[:8]
    stored = " ".join(str(value) for value in ApiToken.objects.values_list().get())
    assert key not in stored


def test_a_user_holds_several_named_tokens_and_revoking_one_leaves_the_others(staff: User) -> None:
    laptop, ci = _issue("staff", "--name", "laptop"), _issue("staff", "--name", "ci")

    assert _issue("staff", "--revoke", "laptop") == ""

    assert _status_code(laptop) == 401 and _status_code(ci) == 200
    assert ApiToken.objects.get(name="laptop").revoked_at is not None  # kept: who held what
    with pytest.raises(CommandError, match="no live token named 'laptop'"):
        _issue("staff", "--revoke", "laptop")
    assert _status_code(_issue("staff", "--name", "laptop")) == 200  # the name is free again


def test_issue_token_never_shows_a_live_token_again(staff: User) -> None:
    _issue("staff", "--name", "ci")

    with pytest.raises(CommandError, match="already has a live token named 'ci'"):
        _issue("staff", "--name", "ci")
    assert ApiToken.objects.count() == 1


def test_list_shows_names_prefixes_and_state_but_no_secret(staff: User) -> None:
    key = _issue("staff", "--name", "ci")
    _issue("staff", "--name", "old")
    _issue("staff", "--revoke", "old")

    listing = _issue("staff", "--list")

    assert "ci\t" + key[:8] in listing and "live" in listing and "Token revoked." in listing
    assert key not in listing


def test_tokens_expire_by_default_after_api_token_days(staff: User, settings) -> None:
    settings.API_TOKEN_DAYS = 30
    key = _issue("staff")
    forever = _issue("staff", "--name", "forever", "--days", "0")

    token = ApiToken.objects.get(name="default")
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert ApiToken.objects.get(name="forever").expires_at is None
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = APIClient(HTTP_AUTHORIZATION=f"Bearer {key}").get(STATUS)
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    assert _status_code(forever) == 200


def test_last_use_is_recorded_at_most_once_a_minute(staff: User) -> None:
    key = _issue("staff")
    assert ApiToken.objects.get().last_used_at is None

    _status_code(key)
    first = ApiToken.objects.get().last_used_at
    _status_code(key)

    assert first is not None and ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=first - timedelta(minutes=2))
    _status_code(key)
    assert ApiToken.objects.get().last_used_at > first


def test_revoke_works_for_a_former_staff_user_and_issue_refuses_non_staff(staff: User) -> None:
    key = _issue("staff")
    staff.is_staff = False
    staff.save()

    _issue("staff", "--revoke", "default")

    assert _status_code(key) == 401
    with pytest.raises(CommandError, match="not an active staff user"):
        _issue("staff", "--name", "again")
    with pytest.raises(CommandError, match="No user named"):
        _issue("ghost")


def test_a_token_of_a_deactivated_user_gets_401(staff: User) -> None:
    key = _issue("staff")
    User.objects.filter(pk=staff.pk).update(is_active=False)

    assert _status_code(key) == 401


# --- admin ---------------------------------------------------------------------------------------


def test_a_superuser_issues_a_token_in_the_admin_and_sees_it_once(staff: User) -> None:
    root = admin_client("root", superuser=True)
    form = root.get(f"{TOKENS}add/").content.decode()
    assert 'name="name"' in form and 'name="days"' in form and 'name="digest"' not in form

    page = root.post(f"{TOKENS}add/", {"user": staff.pk, "name": "dashboard", "days": 7})

    assert page.status_code == 200
    key = re.search(r'id="api-token"[^>]*>([0-9a-f]{64})<', page.content.decode()).group(1)
    assert _status_code(key) == 200
    token = ApiToken.objects.get(name="dashboard")
    assert token.user == staff and token.created_by == "root"
    assert timedelta(days=6) < token.expires_at - timezone.now() <= timedelta(days=7)
    listing = root.get(TOKENS).content.decode()
    assert token.prefix in listing and key not in listing
    assert key not in root.get(f"{TOKENS}{token.pk}/change/").content.decode()
    assert token.digest not in root.get(f"{TOKENS}{token.pk}/change/").content.decode()


def test_the_admin_refuses_a_duplicate_live_name_with_a_field_error(staff: User) -> None:
    _issue("staff", "--name", "ci")

    page = admin_client("root", superuser=True).post(f"{TOKENS}add/", {"user": staff.pk, "name": "ci", "days": 7})

    assert page.status_code == 200 and "already has a live token of this name" in page.content.decode()
    assert ApiToken.objects.count() == 1


def test_a_superuser_revokes_one_token_in_the_admin(staff: User) -> None:
    laptop, ci = _issue("staff", "--name", "laptop"), _issue("staff", "--name", "ci")

    response = admin_client("root", superuser=True).post(
        TOKENS, {"action": "revoke_tokens", "_selected_action": [ApiToken.objects.get(name="laptop").pk], "index": 0}
    )

    assert response.status_code == 302
    assert _status_code(laptop) == 401 and _status_code(ci) == 200
    assert ApiToken.objects.get(name="laptop").revoked_by == "root"


@pytest.mark.parametrize("group", [VIEWERS_GROUP, OPERATORS_GROUP])
def test_viewers_and_operators_see_no_tokens(staff: User, group: str) -> None:
    _issue("staff")
    client = admin_client("someone", group)

    assert client.get(TOKENS).status_code == 403
    assert client.get(f"{TOKENS}add/").status_code == 403


# --- the data migration from rest_framework.authtoken ---------------------------------------------


def test_the_migration_hashes_drf_authtoken_keys_and_drops_their_table(staff: User) -> None:
    legacy = "0123456789abcdef0123456789abcdef01234567"  # a DRF key, stored in clear by rest_framework.authtoken
    created = "timestamp with time zone" if connection.vendor == "postgresql" else "datetime"
    with connection.cursor() as cursor:  # the table as DRF's migrations made it
        cursor.execute(
            f'CREATE TABLE authtoken_token ("key" varchar(40) PRIMARY KEY, "created" {created} NOT NULL, '
            '"user_id" integer NOT NULL UNIQUE)'
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [legacy, timezone.now(), staff.pk])

    migration = import_module("controltower.migrations.0010_api_tokens")
    migration.hash_legacy_tokens(global_apps, SimpleNamespace(connection=connection))

    assert "authtoken_token" not in connection.introspection.table_names()
    token = ApiToken.objects.get(user=staff)
    assert (token.name, token.prefix, token.expires_at) == ("migrated", legacy[:8], None)
    assert token.created_at <= timezone.now()
    assert _status_code(legacy) == 200
