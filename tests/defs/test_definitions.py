"""The code location loads, and sync_schema materializes on a real PostgreSQL."""

from __future__ import annotations

import psycopg
from dagster import AssetKey, materialize

from keap_pipeline.db.migrate import discover
from keap_pipeline.defs.resources import PostgresResource


def test_definitions_load() -> None:
    from keap_pipeline.definitions import defs

    repo = defs.get_repository_def()
    keys = repo.asset_graph.get_all_asset_keys()
    assert AssetKey("sync_schema") in keys


def test_maintenance_jobs_and_schedules_are_listed_with_their_crons() -> None:
    from dagster import DefaultScheduleStatus

    from keap_pipeline.definitions import defs

    repo = defs.get_repository_def()
    jobs = {j.name for j in repo.get_all_jobs()}
    assert {"audit_partitions_job", "vacuum_analyze_job", "queue_retention_job", "keap_contacts_job"} <= jobs
    schedules = {s.name: (s.job_name, s.cron_schedule, s.default_status) for s in repo.schedule_defs}
    assert schedules["audit_partitions_schedule"] == ("audit_partitions_job", "0 0 1 * *", DefaultScheduleStatus.RUNNING)
    assert schedules["vacuum_analyze_schedule"] == ("vacuum_analyze_job", "0 2 * * *", DefaultScheduleStatus.RUNNING)
    assert schedules["queue_retention_schedule"] == ("queue_retention_job", "30 3 * * *", DefaultScheduleStatus.RUNNING)
    assert schedules["keap_contacts_incremental_schedule"][1] == "*/15 * * * *"


def test_health_job_and_schedule_are_listed_with_their_cron() -> None:
    from dagster import AssetKey, DefaultScheduleStatus

    from keap_pipeline.definitions import defs

    repo = defs.get_repository_def()
    assert AssetKey("sync_health") in repo.asset_graph.get_all_asset_keys()
    checks = {key.name for key in repo.asset_graph.asset_check_keys if key.asset_key == AssetKey("sync_health")}
    assert checks == {"sync_health_dead_letters_growing", "sync_health_conflicts_growing", "sync_health_lag"}
    schedules = {s.name: (s.job_name, s.cron_schedule, s.default_status) for s in repo.schedule_defs}
    # every 15 minutes, 7 after the syncs' ticks; on by default, as the sync it watches
    assert schedules["sync_health_schedule"] == ("sync_health_job", "7,22,37,52 * * * *", DefaultScheduleStatus.RUNNING)
    assert schedules["keap_sync_all_schedule"] == ("keap_sync_all_job", "*/15 * * * *", DefaultScheduleStatus.RUNNING)


def test_sync_schema_materializes_and_reports_versions(fresh_database: str) -> None:
    from keap_pipeline.defs.schema import sync_schema

    result = materialize([sync_schema], resources={"postgres": PostgresResource(database_url=fresh_database)})
    assert result.success
    mats = result.asset_materializations_for_node("sync_schema")
    metadata = mats[0].metadata
    assert metadata["current_version"].value == discover()[-1].version
    assert len(metadata["applied_now"].value) == len(discover())
    with psycopg.connect(fresh_database) as conn:
        count = conn.execute("select count(*) from keap_pipeline.schema_migrations").fetchone()
        assert count is not None and count[0] == len(discover())
    again = materialize([sync_schema], resources={"postgres": PostgresResource(database_url=fresh_database)})
    assert again.asset_materializations_for_node("sync_schema")[0].metadata["applied_now"].value == []
