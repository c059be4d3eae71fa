"""Realtime: publication supabase_realtime membership and REPLICA IDENTITY FULL."""

from __future__ import annotations

import psycopg

PUBLISHED = {"sync_contacts", "sync_orders", "sync_tags", "sync_subscriptions", "sync_products", "sync_status", "sync_conflicts"}


def test_tables_are_in_the_supabase_realtime_publication(db: psycopg.Connection) -> None:
    rows = db.execute(
        "select tablename from pg_catalog.pg_publication_tables where pubname = 'supabase_realtime' and schemaname = 'public'"
    ).fetchall()
    assert {r[0] for r in rows} >= PUBLISHED
    pub = db.execute("select pubinsert, pubupdate, pubdelete from pg_catalog.pg_publication where pubname = 'supabase_realtime'").fetchone()
    assert pub == (True, True, True)


def test_replica_identity_full_where_the_request_asked(db: psycopg.Connection) -> None:
    rows = dict(
        db.execute(
            "select relname, relreplident::text from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and relname = any(%s)",
            (sorted(PUBLISHED),),
        ).fetchall()
    )
    assert {t for t, ident in rows.items() if ident == "f"} == {"sync_contacts", "sync_status", "sync_conflicts"}
    assert all(rows[t] == "d" for t in PUBLISHED - {"sync_contacts", "sync_status", "sync_conflicts"})


def test_the_publication_stand_in_is_recorded_on_plain_postgres(db: psycopg.Connection) -> None:
    row = db.execute("select created_by_version from keap_pipeline.standins where object_kind = 'publication'").fetchone()
    assert row == (14,)


def test_authenticated_may_read_conflicts_anon_may_not_read_status(db: psycopg.Connection) -> None:
    assert db.execute("select has_table_privilege('authenticated', 'public.sync_conflicts', 'select')").fetchone() == (True,)
    assert db.execute("select has_table_privilege('anon', 'public.sync_status', 'select')").fetchone() == (False,)
