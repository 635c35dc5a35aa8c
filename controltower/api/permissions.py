"""Who may read and who may operate the tower, and the two groups that grant it.

Reading needs a staff account (the spec: admin access only); commands, emergency stop and
resume also need `controltower.operate_tower` (superusers have every permission).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import apps as global_apps
from rest_framework.permissions import BasePermission

if TYPE_CHECKING:  # DRF imports this module while rest_framework.views is still loading
    from django.apps.registry import Apps
    from rest_framework.request import Request
    from rest_framework.views import APIView

OPERATE_PERMISSION = "controltower.operate_tower"
VIEWERS_GROUP = "Tower viewers"
OPERATORS_GROUP = "Tower operators"
# Apps whose records both groups may read (in the admin and through the API).
VIEWED_APPS = ("controltower", "meta_modules", "django_celery_beat")
# ...except who holds which API token: that is the superusers' business.
NOT_VIEWED_MODELS = ("controltower.apitoken",)


def _is_staff(request: Request) -> bool:
    user = request.user
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class IsTowerViewer(BasePermission):
    """Authenticated staff: may read everything the tower knows."""

    message = "A staff account is required."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _is_staff(request)


class IsTowerOperator(BasePermission):
    """Staff with `controltower.operate_tower`: may run commands, emergency stop and resume."""

    message = "The operate_tower permission is required (group 'Tower operators')."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _is_staff(request) and request.user.has_perm(OPERATE_PERMISSION)


def sync_tower_groups(apps: Apps = global_apps) -> None:
    """Create both groups and grant their permissions; never removes what an admin added.

    Permissions normally appear after migrations (post_migrate), so the ones needed here
    are created on the spot. `apps` gives the auth and contenttypes models (a migration
    passes its historical registry); which models may be viewed comes from the current code,
    so models whose migrations run after this one are covered too.
    """
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    group_model = apps.get_model("auth", "Group")

    def permission(app_label: str, model_name: str, codename: str, name: str) -> Any:  # a historical Permission
        content_type, _ = content_type_model.objects.get_or_create(app_label=app_label, model=model_name)
        return permission_model.objects.get_or_create(content_type=content_type, codename=codename,
                                                      defaults={"name": name[:255]})[0]

    view = [
        permission(opts.app_label, opts.model_name, f"view_{opts.model_name}", f"Can view {opts.verbose_name_raw}")
        for label in VIEWED_APPS
        for opts in (model._meta for model in global_apps.get_app_config(label).get_models())
        if "view" in opts.default_permissions and opts.label_lower not in NOT_VIEWED_MODELS
    ]
    state = global_apps.get_model("controltower", "TowerState")._meta
    operate_codename = OPERATE_PERMISSION.split(".")[1]
    operate = permission(state.app_label, state.model_name, operate_codename, dict(state.permissions)[operate_codename])
    group_model.objects.get_or_create(name=VIEWERS_GROUP)[0].permissions.add(*view)
    group_model.objects.get_or_create(name=OPERATORS_GROUP)[0].permissions.add(*view, operate)
