"""Re-reading without normalizing (pipeline/raw_keys.py, sql/35): through the sandbox over a real socket
into a real PostgreSQL, which records skip decoding and normalizing and that nothing else changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import keap_pipeline.pipeline.batch as batch_module
import keap_pipeline.pipeline.raw_keys as raw_keys
from keap_pipeline.db.connect import connect
from keap_pipeline.db.cursors import get_cursor
from keap_pipeline.entities import ENTITIES
from keap_pipeline.pipeline.sync import sync_entity
from tests.pipeline.conftest import (
    client_for,
    expected_rows,
    sandbox_records,
    scalar,
    snapshot,
    sync,
    table_rows,
)

WINDOW = "window:again"


class Counted:
    """How many records the read-ahead normalized, and how many the loaders normalized late."""

    def __init__(self) -> None:
        self.read_ahead = 0
        self.late = 0


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counted]:
    seen = Counted()
    ahead, late = raw_keys.normalize_records, batch_module.normalize_records

    def count_ahead(entity: Any, records: Any, **kwargs: Any) -> Any:
        seen.read_ahead += len(records)
        return ahead(entity, records, **kwargs)

    def count_late(entity: Any, records: Any, **kwargs: Any) -> Any:
        seen.late += len(records)
        return late(entity, records, **kwargs)

    monkeypatch.setattr(raw_keys, "normalize_records", count_ahead)
    monkeypatch.setattr(batch_module, "normalize_records", count_late)
    yield seen


def _reread(handle: Any, url: str, scope: str = WINDOW, **kwargs: Any) -> Any:
    return sync(handle, url, page_size=200, since=None, scope=scope, **kwargs)


def _raw_keys(url: str) -> int:
    return int(scalar(url, "select count(*) from keap_pipeline.raw_record_keys"))


def _load_and_seed(handle: Any, url: str, counted: Counted, *, page_size: int) -> None:
    """A first load (incremental: it stores no raw keys), then a window re-read that stores them."""
    sync(handle, url, page_size=page_size)
    assert _raw_keys(url) == 0
    before = snapshot(url)
    counted.read_ahead = 0
    seeded = sync(handle, url, page_size=page_size, since=None, scope="window:seed")
    assert counted.read_ahead == seeded.records_seen  # every record normalized, its keys stored
    assert snapshot(url) == before  # and nothing written to the rows


def test_an_incremental_run_keeps_no_raw_keys_and_a_full_pass_does(sandbox, migrated_database: str, counted: Counted) -> None:
    handle = sandbox(contacts=300, subscriptions=200)
    sync(handle, migrated_database, page_size=100)
    handle.state.update_contact(7, {"given_name": "Changed"})
    sync(handle, migrated_database, page_size=100)
    # what an incremental run reads is new bytes by definition: no look-ups, no second write per record
    assert counted.read_ahead == 0 and _raw_keys(migrated_database) == 0
    # a full pass (subscriptions: by id) reads every record again each run: its keys are kept
    with client_for(handle) as client:
        sync_entity(client, migrated_database, ENTITIES["subscriptions"], page_size=100)
        assert scalar(migrated_database, "select count(*) from keap_pipeline.raw_record_keys where entity = 'subscriptions'") == 200
        counted.read_ahead = 0
        again = sync_entity(client, migrated_database, ENTITIES["subscriptions"], page_size=100)
    assert counted.read_ahead == 0 and again.counts.unchanged == 200


def test_a_re_read_normalizes_only_the_records_whose_bytes_changed(sandbox, migrated_database: str, counted: Counted) -> None:
    handle = sandbox(contacts=600)
    _load_and_seed(handle, migrated_database, counted, page_size=200)
    assert scalar(migrated_database, "select count(*) from keap_pipeline.raw_record_keys where entity = 'contacts'") == 600
    before = snapshot(migrated_database)

    counted.read_ahead = 0
    report = _reread(handle, migrated_database)
    assert (counted.read_ahead, counted.late) == (0, 0)
    assert report.records_seen == 600 and report.counts.unchanged == 600
    assert snapshot(migrated_database) == before
    with connect(migrated_database) as conn:
        cursor = get_cursor(conn, "contacts", WINDOW)
        latest = conn.execute("select max(keap_updated_at) from public.sync_contacts").fetchone()
    # the window's cursor moved through every batch to the newest record, as when each was normalized
    assert cursor is not None and latest is not None
    assert report.cursor == latest[0]

    changed = [5, 301, 599]
    for ident in changed:
        handle.state.update_contact(ident, {"given_name": f"Changed {ident}"})
    report = _reread(handle, migrated_database, scope="window:third")
    assert (counted.read_ahead, counted.late) == (3, 0)
    assert report.counts.updated == 3 and report.counts.unchanged == 597
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))


def test_a_new_normalizer_version_normalizes_every_record_again(
    sandbox, migrated_database: str, counted: Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = sandbox(contacts=400)
    _load_and_seed(handle, migrated_database, counted, page_size=200)
    before = snapshot(migrated_database)
    monkeypatch.setattr(raw_keys, "NORMALIZER_REVISION", raw_keys.NORMALIZER_REVISION + 1)
    monkeypatch.setattr(raw_keys, "_KEYS", {})
    counted.read_ahead = 0
    report = _reread(handle, migrated_database)
    # every stored hash is unknown under the new key: all normalized again, nothing written to the rows
    assert counted.read_ahead == 400 and report.counts.unchanged == 400
    assert snapshot(migrated_database) == before
    counted.read_ahead = 0
    _reread(handle, migrated_database, scope="window:third")
    assert counted.read_ahead == 0


def test_a_dead_letter_is_never_skipped(sandbox, migrated_database: str, counted: Counted) -> None:
    handle = sandbox(contacts=300)
    bad = handle.state.put_raw_contact(json.dumps({
        "id": "900001", "given_name": "Bad", "tag_ids": "not an array",
        "update_time": "2020-01-01T00:00:00.000Z", "create_time": "2020-01-01T00:00:00.000Z",
    }), ident=900001, time_ms=1577836800000)
    first = sync(handle, migrated_database, page_size=100, since=None, scope="window:seed")
    assert first.dead_lettered == 1
    open_letters = "select attempts from keap_pipeline.dead_letters where keap_id = %s and status = 'open'"
    assert scalar(migrated_database, open_letters, (str(bad),)) == 1
    assert _raw_keys(migrated_database) == 300  # the others' keys are kept
    assert scalar(migrated_database, "select count(*) from keap_pipeline.raw_record_keys where keap_id = %s", (str(bad),)) == 0
    counted.read_ahead = 0
    again = _reread(handle, migrated_database)
    # the dead letter's record is normalized (and dead-lettered) again; the others are not
    assert counted.read_ahead == 1 and again.dead_lettered == 1
    assert scalar(migrated_database, open_letters, (str(bad),)) == 2  # seen again
    assert scalar(migrated_database, "select count(*) from keap_pipeline.raw_record_keys where keap_id = %s", (str(bad),)) == 0


def test_a_known_record_the_diff_loads_is_normalized_by_the_loader(sandbox, migrated_database: str, counted: Counted) -> None:
    handle = sandbox(contacts=300)
    _load_and_seed(handle, migrated_database, counted, page_size=100)
    rows = table_rows(migrated_database)
    # the sync row no longer holds what Keap's bytes gave (as after a write-back of other content):
    # the diff must see it, though the record's bytes are known
    with psycopg.connect(migrated_database) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute("update public.sync_contacts set keap_hash = gen_random_uuid() where keap_id = '42'")
        conn.execute("delete from public.sync_contacts where keap_id = '43'")
    counted.read_ahead = 0
    report = _reread(handle, migrated_database)
    assert counted.read_ahead == 0 and counted.late == 2
    assert report.counts.inserted == 1  # 43 again
    # 42's content equals Keap's: unchanged, as when it is normalized in the read-ahead (no write)
    assert table_rows(migrated_database) == rows


def test_an_app_edit_is_kept_and_a_keap_change_of_it_is_a_conflict(sandbox, migrated_database: str, counted: Counted) -> None:
    handle = sandbox(contacts=200)
    _load_and_seed(handle, migrated_database, counted, page_size=100)
    with psycopg.connect(migrated_database) as conn:
        conn.execute("update public.sync_contacts set first_name = 'App' where keap_id = '9'")
    queued = scalar(migrated_database, "select count(*) from public.sync_queue where status = 'pending'")
    assert queued == 1
    edited = snapshot(migrated_database)
    counted.read_ahead = 0
    report = _reread(handle, migrated_database, strategy="manual")
    # Keap did not change it: skipped, the app's edit and its outbound item stay as they were
    assert counted.read_ahead == 0 and report.counts.unchanged == 200
    assert snapshot(migrated_database) == edited
    handle.state.update_contact(9, {"given_name": "Keap"})
    report = _reread(handle, migrated_database, strategy="manual", scope="window:third")
    assert counted.read_ahead == 1 and report.counts.conflicts_parked == 1
    assert scalar(migrated_database, "select first_name from public.sync_contacts where keap_id = '9'") == "App"


def test_the_page_finder_looks_less_while_it_finds_nothing() -> None:
    from keap_pipeline.db.raw_keys import KnownKeys

    asked: list[int] = []
    answers = iter([KnownKeys([], [], [])] * 2 + [KnownKeys([0], [1], ["0" * 32])] + [KnownKeys([], [], [])] * 20)

    def find(ids: Any, hashes: Any) -> KnownKeys:
        asked.append(len(ids))
        return next(answers)

    finder = raw_keys.PageFinder(find, every=4)
    found = [finder(["1"], [b"\0" * 16]).ordinals for _ in range(14)]
    # pages 1, 2 miss; then only page 4 (of 3, 4), which finds one, so 5 and 6 are asked again (and
    # miss); then pages 8 and 12 only
    assert len(asked) == 7
    assert found[3] == [0] and found.count([0]) == 1


def test_big_integers_stay_exact_when_a_changed_record_is_decoded_alone(
    sandbox, migrated_database: str, counted: Counted
) -> None:
    big = "123456789012345678901234567890123456789"
    handle = sandbox(contacts=250)
    _load_and_seed(handle, migrated_database, counted, page_size=100)
    # a changed record among known ones: decoded alone (jsontext.decode_record), not with its page
    handle.state.update_contact(120, {"custom_fields": [{"id": "7", "content": int(big)}, {"id": "8", "content": 0.1}]})
    counted.read_ahead = 0
    report = _reread(handle, migrated_database)
    assert counted.read_ahead == 1 and report.counts.updated == 1
    text = scalar(migrated_database, "select custom_fields::text from public.sync_contacts where keap_id = '120'")
    assert big in text and "0.1" in text
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
