"""sync_health after real syncs through the sandbox: counters that keep up with loads, conflicts and dead letters, and the lag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from keap_pipeline.db.cursors import window_scope
from keap_pipeline.db.health import read_sync_health
from keap_pipeline.entities import CONTACTS, ENTITIES, lineage_order
from keap_pipeline.pipeline.sync import sync_entity
from tests.db.health_truth import assert_true
from tests.pipeline.conftest import client_for

LONG_EMAIL = "x" * 300 + "@example.com"


def _facts(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from public.sync_health_counters where metric = 'sync_succeeded'").fetchone()
    assert row is not None
    return int(row[0])


def test_counters_keep_up_with_syncs_conflicts_and_dead_letters(sandbox, migrated_database: str) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=400)
    state = handle.state
    # a record the normalizer refuses, and two PostgreSQL refuses (their batches' attempts roll back
    # to savepoints while the refused rows are isolated: those attempts' counts must go with them)
    state.update_contact(10, {"email_addresses": [{"email": LONG_EMAIL, "field": "EMAIL1"}]})
    for ident in (30, 31):
        state.update_contact(ident, {"company": {"company_name": "Refused Ltd"}})
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            "alter table public.sync_contacts add constraint test_refused_company check (company is distinct from 'Refused Ltd')"
        )
    started = datetime.now(UTC)
    with client_for(handle) as client:
        for entity in lineage_order(tuple(ENTITIES)):
            sync_entity(client, migrated_database, entity, page_size=50, loaders=2, run_id="health-1")
    with psycopg.connect(migrated_database) as conn:
        assert_true(conn)
        health = read_sync_health(conn)
    for name, row in health.items():
        assert row.last_successful_sync_at is not None and row.last_successful_sync_at >= started, name
        assert row.sync_lag is not None and row.sync_lag < timedelta(minutes=5), name
    assert health["contacts"].total_records == 397 and health["contacts"].open_dead_letters == 3
    assert health["orders"].total_records > 0

    # changed in Keap and by the app since the last sync, parked for a person (manual): conflicts
    # open, the records' outbound items held, their status 'conflict'
    with psycopg.connect(migrated_database) as conn:
        conn.execute("set local role service_role")
        conn.execute("update public.sync_contacts set first_name = 'Local' where keap_id in ('1', '2', '3')")
    for ident in (1, 2, 3):
        state.update_contact(ident, {"given_name": "Remote"})
    with client_for(handle) as client:
        sync_entity(client, migrated_database, CONTACTS, strategy="manual", page_size=50, run_id="health-2")
    with psycopg.connect(migrated_database) as conn:
        assert_true(conn)
        contacts = read_sync_health(conn)["contacts"]
    assert (contacts.open_conflicts, contacts.conflicts, contacts.queue_pending) == (3, 3, 0)

    # a backfill of a past window completes, but it did not read the present: no success recorded
    before = _facts(migrated_database)
    since, until = datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC)
    with client_for(handle) as client:
        sync_entity(client, migrated_database, CONTACTS, since=since, until=until, scope=window_scope(since, until))
    assert _facts(migrated_database) == before
    # an incremental run that finds nothing new still completes: the lag starts again from it
    with client_for(handle) as client:
        report = sync_entity(client, migrated_database, CONTACTS, run_id="health-3")
    assert report.counts.inserted == report.counts.updated == 0
    assert _facts(migrated_database) == before + 1
