from django.apps import AppConfig


class ControlTowerConfig(AppConfig):
    name = "controltower"
    verbose_name = "Control Tower"
    default_auto_field = "django.db.models.BigAutoField"
