"""`manage.py issue_token <username> [--rotate | --revoke]`: the API token of a staff user, shown once."""
from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Create the API token of an existing, active staff user and print it (only the key on "
        "stdout, so `TOKEN=$(manage.py issue_token admin)` works). --rotate replaces an existing "
        "token: the old one stops working at once. --revoke deletes it (any user): requests with it get 401."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--rotate", action="store_true", help="Replace the user's existing token.")
        action.add_argument("--revoke", action="store_true", help="Delete the user's token; issue none.")

    def handle(self, *args: Any, username: str, rotate: bool, revoke: bool, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"No user named '{username}'.") from None
        if revoke:  # whatever the account has become, its token must be able to go
            if not Token.objects.filter(user=user).delete()[0]:
                raise CommandError(f"'{username}' has no API token.")
            self.stderr.write(f"Revoked the API token of '{username}': requests with it now get 401.")
            return
        if not (user.is_staff and user.is_active):
            raise CommandError(f"'{username}' is not an active staff user: the API only serves staff accounts. "
                               "Make the account staff first (admin, or `is_staff=True`).")
        with transaction.atomic():
            existing = Token.objects.select_for_update().filter(user=user)
            if existing.exists() and not rotate:
                raise CommandError(f"'{username}' already has a token; it is never shown again. "
                                   "Use --rotate to replace it.")
            existing.delete()
            token = Token.objects.create(user=user)
        self.stderr.write(f"API token for '{username}' (shown once; send it as 'Authorization: Bearer <token>'):")
        self.stdout.write(token.key)
