"""db/maintenance.purge_queue on a real PostgreSQL: sync_queue's history purged, work and errors kept, in short transactions."""

from __future__ import annotations

import psycopg
import pytest

from keap_pipeline.db.health import read_sync_health
from keap_pipeline.db.maintenance import QUEUE_PURGE_BLOCKS, MaintenanceError, purge_queue
from tests.db.health_truth import assert_true
from tests.db.queue_history import add_finished

ITEM = (
    "insert into public.sync_queue (operation, entity_type, entity_id, payload, status, completed_at, error_message, claim_key)"
    " values ('update', 'sync_contacts', gen_random_uuid(), '{}', %s, now() - make_interval(days => %s), %s,"
    " case when %s = 'processing' then 1 end)"
    " returning id"
)


def _queue(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select status, id::text from public.sync_queue order by 1, 2").fetchall()
    out: dict[str, list[str]] = {}
    for status, item in rows:
        out.setdefault(status, []).append(item)
    return out


@pytest.fixture
def history(migrated_database: str) -> dict[str, str]:
    """One item per (status, age): the old history, the recent history, and everything that is never purged."""
    items: dict[str, str] = {}
    with psycopg.connect(migrated_database) as conn:
        for name, status, days in (
            ("old completed", "completed", 40), ("old cancelled", "cancelled", 31),
            ("recent completed", "completed", 29), ("recent cancelled", "cancelled", 1),
            ("old error", "error", 400), ("old held", "held", 400), ("old unsupported", "unsupported", 400),
            ("pending", "pending", 400), ("processing", "processing", 400),
        ):
            row = conn.execute(ITEM, (status, days, "why" if status == "error" else None, status)).fetchone()
            assert row is not None
            items[name] = str(row[0])
    return items


def test_the_old_history_goes_and_work_errors_and_recent_history_stay(migrated_database: str, history: dict[str, str]) -> None:
    before = _queue(migrated_database)
    with psycopg.connect(migrated_database) as conn:
        dry = purge_queue(conn, keep_days=30, dry_run=True)
    assert (dry.purged, dry.transactions) == (2, 0)
    assert dry.left == {"completed": 1, "cancelled": 1, "error": 1, "held": 1, "unsupported": 1, "pending": 1, "processing": 1}
    assert "dry run: nothing was changed" in dry.lines()
    assert _queue(migrated_database) == before, "a dry run changes nothing"
    with psycopg.connect(migrated_database) as conn:
        report = purge_queue(conn, keep_days=30)
    assert report.purged == 2 and report.left == dry.left
    left = {i for ids in _queue(migrated_database).values() for i in ids}
    assert left == set(history.values()) - {history["old completed"], history["old cancelled"]}
    # the health counters follow the deletes (their triggers count items out)
    with psycopg.connect(migrated_database) as conn:
        assert_true(conn)
        assert read_sync_health(conn)["contacts"].queue_failed == 1


def test_a_large_history_goes_in_many_short_transactions(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        add_finished(conn, "completed", 90, count=30000)
        add_finished(conn, "completed", 2)
        blocks = conn.execute("select pg_relation_size('public.sync_queue') / current_setting('block_size')::int").fetchone()
        xid_before = conn.execute("select pg_current_xact_id()::text::bigint").fetchone()
    assert blocks is not None and blocks[0] > 2 * QUEUE_PURGE_BLOCKS
    with psycopg.connect(migrated_database) as conn:
        report = purge_queue(conn, keep_days=30)
        xid_after = conn.execute("select pg_current_xact_id()::text::bigint").fetchone()
    assert report.purged == 30000
    assert report.transactions == -(-blocks[0] // QUEUE_PURGE_BLOCKS)
    assert xid_before is not None and xid_after is not None and xid_after[0] - xid_before[0] > report.transactions / 2
    assert {k: len(v) for k, v in _queue(migrated_database).items()} == {"completed": 1}


def test_keep_days_outside_1_to_36500_is_refused(db: psycopg.Connection) -> None:
    with pytest.raises(MaintenanceError, match="keep_days must be from 1 to 36500"):
        purge_queue(db, keep_days=0)
    with pytest.raises(MaintenanceError, match="keep_days must be from 1 to 36500"):
        purge_queue(db, keep_days=36_501)  # beyond a date's range for a far-past cutoff
