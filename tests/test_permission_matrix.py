"""Who gets what: every API endpoint and console page × {anonymous, non-staff, viewer, operator},
and every action of every admin × {anonymous, viewer, operator, superuser}.

API: anonymous 401, non-staff 403, viewer 200 on reads and 403 on writes, operator never
401/403 (writes use dry runs or bodies the endpoint refuses with a 4xx, so nothing real
happens). Console: anonymous 302 to the login page, non-staff 403, viewer 200 on pages and
403 on action pages, operator 200. /metrics has its own key (METRICS_TOKEN): no user gets in.
Admin actions are really posted to their changelist: a role that may run one gets it run (a
redirect back to the list, or Django's delete confirmation page); any other role gets 403, or
the login page when anonymous.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from controltower.models import ApiToken
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP
from meta_modules.models import AdAccount, BudgetProposal, Campaign, CampaignDraft, MetaModule, SpendSpike
from tests.support import api_token

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "non_staff", "viewer", "operator")
MODULE = "10.1"
API = "/meta/control-tower"

API_READS = [
    f"{API}/status",
    f"{API}/health",
    f"{API}/report",
    f"{API}/runs/",
    f"{API}/health-logs/",
    f"{API}/modules/",
    f"{API}/modules/{MODULE}/",
    "/api/schema/",
    "/api/docs/",
]
# (path, JSON body): safe for an operator to send (dry run, refused in this state, or invalid).
API_WRITES = [
    (f"{API}/command", {}),  # 400: command_type is required
    (f"{API}/emergency-stop", {"reason": "permission matrix", "dry_run": True}),  # 200, changes nothing
    (f"{API}/resume", {}),  # 409: not halted
    (f"{API}/recovery", {}),  # 400: module_code and action are required
    (f"{API}/modules/{MODULE}/start", {}),  # 200: already running
    (f"{API}/modules/{MODULE}/stop", {"reason": "permission matrix"}),
    (f"{API}/modules/{MODULE}/restart", {"reason": "permission matrix"}),
    (f"{API}/modules/{MODULE}/runs", {}),  # 409: 10.1 is not an external module
]
CONSOLE_PAGES = ["/", "/report/", "/runs/", "/notifications/", f"/modules/{MODULE}/", "/readiness/"]
CONSOLE_ACTION_PAGES = ["/emergency-stop/", "/resume/"]
CONSOLE_POSTS = ["/readiness/check/"]  # a button, no page: it acts (reads Meta, records a check) and goes back


def _user(role: str) -> User | None:
    if role == "anonymous":
        return None
    existing = User.objects.filter(username=role).first()
    if existing is not None:
        return existing
    if role == "superuser":
        return User.objects.create_superuser(role, password="unused")
    user = User.objects.create_user(role, password="unused", is_staff=role != "non_staff")
    group = {"viewer": VIEWERS_GROUP, "operator": OPERATORS_GROUP}.get(role)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def _api_client(role: str) -> APIClient:
    client = APIClient()
    user = _user(role)
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(user)}")
    return client


def _console_client(role: str) -> Client:
    client = Client()
    user = _user(role)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def world(synced, meta_sandbox) -> None:
    """Modules, groups and a sandbox to talk to (health, dry-run stop, restart)."""


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url", API_READS)
def test_api_reads(world, url: str, role: str) -> None:
    response = _api_client(role).get(url)

    expected = {"anonymous": 401, "non_staff": 403, "viewer": 200, "operator": 200}[role]
    assert response.status_code == expected, (url, role, response.status_code, response.content[:300])
    if role == "anonymous":
        assert response["WWW-Authenticate"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("url", "body"), API_WRITES, ids=[url for url, _ in API_WRITES])
def test_api_writes(world, url: str, body: dict, role: str) -> None:
    response = _api_client(role).post(url, body, format="json")

    if role == "operator":
        assert response.status_code not in (401, 403, 429), (url, response.status_code, response.content[:300])
        assert response.status_code < 500, (url, response.status_code, response.content[:300])
    else:
        expected = {"anonymous": 401, "non_staff": 403, "viewer": 403}[role]
        assert response.status_code == expected, (url, role, response.status_code, response.content[:300])


@pytest.mark.parametrize("role", ROLES)
def test_metrics_needs_its_own_key_not_a_user(world, settings, role: str) -> None:
    settings.METRICS_TOKEN = "metrics-scrape-key-for-the-matrix"
    settings.METRICS_ALLOWED_IPS = []

    assert _api_client(role).get("/metrics").status_code == 403
    assert _console_client(role).get("/metrics").status_code == 403


def test_metrics_answers_its_key(world, settings) -> None:
    settings.METRICS_TOKEN = "metrics-scrape-key-for-the-matrix"

    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-scrape-key-for-the-matrix").status_code == 200


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url", CONSOLE_PAGES + CONSOLE_ACTION_PAGES)
def test_console_pages(world, url: str, role: str) -> None:
    response = _console_client(role).get(url)

    if role == "anonymous":
        assert response.status_code == 302, (url, response.status_code)
        assert response["Location"].startswith("/admin/login/?next="), response["Location"]
        return
    if role == "non_staff":
        expected = 403
    elif role == "viewer":
        expected = 403 if url in CONSOLE_ACTION_PAGES else 200
    else:
        expected = 200
    assert response.status_code == expected, (url, role, response.status_code)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url", CONSOLE_POSTS)
def test_console_buttons(world, url: str, role: str) -> None:
    response = _console_client(role).post(url)

    if role == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/?next=")
        return
    expected = {"non_staff": 403, "viewer": 403, "operator": 302}[role]
    assert response.status_code == expected, (url, role, response.status_code)


# --- admin actions ------------------------------------------------------------------------------

ADMIN_ROLES = ("anonymous", "viewer", "operator", "superuser")
OPERATORS = frozenset({"operator", "superuser"})
SUPERUSERS = frozenset({"superuser"})
# (model, action) → the roles that may run it. Schedules and modules move only through the module
# commands (operate_tower); tokens, users, deletions and the job rows' decisions are superusers' only.
ADMIN_ACTIONS: dict[tuple[str, str], frozenset[str]] = {
    ("auth.group", "delete_selected"): SUPERUSERS,
    ("auth.user", "delete_selected"): SUPERUSERS,
    ("axes.accessattempt", "delete_selected"): SUPERUSERS,
    ("axes.accessattempt", "cleanup_expired_attempts"): SUPERUSERS,
    ("axes.accesslog", "delete_selected"): SUPERUSERS,
    ("axes.accessfailurelog", "delete_selected"): SUPERUSERS,
    ("meta_modules.campaigndraft", "delete_selected"): SUPERUSERS,
    ("meta_modules.budgetproposal", "approve"): SUPERUSERS,
    ("meta_modules.budgetproposal", "reject"): SUPERUSERS,
    ("meta_modules.spendspike", "acknowledge"): SUPERUSERS,
    ("meta_modules.metamodule", "delete_selected"): SUPERUSERS,
    ("meta_modules.metamodule", "start_modules"): OPERATORS,
    ("meta_modules.metamodule", "stop_modules"): OPERATORS,
    ("meta_modules.metamodule", "restart_modules"): OPERATORS,
    ("meta_modules.metamodule", "clear_module_cache"): OPERATORS,
    ("meta_modules.metamodule", "reset_modules"): OPERATORS,
    ("django_celery_beat.periodictask", "enable_schedules"): OPERATORS,
    ("django_celery_beat.periodictask", "disable_schedules"): OPERATORS,
    ("django_celery_beat.periodictask", "run_now"): OPERATORS,
    ("controltower.apitoken", "revoke_tokens"): SUPERUSERS,
}


def _campaign() -> Campaign:
    account = AdAccount.objects.get_or_create(id="act_matrix", defaults={"currency": "USD"})[0]
    return Campaign.objects.get_or_create(
        id="matrix", defaults={"account": account, "name": "Matrix", "status": "ACTIVE", "daily_budget_cents": 5000}
    )[0]


def _access(model: type) -> Any:
    fields = {
        "username": "mallory",
        "ip_address": "192.0.2.7",
        "user_agent": "curl",
        "http_accept": "*/*",
        "path_info": "/admin/login/",
    }
    if model is AccessAttempt:
        fields.update(get_data="", post_data="", failures_since_start=1)
    return model.objects.create(**fields).pk


# One row for each model with actions, to select in the list.
ADMIN_ROWS: dict[str, Callable[[], Any]] = {
    "auth.group": lambda: Group.objects.get(name=VIEWERS_GROUP).pk,
    "auth.user": lambda: User.objects.create_user("bystander").pk,
    "axes.accessattempt": lambda: _access(AccessAttempt),
    "axes.accesslog": lambda: _access(AccessLog),
    "axes.accessfailurelog": lambda: _access(AccessFailureLog),
    "meta_modules.campaigndraft": lambda: (
        CampaignDraft.objects.create(account=_campaign().account, name="Spring", daily_budget_cents=1000).pk
    ),
    "meta_modules.budgetproposal": lambda: (
        BudgetProposal.objects.create(
            campaign=_campaign(), current_budget_cents=5000, proposed_budget_cents=7500, roas=Decimal("3.1")
        ).pk
    ),
    "meta_modules.spendspike": lambda: (
        SpendSpike.objects.create(
            campaign=_campaign(),
            day=timezone.now().date(),
            spend_today=Decimal("240"),
            hourly_rate=Decimal("20"),
            baseline_hourly_rate=Decimal("5"),
            ratio=4.0,
        ).pk
    ),
    "meta_modules.metamodule": lambda: MetaModule.objects.get(code=MODULE).pk,
    "django_celery_beat.periodictask": lambda: PeriodicTask.objects.get(meta_module__code=MODULE).pk,
    "controltower.apitoken": lambda: (
        ApiToken.issue(User.objects.create_user("holder", is_staff=True), "ci", None, created_by="matrix")[0].pk
    ),
}


def _offered_admin_actions() -> set[tuple[str, str]]:
    request = RequestFactory().get("/admin/")
    request.user = User(username="root", is_staff=True, is_superuser=True, is_active=True)
    return {
        (model._meta.label_lower, name)
        for model, model_admin in admin.site._registry.items()
        for name in model_admin.get_actions(request)
    }


def test_every_admin_action_has_its_place_in_the_matrix() -> None:
    assert _offered_admin_actions() == set(ADMIN_ACTIONS)
    assert {label for label, _ in ADMIN_ACTIONS} <= set(ADMIN_ROWS)


@pytest.mark.parametrize("role", ADMIN_ROLES)
@pytest.mark.parametrize(("label", "action"), sorted(ADMIN_ACTIONS), ids=[f"{m}:{a}" for m, a in sorted(ADMIN_ACTIONS)])
def test_admin_actions(world, label: str, action: str, role: str) -> None:
    changelist = reverse(f"admin:{label.replace('.', '_')}_changelist")
    row = ADMIN_ROWS[label]()

    response = _console_client(role).post(
        changelist, {"action": action, "_selected_action": [row], "index": 0, "reason": "permission matrix"}
    )

    if role in ADMIN_ACTIONS[(label, action)]:
        ran = (response.status_code == 302 and response["Location"] == changelist) or (
            response.status_code == 200 and "admin/delete_selected_confirmation.html" in response.template_name
        )
        assert ran, (role, response.status_code, response.get("Location"))
    elif role == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    else:
        assert response.status_code == 403, (role, response.status_code, response.get("Location"))
