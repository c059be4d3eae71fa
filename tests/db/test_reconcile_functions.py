"""The generated reconcile functions on a real PostgreSQL, per entity: what a pass may judge, the limits, the guards.

The rows are written as the ingestion writes them; a pass is begun, its ids COPYed and judged with
keap_pipeline.db.reconcile, as the pipeline does. The end-to-end behaviour through the sandbox is in
tests/pipeline/test_deletions_e2e.py; here each rule of the SQL is pinned on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from keap_pipeline.db import reconcile as db
from keap_pipeline.db.roles import as_ingestion
from keap_pipeline.entities import ENTITIES, Entity

pytestmark = pytest.mark.db

# the smallest row each sync table takes (the NOT NULL columns without defaults)
REQUIRED: dict[str, dict[str, object]] = {
    "contacts": {},
    "tags": {"name": "t"},
    "products": {"name": "p"},
    "orders": {"order_date": datetime(2026, 1, 1).isoformat() + "Z", "total_amount": 1, "currency": "USD", "status": "PAID"},
    "subscriptions": {"status": "active"},
}


@pytest.fixture
def conn(migrated_database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_database) as c:
        yield c


def _q(conn: psycopg.Connection, query: str | sql.Composable, params: tuple[object, ...] = ()) -> list[dict[str, object]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _insert(conn: psycopg.Connection, entity: Entity, keap_id: str | None, **columns: object) -> None:
    values = {**REQUIRED[entity.name], "keap_id": keap_id, **columns}
    schema, _, table = entity.target_table.partition(".")
    with conn.transaction():
        as_ingestion(conn)
        conn.execute(
            sql.SQL("insert into {} ({}) values ({})").format(
                sql.Identifier(schema, table),
                sql.SQL(", ").join(map(sql.Identifier, values)),
                sql.SQL(", ").join(sql.Placeholder() * len(values)),
            ),
            tuple(values.values()),
        )


def _state(conn: psycopg.Connection, entity: Entity) -> dict[str | None, bool]:
    schema, _, table = entity.target_table.partition(".")
    rows = _q(conn, sql.SQL("select keap_id, deleted_at is not null as deleted from {}").format(sql.Identifier(schema, table)))
    return {r["keap_id"]: r["deleted"] for r in rows}


def _start(conn: psycopg.Connection, entity: Entity, **limits: float) -> db.PassStart:
    return db.begin_pass(
        conn, entity, run_id="t", clock_skew=timedelta(minutes=10), max_share=limits.get("max_share", 1.0),
        max_count=int(limits.get("max_count", 1000)), lock_timeout_seconds=5,
    )


def _judge(conn: psycopg.Connection, entity: Entity, start: db.PassStart, **limits: float) -> db.Judgement:
    return db.judge_pass(
        conn, entity, start, max_share=limits.get("max_share", 1.0), max_count=int(limits.get("max_count", 1000)),
        pages=1, requests=1, lock_timeout_seconds=5,
    )


@pytest.mark.parametrize("name", list(ENTITIES))
def test_what_a_pass_may_judge(conn: psycopg.Connection, name: str) -> None:
    entity = ENTITIES[name]
    now = _q(conn, "select now() as t")[0]["t"]
    assert isinstance(now, datetime)
    conn.rollback()
    old = now - timedelta(days=3)
    _insert(conn, entity, "1", created_at=old, keap_updated_at=old)  # listed: kept
    _insert(conn, entity, "2", created_at=old, keap_updated_at=old, last_synced_at=old)  # not listed: deleted
    _insert(conn, entity, "3", created_at=old, keap_updated_at=None)  # not listed, no Keap time: deleted
    _insert(conn, entity, "4", created_at=old, keap_updated_at=now - timedelta(minutes=5))  # updated in Keap within the skew
    _insert(conn, entity, "5", created_at=old, keap_updated_at=old, deleted_at=old)  # deleted locally and in Keap
    _insert(conn, entity, None, created_at=old)  # an app's row not in Keap yet: never judged
    start = _start(conn, entity)
    _insert(conn, entity, "6", keap_updated_at=old)  # created here after the pass started (a sync)
    conn.execute(  # written by a sync after the pass started
        sql.SQL("update {} set last_synced_at = clock_timestamp() + interval '1 second' where keap_id = '1'").format(
            sql.Identifier(*entity.target_table.split("."))
        )
    )
    conn.commit()
    _insert(conn, entity, "7", created_at=old, keap_updated_at=old, last_synced_at=now + timedelta(hours=1))
    db.copy_ids(conn, entity, start.id, ["1"], pages=1, requests=1)

    assert db.missing_ids(conn, entity, start) == ["2", "3"]
    judged = _judge(conn, entity, start)
    assert (judged.missing, judged.deleted, judged.kept_recent, judged.deleted_here_too, judged.stopped) == (2, 2, 3, 1, False)
    assert judged.live == 6  # 1, 2, 3, 4, 6, 7 (5 is deleted; the app's row has no keap_id)
    assert _state(conn, entity) == {
        "1": False, "2": True, "3": True, "4": False, "5": True, None: False, "6": False, "7": False,
    }
    ids = sql.SQL("select count(*) as n from {}").format(sql.Identifier(*entity.ids_staging_table.split(".")))
    assert _q(conn, ids) == [{"n": 0}], "the pass's ids are emptied with it"


@pytest.mark.parametrize(("max_share", "max_count", "stopped"), [
    (0.5, 1000, False),   # 2 of 4 is 50%: not more than the share
    (0.49, 1000, True),
    (1.0, 2, False),      # 2 rows: not more than the count
    (1.0, 1, True),
    (0.0, 1000, True),
])
def test_the_limits_are_more_than_not_at(conn: psycopg.Connection, max_share: float, max_count: int, stopped: bool) -> None:
    entity = ENTITIES["tags"]
    old = datetime(2026, 1, 1).astimezone()
    for ident in "1234":
        _insert(conn, entity, ident, created_at=old, keap_updated_at=old)
    start = _start(conn, entity, max_share=max_share, max_count=max_count)
    db.copy_ids(conn, entity, start.id, ["1", "2"], pages=1, requests=1)
    judged = _judge(conn, entity, start, max_share=max_share, max_count=max_count)
    assert (judged.missing, judged.stopped, judged.deleted) == (2, stopped, 0 if stopped else 2)
    assert _q(conn, "select count(*) as n from keap_pipeline.reconcile_pending_deletions") == [{"n": 2 if stopped else 0}]
    status = _q(conn, "select status from keap_pipeline.reconcile_passes where id = %s", (start.id,))
    assert status == [{"status": "stopped" if stopped else "completed"}]


def test_an_empty_listing_never_wipes_a_table(conn: psycopg.Connection) -> None:
    entity = ENTITIES["contacts"]
    old = datetime(2026, 1, 1).astimezone()
    for ident in range(1, 51):
        _insert(conn, entity, str(ident), created_at=old, keap_updated_at=old)
    start = _start(conn, entity, max_share=0.02, max_count=10_000)  # another account's key: it lists nothing here
    judged = _judge(conn, entity, start, max_share=0.02, max_count=10_000)
    assert (judged.missing, judged.deleted, judged.stopped) == (50, 0, True)
    assert not any(_state(conn, entity).values())


def test_the_functions_run_as_the_ingestion_only_and_check_their_arguments(conn: psycopg.Connection) -> None:
    entity = ENTITIES["orders"]
    start = _start(conn, entity)
    call = "select * from keap_pipeline.reconcile_orders_from_stage(%s, now(), now(), %s::numeric, %s::bigint)"
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="runs as the Keap ingestion only"):
        conn.execute(call, (start.id, 0.02, 10))
    conn.rollback()
    with conn.transaction():
        as_ingestion(conn)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="limits out of range"):
            conn.execute(call, (start.id, 1.5, 10))
    with conn.transaction():
        as_ingestion(conn)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="no running reconcile pass"):
            conn.execute(call, ("00000000-0000-0000-0000-000000000000", 0.02, 10))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="runs as the Keap ingestion only"):
        conn.execute("select keap_pipeline.apply_orders_deletions(%s, now(), now())", (start.id,))


def test_every_entity_has_its_functions_and_ids_table_as_its_row_says(conn: psycopg.Connection) -> None:
    for entity in ENTITIES.values():
        for function in (entity.reconcile_function, entity.apply_deletions_function, entity.missing_function):
            [row] = _q(
                conn,
                "select p.proconfig, has_function_privilege('public', p.oid, 'execute') as public_runs,"
                " has_function_privilege('keap_pipeline_ingest', p.oid, 'execute') as ingestion_runs,"
                " has_function_privilege('authenticated', p.oid, 'execute') as users_run"
                " from pg_catalog.pg_proc p where p.oid = to_regproc(%s)",
                (function,),
            )
            assert any(str(c).startswith("search_path=") for c in row["proconfig"]), function  # type: ignore[attr-defined]
            assert (row["public_runs"], row["ingestion_runs"], row["users_run"]) == (False, True, False), function
        columns = _q(
            conn,
            "select attname::text as name, format_type(atttypid, atttypmod) as type from pg_catalog.pg_attribute"
            " where attrelid = to_regclass(%s) and attnum > 0 and not attisdropped order by attnum",
            (entity.ids_staging_table,),
        )
        assert columns == [{"name": "keap_id", "type": "character varying(255)"}]


def test_define_reconcile_entity_refuses_an_ids_table_of_another_shape(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="must have exactly"):
        conn.execute(
            "select keap_pipeline.define_reconcile_entity('tags', 'public.sync_tags', 'keap_pipeline.stage_tag_keys')"
        )


def _old_contacts(conn: psycopg.Connection, count: int) -> Entity:
    entity = ENTITIES["contacts"]
    old = datetime(2026, 1, 1).astimezone()
    for ident in range(1, count + 1):
        _insert(conn, entity, str(ident), created_at=old, keap_updated_at=old)
    return entity


def _deleting_transactions(conn: psycopg.Connection) -> list[int]:
    """Soft-deleted contacts per transaction that deleted them (xmin), in transaction order."""
    rows = _q(
        conn,
        "select count(*) as n from public.sync_contacts where deleted_at is not null"
        " group by xmin::text order by min(xmin::text::bigint)",
    )
    conn.rollback()
    return [int(r["n"]) for r in rows]  # type: ignore[call-overload]


def test_a_large_pass_applies_its_deletions_in_several_transactions(conn: psycopg.Connection) -> None:
    entity = _old_contacts(conn, 25)
    start = _start(conn, entity)
    db.copy_ids(conn, entity, start.id, [], pages=1, requests=1)  # Keap lists none of the 25
    judged = db.judge_pass(
        conn, entity, start, max_share=1.0, max_count=1000, pages=1, requests=1, lock_timeout_seconds=5, chunk_rows=10,
    )
    assert (judged.missing, judged.deleted, judged.stopped) == (25, 25, False)
    assert _deleting_transactions(conn) == [10, 10, 5], "each transaction applies at most chunk_rows soft deletes"
    [row] = _q(conn, "select status, deleted, finished_at is not null as done from keap_pipeline.reconcile_passes where id = %s", (start.id,))
    assert row == {"status": "completed", "deleted": 25, "done": True}
    assert _q(conn, "select count(*) as n from keap_pipeline.reconcile_pending_deletions") == [{"n": 0}]
    audited = _q(
        conn,
        "select count(*) as n from public.sync_audit_log where entity_type = 'sync_contacts' and operation = 'DELETE'"
        " and sync_source = 'keap'",
    )
    assert audited == [{"n": 25}], "every chunk's soft deletes are audited as Keap's"
    marked = _q(conn, "select count(*) as n from keap_pipeline.keap_deleted_rows where pass_id = %s", (start.id,))
    assert marked == [{"n": 25}]


def test_the_deletion_chunk_follows_the_publication(conn: psycopg.Connection) -> None:
    contacts = ENTITIES["contacts"]
    assert db.deletion_chunk(conn, contacts, 500) == 250  # its row and its sync_status row
    assert db.deletion_chunk(conn, contacts, 1) == 1
    conn.execute("alter publication supabase_realtime drop table public.sync_status")
    assert db.deletion_chunk(conn, contacts, 500) == 500
    conn.rollback()
    with pytest.raises(ValueError, match="max_changes"):
        db.deletion_chunk(conn, contacts, 0)


def test_a_pass_killed_between_chunks_keeps_what_committed_and_the_next_pass_judges_the_rest(
    conn: psycopg.Connection, migrated_database: str
) -> None:
    entity = _old_contacts(conn, 25)
    start = _start(conn, entity)
    db.copy_ids(conn, entity, start.id, [], pages=1, requests=1)
    # another session holds the row the third chunk would delete (the largest id): that chunk fails
    # on its lock timeout, as a kill between two chunks would leave the pass
    with psycopg.connect(migrated_database) as other:
        other.execute("select id from public.sync_contacts order by id desc limit 1 for update")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            db.judge_pass(
                conn, entity, start, max_share=1.0, max_count=1000, pages=1, requests=1, lock_timeout_seconds=0.5,
                chunk_rows=10,
            )
        conn.rollback()
    assert _deleting_transactions(conn) == [10, 10]
    [row] = _q(conn, "select status, deleted from keap_pipeline.reconcile_passes where id = %s", (start.id,))
    assert row == {"status": "running", "deleted": 20}
    assert _q(conn, "select count(*) as n from keap_pipeline.reconcile_pending_deletions") == [{"n": 5}]
    conn.rollback()

    after = _start(conn, entity)
    assert after.abandoned == 1
    [row] = _q(conn, "select status, reason from keap_pipeline.reconcile_passes where id = %s", (start.id,))
    assert row["status"] == "interrupted"
    assert "20 of them were applied" in str(row["reason"])
    assert _q(conn, "select count(*) as n from keap_pipeline.reconcile_pending_deletions") == [{"n": 0}]
    conn.rollback()
    db.copy_ids(conn, entity, after.id, [], pages=1, requests=1)
    judged = db.judge_pass(
        conn, entity, after, max_share=1.0, max_count=1000, pages=1, requests=1, lock_timeout_seconds=5, chunk_rows=10,
    )
    assert (judged.live, judged.missing, judged.deleted) == (5, 5, 5)
    assert sum(_deleting_transactions(conn)) == 25


def test_a_confirmation_applies_a_stopped_pass_in_chunks(conn: psycopg.Connection) -> None:
    entity = _old_contacts(conn, 25)
    start = _start(conn, entity, max_count=10)
    db.copy_ids(conn, entity, start.id, [], pages=1, requests=1)
    judged = db.judge_pass(
        conn, entity, start, max_share=1.0, max_count=10, pages=1, requests=1, lock_timeout_seconds=5, chunk_rows=10,
    )
    assert (judged.missing, judged.deleted, judged.stopped) == (25, 0, True)
    assert _deleting_transactions(conn) == []
    assert db.confirm_pass(conn, entity, start.id, lock_timeout_seconds=5, chunk_rows=10) == 25
    assert _deleting_transactions(conn) == [10, 10, 5]
    [row] = _q(conn, "select status, deleted, reason from keap_pipeline.reconcile_passes where id = %s", (start.id,))
    assert (row["status"], row["deleted"]) == ("confirmed", 25)
    assert str(row["reason"]).endswith("; confirmed: 25 soft-deleted")
    with pytest.raises(ValueError, match="chunk_rows"):
        db.confirm_pass(conn, entity, start.id, lock_timeout_seconds=5, chunk_rows=0)
