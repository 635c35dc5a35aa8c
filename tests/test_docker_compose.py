"""docker-compose.yml describes the production shape (it cannot be run on this machine)."""

from __future__ import annotations

import re
import runpy
import shlex

import yaml

import tower
from tests.support import ROOT


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _command(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else command


def test_it_defines_every_process_of_the_stack() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "watchdog", "sandbox"} <= set(services)
    assert _command(services["web"])[:1] == ["gunicorn"]
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
    assert (ROOT / "config" / "asgi.py").exists() and (ROOT / "Dockerfile").exists()


def _nginx_directives() -> dict[str, list[str]]:
    """deploy/nginx.conf's simple directives by name (values as written, comments dropped)."""
    text = re.sub(r"#[^\n]*", "", (ROOT / "deploy" / "nginx.conf").read_text())
    directives: dict[str, list[str]] = {}
    for name, value in re.findall(r"^\s*([a-z_]+)\s+([^;{]*);", text, re.MULTILINE):
        directives.setdefault(name, []).append(value.strip())
    return directives


def _seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(s|m)?", value).groups()
    return int(number) * (60 if unit == "m" else 1)


def test_web_runs_the_same_command_line_as_tower_up_and_the_dockerfile() -> None:
    web = _command(_compose()["services"]["web"])
    assert web[1:] == tower.web_command("0.0.0.0", 8000)[1:]
    dockerfile_cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
    assert yaml.safe_load(dockerfile_cmd) == web


def test_only_nginx_is_published_and_it_fronts_the_web() -> None:
    services = _compose()["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"nginx"}
    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["depends_on"]["web"]["condition"] == "service_healthy"
    assert _nginx_directives()["server"] == ["web:8000"]
    # The web trusts X-Forwarded-For from nginx (the only one that reaches it), which overwrites it.
    assert services["web"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"
    assert "X-Forwarded-For $remote_addr" in _nginx_directives()["proxy_set_header"]


def test_nginx_buffers_and_times_out_slow_clients_but_waits_out_a_whole_stop() -> None:
    nginx = _nginx_directives()
    assert nginx["proxy_buffering"] == ["on"] and nginx["proxy_request_buffering"] == ["on"]
    for slow_client in ("client_header_timeout", "client_body_timeout", "send_timeout", "keepalive_timeout"):
        assert _seconds(nginx[slow_client][0]) <= 30, slow_client
    assert nginx["client_max_body_size"] == ["1m"]
    # A stop answers within gunicorn's timeout (its deadline, then the alerts): nginx must wait longer.
    assert _seconds(nginx["proxy_read_timeout"][0]) > runpy.run_path(str(ROOT / "gunicorn.conf.py"))["timeout"]
