"""`manage.py register_external_module <code> <name> --function ... --every SECONDS`: a module that runs elsewhere."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Max

from controltower.models import ExternalModule
from meta_modules import registry
from meta_modules.models import MetaModule

MIN_INTERVAL_SECONDS = 60


class Command(BaseCommand):
    help = (
        "Register (or update) a module that runs outside this codebase and reports its runs through "
        "POST /meta/control-tower/modules/<code>/runs. It is supervised like the built-in ones: it is "
        "OFFLINE when no run has been reported for longer than --every plus SCHEDULER_GRACE_SECONDS. "
        "Then issue its token with `manage.py issue_token --module <code>`."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("code", help="Module code, e.g. 10.18 (at most 16 characters).")
        parser.add_argument("name")
        parser.add_argument("--function", required=True, help="What it does, in a few words.")
        parser.add_argument(
            "--every",
            type=int,
            required=True,
            metavar="SECONDS",
            help=f"How often it reports a run (at least {MIN_INTERVAL_SECONDS}).",
        )
        parser.add_argument("--calls-meta", action="store_true", help="It talks to the Meta Graph API.")

    def handle(
        self, *args: Any, code: str, name: str, function: str, every: int, calls_meta: bool, **options: Any
    ) -> None:
        if len(code) > 16 or "/" in code or not code.strip():
            raise CommandError("The code must be 1–16 characters without '/'.")
        if every < MIN_INTERVAL_SECONDS:
            raise CommandError(f"--every must be at least {MIN_INTERVAL_SECONDS} seconds.")
        if code in registry.BY_CODE:
            raise CommandError(f"{code} is a built-in module, run by this tower's scheduler.")
        with transaction.atomic():
            module = MetaModule.objects.select_for_update().filter(code=code).first()
            registered = module is not None and ExternalModule.objects.filter(module=module).exists()
            if module is not None and module.periodic_task_id and not registered:
                raise CommandError(f"{code} has a periodic task here: it is not an external module.")
            if module is None:
                last = MetaModule.objects.aggregate(last=Max("position"))["last"]
                module = MetaModule.objects.create(
                    code=code,
                    name=name,
                    function=function,
                    calls_meta=calls_meta,
                    position=0 if last is None else last + 1,
                )
                created = True
            else:
                module.name, module.function, module.calls_meta = name, function, calls_meta
                module.save(update_fields=["name", "function", "calls_meta", "updated_at"])
                created = False
            ExternalModule.objects.update_or_create(module=module, defaults={"expected_interval_seconds": every})
        self.stdout.write(
            f"{'Registered' if created else 'Updated'} external module {code} {name}, reporting every "
            f"{every} s. Issue its token with: manage.py issue_token --module {code}"
        )
