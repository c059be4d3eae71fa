"""trigger_sync_on_update: audit, queue and sync_status rows for every path (insert/update/delete, app vs ingestion)."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from tests.db.identities import ALICE, act_as, act_as_postgres, create_users

SYNC_TABLES = ["sync_contacts", "sync_orders", "sync_tags", "sync_subscriptions", "sync_products"]


def _as_keap(conn: psycopg.Connection) -> None:
    """The rest of the transaction runs as the Keap ingestion (its role: sql/24), as the pipeline's loads do."""
    conn.execute("set local role keap_pipeline_ingest")


def _as_app(conn: psycopg.Connection) -> None:
    """Back to the connecting user (the owner, no JWT): its writes are app writes like any role but the ingestion's."""
    conn.execute("reset role")


def _insert_contact(conn: psycopg.Connection, **values: object) -> uuid.UUID:
    columns = list(values)
    row = conn.execute(
        f"insert into public.sync_contacts ({', '.join(columns)}) values ({', '.join(['%s'] * len(columns))})"  # noqa: S608 - test column names
        " returning id",
        list(values.values()),
    ).fetchone()
    assert row is not None
    return row[0]


def _audit(conn: psycopg.Connection, entity_id: uuid.UUID) -> list[tuple]:
    # read as the superuser: API roles see audit rows only as admins (RLS); the caller's role is restored
    role, claims = conn.execute("select current_setting('role'), current_setting('request.jwt.claims', true)").fetchone()
    act_as_postgres(conn)
    rows = conn.execute(
        "select operation, sync_source, sync_destination, user_id, changed_fields, old_data is not null, new_data is not null"
        " from public.sync_audit_log where entity_id = %s"
        # one transaction shares created_at = now(): order by the life cycle
        " order by created_at, array_position(array['INSERT', 'UPDATE', 'DELETE'], operation::text)",
        (entity_id,),
    ).fetchall()
    conn.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)", (role, claims or ""))
    return rows


def _queue(conn: psycopg.Connection, entity_id: uuid.UUID) -> list[tuple]:
    role, claims = conn.execute("select current_setting('role'), current_setting('request.jwt.claims', true)").fetchone()
    act_as_postgres(conn)
    rows = conn.execute(
        "select operation, priority, status, payload ->> 'email' from public.sync_queue where entity_id = %s",
        (entity_id,),
    ).fetchall()
    conn.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)", (role, claims or ""))
    return rows


def test_every_sync_table_has_the_four_triggers(db: psycopg.Connection) -> None:
    rows = db.execute(
        "select c.relname, t.tgname from pg_catalog.pg_trigger t join pg_catalog.pg_class c on c.oid = t.tgrelid"
        " where not t.tgisinternal and t.tgfoid = 'public.trigger_sync_on_update()'::regprocedure"
    ).fetchall()
    for table in SYNC_TABLES:
        names = {name for rel, name in rows if rel == table}
        assert names == {f"{table}_update", f"{table}_after_insert", f"{table}_after_update", f"{table}_after_delete"}


def test_request_example_update_queues_the_change(db: psycopg.Connection) -> None:
    # the request's own test, with a valid uuid instead of 'test-id'
    test_id = uuid.UUID("7e57a11d-0000-4000-8000-000000000001")
    _as_keap(db)
    _insert_contact(db, id=test_id, keap_id="k-1", email="old@test.com", source_system="keap")
    _as_app(db)
    db.execute("update sync_contacts set email = 'updated@test.com' where id = %s", (test_id,))
    assert _queue(db, test_id) == [("update", 5, "pending", "updated@test.com")]
    row = db.execute("select version, updated_at > created_at or updated_at = now() from sync_contacts where id = %s", (test_id,)).fetchone()
    assert row == (2, True)


