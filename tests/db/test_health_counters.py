"""sync_health's counters (sql/28): right after every kind of write, under rollback, concurrency, compaction and migration."""

from __future__ import annotations

import random
import threading
import time
import uuid

import psycopg
import pytest

from keap_pipeline.db.health import compact_counters
from keap_pipeline.db.migrate import migrate, rollback
from tests.db.health_truth import assert_true, counter_rows, truth
from tests.db.identities import ADMIN, ALICE, act_as, act_as_postgres, create_users

VIEW_COLUMNS = [
    # 17's columns, kept as they were
    ("entity_type", "character varying"), ("total_records", "bigint"), ("synced", "bigint"), ("errors", "bigint"),
    ("conflicts", "bigint"), ("pending", "bigint"), ("avg_sync_time", "numeric"),
    ("last_synced_at", "timestamp with time zone"),
    # 28's
    ("open_conflicts", "bigint"), ("queue_pending", "bigint"), ("queue_failed", "bigint"),
    ("open_dead_letters", "bigint"), ("unresolved_links", "bigint"), ("soft_deleted", "bigint"),
    ("last_successful_sync_at", "timestamp with time zone"), ("sync_lag", "interval"),
    # 29's (issue 13): counted from the rows when read
    ("linked_to_deleted_parent", "bigint"),
    # issue 14's: outbound items with no Keap write path yet
    ("queue_unsupported", "bigint"),
]


def as_ingestion(conn: psycopg.Connection) -> None:
    conn.execute("select set_config('role', 'keap_pipeline_ingest', true), set_config('request.jwt.claims', '', true)")


def seed(conn: psycopg.Connection) -> None:
    """Rows in every state the view counts, written by the ingestion, app users and the owner (one transaction)."""
    create_users(conn)
    as_ingestion(conn)
    conn.execute(
        "insert into public.sync_contacts (keap_id, email, sync_status, last_synced_at) values"
        " ('k1', 'k1@example.com', 'completed', now() - interval '3 hours'),"
        " ('k2', 'k2@example.com', 'completed', now() - interval '2 hours'),"
        " ('k3', 'k3@example.com', 'completed', now()),"
        " ('k4', 'k4@example.com', 'error', now()), ('k5', null, 'conflict', now()), ('k6', null, 'pending', null)"
    )
    conn.execute("insert into public.sync_products (keap_id, name, sync_status, last_synced_at) values ('p1', 'P1', 'completed', now())")
    conn.execute(
        "insert into public.sync_orders (keap_id, keap_contact_id, contact_id, order_date, total_amount, status, sync_status)"
        " select 'o1', 'k1', c.id, now(), 10, 'PAID', 'completed' from public.sync_contacts as c where c.keap_id = 'k1'"
    )
    conn.execute(
        "insert into public.sync_orders (keap_id, keap_contact_id, order_date, total_amount, status) values"
        " ('o2', 'k99', now(), 5, 'PAID'), ('o3', null, now(), 1, 'DRAFT')"
    )
    conn.execute(
        "insert into public.sync_subscriptions (keap_id, keap_contact_id, keap_product_id, status) values"
        " ('s1', 'k98', 'p98', 'active')"
    )
    conn.execute(
        "insert into public.sync_subscriptions (keap_id, keap_contact_id, contact_id, keap_product_id, status)"
        " select 's2', 'k2', c.id, 'p97', 'inactive' from public.sync_contacts as c where c.keap_id = 'k2'"
    )
    # a category not loaded yet: a lookup, not a parent entity, so not an unresolved link (as the checks)
    conn.execute("insert into public.sync_tags (keap_id, name, keap_category_id) values ('t1', 'T1', 'c1'), ('t2', 'T2', null)")
    # app users: inserts and edits queue items; a soft delete
    act_as(conn, "authenticated", ALICE)
    conn.execute("insert into public.sync_contacts (email) values ('alice1@app.example'), ('alice2@app.example')")
    conn.execute("update public.sync_contacts set first_name = 'A' where email = 'alice1@app.example'")
    conn.execute("update public.sync_contacts set deleted_at = now() where email = 'alice2@app.example'")
    conn.execute("insert into public.sync_tags (name) values ('alice tag')")
    act_as(conn, "authenticated", ADMIN)
    conn.execute("update public.sync_orders set status = 'REFUNDED' where keap_id = 'o3'")
    act_as_postgres(conn)
    # conflicts, a failed outbound item, dead letters (a tag category's counts under tags)
    for table, key in (("sync_contacts", "k5"), ("sync_orders", "o1")):
        conn.execute(
            f"select public.detect_sync_conflict(%s, (select id from public.{table} where keap_id = %s),"  # noqa: S608 - fixed names
            " '{\"email\": \"x\"}', '{\"email\": \"y\"}')",
            (table, key),
        )
    conn.execute(
        "update public.sync_queue set status = 'error', error_message = 'test' where id ="
        " (select q.id from public.sync_queue as q where q.entity_type = 'sync_orders' limit 1)"
    )
    conn.execute(
        "insert into keap_pipeline.dead_letters (entity, keap_id, record_json, reason, status) values"
        " ('contacts', '901', '{}', 'r', 'open'), ('contacts', '902', '{}', 'r', 'open'),"
        " ('contacts', '903', '{}', 'r', 'replayed'), ('orders', '904', '{}', 'r', 'open'),"
        " ('tag_categories', '905', '{}', 'r', 'open'), ('unknown', '906', '{}', 'r', 'open')"
    )


