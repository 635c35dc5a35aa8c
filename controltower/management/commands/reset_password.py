import getpass
import os

from django.core.management.base import BaseCommand

from controltower.operators import reset_password


def who_ran_it() -> str:
    try:
        return f"OS user {getpass.getuser()!r}"
    except (KeyError, OSError):  # a container user without a passwd entry
        return f"OS uid {os.getuid()}"


class Command(BaseCommand):
    help = (
        "Give an account a new random password, printed once, and lift its login lockouts. "
        "Recorded in the admin's history of the account and in the log (who ran it, when)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "username",
            nargs="?",
            default=os.environ.get("TOWER_OPERATOR_USERNAME", "admin"),
            help="Default: TOWER_OPERATOR_USERNAME, else admin.",
        )

    def handle(self, *args, username: str, **options) -> None:
        password = reset_password(username, by=who_ran_it())
        self.stdout.write(f"New password for {username}: {password}")
        self.stdout.write("Shown only this once; the old password no longer works.")
