"""The spec's two tables exist with every column and the seven named indices."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

RUN_COLUMNS = {
    "id",
    "run_type",
    "command_type",
    "system_status",
    "total_modules_checked",
    "online_modules",
    "degraded_modules",
    "offline_modules",
    "module_health_details",
    "actions_executed",
    "errors_encountered",
    "recoveries_performed",
    "total_api_calls_24h",
    "total_errors_24h",
    "total_campaigns_active",
    "total_daily_budget_usd",
    "db_connection_pool_size",
    "db_active_connections",
    "db_query_avg_ms",
    "execution_time_ms",
    "executed_by",
    "executed_at",
    "recommendations",
    "alerts",
    "mode",
}
LOG_COLUMNS = {
    "id",
    "module_name",
    "module_full_name",
    "health_status",
    "success_rate",
    "avg_execution_time_ms",
    "error_count_24h",
    "api_calls_24h",
    "is_scheduler_running",
    "is_db_healthy",
    "is_api_healthy",
    "last_run",
    "next_run",
    "last_error",
    "last_error_time",
    "recovery_attempts",
    "last_recovery_action",
    "recovery_successful",
    "db_connections",
    "memory_usage_mb",
    "cpu_usage_pct",
    "checked_at",
    "mode",
}
INDICES = {
    "meta_control_tower_runs": {
        "ix_control_runs_status_executed": ["system_status", "executed_at"],
        "ix_control_runs_type_status": ["run_type", "system_status"],
        "ix_control_runs_command_executed": ["command_type", "executed_at"],
    },
    "meta_system_health_logs": {
        "ix_health_logs_module_status": ["module_name", "health_status"],
        "ix_health_logs_module_checked": ["module_name", "checked_at"],
        "ix_health_logs_scheduler_db": ["is_scheduler_running", "is_db_healthy"],
        "ix_health_logs_errors": ["error_count_24h", "checked_at"],
    },
}


def _columns(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        return {col.name: col.type_code for col in connection.introspection.get_table_description(cursor, table)}


@pytest.mark.parametrize(
    "table, expected", [("meta_control_tower_runs", RUN_COLUMNS), ("meta_system_health_logs", LOG_COLUMNS)]
)
def test_it_creates_every_spec_column(table: str, expected: set[str]) -> None:
    assert expected <= set(_columns(table))


@pytest.mark.parametrize("table", INDICES)
def test_it_creates_the_named_indices_on_the_spec_columns(table: str) -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    for name, columns in INDICES[table].items():
        assert name in constraints, f"index {name} missing on {table}"
        assert constraints[name]["index"] and constraints[name]["columns"] == columns


def test_postgres_uses_uuid_keys_and_jsonb(postgres_db: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_name IN ('meta_control_tower_runs', 'meta_system_health_logs') "
            "AND column_name IN ('id', 'module_health_details', 'executed_at', 'checked_at')"
        )
        types = {(table, column): data_type for table, column, data_type in cursor.fetchall()}
    assert types[("meta_control_tower_runs", "id")] == "uuid"
    assert types[("meta_system_health_logs", "id")] == "uuid"
    assert types[("meta_control_tower_runs", "module_health_details")] == "jsonb"
    assert types[("meta_control_tower_runs", "executed_at")] == "timestamp with time zone"
    assert types[("meta_system_health_logs", "checked_at")] == "timestamp with time zone"


def test_the_tower_state_singleton_is_created_by_migration() -> None:
    from controltower.models import SystemStatus, TowerState

    state = TowerState.objects.get(pk=1)
    assert state.system_status == SystemStatus.UNKNOWN and not state.emergency_stop_active