def change_everything(conn: psycopg.Connection) -> None:
    """A second round: status changes, links resolved, soft deletes and undeletes, resolutions, queue progress."""
    as_ingestion(conn)
    conn.execute("update public.sync_contacts set sync_status = 'error', last_synced_at = now() where keap_id in ('k1', 'k6')")
    conn.execute("insert into public.sync_contacts (keap_id, email, sync_status, last_synced_at) values ('k99', null, 'completed', now())")
    conn.execute("select keap_pipeline.resolve_orders_links()")
    act_as(conn, "authenticated", ADMIN)
    conn.execute("update public.sync_contacts set deleted_at = now() where keap_id = 'k2'")
    conn.execute("update public.sync_orders set status = 'REFUNDED' where keap_id = 'o2'")
    conn.execute(
        "update public.sync_conflicts set resolved_at = now(), resolution_strategy = 'keap_wins'"
        " where entity_type = 'sync_contacts'"
    )
    act_as(conn, "authenticated", ALICE)
    conn.execute("update public.sync_contacts set deleted_at = null where email = 'alice2@app.example'")
    act_as_postgres(conn)
    # a pusher claims an item (sql/30: an item in flight names its claim) and completes it
    conn.execute(
        "update public.sync_queue set status = 'processing', claim_key = 1 where status = 'pending' and entity_type = 'sync_tags'"
    )
    conn.execute("update public.sync_queue set status = 'completed', claim_key = null where status = 'processing'")
    # and finds an item of an entity it has no Keap write path for (sql/30): kept as unsupported
    marked = conn.execute(
        "update public.sync_queue set status = 'unsupported', error_message = 'no Keap write path for sync_orders yet'"
        " where id = (select q.id from public.sync_queue as q"
        "             where q.entity_type = 'sync_orders' and q.status = 'pending' limit 1)"
    ).rowcount
    assert marked == 1
    conn.execute("update keap_pipeline.dead_letters set status = 'replayed' where keap_id = '901'")
    conn.execute("delete from keap_pipeline.dead_letters where keap_id = '905'")
    conn.execute("delete from public.sync_subscriptions where keap_id = 's1'")


def test_the_view_keeps_its_columns_and_adds_the_health_ones(db: psycopg.Connection) -> None:
    columns = db.execute(
        "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) from pg_catalog.pg_attribute as a"
        " where a.attrelid = 'public.sync_health'::regclass and a.attnum > 0 order by a.attnum"
    ).fetchall()
    assert columns == VIEW_COLUMNS
    assert db.execute("select reloptions from pg_catalog.pg_class where oid = 'public.sync_health'::regclass").fetchone() == (
        ["security_invoker=true"],
    )
    # one row per entity even when empty
    assert sorted(r[0] for r in db.execute("select entity_type from public.sync_health")) == [
        "sync_contacts", "sync_orders", "sync_products", "sync_subscriptions", "sync_tags",
    ]


