"""trigger_sync_on_update's two paths give the same rows: static SQL for small statements, EXECUTE for large ones.

The trigger runs each of its writes as static SQL (plan cached per session) when a statement
touched fewer than 16 rows, and EXECUTEs the same text otherwise (sql/functions/20-sync-triggers.sql).
Here every operation runs once with 5 rows and once with 40, from the app and from the ingestion,
and what the trigger wrote per row must be the same either way.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from tests.db.identities import ALICE, act_as, act_as_postgres, create_users

SMALL, LARGE = 5, 40


def _rows_written(conn: psycopg.Connection, emails: list[str]) -> list[tuple[Any, ...]]:
    """Per contact (in email order): its audit rows, queue items and sync_status row, without ids and times."""
    act_as_postgres(conn)
    rows = conn.execute(
        "select c.email,"
        " (select array_agg(array[a.operation::text, a.sync_source::text, a.sync_destination::text,"
        "   coalesce(a.user_id::text, '-'), coalesce(array_to_string(a.changed_fields, ','), '-'),"
        "   (a.old_data is not null)::text, (a.new_data is not null)::text]"
        "   order by a.created_at, a.id) from public.sync_audit_log a where a.entity_id = c.id),"
        " (select array_agg(array[q.operation::text, q.priority::text, q.status::text, q.payload ->> 'first_name']"
        "   order by q.id) from public.sync_queue q where q.entity_id = c.id),"
        " (select array[s.sync_direction::text, s.last_sync_status::text, coalesce(s.keap_id, '-')]"
        "   from public.sync_status s where s.entity_type = 'sync_contacts' and s.entity_id = c.id)"
        " from public.sync_contacts c where c.email = any(%s) order by c.email",
        (emails,),
    ).fetchall()
    return [(row[0].split("-", 1)[1],) + tuple(row[1:]) for row in rows]


def _life_cycle(conn: psycopg.Connection, tag: str, n: int, *, ingestion: bool) -> list[tuple[Any, ...]]:
    """Insert n contacts in one statement, update them in one, soft-delete them in one; then what was written."""
    emails = [f"{tag}-{i:03d}@example.com" for i in range(n)]
    if ingestion:
        conn.execute("set local role keap_pipeline_ingest")
        conn.execute(
            "insert into public.sync_contacts (keap_id, email, first_name)"
            " select %s || i, e, 'First' from unnest(%s::text[]) with ordinality as t(e, i)",
            (tag, emails),
        )
    else:
        act_as(conn, "authenticated", ALICE)
        conn.execute(
            "insert into public.sync_contacts (email, first_name) select e, 'First' from unnest(%s::text[]) as e",
            (emails,),
        )
    conn.execute("update public.sync_contacts set first_name = 'Second', phone = '1' where email = any(%s)", (emails,))
    conn.execute("update public.sync_contacts set phone = phone where email = any(%s)", (emails,))  # a no-op
    conn.execute("update public.sync_contacts set deleted_at = now() where email = any(%s)", (emails,))
    return _rows_written(conn, emails)


@pytest.mark.parametrize("ingestion", [False, True], ids=["app", "ingestion"])
def test_small_and_large_statements_write_the_same_rows(db: psycopg.Connection, ingestion: bool) -> None:
    create_users(db)
    small = _life_cycle(db, "small", SMALL, ingestion=ingestion)
    large = _life_cycle(db, "large", LARGE, ingestion=ingestion)
    assert len(small) == SMALL and len(large) == LARGE
    # the keap ids differ by tag; everything else per row is the same
    def shape(rows: list[tuple[Any, ...]]) -> set[str]:
        return {repr((r[1], r[2], r[3] and [r[3][0], r[3][1]])) for r in rows}

    assert shape(small) == shape(large)
    assert len(shape(small)) == 1
    audit = small[0][1]
    # the no-op update wrote nothing; the ingestion's soft delete is Keap's deletion, audited as a DELETE
    assert [a[0] for a in audit] == ["INSERT", "UPDATE", "DELETE" if ingestion else "UPDATE"]


def test_hard_deletes_of_both_sizes_write_the_same_rows(db: psycopg.Connection) -> None:
    create_users(db)
    for tag, n in (("small", SMALL), ("large", LARGE)):
        db.execute(
            "insert into public.sync_contacts (email) select %s || '-' || i || '@example.com' from generate_series(1, %s) i",
            (tag, n),
        )
    ids = {
        tag: [r[0] for r in db.execute("select id from public.sync_contacts where email like %s", (f"{tag}-%",))]
        for tag in ("small", "large")
    }
    for tag in ("small", "large"):
        db.execute("delete from public.sync_contacts where id = any(%s)", (ids[tag],))
    shapes = {}
    for tag in ("small", "large"):
        rows = db.execute(
            "select a.operation, a.sync_source, (select array_agg(q.operation order by q.id) from public.sync_queue q"
            " where q.entity_id = a.entity_id) from public.sync_audit_log a where a.entity_id = any(%s)"
            " and a.operation = 'DELETE'",
            (ids[tag],),
        ).fetchall()
        assert len(rows) == len(ids[tag])
        shapes[tag] = {(op, source, tuple(queued or ())) for op, source, queued in rows}
    assert shapes["small"] == shapes["large"] == {("DELETE", "supabase", ("delete",))}


def test_the_generated_function_has_both_paths_and_no_placeholder(db: psycopg.Connection) -> None:
    text = db.execute("select pg_get_functiondef('public.trigger_sync_on_update'::regproc)").fetchone()[0]  # type: ignore[index]
    assert "_STATIC@" not in text and "_DYNAMIC@" not in text
    assert len(re.findall(r"execute '\s*(--[^\n]*\n\s*)?with ", text)) == 3  # the large statements' EXECUTEd texts
    assert text.count("limit 16) as few) < 16 then") == 3
