"""sql/31: the indexes as measured by bench/bench_indexes.py; its down script gives back the catalog before it."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from keap_pipeline.db.migrate import discover, discover_repeatable, migrate, rollback, sql_dir
from tests.db.catalog import definitions, diff, snapshot


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
