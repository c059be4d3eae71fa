"""sql/22 and 23: the partial indexes skip rows no query can find through them; the one email index serves every email lookup."""

from __future__ import annotations

import psycopg
import pytest

USER = "00000000-0000-0000-0000-0000000000a1"


def _plan(db: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> str:
    db.execute("set local enable_seqscan = off")
    return "\n".join(r[0] for r in db.execute("explain (costs off) " + query, params))


@pytest.fixture
def contacts(db: psycopg.Connection) -> psycopg.Connection:
    # 200 ingested contacts (no user, all synced) and 3 an app user made (pending)
    db.execute(
        "select * from public.batch_upsert_contacts(array(select jsonb_build_object('keap_id', g::text,"
        " 'email', 'c' || g || '@example.com') from generate_series(1, 200) as g))"
    )
    db.execute("insert into auth.users (id) values (%s)", (USER,))
    db.execute(
        "insert into public.sync_contacts (email, created_by, sync_status) select 'u' || g || '@example.com', %s, 'pending'"
        " from generate_series(1, 3) as g",
        (USER,),
    )
    db.execute("analyze public.sync_contacts")
    return db


def test_only_rows_with_a_user_or_an_unsynced_state_are_indexed(contacts: psycopg.Connection) -> None:
    predicates = dict(contacts.execute(
        "select c.relname, pg_get_expr(i.indpred, i.indrelid) from pg_index i join pg_class c on c.oid = i.indexrelid"
        " where c.relname in ('idx_sync_contacts_created_by', 'idx_sync_contacts_updated_by', 'idx_sync_contacts_sync_status')"
    ).fetchall())
    assert predicates == {
        "idx_sync_contacts_created_by": "(created_by IS NOT NULL)",
        "idx_sync_contacts_updated_by": "(updated_by IS NOT NULL)",
        "idx_sync_contacts_sync_status": "((sync_status)::text <> 'completed'::text)",
    }
    # ANALYZE counted each index's entries from its sample (all 203 rows here): 3 rows, not 203
    entries = dict(contacts.execute(
        "select relname, reltuples::integer from pg_class where relname in"
        " ('idx_sync_contacts_created_by', 'idx_sync_contacts_sync_status', 'idx_sync_contacts_email_status')"
    ).fetchall())
    assert entries == {
        "idx_sync_contacts_created_by": 3, "idx_sync_contacts_sync_status": 3, "idx_sync_contacts_email_status": 203,
    }


def test_the_rls_lookup_and_the_work_lists_still_use_them(contacts: psycopg.Connection) -> None:
    own = _plan(contacts, "select id from public.sync_contacts where created_by = %s or updated_by = %s", (USER, USER))
    assert "idx_sync_contacts_created_by" in own and "idx_sync_contacts_updated_by" in own
    pending = _plan(contacts, "select id from public.sync_contacts where sync_status = 'pending'")
    assert "idx_sync_contacts_sync_status" in pending
    work = _plan(contacts, "select id from public.sync_contacts where sync_status in ('error', 'conflict')")
    assert "idx_sync_contacts_sync_status" in work
    # sql/23: no idx_sync_contacts_email; the (email, sync_status) index serves lookups by email alone,
    # soft-deleted rows included
    by_email = _plan(contacts, "select id from public.sync_contacts where email = 'c7@example.com'")
    assert "idx_sync_contacts_email_status" in by_email
    assert contacts.execute("select to_regclass('public.idx_sync_contacts_email')").fetchone() == (None,)
    rows = contacts.execute(
        "select count(*) from public.sync_contacts where created_by = %s or updated_by = %s", (USER, USER)
    ).fetchone()
    assert rows == (3,)
