"""The pusher's SQL on a real PostgreSQL: claims (skip locked, one per record, priority then schedule, dead pushers), write-back, audit."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from keap_pipeline.db import outbound as db
from keap_pipeline.db.locks import run_lock
from tests.db.identities import ADMIN, create_users


def _contacts(url: str, n: int) -> list[uuid.UUID]:
    """n app-made contacts (each queues a create item), returned in insert order."""
    with psycopg.connect(url) as conn:
        create_users(conn)
        conn.execute("select set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{ADMIN}", "role": "service_role"}}',))
        ids = [conn.execute("insert into public.sync_contacts (email) values (%s) returning id", (f"c{i}@example.com",)).fetchone()[0]
               for i in range(n)]
    return ids


def _claim(url: str, lock: db.PusherLock, limit: int = 10) -> list[db.Claimed]:
    with psycopg.connect(url) as conn, conn.transaction():
        db.begin_push(conn, lock_timeout_seconds=5)
        return db.claim(conn, lock.key, "sync_contacts", limit)


def test_claims_follow_priority_then_schedule(migrated_database: str) -> None:
    url = migrated_database
    ids = _contacts(url, 4)
    with psycopg.connect(url) as conn:
        conn.execute("update public.sync_queue set priority = 9, scheduled_at = now() - interval '1 hour' where entity_id = %s", (ids[0],))
        conn.execute("update public.sync_queue set priority = 1 where entity_id = %s", (ids[3],))
        conn.execute("update public.sync_queue set scheduled_at = now() + interval '1 hour' where entity_id = %s", (ids[2],))
    with db.pusher_lock(url, "contacts", holder="test pusher") as lock:
        claimed = _claim(url, lock)
    assert [c.entity_id for c in claimed] == [ids[3], ids[1], ids[0]]  # ids[2] is not due yet


def test_a_row_locked_item_is_skipped_and_two_claimers_never_share_an_item(migrated_database: str) -> None:
    url = migrated_database
    ids = _contacts(url, 30)
    with psycopg.connect(url) as holder:
        holder.execute("select 1 from public.sync_queue where entity_id = %s for update", (ids[0],))
        with db.pusher_lock(url, "contacts", holder="a") as a, db.pusher_lock(url, "contacts", holder="b") as b:
            results: dict[str, list[db.Claimed]] = {}
            barrier = threading.Barrier(2)

            def claimer(name: str, lock: db.PusherLock) -> None:
                barrier.wait()
                results[name] = _claim(url, lock, 20)

            threads = [threading.Thread(target=claimer, args=(n, lk)) for n, lk in (("a", a), ("b", b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        holder.rollback()
    got = [c.entity_id for r in results.values() for c in r]
    assert ids[0] not in got and len(got) == len(set(got)) == 29


def test_an_open_claim_holds_only_the_items_it_took(migrated_database: str) -> None:
    # a small queue: planned as a scan and a sort, where a row lock or record lock taken for every
    # candidate (not only those returned) would leave a second pusher nothing while the first is open
    url = migrated_database
    ids = _contacts(url, 30)
    with db.pusher_lock(url, "contacts", holder="a") as a, db.pusher_lock(url, "contacts", holder="b") as b:
        with psycopg.connect(url) as conn, conn.transaction():
            db.begin_push(conn, lock_timeout_seconds=5)
            first = db.claim(conn, a.key, "sync_contacts", 10)
            second = _claim(url, b, 20)  # while the first claim's transaction is still open
            third = _claim(url, b, 20)
    assert len(first) == 10 and len(second) == 20 and third == []
    assert {c.entity_id for c in first} | {c.entity_id for c in second} == set(ids)


def test_one_claim_per_record_and_dead_pushers_items_are_recovered(migrated_database: str) -> None:
    url = migrated_database
    [record] = _contacts(url, 1)
    with db.pusher_lock(url, "contacts", holder="first") as first:
        [item] = _claim(url, first)
        with psycopg.connect(url) as conn, conn.transaction():
            db.begin_push(conn, lock_timeout_seconds=5)
            assert db.mark_in_flight(conn, first.key, {item.id: {"email": "c0@example.com"}}) == 1
        # the app edits the record meanwhile: a new pending item, which nobody may claim while the first is in flight
        with psycopg.connect(url) as conn:
            conn.execute("update public.sync_contacts set first_name = 'x' where id = %s", (record,))
        with db.pusher_lock(url, "contacts", holder="second") as second:
            assert _claim(url, second) == []
    # the first pusher is gone (its lock with it): its in-flight item is recovered first, one per record
    with db.pusher_lock(url, "contacts", holder="third") as third:
        [again] = _claim(url, third)
    assert again.id == item.id and again.recovered and again.status == "processing"


def test_the_push_yields_to_a_sync_holding_the_run_lock(migrated_database: str) -> None:
    with run_lock(migrated_database, "contacts", wait_seconds=0, holder="keap-pipeline contacts run"):
        with pytest.raises(db.SyncInProgress, match="contacts"), db.pusher_lock(migrated_database, "contacts", holder="p"):
            pass
    # and a sync cannot take the run lock while a pusher holds it (shared)
    from keap_pipeline.db.locks import RunLocked

    with db.pusher_lock(migrated_database, "contacts", holder="keap-pipeline push contacts t") as lock:
        with pytest.raises(RunLocked, match="push contacts"), run_lock(migrated_database, "contacts", wait_seconds=0, holder="s"):
            pass
        assert db.sync_waiting(lock) is False


def test_only_the_ingestions_role_can_be_audited_as_push(migrated_database: str) -> None:
    url = migrated_database
    [record] = _contacts(url, 1)
    with psycopg.connect(url) as conn:
        conn.execute("select set_config('keap_pipeline.outbound_write_back', 'on', true)")
        conn.execute("update public.sync_contacts set first_name = 'owner edit' where id = %s", (record,))
    with psycopg.connect(url) as conn:
        conn.execute("set local role keap_pipeline_ingest")
        conn.execute("select set_config('keap_pipeline.outbound_write_back', 'on', true)")
        conn.execute("update public.sync_contacts set sync_status = 'completed' where id = %s", (record,))
    with psycopg.connect(url) as conn:
        sources = [r[0] for r in conn.execute(
            "select sync_source from public.sync_audit_log where entity_id = %s order by created_at", (record,))]
        queued = conn.execute("select count(*) from public.sync_queue where entity_id = %s", (record,)).fetchone()
    assert sources == ["supabase", "supabase", "push"] and queued == (1,)


def test_write_back_never_relinks_a_row_to_another_keap_record(migrated_database: str) -> None:
    from datetime import UTC, datetime

    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.normalize.contacts import normalize_contacts

    url = migrated_database
    [record] = _contacts(url, 1)
    with psycopg.connect(url) as conn:
        conn.execute("set local role keap_pipeline_ingest")
        conn.execute("update public.sync_contacts set keap_id = '777' where id = %s", (record,))
    frame = normalize_contacts(
        [{"id": "888", "email_addresses": [{"email": "x@example.com", "field": "EMAIL1"}], "update_time": "2026-01-01T00:00:00Z"}],
        fetched_at=datetime.now(UTC),
    ).frame
    with db.pusher_lock(url, "contacts", holder="p") as lock:
        [item] = _claim(url, lock)
        with pytest.raises(psycopg.errors.CheckViolation, match="linked to another Keap record"):
            with psycopg.connect(url) as conn, conn.transaction():
                db.begin_push(conn, lock_timeout_seconds=5)
                db.write_back(conn, lock.key, CONTACTS, frame, [db.WriteBack(item.id, record, 0, 1, complete=True)])
    with psycopg.connect(url) as conn:
        assert conn.execute("select keap_id from public.sync_contacts where id = %s", (record,)).fetchone() == ("777",)


def test_unsupported_items_are_kept_one_per_record_and_failed_ones_retried(migrated_database: str) -> None:
    url = migrated_database
    with psycopg.connect(url) as conn:
        create_users(conn)
        conn.execute("insert into public.sync_products (name) values ('A')")
        conn.execute("update public.sync_products set name = 'B'")  # coalesced into the pending create
    with psycopg.connect(url) as conn, conn.transaction():
        db.begin_push(conn, lock_timeout_seconds=5)
        assert db.mark_unsupported(conn, ["sync_contacts", "sync_tags"], "unsupported: {entity}") == 1
    with psycopg.connect(url) as conn:
        conn.execute("update public.sync_products set name = 'C'")
    with psycopg.connect(url) as conn, conn.transaction():
        db.begin_push(conn, lock_timeout_seconds=5)
        db.mark_unsupported(conn, ["sync_contacts", "sync_tags"], "unsupported: {entity}")
        statuses = conn.execute("select status, error_message from public.sync_queue order by created_at").fetchall()
        counts = {c.entity_type: (c.unsupported, c.failed) for c in db.queue_counts(conn)}
    assert statuses[0][0] == "cancelled" and statuses[1] == ("unsupported", "unsupported: sync_products")
    assert counts["sync_products"] == (1, 0)
