"""Realtime: publication supabase_realtime membership, replica identities, and what a batch streams."""

from __future__ import annotations

import psycopg

from keap_pipeline.db.load import UpsertCounts
from keap_pipeline.db.publication import StreamCost, stream_cost
from keap_pipeline.entities import CONTACTS, ORDERS

PUBLISHED = {"sync_contacts", "sync_orders", "sync_tags", "sync_subscriptions", "sync_products", "sync_status", "sync_conflicts"}


def test_tables_are_in_the_supabase_realtime_publication(db: psycopg.Connection) -> None:
    rows = db.execute(
        "select tablename from pg_catalog.pg_publication_tables where pubname = 'supabase_realtime' and schemaname = 'public'"
    ).fetchall()
    assert {r[0] for r in rows} >= PUBLISHED
    pub = db.execute("select pubinsert, pubupdate, pubdelete from pg_catalog.pg_publication where pubname = 'supabase_realtime'").fetchone()
    assert pub == (True, True, True)


def test_replica_identity_full_where_the_request_asked_but_sync_status(db: psycopg.Connection) -> None:
    # the request's three tables had FULL (14); 32 puts sync_status back to DEFAULT (docs/realtime.md)
    rows = dict(
        db.execute(
            "select relname, relreplident::text from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and relname = any(%s)",
            (sorted(PUBLISHED),),
        ).fetchall()
    )
    assert {t for t, ident in rows.items() if ident == "f"} == {"sync_contacts", "sync_conflicts"}
    assert all(rows[t] == "d" for t in PUBLISHED - {"sync_contacts", "sync_conflicts"})


def test_what_a_batch_streams_follows_the_publication(db: psycopg.Connection) -> None:
    assert stream_cost(db, CONTACTS) == StreamCost(per_row=2, per_conflict=1)
    assert stream_cost(db, ORDERS) == StreamCost(per_row=2, per_conflict=1)
    db.execute("alter publication supabase_realtime drop table public.sync_status")
    assert stream_cost(db, CONTACTS) == StreamCost(per_row=1, per_conflict=1)
    db.execute("alter publication supabase_realtime drop table public.sync_contacts, public.sync_conflicts")
    assert stream_cost(db, CONTACTS) == StreamCost(per_row=0, per_conflict=0)
    assert stream_cost(db, ORDERS) == StreamCost(per_row=1, per_conflict=0)
    counts = UpsertCounts(inserted=3, updated=2, unchanged=50, conflicts=1)
    assert StreamCost(per_row=2, per_conflict=1).changes(counts) == 6 * 2 + 1


def test_a_publication_for_all_tables_counts_every_table(db: psycopg.Connection) -> None:
    db.execute("drop publication supabase_realtime")
    db.execute("create publication supabase_realtime for all tables")
    assert stream_cost(db, CONTACTS) == StreamCost(per_row=2, per_conflict=1)
    db.execute("drop publication supabase_realtime")
    assert stream_cost(db, CONTACTS) == StreamCost(per_row=0, per_conflict=0)


def test_the_publication_stand_in_is_recorded_on_plain_postgres(db: psycopg.Connection) -> None:
    row = db.execute("select created_by_version from keap_pipeline.standins where object_kind = 'publication'").fetchone()
    assert row == (14,)


def test_authenticated_may_read_conflicts_anon_may_not_read_status(db: psycopg.Connection) -> None:
    assert db.execute("select has_table_privilege('authenticated', 'public.sync_conflicts', 'select')").fetchone() == (True,)
    assert db.execute("select has_table_privilege('anon', 'public.sync_status', 'select')").fetchone() == (False,)
