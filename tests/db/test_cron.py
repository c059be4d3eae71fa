"""pg_cron: jobs scheduled where pg_cron is usable (CI's PostgreSQL 15), a NOTICE and no failure elsewhere."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from keap_pipeline.db.migrate import migrate, rollback
from tests.conftest import create_database, database_url, drop_database

JOBS = {"keap-pipeline:create-partitions", "keap-pipeline:vacuum-analyze", "keap-pipeline:audit-retention"}


def _cron_database(server_url: str) -> str | None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        preload = conn.execute("select current_setting('shared_preload_libraries')").fetchone()[0]
        name = conn.execute("select current_setting('cron.database_name', true)").fetchone()[0]
        available = conn.execute("select count(*) from pg_catalog.pg_available_extensions where name = 'pg_cron'").fetchone()[0]
    if "pg_cron" not in preload.replace(" ", "").split(",") or not name or not available:
        return None
    return name


def test_without_usable_pg_cron_the_jobs_are_skipped_with_a_notice(migrated_database: str) -> None:
    # a throwaway database is never cron.database_name, so this path runs on every server
    notices: list[str] = []
    with psycopg.connect(migrated_database) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        scheduled = conn.execute("select * from keap_pipeline.schedule_maintenance_jobs()").fetchall()
        has_cron = conn.execute("select count(*) from pg_catalog.pg_extension where extname = 'pg_cron'").fetchone()
    assert scheduled == []
    assert has_cron == (0,)
    assert any("pg_cron jobs not scheduled" in n for n in notices), notices


def test_with_pg_cron_the_jobs_are_scheduled_and_rolled_back(pg_server_url: str) -> None:
    name = _cron_database(pg_server_url)
    if name is None:
        pytest.skip("this server has no usable pg_cron (CI's PostgreSQL 15 has); the NOTICE path is tested above")
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        exists = conn.execute("select count(*) from pg_catalog.pg_database where datname = %s", (name,)).fetchone()[0]
    created_here = not exists
    url = create_database(pg_server_url, name) if created_here else database_url(pg_server_url, name)
    try:
        migrate(url)
        with psycopg.connect(url) as conn:
            jobs = conn.execute(
                "select jobname, schedule, command from cron.job where database = current_database() and jobname like 'keap-pipeline:%'"
            ).fetchall()
        assert {j[0] for j in jobs} == JOBS
        assert dict((j[0], j[1]) for j in jobs)["keap-pipeline:create-partitions"] == "0 0 1 * *"
        assert "vacuum analyze public.sync_contacts" in dict((j[0], j[2]) for j in jobs)["keap-pipeline:vacuum-analyze"]
        if created_here:
            rollback(url, 14)
            with psycopg.connect(url) as conn:
                gone = conn.execute(
                    sql.SQL("select count(*) from pg_catalog.pg_extension where extname = {}").format(sql.Literal("pg_cron"))
                ).fetchone()
            assert gone == (0,), "15's down script drops the pg_cron it created (and with it the jobs)"
    finally:
        if created_here:
            drop_database(pg_server_url, name)
