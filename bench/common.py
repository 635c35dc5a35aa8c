"""What the benchmark scripts share: the project on the import path, the tower's settings and Django set
up on a database of their own, a free loopback port.

Each script imports this module first (bench/ is the script's own folder, so it is importable as `common`).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # config, controltower, tower: the project the scripts measure


def tower_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """The tower's settings for a benchmark: its own database and var dir, DEBUG off, quiet logs."""
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "bench-" + "x" * 50,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "TOWER_VAR_DIR": str(var_dir),
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def setup_django(env: dict[str, str]) -> None:
    """Django in this process on `env` (tower_env): migrated, the modules synced."""
    os.environ.update(env)
    (Path(env["TOWER_VAR_DIR"]) / "staticfiles").mkdir(exist_ok=True)  # whitenoise warns about a missing STATIC_ROOT
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("sync_modules", stdout=open(os.devnull, "w"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_server() -> str | None:
    """The PostgreSQL server DATABASE_URL names, or None."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


@contextmanager
def own_database(prefix: str, keep: bool = False) -> Iterator[str]:
    """A fresh database `<prefix>_<pid>` on the server DATABASE_URL names; yields its URL and drops
    it at the end (unless `keep`), whoever is still connected to it."""
    import psycopg2

    server = postgres_server()
    if server is None:
        raise SystemExit("DATABASE_URL=postgres://… is required (the server to create the benchmark database on).")
    name = f"{prefix}_{os.getpid()}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(urlparse(server)._replace(path=f"/{name}"))
    finally:
        if not keep:
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def database_name(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def machine() -> str:
    """The machine a figure was measured on, as every results file records it."""
    return (
        f"{platform.node()} · {os.cpu_count()} cores · {platform.python_implementation()} "
        f"{platform.python_version()} · {platform.platform()}"
    )


def sandbox_process(folder: Path) -> tuple[subprocess.Popen, str]:
    """The Meta sandbox as a process of its own (its store in `folder`) on a free loopback port, once
    it answers. → the process (the caller terminates it) and its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "meta_sandbox", "--port", str(port), "--store", str(folder / "sandbox.sqlite3")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/_sandbox/state", timeout=10).read()
            break
        except OSError:
            time.sleep(0.1)
    return process, url


def save_results(name: str, results: dict[str, Any]) -> Path:
    """Write a run's results to bench/results/<name> (JSON)."""
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return out
