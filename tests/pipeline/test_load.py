"""Full load, incremental sync and idempotent re-run: the sandbox over a real socket into a migrated PostgreSQL."""

from __future__ import annotations

from keap_pipeline.db.connect import connect
from keap_pipeline.db.cursors import INCREMENTAL, get_cursor
from tests.pipeline.conftest import (
    expected_rows,
    sandbox_records,
    scalar,
    snapshot,
    sync,
    table_rows,
)


def test_full_load_equals_the_sandbox_field_by_field(sandbox, migrated_database: str) -> None:
    handle = sandbox(contacts=1500)
    records = sandbox_records(handle)
    report = sync(handle, migrated_database, page_size=200, run_id="full")

    assert report.records_seen == 1500 and report.pages == 8
    assert report.counts.inserted == 1500 and report.dead_lettered == 0
    rows = table_rows(migrated_database)
    assert rows == expected_rows(records)
    # independently of the normalizer: names and tag ids as Keap holds them
    for keap_id, record in records.items():
        assert rows[keap_id][2] == record.get("given_name")
        assert rows[keap_id][3] == record.get("family_name")
        assert rows[keap_id][6] == [str(t) for t in record.get("tag_ids") or []]
    no_email = [k for k, r in records.items() if not r.get("email_addresses")]
    assert no_email, "the sandbox should serve contacts without an email"
    assert all(rows[k][1] is None for k in no_email)

    assert scalar(migrated_database, "select count(*) from public.sync_contacts where source_system <> 'keap'"
                  " or sync_status <> 'completed' or last_synced_at is null") == 0
    assert scalar(migrated_database, "select count(*) from public.sync_queue") == 0
    audit = scalar(
        migrated_database,
        "select jsonb_object_agg(k, n) from (select sync_source || ':' || operation as k, count(*) as n"
        " from public.sync_audit_log where entity_type = 'sync_contacts' group by 1) s",
    )
    assert audit == {"keap:INSERT": 1500}
    assert scalar(migrated_database, "select count(*) from public.sync_status where entity_type = 'sync_contacts'"
                  " and last_sync_status = 'completed' and sync_direction = 'keap_to_supabase'") == 1500
    assert scalar(migrated_database, "select count(*) from keap_pipeline.stage_contacts") == 0
    with connect(migrated_database) as conn:
        cursor = get_cursor(conn, "contacts", INCREMENTAL)
    assert cursor is not None and cursor.records_total == 1500
    assert cursor.value == max(r[9] for r in rows.values())


def test_incremental_reads_only_changes_from_the_cursor(sandbox, migrated_database: str) -> None:
    handle = sandbox(contacts=800)
    state = handle.state
    sync(handle, migrated_database, page_size=200)
    before = snapshot(migrated_database)
    with connect(migrated_database) as conn:
        first_cursor = get_cursor(conn, "contacts", INCREMENTAL)
    assert first_cursor is not None

    updated = [3, 250, 799]
    for ident in updated:
        state.update_contact(ident, {"given_name": f"Changed {ident}"})
    created = [state.create_contact({"given_name": "New", "family_name": f"Person {i}",
                                     "email_addresses": [{"email": f"new{i}@example.com", "field": "EMAIL1"}]})
               for i in range(4)]
    created.append(state.create_contact({"given_name": "No", "family_name": "Email"}))

    report = sync(handle, migrated_database, page_size=3)
    # the inclusive cursor re-reads the last loaded instant (up to 3 base contacts share a time)
    reread = report.records_seen - len(updated) - len(created)
    assert 0 <= reread <= 3, report.summary()
    assert report.counts.inserted == len(created)
    assert report.counts.updated == len(updated)
    assert report.counts.unchanged == reread
    assert report.pages <= 4

    after = snapshot(migrated_database)
    changed = {str(i) for i in updated}
    for keap_id, stamp in before["rows"].items():
        if keap_id in changed:
            assert after["rows"][keap_id][1] == stamp[1] + 1
        else:
            assert after["rows"][keap_id] == stamp, f"{keap_id} was rewritten"
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    with connect(migrated_database) as conn:
        cursor = get_cursor(conn, "contacts", INCREMENTAL)
    assert cursor is not None and cursor.value > first_cursor.value
    assert scalar(migrated_database, "select count(*) from public.sync_queue") == 0
    assert scalar(migrated_database, "select count(*) from public.sync_audit_log where sync_source <> 'keap'") == 0


def test_full_resync_with_nothing_changed_writes_nothing(sandbox, migrated_database: str) -> None:
    handle = sandbox(contacts=1000)
    sync(handle, migrated_database, page_size=250)
    before = snapshot(migrated_database)
    cursor_before = scalar(migrated_database, "select cursor_value from keap_pipeline.sync_cursors")

    # a full re-read (a window from the beginning), not the cursor's few boundary records
    report = sync(handle, migrated_database, page_size=250, scope="window:all", since=None)
    assert report.records_seen == 1000
    assert report.counts.unchanged == 1000
    assert (report.counts.inserted, report.counts.updated, report.counts.conflicts) == (0, 0, 0)
    after = snapshot(migrated_database)
    # same xmin on every row: not one new tuple (and so no version, audit or queue row)
    assert after == before
    assert scalar(migrated_database, "select cursor_value from keap_pipeline.sync_cursors"
                  " where scope = 'incremental'") == cursor_before
