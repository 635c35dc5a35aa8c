"""Helpers for tests that drive real processes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def service_missing(what: str) -> None:
    """Skip a test whose service is not here — or fail, under REQUIRE_SERVICES=1 (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


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
    env.update(
        DJANGO_SETTINGS_MODULE="config.test_settings",
        DATABASE_URL=_database_url(),
        TOWER_VAR_DIR=str(settings.VAR_DIR),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, message: str = "condition"
) -> Any:
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
        self.statuses: list[int] = []  # answered first, one per request, before `status`
        self.headers: dict[str, str] = {}  # sent with every answer (e.g. Retry-After)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "json": json.loads(body or b"null")})
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else receiver.status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
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


def use_broker(url: str, transport_options: dict[str, Any]) -> None:
    """Point this process's Celery app at another broker from its next publish on."""
    from config.celery import app

    app.conf.broker_url = url
    if "CELERY_BROKER_URL" in os.environ:  # Celery prefers the environment variable to its setting
        os.environ["CELERY_BROKER_URL"] = url
    app.conf.broker_transport_options = transport_options
    # Forget the cached connection and producer pools so the next publish uses `url`.
    app._pool = None
    app.amqp._producer_pool = None


class broken_broker:  # noqa: N801 (a context manager used like a function)
    """Point the Celery app at a broker nobody listens on (a real refused connection), then restore."""

    def __enter__(self) -> None:
        from config.celery import app

        self._saved = (app.conf.broker_url, dict(app.conf.broker_transport_options or {}))
        use_broker("redis://127.0.0.1:9/0", {})  # port 9 (discard): connection refused

    def __exit__(self, *exc: object) -> None:
        use_broker(*self._saved)


class private_broker:  # noqa: N801
    """A broker no other test's worker listens on — the next Redis database but eight, or a folder
    of its own — for this process's Celery app; entering gives the environment child processes
    need to share it. A drill's worker then gets exactly the drill's tasks."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> dict[str, str]:
        from urllib.parse import urlparse, urlunparse

        from config.celery import app

        self._saved = (app.conf.broker_url, dict(app.conf.broker_transport_options or {}))
        url = self._saved[0]
        if url.startswith("redis"):
            import redis

            parsed = urlparse(url)
            own = urlunparse(parsed._replace(path=f"/{(int(parsed.path.strip('/') or 0) + 8) % 16}"))
            redis.Redis.from_url(own).flushdb()
            use_broker(own, self._saved[1])
            return {"CELERY_BROKER_URL": own}
        queue, control = self.folder / "broker" / "queue", self.folder / "broker" / "control"
        for folder in (queue, control):
            folder.mkdir(parents=True, exist_ok=True)
        use_broker(
            url,
            {
                **self._saved[1],
                "data_folder_in": str(queue),
                "data_folder_out": str(queue),
                "control_folder": str(control),
            },
        )
        return {"TOWER_VAR_DIR": str(self.folder)}  # the settings derive the same folders from it

    def __exit__(self, *exc: object) -> None:
        use_broker(*self._saved)


def start_worker(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen:
    """A real `celery worker` process; returns once it is ready to take tasks."""
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel",
            "info",
            "--without-gossip",
            "--without-mingle",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 60
    while "ready." not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Celery worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """A redis-server of the test's own on a free loopback port: killed and started again, it is
    a real Redis outage for whatever uses it, without touching the machine's shared Redis."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_for(lambda: _answers(client), timeout=10, message=f"redis-server on port {self.port}")

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


def _answers(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class SlowProxy:
    """A TCP proxy on loopback that holds every answer from upstream for `delay` seconds while
    `delay` is set: a saturated database server, as its clients see it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        import socket
        import threading

        self.upstream = upstream
        self.delay = 0.0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: Any, target: Any, slow: bool) -> None:
        try:
            while data := source.recv(65536):
                if slow and self.delay:
                    time.sleep(self.delay)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._server.close()


def api_token(user: Any, name: str | None = None, days: int | None = None, key: str | None = None) -> str:
    """A new API token of `user` (controltower.ApiToken, stored hashed): its key, for `Authorization: Bearer`.
    `key` stores a known key instead of a random one (for headers fixed before the test runs)."""
    from controltower.models import ApiToken

    name = name or f"tests-{secrets.token_hex(4)}"
    if key is None:
        return ApiToken.issue(user, name, days, created_by="tests")[1]
    ApiToken.objects.create(user=user, name=name, prefix=key[:8], digest=ApiToken.digest_of(key), created_by="tests")
    return key


def api_client(name: str, group: str) -> Any:
    """A DRF API client of a new staff user `name` in `group`, with a Bearer token."""
    from django.contrib.auth.models import Group, User
    from rest_framework.test import APIClient

    user = User.objects.create_user(name, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(user)}")
    return client


def admin_client(name: str, group: str | None = None, superuser: bool = False) -> Any:
    """A Django test client logged in as a new staff user `name` (in `group`), or a superuser."""
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user = User.objects.create_superuser(name) if superuser else User.objects.create_user(name, is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client
