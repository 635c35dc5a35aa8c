"""What a person needs once `tower.py up` has started everything: where to go, how to log in, what the
tower acts on and who it will alert. Makes the first operator account if there is none, so a generated
password reaches the terminal (this command's standard output) and nothing else."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand

from controltower import channels
from controltower.operators import Operator, ensure_operator

RESET_COMMAND = "python3 tower.py reset-password {username}"


def password_line(operator: Operator) -> str:
    if operator.generated_password:
        return f"{operator.generated_password}   (new account: shown only this once)"
    if operator.created:
        return "from TOWER_OPERATOR_PASSWORD"
    return f"as set before — forgot it? {RESET_COMMAND.format(username=operator.username)}"


def mode_line(mode: str, graph_url: str, api_version: str, accounts: list[str]) -> str:
    if mode == "stub":
        return f"STUB — the Meta sandbox at {graph_url} (no real campaigns)"
    return f"LIVE Meta — {graph_url} {api_version}, {', '.join(accounts) or 'every ad account the token sees'}"


def summary_lines(url: str, operator: Operator, mode: str, alerts: str) -> list[str]:
    base = url.rstrip("/")
    return [
        f"console   {base}/",
        f"admin     {base}/admin/",
        f"API       {base}/meta/control-tower/",
        f"username  {operator.username}",
        f"password  {password_line(operator)}",
        f"mode      {mode}",
        f"alerts    {alerts}",
    ]


class Command(BaseCommand):
    help = (
        "Print where the console is, the operator's login (creating the account if missing), the mode and the"
        " alert channels."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Where the console is served.")

    def handle(self, *args, url: str, **options) -> None:
        operator = ensure_operator(
            os.environ.get("TOWER_OPERATOR_USERNAME", "admin"), os.environ.get("TOWER_OPERATOR_PASSWORD")
        )
        mode = mode_line(
            settings.META_MODE, settings.META_GRAPH_URL, settings.META_API_VERSION, settings.META_AD_ACCOUNT_IDS
        )
        for line in summary_lines(url, operator, mode, channels.describe()):
            self.stdout.write(line)
