"""The sandbox's command line, shared by ``python -m meta_sandbox`` and ``manage.py meta_sandbox``:

python -m meta_sandbox --port 8765 --store var/meta_sandbox.sqlite3 [--reset ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from .server import serve
from .store import SeedConfig

DESCRIPTION = "Run the Meta sandbox (a local Graph API server) until interrupted; see docs/meta-sandbox.md."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sandbox's options, shared with the ``manage.py meta_sandbox`` command."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--store", default="var/meta_sandbox.sqlite3", help="SQLite file (kept across restarts)")
    parser.add_argument("--reset", action="store_true", help="reseed the store at start")
    parser.add_argument("--accounts", type=int, default=SeedConfig.accounts, help="reseed: ad accounts")
    parser.add_argument(
        "--campaigns-per-account", type=int, default=SeedConfig.campaigns_per_account, help="reseed: campaigns"
    )
    parser.add_argument("--seed", type=int, default=SeedConfig.seed, help="reseed: data seed")
    parser.add_argument("--token", default=None, help="accept only this access token (default: any)")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def run(options: Mapping[str, Any]) -> None:
    """Serve with parsed options; the seeding options apply with --reset or to an empty store."""
    seed = SeedConfig(
        accounts=options["accounts"],
        campaigns_per_account=options["campaigns_per_account"],
        seed=options["seed"],
    )
    serve(
        options["host"],
        options["port"],
        options["store"],
        seed=seed,
        reset=options["reset"],
        token=options["token"],
        verbose=options["verbose"],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meta_sandbox", description=DESCRIPTION)
    add_arguments(parser)
    run(vars(parser.parse_args(argv)))
