"""sql/31 and 36: the indexes as measured by bench/bench_indexes.py (and bench_queue_claim); their down scripts give back the catalog before them."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from keap_pipeline.db import outbound
from keap_pipeline.db.migrate import discover, discover_repeatable, migrate, rollback, sql_dir
from tests.db.catalog import definitions, diff, snapshot
from tests.db.identities import ADMIN, create_users


def _plan(db: psycopg.Connection, query: str) -> str:
    # the test database is empty: forbid the scans that win there, so the plan shows whether an index
    # gives the rows in the order asked (a Sort above it would say it does not)
    db.execute("set local enable_seqscan = off")
    db.execute("set local enable_bitmapscan = off")
    return "\n".join(r[0] for r in db.execute("explain (costs off) " + query))


def _indexes(db: psycopg.Connection) -> dict[str, str]:
    return dict(db.execute(
        "select indexname, indexdef from pg_catalog.pg_indexes where schemaname = 'public'"
    ).fetchall())


def test_the_index_set_is_the_measured_one(db: psycopg.Connection) -> None:
    have = _indexes(db)
    # replaced by keap_pipeline.contact_lookup (tags, custom fields), by the other contacts indexes
    # (updated_at), or serving no query (BRIN, detected_at, resolved_at, orders' status, queue's status, tags' name): docs/schema.md
    for gone in ("idx_contacts_tags", "idx_contacts_custom", "idx_sync_contacts_updated_at", "idx_audit_log_created",
                 "idx_sync_conflicts_detected", "idx_sync_conflicts_resolved", "idx_sync_orders_status",
                 "idx_sync_queue_status", "idx_sync_tags_name"):
        assert gone not in have, gone
    assert have["idx_sync_contacts_sync_status"].endswith(
        "(updated_at DESC, sync_status) WHERE ((sync_status)::text <> 'completed'::text)"
    )
    assert have["idx_sync_orders_date_status"].endswith(
        "(order_date DESC, sync_status) WHERE (((sync_status)::text <> 'completed'::text) AND (deleted_at IS NULL))"
    )
    assert have["idx_sync_conflicts_open"].endswith("(detected_at DESC) WHERE (resolved_at IS NULL)")


def test_the_work_lists_read_their_index_in_order(db: psycopg.Connection) -> None:
    # as the app writes them (<> 'completed') and as 13 wrote the orders' predicate (in (...)): both
    for status in ("sync_status <> 'completed'", "sync_status in ('pending', 'error', 'conflict')"):
        plan = _plan(db, f"select id from public.sync_orders where {status} and deleted_at is null"  # noqa: S608
                         " order by order_date desc limit 50")
        assert "Index Scan using idx_sync_orders_date_status" in plan and "Sort" not in plan, plan
    plan = _plan(db, "select id from public.sync_contacts where sync_status <> 'completed' order by updated_at desc limit 50")
    assert "Index Scan using idx_sync_contacts_sync_status" in plan and "Sort" not in plan, plan
    plan = _plan(db, "select id from public.sync_contacts where sync_status = 'error' order by updated_at desc limit 50")
    assert "idx_sync_contacts_sync_status" in plan and "Sort" not in plan, plan
    plan = _plan(db, "select id from public.sync_conflicts where resolved_at is null order by detected_at desc limit 50")
    assert "Index Scan using idx_sync_conflicts_open" in plan and "Sort" not in plan, plan


def test_a_lookup_page_is_an_index_range(db: psycopg.Connection) -> None:
    # 5,000 contacts, tag i % 100 each (tag 7 on 50 of them): a page walks the tag's keys, not the contacts
    db.execute(
        "insert into public.sync_contacts (email, tags) select 'c' || g || '@example.com',"
        " jsonb_build_array((g % 100)::text) from generate_series(1, 5000) as g"
    )
    db.execute("analyze public.sync_contacts")
    db.execute("analyze keap_pipeline.contact_lookup")
    plan = _plan(
        db,
        "select c.id from keap_pipeline.contact_lookup as k join public.sync_contacts as c on c.id = k.contact_id"
        " where k.key = keap_pipeline.contact_lookup_key('tag', '7', null) and c.deleted_at is null"
        " order by k.contact_id desc limit 50",
    )
    assert "Index Only Scan Backward using contact_lookup_pkey" in plan and "Sort" not in plan, plan


def test_rolling_back_31_gives_back_the_catalog_before_it(fresh_database: str, tmp_path: Path) -> None:
    # the schema before 31: every versioned file below 31, and the repeatable files that need no more
    before = [m.version for m in discover() if m.version < 31][-1]
    before_31 = tmp_path / "sql"
    shutil.copytree(sql_dir(), before_31)
    repeatables = discover_repeatable(before_31)  # read before their requirement is gone
    for m in discover(before_31):
        if m.version > before:
            m.path.unlink()
            m.down_path.unlink()
    for r in repeatables:
        if r.requires > before:
            r.path.unlink()
            r.drop_path.unlink()
    migrate(fresh_database, directory=before_31)
    at_before, defined_before = snapshot(fresh_database), definitions(fresh_database)
    migrate(fresh_database)
    rollback(fresh_database, before)
    assert diff(at_before, snapshot(fresh_database)) == []
    assert diff(defined_before, definitions(fresh_database)) == []


def test_the_queue_is_laid_out_for_the_claim(db: psycopg.Connection) -> None:
    # 36: no column the claim sets (claim_key, started_at) is in an index, and the pages keep room for it
    have = _indexes(db)
    assert have["sync_queue_in_flight_idx"].endswith("(entity_type) WHERE ((status)::text = 'processing'::text)")
    indexed = {
        r[0]
        for r in db.execute(
            "select a.attname from pg_catalog.pg_index as x join pg_catalog.pg_attribute as a"
            " on a.attrelid = x.indrelid and a.attnum > 0 and not a.attisdropped"
            " where x.indrelid = 'public.sync_queue'::regclass"
            " and (a.attnum = any (x.indkey::int2[])"
            "      or pg_catalog.strpos(coalesce(pg_catalog.pg_get_expr(x.indpred, x.indrelid), ''), a.attname::text) > 0)"
        ).fetchall()
    }
    assert "started_at" not in indexed and "claim_key" not in indexed, indexed
    row = db.execute("select reloptions from pg_catalog.pg_class where oid = 'public.sync_queue'::regclass").fetchone()
    assert row is not None and "fillfactor=50" in (row[0] or []), row


def test_a_claim_writes_no_index_entry(migrated_database: str) -> None:
    # the pusher's claim sets claim_key and started_at only: a HOT update wherever the item's page has room
    # for the new version (before 36 never: started_at was a key of the in-flight index). Two items: the
    # first page, filled to half, has room for both.
    with psycopg.connect(migrated_database) as conn:
        create_users(conn)
        conn.execute("select set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{ADMIN}", "role": "service_role"}}',))
        for i in range(30):
            conn.execute("insert into public.sync_contacts (email) values (%s)", (f"c{i}@example.com",))
    counters = (
        "select pg_catalog.pg_stat_get_xact_tuples_updated('public.sync_queue'::regclass),"
        " pg_catalog.pg_stat_get_xact_tuples_hot_updated('public.sync_queue'::regclass)"
    )
    with outbound.pusher_lock(migrated_database, "contacts", holder="test pusher") as lock:
        with psycopg.connect(migrated_database) as conn, conn.transaction():
            before = conn.execute(counters).fetchone()
            outbound.begin_push(conn, lock_timeout_seconds=5)
            claimed = outbound.claim(conn, lock.key, "sync_contacts", 2)
            conn.execute("reset role")
            after = conn.execute(counters).fetchone()
    assert before is not None and after is not None
    assert len(claimed) == 2
    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)


def test_rolling_back_36_gives_back_the_catalog_of_35(fresh_database: str, tmp_path: Path) -> None:
    # the schema of 35: the tree without 36 and what comes after it (repeatable files included, as in 31's test)
    before_36 = tmp_path / "sql"
    shutil.copytree(sql_dir(), before_36)
    repeatables = discover_repeatable(before_36)  # read before their requirement is gone
    for m in discover(before_36):
        if m.version >= 36:
            m.path.unlink()
            m.down_path.unlink()
    for r in repeatables:
        if r.requires >= 36:
            r.path.unlink()
            r.drop_path.unlink()
    migrate(fresh_database, directory=before_36)
    at_35, defined_35 = snapshot(fresh_database), definitions(fresh_database)
    later = [m.version for m in discover(sql_dir()) if m.version >= 36]  # 36 and whatever came after it
    assert later[0] == 36
    assert [m.version for m in migrate(fresh_database)] == later
    assert sorted(m.version for m in rollback(fresh_database, 35)) == later
    assert diff(at_35, snapshot(fresh_database)) == []
    assert diff(defined_35, definitions(fresh_database)) == []
    assert [m.version for m in migrate(fresh_database)] == later
