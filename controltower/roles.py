"""Who may read and who may operate the tower, and the two groups that grant it.

Reading needs an active staff account (the spec: admin access only); commands, emergency stop,
resume and recovery also need `controltower.operate_tower` (superusers have every permission).
The API, the console and the admin each enforce these rules their own way, from here.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.apps.registry import Apps

OPERATE_PERMISSION = "controltower.operate_tower"
VIEWERS_GROUP = "Tower viewers"
OPERATORS_GROUP = "Tower operators"
# Apps whose records both groups may read (in the admin and through the API).
VIEWED_APPS = ("controltower", "meta_modules", "django_celery_beat")
# ...except who holds which API token: that is the superusers' business.
NOT_VIEWED_MODELS = ("controltower.apitoken",)


def is_viewer(user: Any) -> bool:
    """May read everything the tower knows. `user` may be anonymous (or None, for DRF)."""
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def is_operator(user: Any) -> bool:
    """May also act: commands, emergency stop, resume, recovery."""
    return is_viewer(user) and user.has_perm(OPERATE_PERMISSION)


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
        return permission_model.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name[:255]}
        )[0]

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
