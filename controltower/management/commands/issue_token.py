"""`manage.py issue_token`: the tokens the API accepts, each shown once.

`issue_token <username> [--name N] [--days D] | --list | --revoke NAME`: a staff user's API tokens;
`issue_token --module <code> [--rotate]`: an external module's report token.
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from controltower.models import ApiToken, ExternalModule

DEFAULT_NAME = "default"


def _when(moment: datetime | None, missing: str = "-") -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else missing


def token_state(token: ApiToken) -> str:
    return token.refusal(timezone.now()) or "live"


class Command(BaseCommand):
    help = (
        "Create an API token of an existing, active staff user and print it (only the key on stdout, so "
        "`TOKEN=$(manage.py issue_token admin)` works); only its sha256 is stored, so it is never shown again. "
        "A user may hold several tokens, each with its own name. --list shows them (no secret); --revoke NAME "
        "ends one (any user) and leaves the others working. --module CODE instead creates the report token of an "
        "external module (manage.py register_external_module), printed the same way; --rotate replaces an existing "
        "one, and the old one stops working at once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username", nargs="?", help="The staff user whose API token this is.")
        parser.add_argument("--module", metavar="CODE", help="An external module's report token instead.")
        parser.add_argument("--rotate", action="store_true", help="With --module: replace the module's existing token.")
        parser.add_argument("--name", help=f"The token's name (default '{DEFAULT_NAME}').")
        parser.add_argument(
            "--days", type=int, default=None, help="Lifetime in days (default API_TOKEN_DAYS); 0 = never expires."
        )
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--list", dest="listing", action="store_true", help="List the user's tokens.")
        action.add_argument("--revoke", metavar="NAME", help="Revoke the user's live token of this name.")

    def handle(
        self,
        *args: Any,
        username: str | None,
        module: str | None,
        rotate: bool,
        name: str | None,
        days: int | None,
        listing: bool,
        revoke: str | None,
        **options: Any,
    ) -> None:
        if module is not None:
            if username is not None or name is not None or days is not None or listing or revoke is not None:
                raise CommandError("--module takes only --rotate: a module's token has no user, name or lifetime.")
            self._issue_module_token(module, rotate)
            return
        if username is None:
            raise CommandError("Give the username (or --module CODE for an external module's token).")
        if rotate:
            raise CommandError("--rotate is for --module: revoke an API token with --revoke NAME.")
        self._api_token(username, DEFAULT_NAME if name is None else name, days, listing, revoke)

    def _api_token(self, username: str, name: str, days: int | None, listing: bool, revoke: str | None) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"No user named '{username}'.") from None
        if listing:
            for token in ApiToken.objects.filter(user=user).order_by("created_at"):
                self.stdout.write(
                    "\t".join(
                        [
                            token.name,
                            f"{token.prefix}…",
                            token_state(token),
                            f"created {_when(token.created_at)}",
                            f"last used {_when(token.last_used_at)}",
                            f"expires {_when(token.expires_at, 'never')}",
                        ]
                    )
                )
            return
        if revoke is not None:  # whatever the account has become, its tokens must be able to go
            if (
                not ApiToken.live()
                .filter(user=user, name=revoke)
                .update(revoked_at=timezone.now(), revoked_by="manage.py issue_token")
            ):
                raise CommandError(f"'{username}' has no live token named '{revoke}'.")
            self.stderr.write(f"Revoked the token '{revoke}' of '{username}': requests with it now get 401.")
            return
        if not (user.is_staff and user.is_active):
            raise CommandError(
                f"'{username}' is not an active staff user: the API only serves staff accounts. "
                "Make the account staff first (admin, or `is_staff=True`)."
            )
        if not name.strip():
            raise CommandError("--name must not be empty.")
        if days is not None and days < 0:
            raise CommandError("--days must be 0 (never expires) or more.")
        with transaction.atomic():
            if ApiToken.live().select_for_update().filter(user=user, name=name).exists():
                raise CommandError(
                    f"'{username}' already has a live token named '{name}'; it is never shown again. "
                    f"Revoke it (--revoke {name}) or choose another --name."
                )
            token, key = ApiToken.issue(
                user, name, settings.API_TOKEN_DAYS if days is None else days, created_by="manage.py issue_token"
            )
        expiry = f"expires {_when(token.expires_at)}" if token.expires_at else "never expires"
        self.stderr.write(
            f"API token '{name}' for '{username}' ({expiry}; shown once; send it as 'Authorization: Bearer <token>'):"
        )
        self.stdout.write(key)

    def _issue_module_token(self, code: str, rotate: bool) -> None:
        with transaction.atomic():
            external = ExternalModule.objects.select_for_update().filter(module__code=code).first()
            if external is None:
                raise CommandError(
                    f"No external module '{code}'. Register it first: "
                    "manage.py register_external_module <code> <name> --function ... --every SECONDS"
                )
            if external.token_hash and not rotate:
                raise CommandError(
                    f"'{code}' already has a token; it is never shown again. Use --rotate to replace it."
                )
            key = external.issue_token()
        self.stderr.write(
            f"Report token for module {code} (shown once; send it as 'Authorization: Module <token>' "
            "or 'X-Module-Token: <token>'):"
        )
        self.stdout.write(key)
