"""Audit partitions: creation across a year boundary, the DEFAULT partition, moving its rows, retention."""

from __future__ import annotations

import psycopg
import pytest


def _partitions(conn: psycopg.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "select c.relname from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'public.sync_audit_log'::regclass order by 1"
        )
    ]


def _audit_row(conn: psycopg.Connection, created_at: str) -> str:
    row = conn.execute(
        "insert into public.sync_audit_log (entity_type, entity_id, operation, sync_source, created_at)"
        " values ('sync_contacts', gen_random_uuid(), 'UPDATE', 'keap', %s) returning tableoid::regclass::text",
        (created_at,),
    ).fetchone()
    assert row is not None
    return row[0]


def test_migration_made_this_month_and_three_ahead(db: psycopg.Connection) -> None:
    expected = db.execute(
        "select array_agg('sync_audit_log_' || to_char(date_trunc('month', current_date) + make_interval(months => m), 'YYYY_MM') order by m)"
        " from generate_series(0, 3) m"
    ).fetchone()[0]
    assert set(expected) <= set(_partitions(db))
    assert "sync_audit_log_default" in _partitions(db)


def test_year_boundary_and_idempotence(db: psycopg.Connection) -> None:
    created = [r[0] for r in db.execute("select * from public.create_monthly_partition('2031-11-01')")]
    assert created == ["sync_audit_log_2031_11", "sync_audit_log_2031_12", "sync_audit_log_2032_01", "sync_audit_log_2032_02"]
    assert db.execute("select count(*) from public.create_monthly_partition('2031-11-15')").fetchone() == (0,)
    assert _audit_row(db, "2031-12-31 23:59:59.999+00") == "keap_pipeline.sync_audit_log_2031_12"
    assert _audit_row(db, "2032-01-01 00:00:00+00") == "keap_pipeline.sync_audit_log_2032_01"
    bounds = db.execute(
        "select pg_get_expr(c.relpartbound, c.oid) from pg_catalog.pg_class c where c.oid = 'keap_pipeline.sync_audit_log_2032_01'::regclass"
    ).fetchone()[0]
    assert "2032-01-01" in bounds and "2032-02-01" in bounds


def test_default_partition_catches_a_month_without_partition(db: psycopg.Connection) -> None:
    assert _audit_row(db, "1999-06-15 12:00:00+00") == "keap_pipeline.sync_audit_log_default"


def test_default_rows_move_into_the_month_created_later(db: psycopg.Connection) -> None:
    for ts in ("2035-03-01 00:00:00+00", "2035-03-31 23:00:00+00", "2035-07-01 00:00:00+00"):
        assert _audit_row(db, ts) == "keap_pipeline.sync_audit_log_default"
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    created = [r[0] for r in db.execute("select * from public.create_monthly_partition('2035-03-01')")]
    assert created[0] == "sync_audit_log_2035_03"
    in_march = db.execute("select count(*) from keap_pipeline.sync_audit_log_2035_03").fetchone()
    still_default = db.execute("select count(*) from keap_pipeline.sync_audit_log_default where created_at >= '2035-01-01'").fetchone()
    assert in_march == (2,)
    # the July row stays in DEFAULT: 2035_03 .. 2035_06 were created, not July
    assert still_default == (1,)
    assert db.execute("select count(*) from keap_pipeline.sync_audit_log_2035_06").fetchone() == (0,)
    assert any("moved 2 audit row(s)" in n for n in notices)


def test_a_stray_table_with_a_partition_name_is_refused(db: psycopg.Connection) -> None:
    db.execute("create table keap_pipeline.sync_audit_log_2040_01 (x int)")
    with pytest.raises(psycopg.errors.DuplicateTable, match="not a partition"):
        db.execute("select * from public.create_monthly_partition('2040-01-01')")


def test_partitions_are_not_reachable_by_api_roles(db: psycopg.Connection) -> None:
    db.execute("select * from public.create_monthly_partition('2031-11-01')")
    rows = db.execute(
        "select c.relname, c.relrowsecurity, has_table_privilege('anon', c.oid, 'select'),"
        " has_table_privilege('authenticated', c.oid, 'select'), has_schema_privilege('authenticated', c.relnamespace, 'usage')"
        " from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'public.sync_audit_log'::regclass"
    ).fetchall()
    assert rows and all(rls and not anon and not auth and not usage for _n, rls, anon, auth, usage in rows)


