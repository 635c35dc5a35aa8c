from django.apps import AppConfig


class ControlTowerConfig(AppConfig):
    name = "controltower"
    verbose_name = "Control Tower"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from controltower.roles import sync_tower_groups

        # Keep both groups complete after every migrate (new models, or a test database flush).
        post_migrate.connect(
            lambda **kwargs: sync_tower_groups(), sender=self, weak=False, dispatch_uid="controltower.sync_tower_groups"
        )
