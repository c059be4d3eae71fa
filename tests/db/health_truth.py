"""What public.sync_health must say, counted the slow way from the rows themselves (the test's oracle)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from keap_pipeline.db.health import entity_type, read_sync_health
from keap_pipeline.db.link_health import unresolved_links
from keap_pipeline.entities import ENTITIES

# compared exactly (avg_sync_time to the microsecond); last_synced_at is a high-water mark (below)
EXACT = (
    "total_records", "synced", "errors", "conflicts", "pending", "open_conflicts", "queue_pending",
    "queue_failed", "open_dead_letters", "unresolved_links", "soft_deleted", "avg_sync_time",
    "linked_to_deleted_parent", "queue_unsupported",
)


def _micro(value: Decimal | None) -> Decimal | None:
    return None if value is None else round(Decimal(value), 6)


def truth(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Per entity name, the view's columns counted from the tables (run as the owner: every row), in the caller's transaction."""
    out: dict[str, dict[str, Any]] = {}
    for entity in ENTITIES.values():
        table = sql.Identifier(*entity.target_table.split("."))
        row = conn.execute(
            sql.SQL(
                "select count(*) filter (where deleted_at is null),"
                " count(*) filter (where deleted_at is null and sync_status = 'completed'),"
                " count(*) filter (where deleted_at is null and sync_status = 'error'),"
                " count(*) filter (where deleted_at is null and sync_status = 'conflict'),"
                " count(*) filter (where deleted_at is null and sync_status = 'pending'),"
                " avg(extract(epoch from (last_synced_at - created_at))) filter (where deleted_at is null),"
                " max(last_synced_at) filter (where deleted_at is null),"
                " count(*) filter (where deleted_at is not null)"
                " from {}"
            ).format(table)
        ).fetchone()
        assert row is not None
        kind = entity_type(entity)
        letters_of = ["tags", "tag_categories"] if entity.name == "tags" else [entity.name]
        bookkeeping = conn.execute(
            "select (select count(*) from public.sync_conflicts where entity_type = %(t)s and resolved_at is null),"
            " (select count(*) from public.sync_queue where entity_type = %(t)s and status = 'pending'),"
            " (select count(*) from public.sync_queue where entity_type = %(t)s and status = 'error'),"
            " (select count(*) from keap_pipeline.dead_letters where entity = any(%(e)s) and status = 'open'),"
            " (select count(*) from public.sync_queue where entity_type = %(t)s and status = 'unsupported')",
            {"t": kind, "e": letters_of},
        ).fetchone()
        assert bookkeeping is not None
        out[entity.name] = {
            "total_records": row[0], "synced": row[1], "errors": row[2], "conflicts": row[3], "pending": row[4],
            "avg_sync_time": _micro(row[5]), "last_synced_at": row[6], "soft_deleted": row[7],
            "open_conflicts": bookkeeping[0], "queue_pending": bookkeeping[1], "queue_failed": bookkeeping[2],
            "open_dead_letters": bookkeeping[3], "queue_unsupported": bookkeeping[4],
            "unresolved_links": sum(link.rows for link in unresolved_links(conn, entity)),
            "linked_to_deleted_parent": _linked_to_deleted(conn, entity),
        }
    return out


def _linked_to_deleted(conn: psycopg.Connection, entity: Any) -> int:
    """Live rows of the entity with a link column pointing at a soft-deleted row of its parent, row by row."""
    links = [link for link in entity.links if link.parent]
    if not links:
        return 0
    table = sql.Identifier(*entity.target_table.split("."))
    any_deleted = sql.SQL(" or ").join(
        sql.SQL("exists (select 1 from {} as p where p.id = t.{} and p.deleted_at is not null)").format(
            sql.Identifier(*link.parent_table.split(".")), sql.Identifier(link.columns[0][0])
        )
        for link in links
    )
    row = conn.execute(
        sql.SQL("select count(*) from {} as t where t.deleted_at is null and ({})").format(table, any_deleted)
    ).fetchone()
    assert row is not None
    return int(row[0])


def shown(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Per entity name, what public.sync_health says to the connection's user."""
    rows = read_sync_health(conn)
    return {
        name: {f: (_micro(getattr(h, f)) if f == "avg_sync_time" else getattr(h, f)) for f in (*EXACT, "last_synced_at")}
        for name, h in rows.items()
    }


def assert_true(conn: psycopg.Connection) -> None:
    """The view (read through the counters, as the owner) says what the rows say.

    last_synced_at is the newest ever written to a live row: a later soft delete of that row does
    not lower it (docs/schema.md), so it is at least the rows' newest, and equal when no row was deleted.
    """
    expected, got = truth(conn), shown(conn)
    assert set(got) == set(expected)
    for name in expected:
        assert {f: got[name][f] for f in EXACT} == {f: expected[name][f] for f in EXACT}, name
        newest = expected[name]["last_synced_at"]
        if newest is not None:
            assert got[name]["last_synced_at"] >= newest, name


def counter_rows(conn: psycopg.Connection) -> int:
    """How many delta rows the counters hold."""
    row = conn.execute("select count(*) from public.sync_health_counters").fetchone()
    assert row is not None
    return int(row[0])