def test_app_insert_update_delete_are_audited_as_supabase_and_queued(db: psycopg.Connection) -> None:
    create_users(db)
    act_as(db, "authenticated", ALICE)
    cid = _insert_contact(db, email="a@example.com")
    assert _audit(db, cid) == [("INSERT", "supabase", "keap", ALICE, None, False, True)]
    assert _queue(db, cid) == [("create", 5, "pending", "a@example.com")]

    db.execute("update public.sync_contacts set first_name = 'Ann' where id = %s", (cid,))
    audit = _audit(db, cid)
    # updated_by (set to Alice by the trigger, sql/24) is bookkeeping, like version and updated_at
    assert audit[-1] == ("UPDATE", "supabase", "keap", ALICE, ["first_name"], True, True)
    assert db.execute("select updated_by from public.sync_contacts where id = %s", (cid,)).fetchone() == (ALICE,)
    # coalesced: still one pending item, still a create (Keap has not seen the contact yet)
    assert _queue(db, cid) == [("create", 5, "pending", "a@example.com")]

    # app users soft-delete (sql/24: no DELETE for them); a hard delete by a server-side role is an app change too
    act_as_postgres(db)
    db.execute("delete from public.sync_contacts where id = %s", (cid,))
    assert _audit(db, cid)[-1] == ("DELETE", "supabase", "keap", None, None, True, False)
    assert _queue(db, cid) == [("delete", 5, "pending", "a@example.com")]
    status = db.execute(
        "select sync_direction, last_sync_status from public.sync_status where entity_id = %s", (cid,)
    ).fetchall()
    assert status == [("supabase_to_keap", "pending")]


def test_ingestion_changes_are_audited_as_keap_and_not_queued(db: psycopg.Connection) -> None:
    _as_keap(db)
    cid = _insert_contact(db, keap_id="k-2", email="k@example.com", source_system="keap")
    db.execute("update public.sync_contacts set last_name = 'Keap' where id = %s", (cid,))
    db.execute("update public.sync_contacts set deleted_at = now() where id = %s", (cid,))
    assert [(op, src, dest) for op, src, dest, *_ in _audit(db, cid)] == [
        ("INSERT", "keap", "supabase"),
        ("UPDATE", "keap", "supabase"),
        # the ingestion's soft delete is Keap's deletion (issue 13: a reconcile pass): a DELETE from keap
        ("DELETE", "keap", "supabase"),
    ]
    assert _queue(db, cid) == []
    assert db.execute("select count(*) from public.sync_status where entity_id = %s", (cid,)).fetchone() == (0,)


def test_api_role_cannot_pose_as_the_ingestion(db: psycopg.Connection) -> None:
    create_users(db)
    act_as(db, "authenticated", ALICE)
    # a user can set any custom setting (the ingestion's marker before sql/24); the trigger must not believe it
    db.execute("select set_config('keap_pipeline.sync_source', 'keap', true)")
    cid = _insert_contact(db, email="sneaky@example.com")
    assert _audit(db, cid)[0][1] == "supabase"
    assert _queue(db, cid) == [("create", 5, "pending", "sneaky@example.com")]


@pytest.mark.parametrize(("sync_status", "priority"), [("error", 1), ("conflict", 2), ("pending", 5), ("completed", 5)])
def test_queue_priority_follows_sync_status(db: psycopg.Connection, sync_status: str, priority: int) -> None:
    cid = _insert_contact(db, email="p@example.com", sync_status=sync_status)
    assert _queue(db, cid)[0][1] == priority


def test_coalesced_item_keeps_the_highest_priority(db: psycopg.Connection) -> None:
    cid = _insert_contact(db, email="p@example.com", sync_status="error")
    db.execute("update public.sync_contacts set sync_status = 'completed', email = 'q@example.com' where id = %s", (cid,))
    assert _queue(db, cid) == [("create", 1, "pending", "q@example.com")]


def test_soft_delete_queues_a_delete(db: psycopg.Connection) -> None:
    _as_keap(db)
    cid = _insert_contact(db, keap_id="k-3", email="s@example.com", source_system="keap")
    _as_app(db)
    db.execute("update public.sync_contacts set deleted_at = now() where id = %s", (cid,))
    assert _queue(db, cid)[0][0] == "delete"


