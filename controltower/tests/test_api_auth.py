"""Who gets in: tokens (Bearer and Token), sessions, staff only, operators, groups, schema (tokens
themselves: test_api_tokens)."""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib.auth.models import AnonymousUser, Group, User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.management import call_command
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.exceptions import ValidationError
from rest_framework.test import APIClient, APIRequestFactory

from controltower.api.permissions import IsTowerOperator, IsTowerViewer
from controltower.api.views import api_exception_handler
from controltower.models import ApiToken
from controltower.roles import NOT_VIEWED_MODELS, OPERATORS_GROUP, VIEWED_APPS, VIEWERS_GROUP
from tests.support import api_token

pytestmark = pytest.mark.django_db

ENDPOINTS = ["/meta/control-tower/status", "/meta/control-tower/health"]


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("staff", password="pw-staff", is_staff=True)


@pytest.fixture
def member() -> User:
    return User.objects.create_user("member", password="pw-member")


def _token_client(user: User, keyword: str = "Bearer") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {api_token(user)}")
    return client


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_gets_401_with_a_bearer_challenge(url: str) -> None:
    response = APIClient().get(url)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "detail" in response.json()


@pytest.mark.parametrize("url", ENDPOINTS)
@pytest.mark.parametrize("keyword", ["Bearer", "Token", "bearer"])
def test_staff_token_gets_200(url: str, keyword: str, staff: User) -> None:
    assert _token_client(staff, keyword).get(url).status_code == 200


@pytest.mark.parametrize("url", ENDPOINTS)
def test_staff_session_gets_200(url: str, staff: User) -> None:
    client = APIClient()
    client.force_login(staff)

    assert client.get(url).status_code == 200


@pytest.mark.parametrize("url", ENDPOINTS)
def test_the_browsable_api_renders_for_a_staff_session(url: str, staff: User) -> None:
    client = APIClient()
    client.force_login(staff)

    response = client.get(url, HTTP_ACCEPT="text/html")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("url", ENDPOINTS)
def test_non_staff_gets_403_with_token_and_with_session(url: str, member: User) -> None:
    session = APIClient()
    session.force_login(member)

    assert _token_client(member).get(url).status_code == 403
    assert session.get(url).status_code == 403


@pytest.mark.parametrize("url", ENDPOINTS)
def test_both_forms_of_the_path_answer(url: str, staff: User) -> None:
    client = _token_client(staff)

    assert client.get(url).status_code == 200
    assert client.get(url + "/").status_code == 200


def test_a_revoked_token_gets_401(staff: User) -> None:
    client = _token_client(staff)
    ApiToken.objects.filter(user=staff).update(revoked_at=timezone.now())

    response = client.get(ENDPOINTS[0])

    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer a b", "Bearer nope", "Token \xe9t\xe9", "Bearer ab\x00cd", "Bearer ab%cd"]
)
def test_a_malformed_or_unknown_token_gets_401(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(ENDPOINTS[0])

    assert response.status_code == 401
    assert set(response.json()) == {"detail"}


def test_an_inactive_staff_token_gets_401(staff: User) -> None:
    client = _token_client(staff)
    User.objects.filter(pk=staff.pk).update(is_active=False)

    assert client.get(ENDPOINTS[0]).status_code == 401


def test_basic_authentication_is_not_accepted(staff: User) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic c3RhZmY6cHctc3RhZmY=")  # staff:pw-staff

    assert client.get(ENDPOINTS[0]).status_code == 401


# --- Permission classes and groups ---------------------------------------------------------


def _allowed(permission: type, user: User | AnonymousUser) -> bool:
    request = APIRequestFactory().get("/")
    request.user = user
    return permission().has_permission(request, view=None)


def _user(username: str, group: str | None = None, **flags: bool) -> User:
    user = User.objects.create_user(username, **flags)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return User.objects.get(pk=user.pk)  # fresh: no permission cache


def _codenames(group: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=group).permissions.select_related("content_type")
    }


