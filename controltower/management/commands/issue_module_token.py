"""`manage.py issue_module_token <code> [--rotate]`: an external module's report token, shown once."""
from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from controltower.models import ExternalModule


class Command(BaseCommand):
    help = (
        "Create the report token of an external module (manage.py register_external_module) and print it "
        "(only the key on stdout, so `KEY=$(manage.py issue_module_token 10.18)` works). Only its sha256 is "
        "stored. --rotate replaces an existing token: the old one stops working at once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("code")
        parser.add_argument("--rotate", action="store_true", help="Replace the module's existing token.")

    def handle(self, *args: Any, code: str, rotate: bool, **options: Any) -> None:
        with transaction.atomic():
            external = ExternalModule.objects.select_for_update().filter(module__code=code).first()
            if external is None:
                raise CommandError(f"No external module '{code}'. Register it first: "
                                   "manage.py register_external_module <code> <name> --function ... --every SECONDS")
            if external.token_hash and not rotate:
                raise CommandError(f"'{code}' already has a token; it is never shown again. "
                                   "Use --rotate to replace it.")
            key = external.issue_token()
        self.stderr.write(f"Report token for module {code} (shown once; send it as 'Authorization: Module <token>' "
                          "or 'X-Module-Token: <token>'):")
        self.stdout.write(key)
