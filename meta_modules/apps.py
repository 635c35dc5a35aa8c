from django.apps import AppConfig


class MetaModulesConfig(AppConfig):
    name = "meta_modules"
    verbose_name = "Meta modules"
    default_auto_field = "django.db.models.BigAutoField"
