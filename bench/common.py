"""What the benchmark scripts share: a database of their own, a free loopback port."""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse, urlunparse


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
