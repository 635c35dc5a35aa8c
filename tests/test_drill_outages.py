"""Fire drills: Redis (broker and shared cache) goes down, PostgreSQL turns slow.

Redis is a redis-server of the test's own, killed and started again: a real outage, not a
refused port picked for the occasion. The slow database is the real PostgreSQL behind a
loopback proxy that holds each of its answers. The tower must answer clearly, record what
is down, keep its kill switch working, not storm with restarts, and come back by itself.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from config.celery import app
from controltower import commander, cycle
from controltower.models import Alert, ControlTowerRun, RecoveryAttempt, RunState, RunType, TowerState
from controltower.recovery import DATABASE
from controltower.recovery_policy import Action, Policy, backoff
from controltower.schedules import HEARTBEAT_TASK
from tests.support import RedisServer, SlowProxy, api_token, service_missing, use_broker

pytestmark = pytest.mark.slow
BASE = "/meta/control-tower"


def _infra_keys(run: ControlTowerRun) -> set[str]:
    return {e["key"] for e in run.errors_encountered}


@pytest.fixture
def operator(db) -> APIClient:
    user = get_user_model().objects.create_user("olga", is_staff=True, is_superuser=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(user)}")
    return client


@pytest.fixture
def redis_server(tmp_path: Path, settings) -> Iterator[RedisServer]:
    """Broker and shared cache on a Redis of this test's own (the production shape)."""
    if not shutil.which("redis-server"):
        service_missing("redis-server (apt-get install redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    saved = (app.conf.broker_url, dict(app.conf.broker_transport_options or {}))
    use_broker(server.url, {"visibility_timeout": 3600})
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    yield server
    server.kill()
    use_broker(*saved)


def _queue(client: APIClient):
    return client.post(f"{BASE}/command", {"command_type": "sync_data", "execute_immediately": False}, format="json")


def test_with_redis_down_a_queued_command_gets_a_503_and_is_recorded_as_not_queued(
    synced, operator, redis_server
) -> None:
    redis_server.kill()

    refused = _queue(operator)

    assert refused.status_code == 503, refused.content
    assert "task queue is unavailable" in refused.json()["detail"]
    run = ControlTowerRun.objects.get(run_type=RunType.COMMAND)
    assert run.state == RunState.FAILED and run.message == "Not queued: the task queue is unavailable."

    redis_server.start()
    accepted = _queue(operator)

    assert accepted.status_code == 202, accepted.content
    assert ControlTowerRun.objects.get(pk=accepted.json()["command_id"]).state == RunState.QUEUED


def test_with_redis_down_the_emergency_stop_and_resume_still_work_through_the_api(
    synced, operator, redis_server, meta_sandbox
) -> None:
    meta_sandbox.reset(accounts=2, statuses={"ACTIVE": 12, "PAUSED": 3})
    redis_server.kill()  # its throttle counters live in that cache: they must not stand in the way

    stopped = operator.post(f"{BASE}/emergency-stop", {"reason": "Budget spike during a Redis outage"}, format="json")

    assert stopped.status_code == 200, stopped.content
    assert stopped.json()["campaigns_paused"] == 24
    assert not meta_sandbox.campaigns(status="ACTIVE")

    resumed = operator.post(f"{BASE}/resume", {"reason": "spike explained"}, format="json")

    assert resumed.status_code == 200, resumed.content
    assert resumed.json()["campaigns_resumed"] == 24 and len(meta_sandbox.campaigns(status="ACTIVE")) == 24
    check = ControlTowerRun.objects.get(pk=resumed.json()["health_check_run_id"])
    assert "infra:broker" in _infra_keys(check)  # the resume's health check saw the outage


def test_with_redis_down_the_cycle_records_it_without_a_restart_storm_and_recovers_when_it_returns(
    synced, redis_server, settings
) -> None:
    settings.ALERT_EMAILS = ["ops@example.com"]
    redis_server.kill()
    # What ten minutes without a broker leave behind: no heartbeat got through to a worker.
    ten_minutes_ago = timezone.now() - timedelta(minutes=10)
    TowerState.set(worker_heartbeat_at=ten_minutes_ago)
    PeriodicTask.objects.filter(name=HEARTBEAT_TASK).update(last_run_at=ten_minutes_ago)

    during = [commander.health_cycle(executed_by="scheduler") for _ in range(3)]

    assert all(run.state == RunState.COMPLETED and "infra:broker" in _infra_keys(run) for run in during)
    assert during[-1].offline_modules == 17 and during[-1].system_status == "critical"
    assert not RecoveryAttempt.objects.exists()  # 17 modules down at once: the breaker, not 17 restarts
    assert [m.subject for m in mail.outbox].count(mail.outbox[0].subject) == 1  # one grouped alert, not three
    assert Alert.objects.get(key="infra:broker", resolved_at__isnull=True)

    redis_server.start()
    cycle.heartbeat()  # a worker executes Beat's heartbeat again
    after = commander.health_cycle(executed_by="scheduler")

    assert "infra:broker" not in _infra_keys(after) and after.offline_modules == 0
    assert Alert.objects.get(key="infra:broker").resolved_at is not None
    assert "resolved" in mail.outbox[-1].subject.lower()


@pytest.mark.django_db(transaction=True)
def test_a_slow_database_is_marked_unhealthy_and_reconnected_no_more_often_than_the_backoff_allows(
    postgres_db, synced, settings
) -> None:
    settings.DB_HEALTHY_LATENCY_MS = 50
    settings.RECOVERY_BACKOFF_BASE_SECONDS, settings.RECOVERY_BACKOFF_CAP_SECONDS = 5, 20
    policy = Policy.from_settings()
    db = connection.settings_dict
    direct = (db["HOST"], db["PORT"])
    proxy = SlowProxy((direct[0] or "127.0.0.1", int(direct[1] or 5432)))
    db["HOST"], db["PORT"] = "127.0.0.1", str(proxy.port)
    connection.close()  # from now on every connection goes through the proxy, reconnects too
    try:
        proxy.delay = 0.08  # each answer 80 ms late: the probe's round trip exceeds the 50 ms bound
        started = time.monotonic()
        slow = [commander.health_cycle(executed_by="scheduler") for _ in range(5)]
        slow_seconds = time.monotonic() - started
        proxy.delay = 0
        healthy = commander.health_cycle(executed_by="scheduler")
    finally:
        db["HOST"], db["PORT"] = direct
        connection.close()
        proxy.close()

    assert all("infra:database" in _infra_keys(run) for run in slow)
    attempts = list(RecoveryAttempt.objects.filter(module_code=DATABASE).order_by("started_at"))
    assert [a.action for a in attempts] == [Action.RECONNECT_DB] * len(attempts)
    assert 1 <= len(attempts) <= policy.max_attempts < len(slow)
    for earlier, later in zip(attempts, attempts[1:]):
        attempts_before = attempts.index(later)
        assert later.started_at - earlier.started_at >= backoff(attempts_before, DATABASE, policy), slow_seconds
    assert all(a.detail["before"] != a.detail["after"] for a in attempts)  # a new server session each time
    assert not RecoveryAttempt.objects.exclude(module_code=DATABASE).exists()  # modules degrade, nobody restarts
    assert "infra:database" not in _infra_keys(healthy)
    assert Alert.objects.get(key="infra:database").resolved_at is not None