def test_no_op_update_writes_nothing(db: psycopg.Connection) -> None:
    cid = _insert_contact(db, email="same@example.com")
    before = db.execute(
        "select (select count(*) from public.sync_audit_log where entity_id = %s),"
        " (select payload from public.sync_queue where entity_id = %s),"
        " (select (version, updated_at)::text from public.sync_contacts where id = %s)",
        (cid, cid, cid),
    ).fetchone()
    result = db.execute("update public.sync_contacts set email = 'same@example.com' where id = %s", (cid,))
    assert result.rowcount == 1
    after = db.execute(
        "select (select count(*) from public.sync_audit_log where entity_id = %s),"
        " (select payload from public.sync_queue where entity_id = %s),"
        " (select (version, updated_at)::text from public.sync_contacts where id = %s)",
        (cid, cid, cid),
    ).fetchone()
    assert after == before


def test_the_id_of_a_row_cannot_change(db: psycopg.Connection) -> None:
    cid = _insert_contact(db, email="i@example.com")
    with pytest.raises(psycopg.errors.CheckViolation, match="cannot change"):
        db.execute("update public.sync_contacts set id = gen_random_uuid() where id = %s", (cid,))


def test_other_sync_tables_are_audited_and_queued(db: psycopg.Connection) -> None:
    pid = db.execute("insert into public.sync_products (name, price) values ('Plan', 9.5) returning id").fetchone()[0]
    tid = db.execute("insert into public.sync_tags (name) values ('VIP') returning id").fetchone()[0]
    oid = db.execute(
        "insert into public.sync_orders (order_date, total_amount, status) values (now(), 12.3456, 'PAID') returning id"
    ).fetchone()[0]
    sid = db.execute(
        "insert into public.sync_subscriptions (product_id, status, amount) values (%s, 'active', 1) returning id", (pid,)
    ).fetchone()[0]
    for table, entity in [("sync_products", pid), ("sync_tags", tid), ("sync_orders", oid), ("sync_subscriptions", sid)]:
        row = db.execute(
            "select a.entity_type, q.operation from public.sync_audit_log a join public.sync_queue q"
            " on q.entity_id = a.entity_id where a.entity_id = %s",
            (entity,),
        ).fetchone()
        assert row == (table, "create")


def _timed_update(conn: psycopg.Connection, rows: int) -> float:
    started = time.perf_counter()
    with conn.transaction(force_rollback=True):
        result = conn.execute(
            "update public.sync_contacts set first_name = md5(random()::text) where keap_id like 'plan-%%'"
        )
        assert result.rowcount == rows
        audited = conn.execute(
            "select count(*) from public.sync_audit_log where operation = 'UPDATE' and created_at = now()"
        ).fetchone()
        assert audited == (rows,)
    return time.perf_counter() - started


def test_large_update_after_an_empty_one_stays_linear(migrated_database: str) -> None:
    """The PL/pgSQL cached-plan trap: a plan made for an empty transition table must not be reused on 10k rows."""
    rows = 10_000
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        with conn.transaction():
            _as_keap(conn)
            conn.execute(
                "insert into public.sync_contacts (keap_id, email, source_system)"
                " select 'plan-' || g, 'p' || g || '@example.com', 'keap' from generate_series(1, %s) g",
                (rows,),
            )
        conn.execute("analyze public.sync_contacts")

    # baseline: a session whose first trigger call sees the full 10k rows
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        baseline = _timed_update(conn, rows)

    # the trap: same session first runs the triggers on EMPTY and tiny transition tables
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        for _ in range(3):
            with conn.transaction(force_rollback=True):
                conn.execute("update public.sync_contacts set first_name = 'x' where false")
                conn.execute("update public.sync_contacts set first_name = 'y' where keap_id = 'plan-1'")
        after_empty = _timed_update(conn, rows)

    # a quadratic plan (nested loop of 10k x 10k) takes tens of seconds; linear work stays near baseline
    assert after_empty < 3 * baseline + 1.0, f"after empty calls {after_empty:.2f}s vs baseline {baseline:.2f}s"
