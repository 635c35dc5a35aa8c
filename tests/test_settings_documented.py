"""docs/settings.md lists every environment variable config/settings.py reads."""

from __future__ import annotations

import ast
import re

from tests.support import ROOT

# config.env's readers, and the throttle-rate and crontab readers defined in settings.py; each takes the name first.
READERS = {"env_str", "env_bool", "env_int", "env_float", "env_list", "env_choice", "_throttle_rate", "_crontab"}


def env_names(source: str) -> set[str]:
    """The variable names read by `READERS` calls with a literal first argument."""
    return {
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in READERS
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_it_finds_the_names_read_by_every_kind_of_reader() -> None:
    source = 'A = env_int("ONE", 1)\nB = _throttle_rate("TWO", "1/s")\nC = env_str(name)\nD = other("THREE")\n'
    assert env_names(source) == {"ONE", "TWO"}


def test_every_setting_read_by_config_settings_is_documented() -> None:
    names = env_names((ROOT / "config" / "settings.py").read_text())
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "settings.md").read_text()))

    assert len(names) > 90
    assert sorted(names - documented) == []
