"""``python manage.py meta_sandbox --port 8765 [--reset ...]``: run the Meta sandbox in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from meta_sandbox.cli import DESCRIPTION, add_arguments, run


class Command(BaseCommand):
    help = DESCRIPTION
    requires_system_checks = []  # the sandbox uses nothing from Django; a broken project must not stop it

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        run(options)
