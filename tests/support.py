"""Helpers for tests that drive real processes."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    """URL of the test database as the test run created it, for child processes."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a project process that must share this test run's database and broker."""
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="config.test_settings", DATABASE_URL=_database_url(),
               TOWER_VAR_DIR=str(settings.VAR_DIR), PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, message: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")


class HttpReceiver:
    """A local HTTP server that records every JSON POST: stands in for Slack and webhooks."""

    def __init__(self, status: int = 200) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received: list[dict[str, Any]] = []
        self.received = received
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "json": json.loads(body or b"null")})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class broken_broker:  # noqa: N801 (a context manager used like a function)
    """Point the Celery app at a broker nobody listens on (a real refused connection), then restore."""

    @staticmethod
    def _use(url: str) -> None:
        from config.celery import app

        app.conf.broker_url = url
        # Forget the cached connection and producer pools so the next publish uses `url`.
        app._pool = None
        app.amqp._producer_pool = None

    def __enter__(self) -> None:
        from config.celery import app

        self._saved = app.conf.broker_url
        self._use("redis://127.0.0.1:9/0")  # port 9 (discard): connection refused

    def __exit__(self, *exc: object) -> None:
        self._use(self._saved)
