"""tower.py up's Meta sandbox: META_SANDBOX_ARGS reaches the sandbox's own command line."""

from __future__ import annotations

import argparse

import tower
from meta_sandbox.cli import add_arguments, seed_config, start_faults


def parsed(command: list[str]) -> dict[str, object]:
    assert command[1:3] == [str(tower.ROOT / "manage.py"), "meta_sandbox"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args(command[3:]))


def test_without_extra_args_it_serves_the_kept_store_on_the_configured_port() -> None:
    options = parsed(tower.sandbox_command({"META_SANDBOX_PORT": "9876"}))

    assert (options["port"], options["store"], options["reset"]) == (
        9876,
        str(tower.VAR / "meta_sandbox.sqlite3"),
        False,
    )
    assert start_faults(options) == {}


def test_meta_sandbox_args_seed_an_agency_with_a_latency_profile() -> None:
    env = {
        "META_SANDBOX_ARGS": "--reset --accounts 300 --campaigns-per-account 100 --paused-per-account 20 "
        "--archived-per-account 10 --latency-profile live --per-item-ms 20"
    }

    options = parsed(tower.sandbox_command(env))

    assert options["reset"] is True
    seed = seed_config(options)
    assert (seed.accounts, seed.statuses) == (300, {"ACTIVE": 100, "PAUSED": 20, "ARCHIVED": 10})
    assert start_faults(options) == {"latency_profile": "live", "per_item_ms": 20.0}
