"""docker-compose.yml describes the production shape (it cannot be run on this machine)."""
from __future__ import annotations

import shlex

import yaml

from tests.support import ROOT


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _command(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else command


def test_it_defines_every_process_of_the_stack() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "watchdog", "sandbox"} <= set(services)
    assert _command(services["web"])[:2] == ["gunicorn", "config.wsgi"]
    assert _command(services["worker"])[:4] == ["celery", "-A", "config", "worker"]
    assert _command(services["beat"])[:4] == ["celery", "-A", "config", "beat"]
    assert _command(services["sandbox"])[:3] == ["python", "manage.py", "meta_sandbox"]
    assert _command(services["watchdog"]) == ["python", "manage.py", "watchdog"]


def test_it_runs_exactly_one_beat() -> None:
    assert _compose()["services"]["beat"]["deploy"]["replicas"] == 1


def test_app_services_use_postgres_and_redis_and_wait_for_them() -> None:
    services = _compose()["services"]
    for name in ("web", "worker", "beat", "watchdog"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["CELERY_BROKER_URL"].startswith("redis://")
    for name in ("postgres", "redis", "web", "sandbox"):
        assert "healthcheck" in services[name], name


def test_the_commands_it_runs_exist_in_the_project() -> None:
    from django.core.management import get_commands

    commands = get_commands()
    for needed in ("migrate", "sync_modules", "meta_sandbox", "watchdog"):
        assert needed in commands, needed
    assert (ROOT / "config" / "wsgi.py").exists() and (ROOT / "Dockerfile").exists()
