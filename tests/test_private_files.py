"""The embedded runtime files (database, broker, cache, sandbox store, secret key) are the owner's only.

Each case starts from a TOWER_VAR_DIR that does not exist yet and goes through the real code path
in a fresh process, under the common umask 022 (which alone would leave everything world-readable).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

# Settings that would switch an embedded part off (the PostgreSQL + Redis run of the suite sets them).
SERVICES = ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY")


def _run(code: str, var_dir: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in SERVICES}
    clean.update(env, TOWER_VAR_DIR=str(var_dir))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        check=True,
        timeout=120,
        text=True,
        capture_output=True,
        preexec_fn=lambda: os.umask(0o022),
    ).stdout


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_settings_create_the_embedded_folders_and_database_owner_only(tmp_path) -> None:
    var = tmp_path / "new" / "var"
    # The files' modes are read while the connection is open: SQLite removes its -wal and -shm at exit.
    files = json.loads(
        _run(
            "import json, os, pathlib, stat; import django; django.setup()\n"
            "from django.core.cache import cache; cache.set('k', 1)\n"
            "from django.db import connection\n"
            "with connection.cursor() as c:\n"
            "    c.execute('CREATE TABLE t (x int)'); c.execute('INSERT INTO t VALUES (1)')\n"
            "var = pathlib.Path(os.environ['TOWER_VAR_DIR'])\n"
            "print(json.dumps({str(f.relative_to(var)): oct(stat.S_IMODE(f.stat().st_mode))\n"
            "                  for f in var.rglob('*') if f.is_file()}))\n",
            var,
            DJANGO_SETTINGS_MODULE="config.settings",
            SECRET_KEY="k" * 50,
        )
    )

    folders = [
        tmp_path / "new",
        var,
        var / "broker",
        var / "broker" / "queue",
        var / "broker" / "control",
        var / "cache",
    ]
    assert {str(f): oct(_mode(f)) for f in folders} == {str(f): "0o700" for f in folders}
    assert {"db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm"} <= set(files)
    assert any(name.startswith("cache/") for name in files)
    assert files == dict.fromkeys(files, "0o600")


def test_tower_py_creates_the_var_folder_and_secret_key_owner_only(tmp_path) -> None:
    var = tmp_path / "var"
    _run("import tower; tower.base_env()", var)

    assert oct(_mode(var)) == "0o700" and oct(_mode(var / "secret_key")) == "0o600"
    assert len((var / "secret_key").read_text()) > 40


def test_the_sandbox_store_is_owner_only(tmp_path) -> None:
    store = tmp_path / "var" / "sandbox" / "meta_sandbox.sqlite3"
    _run(
        f"from meta_sandbox.store import Store, SeedConfig; Store({str(store)!r}).reset(SeedConfig(accounts=1))",
        tmp_path / "var",
    )

    assert oct(_mode(store.parent)) == "0o700" and oct(_mode(store.parent.parent)) == "0o700"
    assert {oct(_mode(f)) for f in store.parent.iterdir()} == {"0o600"}


def test_an_existing_folder_keeps_the_mode_its_owner_gave_it(tmp_path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o750)
    var.chmod(0o750)
    _run("import django; django.setup()", var, DJANGO_SETTINGS_MODULE="config.settings", SECRET_KEY="k" * 50)

    assert oct(_mode(var)) == "0o750" and oct(_mode(var / "broker")) == "0o700"