def test_migrations_create_both_groups_with_their_permissions() -> None:
    view_all = {
        f"{label}.view_{model._meta.model_name}"
        for label in VIEWED_APPS
        for model in apps.get_app_config(label).get_models()
        if model._meta.label_lower not in NOT_VIEWED_MODELS
    }

    assert "controltower.view_controltowerrun" in view_all and "django_celery_beat.view_periodictask" in view_all
    assert "controltower.view_apitoken" not in view_all  # who holds which token: superusers only
    assert _codenames(VIEWERS_GROUP) == view_all
    assert _codenames(OPERATORS_GROUP) == view_all | {"controltower.operate_tower"}


def test_an_operator_passes_is_tower_operator_and_a_viewer_does_not() -> None:
    operator = _user("olga", OPERATORS_GROUP, is_staff=True)
    viewer = _user("victor", VIEWERS_GROUP, is_staff=True)

    assert _allowed(IsTowerOperator, operator) and _allowed(IsTowerViewer, operator)
    assert not _allowed(IsTowerOperator, viewer) and _allowed(IsTowerViewer, viewer)


def test_operating_and_reading_need_a_staff_account() -> None:
    outsider = _user("otto", OPERATORS_GROUP)  # has the permission, but is not staff
    superuser = User.objects.create_superuser("root")

    assert not _allowed(IsTowerOperator, outsider) and not _allowed(IsTowerViewer, outsider)
    assert not _allowed(IsTowerViewer, AnonymousUser()) and not _allowed(IsTowerOperator, AnonymousUser())
    assert _allowed(IsTowerOperator, superuser)


# --- OpenAPI schema and docs ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_are_staff_only(url: str, member: User) -> None:
    anonymous = APIClient().get(url)
    session = APIClient()
    session.force_login(member)

    assert anonymous.status_code == 401
    assert _token_client(member).get(url).status_code == 403
    assert session.get(url).status_code == 403


def test_the_schema_is_valid_and_lists_the_endpoints_and_the_token_schemes(staff: User) -> None:
    response = _token_client(staff).get("/api/schema/", {"format": "json"})
    generated = SchemaGenerator().get_schema(request=None, public=True)

    assert response.status_code == 200
    schema = response.json()
    validate_schema(generated)
    assert {"/meta/control-tower/status", "/meta/control-tower/health"} <= set(schema["paths"])
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["tokenAuth"]["in"] == "header" and schemes["tokenAuth"]["name"] == "Authorization"
    security = schema["paths"]["/meta/control-tower/status"]["get"]["security"]
    assert {"bearerAuth": []} in security and {"tokenAuth": []} in security


def test_the_schema_generates_without_warnings(tmp_path) -> None:
    # schemathesis checks every answer against it: a warning is a part drf-spectacular had to guess.
    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


@pytest.mark.parametrize(
    "params, field",
    [
        ({"lang": "xx"}, "lang"),
        ({"format": "xml"}, "format"),
        ({"lang": ""}, "lang"),
        ({"lang": "de", "version": "2"}, "version"),
    ],
)
def test_the_schema_parameters_are_validated(staff: User, params: dict, field: str) -> None:
    # Found by schemathesis: an unknown lang silently gave English, an unknown format a 404 in YAML.
    response = _token_client(staff).get("/api/schema/", params)

    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert field in response.json()
    assert _token_client(staff).get("/api/schema/", {"format": "yaml", "lang": "de"}).status_code == 200


def test_swagger_ui_renders_for_staff_without_external_assets(staff: User) -> None:
    client = APIClient()
    client.force_login(staff)

    response = client.get("/api/docs/")

    html = response.content.decode()
    assert response.status_code == 200 and "swagger-ui" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "cdn" not in html.lower()
    assert "/static/drf_spectacular_sidecar/" in html


# --- Error bodies ----------------------------------------------------------------------------------


def test_a_django_validation_error_is_a_400_with_field_errors() -> None:
    by_field = api_exception_handler(DjangoValidationError({"reason": ["This field is required."]}), {})
    plain = api_exception_handler(DjangoValidationError("Unknown module 10.99."), {})

    assert by_field.status_code == plain.status_code == 400
    assert by_field.data == {"reason": ["This field is required."]}
    assert plain.data == {"non_field_errors": ["Unknown module 10.99."]}


def test_a_list_error_body_becomes_an_object() -> None:
    response = api_exception_handler(ValidationError("Bad input."), {})

    assert response.status_code == 400 and response.data == {"detail": ["Bad input."]}