def test_retention_drops_only_old_months(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        conn.execute("update keap_pipeline.settings set value = '12' where name = 'audit_retention_months'")
        old = conn.execute(
            "select to_char(date_trunc('month', now()) - interval '14 months', 'YYYY-MM-DD'),"
            " to_char(date_trunc('month', now()) - interval '12 months', 'YYYY-MM-DD')"
        ).fetchone()
        assert old is not None
        conn.execute("select * from public.create_monthly_partition(%s::date)", (old[0],))
        conn.execute("select * from public.create_monthly_partition(%s::date)", (old[1],))
        _audit_row(conn, old[0] + " 12:00:00+00")
        conn.commit()
        before = set(_partitions(conn))
        dropped = [r[0] for r in conn.execute("select * from public.drop_old_audit_partitions()")]
        conn.commit()
        after = set(_partitions(conn))
    # months ending more than 12 months ago: the 14, 13 months old ones; the 12-months-old month stays
    assert len(dropped) == 2
    assert before - after == set(dropped)
    assert "sync_audit_log_default" in after
    assert all(name < min(after - {"sync_audit_log_default"}) for name in dropped)


def test_retention_setting_must_be_a_positive_integer(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="audit_retention_months"):
        db.execute("update keap_pipeline.settings set value = '0' where name = 'audit_retention_months'")


def test_creating_partitions_does_not_block_audit_writers(migrated_database: str) -> None:
    # A writer of the current month and create_monthly_partition for a future month, each inside an open
    # transaction: neither may wait for the other (lock_timeout turns a wait into an error).
    insert = (
        "insert into public.sync_audit_log (entity_type, entity_id, operation, sync_source)"
        " values ('sync_contacts', gen_random_uuid(), 'UPDATE', 'keap')"
    )
    with psycopg.connect(migrated_database) as writer, psycopg.connect(migrated_database) as maintainer:
        writer.execute("set lock_timeout = '2s'")
        maintainer.execute("set lock_timeout = '2s'")
        writer.execute(insert)  # transaction open, holding its locks
        created = maintainer.execute("select * from public.create_monthly_partition('2045-01-01')").fetchall()
        assert len(created) == 4
        writer.execute(insert)  # while the maintainer's attach is still uncommitted
        writer.commit()
        maintainer.commit()


def test_rolling_back_15_keeps_every_audit_row_in_default(migrated_database: str) -> None:
    from keap_pipeline.db.migrate import migrate, rollback

    with psycopg.connect(migrated_database) as conn:
        where = _audit_row(conn, "now")
        conn.commit()
    assert where.startswith("keap_pipeline.sync_audit_log_2")
    rollback(migrated_database, 14)
    with psycopg.connect(migrated_database) as conn:
        assert _partitions(conn) == ["sync_audit_log_default"]
        assert conn.execute("select count(*) from keap_pipeline.sync_audit_log_default").fetchone() == (1,)
    migrate(migrated_database)
    with psycopg.connect(migrated_database) as conn:
        # re-applying 15 moves the row back into its month
        assert conn.execute("select count(*) from keap_pipeline.sync_audit_log_default").fetchone() == (0,)
        assert conn.execute("select count(*) from public.sync_audit_log").fetchone() == (1,)


def _bounds(conn: psycopg.Connection, name: str) -> str:
    conn.execute("set local timezone = 'UTC'")
    row = conn.execute(
        "select pg_get_expr(c.relpartbound, c.oid) from pg_catalog.pg_class c where c.oid = %s::regclass",
        (f"keap_pipeline.{name}",),
    ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize("zone", ["America/New_York", "Pacific/Kiritimati", "Asia/Kathmandu"])
def test_a_month_is_a_utc_month_whatever_the_callers_time_zone(db: psycopg.Connection, zone: str) -> None:
    # a caller in another zone (psql with PGTZ, a server whose TimeZone is local) used to get that zone's
    # months: the next UTC caller's partition then overlapped it, and ATTACH failed every month after
    db.execute("select set_config('timezone', %s, true)", (zone,))
    created = [r[0] for r in db.execute("select * from public.create_monthly_partition('2041-03-01')")]
    assert created[0] == "sync_audit_log_2041_03"
    assert _bounds(db, "sync_audit_log_2041_03") == "FOR VALUES FROM ('2041-03-01 00:00:00+00') TO ('2041-04-01 00:00:00+00')"
    db.execute("select set_config('timezone', %s, true)", (zone,))
    assert _audit_row(db, "2041-03-31 23:59:59+00") == "keap_pipeline.sync_audit_log_2041_03"
    assert _audit_row(db, "2041-04-01 00:00:00+00") == "keap_pipeline.sync_audit_log_2041_04"
    assert db.execute("select current_setting('timezone')").fetchone() == (zone,), "the caller's zone is left as it was"


def test_a_month_meets_the_partitions_an_earlier_zone_made(db: psycopg.Connection) -> None:
    # partitions an earlier text made in New York (05:00 UTC bounds), before and after a missing month
    for name, lo, hi in (("2042_01", "2042-01-01", "2042-02-01"), ("2042_03", "2042-03-01", "2042-04-01")):
        db.execute(
            f"create table keap_pipeline.sync_audit_log_{name} partition of public.sync_audit_log"
            f" for values from ('{lo} 00:00-05') to ('{hi} 00:00-05')"
        )
    db.execute("set local timezone = 'UTC'")
    created = [r[0] for r in db.execute("select * from public.create_monthly_partition('2042-02-01')")]
    assert created == ["sync_audit_log_2042_02", "sync_audit_log_2042_04", "sync_audit_log_2042_05"]
    # February fills the gap exactly; April starts where March ends, May is a plain UTC month
    assert _bounds(db, "sync_audit_log_2042_02") == "FOR VALUES FROM ('2042-02-01 05:00:00+00') TO ('2042-03-01 05:00:00+00')"
    assert _bounds(db, "sync_audit_log_2042_04") == "FOR VALUES FROM ('2042-04-01 05:00:00+00') TO ('2042-05-01 00:00:00+00')"
    assert _bounds(db, "sync_audit_log_2042_05") == "FOR VALUES FROM ('2042-05-01 00:00:00+00') TO ('2042-06-01 00:00:00+00')"
    assert _audit_row(db, "2042-02-01 04:59:59+00") == "keap_pipeline.sync_audit_log_2042_01"
    assert _audit_row(db, "2042-02-01 05:00:00+00") == "keap_pipeline.sync_audit_log_2042_02"
    assert _audit_row(db, "2042-04-30 23:59:59+00") == "keap_pipeline.sync_audit_log_2042_04"
