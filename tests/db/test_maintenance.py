"""db/maintenance.py on a real PostgreSQL: partitions ahead, DEFAULT rows home, retention, dry run, VACUUM."""

from __future__ import annotations

import threading
import time
from datetime import date

import psycopg
import pytest

from keap_pipeline.db.maintenance import (
    SYNC_TABLES,
    MaintenanceError,
    audit_partitions,
    cron_ran_recently,
    vacuum_analyze,
)
from keap_pipeline.db.roles import as_ingestion

INSERT = (
    "insert into public.sync_audit_log (entity_type, entity_id, operation, sync_source, created_at)"
    " values ('sync_contacts', gen_random_uuid(), 'UPDATE', 'keap', %s)"
)
TODAY = date(2031, 5, 17)


def _partitions(conn: psycopg.Connection) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "select c.relname from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'public.sync_audit_log'::regclass and c.relname <> 'sync_audit_log_default'"
        )
    }


def test_creates_months_ahead_and_is_idempotent(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        report = audit_partitions(conn, months_ahead=6, today=TODAY)
        assert report.created == [f"sync_audit_log_2031_{m:02d}" for m in range(5, 12)]
        assert report.newest_month == "2031-11"
        assert report.rows_moved == 0 and report.dropped == []
        assert {f"sync_audit_log_2031_{m:02d}" for m in range(5, 12)} <= _partitions(conn)
        again = audit_partitions(conn, months_ahead=6, today=TODAY)
    assert again.created == []


def test_dry_run_reports_and_changes_nothing(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        conn.execute(INSERT, ("2031-07-04 12:00:00+00",))
        conn.commit()
        before = _partitions(conn)
        report = audit_partitions(conn, months_ahead=3, dry_run=True, today=TODAY)
        assert _partitions(conn) == before
        assert conn.execute("select count(*) from keap_pipeline.sync_audit_log_default").fetchone() == (1,)
    assert report.created == [f"sync_audit_log_2031_{m:02d}" for m in range(5, 9)]
    assert report.rows_moved == 1 and report.rows_left_in_default == 0
    assert any("dry run" in line for line in report.lines())


def test_default_rows_move_home_and_old_ones_stay_under_retention(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        for ts in ("2031-06-02 00:00:00+00", "2031-06-30 23:00:00+00", "2030-12-01 00:00:00+00", "2019-03-03 00:00:00+00"):
            conn.execute(INSERT, (ts,))
        conn.commit()
        report = audit_partitions(conn, months_ahead=3, retention_months=12, today=TODAY)
        in_june = conn.execute("select count(*) from keap_pipeline.sync_audit_log_2031_06").fetchone()
        in_dec = conn.execute("select count(*) from keap_pipeline.sync_audit_log_2030_12").fetchone()
        left = conn.execute("select created_at::date from keap_pipeline.sync_audit_log_default").fetchall()
    assert in_june == (2,) and in_dec == (1,)
    assert report.rows_moved == 3
    # 2019-03 is older than the retention: making its month only to drop it would lose the row silently
    assert report.rows_left_in_default == 1 and left == [(date(2019, 3, 3),)]
    assert "sync_audit_log_2030_12" in report.created


def test_retention_drops_months_older_than_asked(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        conn.execute("select * from public.create_monthly_partition('2029-01-01')")
        conn.commit()
        keep_all = audit_partitions(conn, months_ahead=3, today=TODAY)
        assert keep_all.dropped == [] and keep_all.oldest_month is not None and keep_all.oldest_month <= "2029-01"
        dry = audit_partitions(conn, months_ahead=3, retention_months=24, dry_run=True, today=TODAY)
        before = _partitions(conn)
        assert "sync_audit_log_2029_04" in before
        report = audit_partitions(conn, months_ahead=3, retention_months=24, today=TODAY)
        remaining = _partitions(conn)
    # cutoff 2029-05-01: months ending on or before it go (2029-01 .. 2029-04, and the migration's
    # months of the real today, which TODAY puts years in the past)
    expected = sorted(n for n in before if n < "sync_audit_log_2029_05")
    assert {f"sync_audit_log_2029_{m:02d}" for m in range(1, 5)} <= set(expected)
    assert report.dropped == dry.dropped == expected
    assert not remaining & set(report.dropped)
    assert report.oldest_month is not None and report.oldest_month > "2029-04"


def test_invalid_requests_are_refused(db: psycopg.Connection) -> None:
    with pytest.raises(MaintenanceError, match="months_ahead"):
        audit_partitions(db, months_ahead=-1)
    with pytest.raises(MaintenanceError, match="months_ahead must be from 0 to 120"):
        audit_partitions(db, months_ahead=1_000_000)  # was: a date out of range after connecting
    with pytest.raises(MaintenanceError, match="retention_months"):
        audit_partitions(db, retention_months=0)
    with pytest.raises(MaintenanceError, match="retention_months must be from 1 to 9999"):
        audit_partitions(db, retention_months=100_000)
    with pytest.raises(MaintenanceError, match="autocommit"):
        vacuum_analyze(db)


def test_audit_writers_are_not_blocked_while_the_job_runs(migrated_database: str) -> None:
    """A writer of the current month keeps committing; a sampler counts its lock waits (not wall time)."""
    with psycopg.connect(migrated_database) as conn:
        # rows for months without a partition, so the job also moves rows out of DEFAULT
        for months in (8, 9, 14):
            conn.execute(INSERT.replace("%s", "date_trunc('month', now()) + make_interval(months => %s) + interval '3 days'"), (months,))
        conn.commit()

    stop = threading.Event()
    # the phase an attempt or sample STARTED in is what it counts for (a rollback's round trip may end
    # after the phase changed)
    phase: list[str | None] = [None]
    counts = {
        p: {"commits": 0, "lock_timeouts": 0, "wait_samples": 0, "samples": 0} for p in ("control", "job")
    }
    writer_pid: list[int] = []

    def writer() -> None:
        with psycopg.connect(migrated_database) as w:
            # a wait of more than 100 ms becomes an error we count
            w.execute("set lock_timeout = '100ms'")
            writer_pid.append(w.info.backend_pid)
            while not stop.is_set():
                started_in = phase[0]
                try:
                    w.execute(INSERT, ("now",))
                    w.execute(INSERT.replace("%s", "now() - interval '1 second'"))
                    w.commit()
                    if started_in:
                        counts[started_in]["commits"] += 1
                except psycopg.errors.LockNotAvailable:
                    if started_in:
                        counts[started_in]["lock_timeouts"] += 1
                    w.rollback()

    def sampler() -> None:
        with psycopg.connect(migrated_database, autocommit=True) as s:
            while not stop.is_set():
                started_in = phase[0]
                if writer_pid and started_in:
                    waiting = s.execute(
                        "select (select count(*) from pg_catalog.pg_stat_activity"
                        "        where pid = %(pid)s and wait_event_type = 'Lock')"
                        " + (select count(*) from pg_catalog.pg_locks where pid = %(pid)s and not granted)",
                        {"pid": writer_pid[0]},
                    ).fetchone()
                    counts[started_in]["samples"] += 1
                    counts[started_in]["wait_samples"] += int(waiting[0]) if waiting else 0

    threads = [threading.Thread(target=writer), threading.Thread(target=sampler)]
    for t in threads:
        t.start()
    try:
        while not writer_pid:
            time.sleep(0.01)
        # control: the same counters see a writer that IS blocked (an exclusive lock on the parent)
        with psycopg.connect(migrated_database) as blocker:
            blocker.execute("lock table public.sync_audit_log in access exclusive mode")
            phase[0] = "control"
            time.sleep(0.3)
            phase[0] = None
        time.sleep(0.3)

        with psycopg.connect(migrated_database) as conn:
            phase[0] = "job"
            reports = [audit_partitions(conn, months_ahead=24)]
            # more of the same: a second pass further ahead
            reports.append(audit_partitions(conn, months_ahead=36))
            phase[0] = None
    finally:
        stop.set()
        for t in threads:
            t.join()
    control, during = counts["control"], counts["job"]
    assert control["wait_samples"] > 0 and control["lock_timeouts"] > 0, control
    assert sum(len(r.created) for r in reports) >= 24
    assert reports[0].rows_moved == 3 and reports[0].rows_left_in_default == 0
    assert during["samples"] > 0 and during["commits"] > 0, during
    assert during["wait_samples"] == 0 and during["lock_timeouts"] == 0, during


def test_vacuum_analyze_reports_per_table(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        as_ingestion(conn)  # Keap's tags: only the ingestion's role sets keap_id (sql/24)
        conn.execute(
            "insert into public.sync_tags (keap_id, name) select g::text, 'tag ' || g from generate_series(1, 2000) g"
        )
        conn.commit()
        conn.execute("delete from public.sync_tags where keap_id::int % 2 = 0")
        conn.commit()
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        results = vacuum_analyze(conn, tables=["sync_tags", "sync_queue"], lock_timeout="2s")
        analyzed = vacuum_analyze(conn, analyze_only=True)
    tags = results[0]
    assert [r.table for r in results] == ["sync_tags", "sync_queue"]
    assert tags.skipped is None and tags.action == "VACUUM (ANALYZE)"
    assert tags.dead_tuples_before is not None and tags.dead_tuples_before >= 1000
    assert tags.dead_tuples_after == 0 and (tags.pages or 0) > 0
    assert [r.table for r in analyzed] == list(SYNC_TABLES) and {r.action for r in analyzed} == {"ANALYZE"}


def test_vacuum_skips_a_table_whose_lock_it_cannot_get(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as holder, psycopg.connect(migrated_database, autocommit=True) as conn:
        # SHARE UPDATE EXCLUSIVE is what VACUUM and autovacuum take: VACUUM waits for it, then skips
        holder.execute("lock table public.sync_queue in share update exclusive mode")
        results = vacuum_analyze(conn, tables=["sync_queue", "sync_status"], lock_timeout="200ms")
        holder.rollback()
    assert results[0].skipped is not None and "lock_timeout" in results[0].skipped
    assert results[1].skipped is None


def test_vacuum_refuses_unknown_tables_and_bad_timeouts(migrated_database: str) -> None:
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        with pytest.raises(MaintenanceError, match="unknown table"):
            vacuum_analyze(conn, tables=["pg_class"])
        with pytest.raises(MaintenanceError, match="lock_timeout"):
            vacuum_analyze(conn, lock_timeout="5; drop table x")


def test_cron_state_is_absent_without_pg_cron(db: psycopg.Connection) -> None:
    # on a server without pg_cron (the embedded one) Dagster owns the chores
    assert cron_ran_recently(db, "keap-pipeline:create-partitions", 86400) is None
