import os

from django.core.management.base import BaseCommand

from controltower.operators import ensure_operator


class Command(BaseCommand):
    help = (
        "Create the first operator account (a superuser) unless it exists. Username and password "
        "come from TOWER_OPERATOR_USERNAME / TOWER_OPERATOR_PASSWORD; without a password one is "
        "generated and printed once (to standard output only)."
    )

    def handle(self, *args, **options) -> None:
        operator = ensure_operator(os.environ.get("TOWER_OPERATOR_USERNAME", "admin"),
                                   os.environ.get("TOWER_OPERATOR_PASSWORD"))
        if not operator.created:
            self.stdout.write(f"Operator account '{operator.username}' exists (password unchanged).")
            return
        shown = operator.generated_password or "(from TOWER_OPERATOR_PASSWORD)"
        self.stdout.write(self.style.SUCCESS(f"Operator account created — username: {operator.username}  password: {shown}"))
        if operator.generated_password:
            self.stdout.write("The password is shown only this once.")