def test_counters_match_the_rows_after_every_kind_of_write(db: psycopg.Connection) -> None:
    seed(db)
    assert_true(db)
    expected = truth(db)
    # the seed's own figures, so that the oracle is not trivially empty
    assert (expected["contacts"]["total_records"], expected["contacts"]["soft_deleted"]) == (7, 1)
    assert (expected["contacts"]["errors"], expected["contacts"]["conflicts"], expected["contacts"]["pending"]) == (1, 1, 2)
    assert (expected["orders"]["unresolved_links"], expected["subscriptions"]["unresolved_links"]) == (1, 3)
    assert (expected["contacts"]["open_dead_letters"], expected["tags"]["open_dead_letters"]) == (2, 1)
    assert (expected["orders"]["open_conflicts"], expected["orders"]["queue_failed"]) == (1, 1)
    assert expected["contacts"]["queue_pending"] == 2 and expected["tags"]["queue_pending"] == 1
    change_everything(db)
    assert_true(db)
    assert truth(db)["orders"]["unresolved_links"] == 0
    assert truth(db)["orders"]["queue_unsupported"] == 1
    # k2 is soft-deleted now: its subscription s2 stays, linked to it (issue 13)
    assert truth(db)["subscriptions"]["linked_to_deleted_parent"] == 1
    # folding the deltas changes no figure
    before, after = compact_counters(db)
    assert after < before
    assert counter_rows(db) == after
    assert_true(db)
    # a recount from the rows agrees with what the triggers kept
    kept = db.execute("select entity_type, metric, n from public.sync_health_counters order by 1, 2").fetchall()
    db.execute("select keap_pipeline.recount_sync_health()")
    compact_counters(db)
    recounted = db.execute("select entity_type, metric, n from public.sync_health_counters order by 1, 2").fetchall()
    assert [r for r in recounted if r[1] != "last_synced_at"] == [r for r in kept if r[1] != "last_synced_at"]
    assert_true(db)


def test_rolled_back_writes_leave_no_count(db: psycopg.Connection) -> None:
    seed(db)
    db.execute("savepoint before")
    expected = truth(db)
    rows = counter_rows(db)
    as_ingestion(db)
    db.execute("insert into public.sync_contacts (keap_id, sync_status) select 'x' || g, 'error' from generate_series(1, 50) as g")
    db.execute("update public.sync_orders set deleted_at = now()")
    act_as_postgres(db)
    db.execute("rollback to savepoint before")
    assert truth(db) == expected
    assert counter_rows(db) == rows
    assert_true(db)


def test_truncate_takes_the_tables_counts_out(db: psycopg.Connection) -> None:
    seed(db)
    db.execute("truncate public.sync_orders, public.sync_subscriptions, public.sync_queue, keap_pipeline.dead_letters")
    assert_true(db)
    shown = {r[0]: r[1:] for r in db.execute("select entity_type, total_records, queue_pending, open_dead_letters from public.sync_health")}
    assert shown["sync_orders"] == (0, 0, 0) and shown["sync_contacts"][0] == 7


def test_an_app_user_reads_the_health_of_their_own_rows(db: psycopg.Connection) -> None:
    seed(db)
    act_as(db, "authenticated", ALICE)
    mine = {r[0]: r[1:] for r in db.execute(
        "select entity_type, total_records, soft_deleted, queue_pending, open_conflicts, open_dead_letters,"
        " last_successful_sync_at from public.sync_health"
    )}
    # her two contacts (one soft-deleted) and her tag; the queue and conflicts are admins' to see;
    # dead letters and the last sync are not hers to see at all
    assert mine["sync_contacts"] == (1, 1, 0, 0, None, None)
    assert mine["sync_tags"] == (1, 0, 0, 0, None, None)
    assert mine["sync_orders"] == (0, 0, 0, 0, None, None)
    act_as(db, "authenticated", ADMIN)
    admin = {r[0]: r[1:] for r in db.execute("select entity_type, total_records, open_dead_letters from public.sync_health")}
    assert admin["sync_contacts"] == (7, 2)
    act_as_postgres(db)


def _ingest_contacts(url: str, prefix: str, n: int, hold: threading.Event | None = None) -> None:
    with psycopg.connect(url) as conn:
        as_ingestion(conn)
        conn.execute("set local lock_timeout = '2s'")
        conn.execute(
            "insert into public.sync_contacts (keap_id, sync_status, last_synced_at)"
            " select %s || g, 'completed', now() from generate_series(1, %s) as g",
            (prefix, n),
        )
        if hold is not None:
            hold.wait(10)


