"""audit_partitions_job, vacuum_analyze_job and their schedules, run in process on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from dagster import DagsterInvalidConfigError, RunRequest, build_schedule_context

from keap_pipeline.db.maintenance import CRON_CREATE_PARTITIONS, CRON_VACUUM_ANALYZE, SYNC_TABLES
from keap_pipeline.db.migrate import migrate
from keap_pipeline.defs.maintenance import (
    audit_partitions_job,
    audit_partitions_schedule,
    queue_retention_job,
    queue_retention_schedule,
    vacuum_analyze_job,
    vacuum_analyze_schedule,
)
from keap_pipeline.defs.resources import PostgresResource
from tests.conftest import create_database, drop_database
from tests.db.queue_history import add_finished
from tests.db.test_cron import _cron_database

TICK = datetime(2031, 6, 1, tzinfo=UTC)


def _metadata(result, op: str) -> dict:  # type: ignore[no-untyped-def]
    events = [e for e in result.events_for_node(op) if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in events[0].event_specific_data.metadata.items()}


def test_audit_partitions_job_reports_metadata(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            "insert into public.sync_audit_log (entity_type, entity_id, operation, sync_source, created_at)"
            " values ('sync_contacts', gen_random_uuid(), 'UPDATE', 'keap', date_trunc('month', now()) + interval '7 months')"
        )
    resources = {"postgres": PostgresResource(database_url=migrated_database)}
    dry = audit_partitions_job.execute_in_process(
        run_config={"ops": {"audit_partitions_op": {"config": {"months_ahead": 6, "dry_run": True}}}},
        resources=resources,
    )
    assert dry.success
    dry_md = _metadata(dry, "audit_partitions_op")
    assert dry_md["dry_run"] is True and dry_md["rows_moved"] == 1 and dry_md["partitions_created"] > 0
    result = audit_partitions_job.execute_in_process(
        run_config={"ops": {"audit_partitions_op": {"config": {"months_ahead": 6}}}}, resources=resources
    )
    md = _metadata(result, "audit_partitions_op")
    assert md["partitions_created"] == dry_md["partitions_created"]
    assert md["rows_moved"] == 1 and md["rows_left_in_default"] == 0
    assert md["partitions_dropped"] == 0 and md["newest_month"] >= md["oldest_month"]


def test_audit_partitions_config_is_validated() -> None:
    with pytest.raises(DagsterInvalidConfigError):
        audit_partitions_job.execute_in_process(
            run_config={"ops": {"audit_partitions_op": {"config": {"months_ahead": "three"}}}},
            resources={"postgres": PostgresResource(database_url="postgresql://unused@127.0.0.1:1/x")},
        )
    bad = audit_partitions_job.execute_in_process(
        run_config={"ops": {"audit_partitions_op": {"config": {"retention_months": 0}}}},
        resources={"postgres": PostgresResource(database_url="postgresql://unused@127.0.0.1:1/x")},
        raise_on_error=False,
    )
    assert not bad.success


def test_vacuum_analyze_job_reports_each_table(migrated_database: str) -> None:
    result = vacuum_analyze_job.execute_in_process(
        run_config={"ops": {"vacuum_analyze_op": {"config": {"tables": ["sync_contacts", "sync_tags"], "lock_timeout": "2s"}}}},
        resources={"postgres": PostgresResource(database_url=migrated_database)},
    )
    assert result.success
    md = _metadata(result, "vacuum_analyze_op")
    assert md["tables_processed"] == 2 and md["tables_skipped"] == 0
    assert md["sync_contacts_skipped"] == "no" and md["sync_contacts_dead_tuples_after"] == 0
    assert "sync_orders_pages" not in md
    everything = vacuum_analyze_job.execute_in_process(
        run_config={"ops": {"vacuum_analyze_op": {"config": {"analyze_only": True}}}},
        resources={"postgres": PostgresResource(database_url=migrated_database)},
    )
    assert _metadata(everything, "vacuum_analyze_op")["tables_processed"] == len(SYNC_TABLES)


def test_queue_retention_job_reports_metadata_and_its_schedule_runs(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        add_finished(conn, "completed", 45, count=2)
        add_finished(conn, "cancelled", 45)
    resources = {"postgres": PostgresResource(database_url=migrated_database)}
    dry = queue_retention_job.execute_in_process(
        run_config={"ops": {"queue_retention_op": {"config": {"dry_run": True}}}}, resources=resources
    )
    assert _metadata(dry, "queue_retention_op")["items_purged"] == 3
    result = queue_retention_job.execute_in_process(resources=resources)
    md = _metadata(result, "queue_retention_op")
    assert (md["items_purged"], md["keep_days"], md["items_left"]) == (3, 30, {})
    bad = queue_retention_job.execute_in_process(
        run_config={"ops": {"queue_retention_op": {"config": {"keep_days": 0}}}}, resources=resources, raise_on_error=False
    )
    assert not bad.success
    with build_schedule_context(scheduled_execution_time=TICK) as context:
        request = queue_retention_schedule(context)
    assert isinstance(request, RunRequest) and request.run_key == f"queue-retention-{TICK.isoformat()}"


def test_vacuum_analyze_refuses_unknown_tables() -> None:
    failed = vacuum_analyze_job.execute_in_process(
        run_config={"ops": {"vacuum_analyze_op": {"config": {"tables": ["pg_authid"]}}}},
        resources={"postgres": PostgresResource(database_url="postgresql://unused@127.0.0.1:1/x")},
        raise_on_error=False,
    )
    assert not failed.success


def test_a_failed_connection_fails_the_run_without_the_password() -> None:
    result = vacuum_analyze_job.execute_in_process(
        resources={"postgres": PostgresResource(database_url="postgresql://u:hunter2secret@127.0.0.1:1/x")},
        raise_on_error=False,
    )
    assert not result.success
    text = " ".join(str(e.event_specific_data) for e in result.all_events)
    assert "hunter2secret" not in text


@pytest.mark.parametrize("schedule", [audit_partitions_schedule, vacuum_analyze_schedule])
def test_schedules_run_where_pg_cron_is_absent(migrated_database: str, schedule) -> None:  # type: ignore[no-untyped-def]
    with build_schedule_context(scheduled_execution_time=TICK, resources={"postgres": PostgresResource(database_url=migrated_database)}) as context:
        result = schedule.evaluate_tick(context)
    assert result.run_requests and isinstance(result.run_requests[0], RunRequest)
    assert not result.skip_message


def _stand_in_cron(url: str, jobname: str, ended: str) -> None:
    # A stand-in of pg_cron's two tables (the columns pg_cron 1.4 defines and the skip query reads),
    # for servers without pg_cron; the real extension is exercised by the test below where it exists.
    with psycopg.connect(url) as conn:
        conn.execute("create schema cron")
        conn.execute(
            "create table cron.job (jobid bigserial primary key, schedule text, command text, nodename text,"
            " nodeport int, database text, username text, active boolean default true, jobname text)"
        )
        conn.execute(
            "create table cron.job_run_details (jobid bigint, runid bigserial, job_pid int, database text,"
            " username text, command text, status text, return_message text, start_time timestamptz, end_time timestamptz)"
        )
        conn.execute(
            "insert into cron.job (schedule, command, database, username, jobname)"
            " values ('0 0 1 * *', 'select 1', current_database(), current_user, %s)",
            (jobname,),
        )
        conn.execute(
            "insert into cron.job_run_details (jobid, status, start_time, end_time)"
            " select jobid, 'succeeded', now() - %s::interval, now() - %s::interval from cron.job",
            (ended, ended),
        )


@pytest.mark.parametrize(
    ("schedule", "jobname"),
    [(audit_partitions_schedule, CRON_CREATE_PARTITIONS), (vacuum_analyze_schedule, CRON_VACUUM_ANALYZE)],
)
def test_schedules_skip_when_a_stand_in_pg_cron_ran_within_the_interval(migrated_database: str, schedule, jobname) -> None:  # type: ignore[no-untyped-def]
    _stand_in_cron(migrated_database, jobname, "1 hour")
    with build_schedule_context(scheduled_execution_time=TICK, resources={"postgres": PostgresResource(database_url=migrated_database)}) as context:
        result = schedule.evaluate_tick(context)
    assert not result.run_requests
    assert result.skip_message and jobname in result.skip_message and "pg_cron" in result.skip_message


def test_schedule_runs_when_pg_cron_last_ran_too_long_ago(migrated_database: str) -> None:
    _stand_in_cron(migrated_database, CRON_VACUUM_ANALYZE, "3 days")
    with build_schedule_context(scheduled_execution_time=TICK, resources={"postgres": PostgresResource(database_url=migrated_database)}) as context:
        result = vacuum_analyze_schedule.evaluate_tick(context)
    assert result.run_requests


def test_schedules_skip_where_the_real_pg_cron_ran(pg_server_url: str) -> None:
    name = _cron_database(pg_server_url)
    if name is None:
        pytest.skip("this server has no usable pg_cron (CI's PostgreSQL 15 has); the stand-in tests cover the query")
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        exists = conn.execute("select count(*) from pg_catalog.pg_database where datname = %s", (name,)).fetchone()[0]
    if exists:
        pytest.skip(f"database {name} exists already; this test only writes into one it created")
    url = create_database(pg_server_url, name)
    try:
        migrate(url)
        resources = {"postgres": PostgresResource(database_url=url)}
        with build_schedule_context(scheduled_execution_time=TICK, resources=resources) as context:
            assert audit_partitions_schedule.evaluate_tick(context).run_requests, "never ran yet: Dagster runs it"
        with psycopg.connect(url) as conn:
            # pg_cron's own table, written as its scheduler does after a successful run of the real job
            conn.execute(
                "insert into cron.job_run_details (jobid, runid, job_pid, database, username, command, status, start_time, end_time)"
                " select jobid, 1, 0, database, username, command, 'succeeded', now() - interval '2 min', now() - interval '1 min'"
                " from cron.job where jobname = %s",
                (CRON_CREATE_PARTITIONS,),
            )
        with build_schedule_context(scheduled_execution_time=TICK, resources=resources) as context:
            result = audit_partitions_schedule.evaluate_tick(context)
        assert result.skip_message and CRON_CREATE_PARTITIONS in result.skip_message
        with build_schedule_context(scheduled_execution_time=TICK, resources=resources) as context:
            assert vacuum_analyze_schedule.evaluate_tick(context).run_requests
    finally:
        drop_database(pg_server_url, name)

