import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the first operator account (a superuser) unless it exists. Username and password "
        "come from TOWER_OPERATOR_USERNAME / TOWER_OPERATOR_PASSWORD; without a password one is "
        "generated and printed once."
    )

    def handle(self, *args, **options) -> None:
        username = os.environ.get("TOWER_OPERATOR_USERNAME", "admin")
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(f"Operator account '{username}' exists (password unchanged).")
            return
        password = os.environ.get("TOWER_OPERATOR_PASSWORD") or secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=password)
        shown = password if "TOWER_OPERATOR_PASSWORD" not in os.environ else "(from TOWER_OPERATOR_PASSWORD)"
        self.stdout.write(self.style.SUCCESS(f"Operator account created — username: {username}  password: {shown}"))
        self.stdout.write("The password is shown only this once.")
