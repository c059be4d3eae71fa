"""detect_sync_conflict and batch_upsert_contacts: the request's examples, 1000+ records, rejects, conflicts."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb


def _upsert(conn: psycopg.Connection, records: list[object]) -> tuple[int, int, int]:
    row = conn.execute(
        "select * from public.batch_upsert_contacts(%s::jsonb[])", ([Jsonb(r) for r in records],)
    ).fetchone()
    assert row is not None
    return row


def test_request_example_detect_sync_conflict(db: psycopg.Connection) -> None:
    entity = uuid.uuid4()  # the request passed 'test-id', which is not a uuid
    row = db.execute(
        "select * from detect_sync_conflict('sync_contacts', %s, '{\"email\":\"old@test.com\"}'::jsonb,"
        " '{\"email\":\"new@test.com\"}'::jsonb)",
        (entity,),
    ).fetchone()
    assert row is not None and isinstance(row[0], uuid.UUID)
    stored = db.execute(
        "select entity_type, entity_id, conflict_fields, resolved_at from public.sync_conflicts where id = %s", (row[0],)
    ).fetchone()
    assert stored == ("sync_contacts", entity, ["email"], None)


def test_detect_sync_conflict_names_every_differing_key_and_returns_null_when_equal(db: psycopg.Connection) -> None:
    entity = uuid.uuid4()
    conflict = db.execute(
        "select detect_sync_conflict('sync_contacts', %s, %s, %s)",
        (entity, Jsonb({"a": 1, "b": 2, "c": None}), Jsonb({"a": 1, "b": 3, "d": 4})),
    ).fetchone()[0]
    fields = db.execute("select conflict_fields from public.sync_conflicts where id = %s", (conflict,)).fetchone()[0]
    assert fields == ["b", "c", "d"]
    same = db.execute(
        "select detect_sync_conflict('sync_contacts', %s, %s, %s)", (entity, Jsonb({"a": 1}), Jsonb({"a": 1}))
    ).fetchone()
    assert same == (None,)


def test_detect_sync_conflict_refuses_non_objects(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="JSON objects"):
        db.execute("select detect_sync_conflict('sync_contacts', %s, '[]', '{}')", (uuid.uuid4(),))


def test_request_example_batch_upsert(db: psycopg.Connection) -> None:
    row = db.execute(
        "select * from batch_upsert_contacts(array['{\"keap_id\":\"test-1\",\"email\":\"test1@example.com\"}'::jsonb])"
    ).fetchone()
    assert row == (1, 0, 0)
    stored = db.execute(
        "select email, source_system, sync_status, last_synced_at is not null from public.sync_contacts where keap_id = 'test-1'"
    ).fetchone()
    assert stored == ("test1@example.com", "keap", "completed", True)


def test_batch_upsert_handles_thousands_and_is_idempotent(db: psycopg.Connection) -> None:
    n = 5_000
    records = [
        {"keap_id": str(i), "email": f"c{i}@example.com", "first_name": f"F{i}", "tags": [i % 7],
         "custom_fields": {"score": i}, "keap_updated_at": "2026-01-01T00:00:00.000Z"}
        for i in range(n)
    ]
    assert _upsert(db, records) == (n, 0, 0)
    assert db.execute("select count(*) from public.sync_contacts where keap_id ~ '^[0-9]+$'").fetchone() == (n,)
    audited = db.execute("select count(*) from public.sync_audit_log where sync_source = 'keap'").fetchone()[0]
    # the same batch again changes nothing: no new audit rows, no queue rows
    assert _upsert(db, records) == (n, 0, 0)
    assert db.execute("select count(*) from public.sync_audit_log where sync_source = 'keap'").fetchone()[0] == audited
    assert db.execute("select count(*) from public.sync_queue").fetchone() == (0,)
    # speed (the request's "> 1000 records/second") is measured by bench/bench_db_stage.py, not here


def test_batch_upsert_rejects_are_counted_and_kept_with_the_reason(db: psycopg.Connection) -> None:
    records: list[object] = [
        {"keap_id": "ok-1", "email": "ok@example.com"},
        {"email": "no-id@example.com"},
        {"keap_id": "ok-2", "favourite_colour": "green"},
        {"keap_id": "ok-3", "phone": "1" * 51},
        {"keap_id": "ok-4", "keap_updated_at": "2026-01-01 10:00"},
        {"keap_id": "ok-5", "tags": "vip"},
        ["not", "an", "object"],
    ]
    assert _upsert(db, records) == (1, 6, 0)
    reasons = [
        r[0]
        for r in db.execute(
            "select error_message from public.sync_queue where status = 'error' and entity_type = 'sync_contacts'"
            " order by error_message"
        )
    ]
    assert len(reasons) == 6
    joined = "\n".join(reasons)
    for needle in ("keap_id is missing", "unknown field(s): favourite_colour", "too long", "time zone", "tags must be", "not a JSON object"):
        assert needle in joined
    kept = db.execute("select payload from public.sync_queue where error_message like '%%favourite_colour%%'").fetchone()[0]
    assert kept == {"keap_id": "ok-2", "favourite_colour": "green"}


def test_batch_upsert_last_record_of_a_repeated_keap_id_wins(db: psycopg.Connection) -> None:
    assert _upsert(db, [{"keap_id": "d", "email": "first@example.com"}, {"keap_id": "d", "email": "second@example.com"}]) == (2, 0, 0)
    assert db.execute("select email from public.sync_contacts where keap_id = 'd'").fetchone() == ("second@example.com",)


def test_batch_upsert_never_overwrites_with_an_older_keap_version(db: psycopg.Connection) -> None:
    _upsert(db, [{"keap_id": "t", "email": "new@example.com", "keap_updated_at": "2026-02-01T00:00:00Z"}])
    _upsert(db, [{"keap_id": "t", "email": "old@example.com", "keap_updated_at": "2026-01-01T00:00:00Z"}])
    assert db.execute("select email from public.sync_contacts where keap_id = 't'").fetchone() == ("new@example.com",)


def test_batch_upsert_reports_a_conflict_with_a_pending_app_change(db: psycopg.Connection) -> None:
    _upsert(db, [{"keap_id": "c-1", "email": "keap@example.com", "first_name": "Kay"}])
    # an app edit (not the ingestion) queues an outbound update
    db.execute("update public.sync_contacts set first_name = 'Local' where keap_id = 'c-1'")
    assert db.execute("select count(*) from public.sync_queue where status = 'pending'").fetchone() == (1,)
    assert _upsert(db, [{"keap_id": "c-1", "email": "keap@example.com", "first_name": "Remote"}]) == (0, 0, 1)
    row = db.execute(
        "select c.first_name, c.sync_status, k.conflict_fields, k.keap_data ->> 'first_name', k.supabase_data ->> 'first_name'"
        " from public.sync_contacts c join public.sync_conflicts k on k.entity_id = c.id where c.keap_id = 'c-1'"
    ).fetchone()
    assert row == ("Local", "conflict", ["first_name"], "Remote", "Local")


def test_batch_upsert_restores_the_callers_sync_source(db: psycopg.Connection) -> None:
    db.execute("select set_config('keap_pipeline.sync_source', 'something', true)")
    _upsert(db, [{"keap_id": "s", "email": "s@example.com"}])
    assert db.execute("select current_setting('keap_pipeline.sync_source')").fetchone() == ("something",)


def test_money_keeps_four_decimals_and_large_amounts(db: psycopg.Connection) -> None:
    db.execute("set local role keap_pipeline_ingest")  # rows with a keap_id are the ingestion's (sql/24)
    db.execute(
        "insert into public.sync_orders (keap_id, order_date, total_amount, currency, status)"
        " values ('o-1', now(), 123456789012.3456, 'BHD', 'PAID')"
    )
    assert db.execute("select total_amount::text from public.sync_orders where keap_id = 'o-1'").fetchone() == ("123456789012.3456",)
    with pytest.raises(psycopg.errors.CheckViolation, match="sync_orders_currency_is_iso_4217"):
        db.execute("insert into public.sync_orders (order_date, total_amount, currency, status) values (now(), 1, 'usd', 'PAID')")


def test_relaxed_constraints_accept_real_keap_data(db: psycopg.Connection) -> None:
    # contacts without email, tag names repeated across categories, subscriptions before their product name
    db.execute("set local role keap_pipeline_ingest")  # rows with a keap_id are the ingestion's (sql/24)
    db.execute("insert into public.sync_contacts (keap_id, phone) values ('phone-only', '+15550100')")
    db.execute("insert into public.sync_tags (keap_id, name, category) values ('t1', 'VIP', 'Customers'), ('t2', 'VIP', 'Partners')")
    db.execute("insert into public.sync_subscriptions (keap_id, status) values ('s1', 'active')")
    assert db.execute("select tags, custom_fields from public.sync_contacts where keap_id = 'phone-only'").fetchone() == ([], {})
    with pytest.raises(psycopg.errors.CheckViolation, match="sync_contacts_sync_status_known"):
        db.execute("insert into public.sync_contacts (keap_id, sync_status) values ('x', 'done')")
