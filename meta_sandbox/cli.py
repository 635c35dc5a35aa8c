"""The sandbox's command line, shared by ``python -m meta_sandbox`` and ``manage.py meta_sandbox``:

python -m meta_sandbox --port 8765 --store var/meta_sandbox.sqlite3 [--reset ...] [--latency-profile live ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from .access import DEFAULT_SCOPES, TOKEN_TYPES
from .server import LATENCY_FIELDS, LATENCY_PROFILES, serve
from .store import MAX_ACCOUNTS, SeedConfig

DESCRIPTION = "Run the Meta sandbox (a local Graph API server) until interrupted; see docs/meta-sandbox.md."
MAX_MS = 600_000  # as the faults' own bound


def _milliseconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_MS:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a number of milliseconds in [0, {MAX_MS}], not {raw!r}")
    return value


def _days(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not -36_500 <= value <= 36_500:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a number of days in [-36500, 36500], not {raw!r}")
    return value


def _scopes(raw: str) -> list[str]:
    scopes = [s.strip() for s in raw.split(",") if s.strip()]
    if len(set(scopes)) != len(scopes):
        raise argparse.ArgumentTypeError(f"must be distinct permission names, not {raw!r}")
    return scopes


def _count(low: int, high: int) -> Any:
    def parse(raw: str) -> int:
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], not {raw!r}")
        return int(raw)

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sandbox's options, shared with the ``manage.py meta_sandbox`` command."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--store", default="var/meta_sandbox.sqlite3", help="SQLite file (kept across restarts)")
    parser.add_argument("--reset", action="store_true", help="reseed the store at start")
    parser.add_argument(
        "--accounts", type=_count(1, MAX_ACCOUNTS), default=SeedConfig.accounts, help="reseed: ad accounts"
    )
    parser.add_argument(
        "--campaigns-per-account",
        type=_count(0, 50_000),
        default=SeedConfig.campaigns_per_account,
        help="reseed: campaigns per account (a random mix of statuses; exactly this many ACTIVE ones "
        "with --paused-per-account or --archived-per-account)",
    )
    for status in ("paused", "archived"):
        parser.add_argument(
            f"--{status}-per-account",
            type=_count(0, 50_000),
            default=None,
            help=f"reseed: {status.upper()} campaigns per account, besides the ACTIVE ones",
        )
    parser.add_argument("--seed", type=int, default=SeedConfig.seed, help="reseed: data seed")
    parser.add_argument(
        "--latency-profile",
        choices=list(LATENCY_PROFILES),
        default=None,
        help="preset latency: " + "; ".join(f"{name} {_describe(ms)}" for name, ms in LATENCY_PROFILES.items()),
    )
    for name, meaning in zip(LATENCY_FIELDS, ("HTTP request", "batch item", "object a read returns")):
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=_milliseconds,
            default=None,
            help=f"sleep per {meaning} (overrides the profile)",
        )
    parser.add_argument("--token", default=None, help="accept only this access token (default: any)")
    parser.add_argument(
        "--token-expires-in-days",
        type=_days,
        default=None,
        help="the token expires this many days after start and every reset (0 or less: already expired; "
        "default: never, as a system user's token)",
    )
    parser.add_argument(
        "--scopes",
        type=_scopes,
        default=None,
        help=f"the token's granted permissions, comma-separated (default: {','.join(DEFAULT_SCOPES)}; '' for none)",
    )
    parser.add_argument("--token-type", choices=TOKEN_TYPES, default=None, help="debug_token's type (SYSTEM_USER)")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def _describe(profile: Mapping[str, float]) -> str:
    return "/".join(f"{profile[name]:g}" for name in LATENCY_FIELDS) + " ms"


def seed_config(options: Mapping[str, Any]) -> SeedConfig:
    """The seed the options ask for; --paused/--archived-per-account make every count exact."""
    statuses = None
    if options["paused_per_account"] is not None or options["archived_per_account"] is not None:
        statuses = {
            "ACTIVE": options["campaigns_per_account"],
            "PAUSED": options["paused_per_account"] or 0,
            "ARCHIVED": options["archived_per_account"] or 0,
        }
    return SeedConfig(
        accounts=options["accounts"],
        campaigns_per_account=options["campaigns_per_account"],
        seed=options["seed"],
        statuses=statuses,
    )


def start_faults(options: Mapping[str, Any]) -> dict[str, Any]:
    """The /_sandbox/faults body the latency options ask for (empty: no faults)."""
    faults: dict[str, Any] = {}
    if options["latency_profile"] is not None:
        faults["latency_profile"] = options["latency_profile"]
    faults.update({name: options[name] for name in LATENCY_FIELDS if options[name] is not None})
    return faults


def start_token(options: Mapping[str, Any]) -> dict[str, Any]:
    """The /_sandbox/token body the token options ask for (empty: the default token)."""
    body: dict[str, Any] = {}
    if options.get("token_expires_in_days") is not None:
        body["expires_in_s"] = options["token_expires_in_days"] * 86_400
    if options.get("scopes") is not None:
        body["scopes"] = options["scopes"]
    if options.get("token_type") is not None:
        body["type"] = options["token_type"]
    return body


def run(options: Mapping[str, Any]) -> None:
    """Serve with parsed options; the seeding options apply with --reset or to an empty store."""
    serve(
        options["host"],
        options["port"],
        options["store"],
        seed=seed_config(options),
        reset=options["reset"],
        token=options["token"],
        verbose=options["verbose"],
        faults=start_faults(options),
        token_state=start_token(options),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meta_sandbox", description=DESCRIPTION)
    add_arguments(parser)
    run(vars(parser.parse_args(argv)))
