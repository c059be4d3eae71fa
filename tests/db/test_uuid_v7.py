"""keap_pipeline.uuid_v7: version 7 layout, time-ordered, unique; ingested rows get such ids."""

from __future__ import annotations

import uuid

import psycopg


def test_layout_order_and_uniqueness(db: psycopg.Connection) -> None:
    rows = [r[0] for r in db.execute(
        "select keap_pipeline.uuid_v7() from generate_series(1, 2000) as g"
        " cross join lateral (select pg_sleep(0) where g % 500 = 0) as pause"
    )]
    ids = [uuid.UUID(str(r)) for r in rows]
    assert len(set(ids)) == len(ids)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    millis = [u.int >> 80 for u in ids]
    assert millis == sorted(millis), "the 48-bit millisecond prefix never goes back"
    now_ms = db.execute("select (extract(epoch from clock_timestamp()) * 1000)::bigint").fetchone()[0]
    assert abs(millis[-1] - now_ms) < 60_000


def test_ingested_contacts_and_their_audit_rows_get_time_ordered_ids(db: psycopg.Connection) -> None:
    assert db.execute(
        "select * from public.batch_upsert_contacts(array['{\"keap_id\":\"v7-1\",\"email\":\"a@example.com\"}'::jsonb])"
    ).fetchone() == (1, 0, 0)
    contact, status, audit = db.execute(
        "select c.id, s.id, a.id from public.sync_contacts c"
        " join public.sync_status s on s.entity_id = c.id"
        " join public.sync_audit_log a on a.entity_id = c.id where c.keap_id = 'v7-1'"
    ).fetchone()
    assert {uuid.UUID(str(x)).version for x in (contact, status, audit)} == {7}
    # sql/21: the sync_status row of an ingested contact shares the contact's id (one row per record)
    assert status == contact and audit != contact