def test_a_writer_never_waits_for_another_writers_counts(migrated_database: str) -> None:
    # loader A has counted its batch and not committed; loader B, an app user and a compaction each
    # go through with a short lock_timeout: nothing they touch is a row A holds
    release = threading.Event()
    a = threading.Thread(target=_ingest_contacts, args=(migrated_database, "a", 500, release))
    a.start()
    try:
        deadline = time.monotonic() + 10
        with psycopg.connect(migrated_database, autocommit=True) as probe:
            while probe.execute(
                "select count(*) from pg_catalog.pg_stat_activity where state = 'idle in transaction' and datname = current_database()"
            ).fetchone() != (1,):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        started = time.monotonic()
        _ingest_contacts(migrated_database, "b", 500)
        with psycopg.connect(migrated_database) as conn:
            create_users(conn)
            act_as(conn, "authenticated", ALICE)
            conn.execute("set local lock_timeout = '2s'")
            conn.execute("insert into public.sync_contacts (email) values ('alice@app.example')")
        with psycopg.connect(migrated_database) as conn:
            conn.execute("set local lock_timeout = '2s'")
            compact_counters(conn)
        assert time.monotonic() - started < 2
    finally:
        release.set()
        a.join()
    with psycopg.connect(migrated_database) as conn:
        assert truth(conn)["contacts"]["total_records"] == 1001
        assert_true(conn)


def test_racing_writers_rollbacks_and_compactions_lose_no_count(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        create_users(conn)
    errors: list[BaseException] = []
    stop = time.monotonic() + 4

    def loader(k: int) -> None:
        rng = random.Random(k)
        try:
            with psycopg.connect(migrated_database) as conn:
                i = 0
                while time.monotonic() < stop:
                    i += 1
                    as_ingestion(conn)
                    conn.execute(
                        "insert into public.sync_contacts (keap_id, sync_status, last_synced_at)"
                        " select %s || '-' || g, (array['completed', 'error', 'pending'])[1 + g %% 3], now()"
                        " from generate_series(1, %s) as g",
                        (f"{k}-{i}", rng.randint(1, 40)),
                    )
                    conn.execute(
                        "update public.sync_contacts set sync_status = 'conflict' where keap_id like %s",
                        (f"{k}-{i}-1%",),
                    )
                    conn.execute("update public.sync_contacts set deleted_at = now() where keap_id = %s", (f"{k}-{i}-2",))
                    if rng.random() < 0.3:
                        conn.rollback()
                    else:
                        conn.commit()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    def app_user() -> None:
        try:
            with psycopg.connect(migrated_database) as conn:
                while time.monotonic() < stop:
                    act_as(conn, "authenticated", ALICE)
                    conn.execute("insert into public.sync_contacts (email) values (%s)", (f"{uuid.uuid4()}@app.example",))
                    conn.execute("update public.sync_contacts set deleted_at = now() where email like 'a%%'")
                    conn.commit()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    def compactor() -> None:
        try:
            with psycopg.connect(migrated_database) as conn:
                while time.monotonic() < stop:
                    compact_counters(conn)
                    conn.commit()
                    time.sleep(0.05)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=loader, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=app_user), threading.Thread(target=compactor), threading.Thread(target=compactor)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []  # no deadlock, no serialization failure, no lock wait that timed out
    with psycopg.connect(migrated_database) as conn:
        assert truth(conn)["contacts"]["total_records"] > 100
        assert_true(conn)


def test_the_migration_counts_what_is_there_and_rollback_gives_17s_view_back(fresh_database: str) -> None:
    migrate(fresh_database, target=27)
    with psycopg.connect(fresh_database) as conn:
        seed(conn)
    migrate(fresh_database)
    with psycopg.connect(fresh_database) as conn:
        assert_true(conn)
        change_everything(conn)
        conn.commit()
        assert_true(conn)
    rollback(fresh_database, 27)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("select to_regclass('public.sync_health_counters')").fetchone() == (None,)
        columns = [r[0] for r in conn.execute(
            "select attname from pg_catalog.pg_attribute where attrelid = 'public.sync_health'::regclass and attnum > 0"
        )]
        assert columns == [c for c, _ in VIEW_COLUMNS[:8]]
        # written while at 27: counted by the next migrate
        as_ingestion(conn)
        conn.execute("insert into public.sync_contacts (keap_id, sync_status) values ('late', 'error')")
        conn.commit()
    migrate(fresh_database)
    with psycopg.connect(fresh_database) as conn:
        assert truth(conn)["contacts"]["errors"] == 4
        assert_true(conn)


def test_the_delta_statement_refuses_unpaired_links(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="pairs"):
        db.execute("select keap_pipeline.sync_rows_delta_sql('sync_orders', 't', null, %s)", (["contact_id"],))
