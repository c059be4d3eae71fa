"""No batch transaction streams more changes than the budget: decoded by pgoutput from a real logical slot on supabase_realtime."""

from __future__ import annotations

import json
import struct
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from keap_pipeline.db.cursors import window_scope
from keap_pipeline.sandbox import SandboxConfig
from keap_pipeline.sandbox.dataset import Dataset
from tests.pipeline.conftest import expected_rows, sandbox_records, sync, table_rows

BUDGET = 300  # changes per transaction: with sync_status published, 150 written records


@pytest.fixture
def slot(migrated_database: str) -> Iterator[str]:
    """A logical slot (pgoutput) on the test database, dropped after the test (a slot keeps its database)."""
    name = f"t_budget_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute("select pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
    try:
        yield name
    finally:
        with psycopg.connect(migrated_database, autocommit=True) as conn:
            conn.execute("select pg_catalog.pg_drop_replication_slot(%s)", (name,))


def streamed(url: str, slot: str) -> tuple[Counter[int], Counter[str]]:
    """Consume the slot: changes (INSERT/UPDATE/DELETE messages) per transaction, and per table, as subscribers get them."""
    per_xact: Counter[int] = Counter()
    per_table: Counter[str] = Counter()
    relations: dict[int, str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        # batches commit with synchronous_commit off and decoding reads flushed WAL only: a
        # transaction that writes WAL, committed synchronously, flushes theirs (as an app's next write
        # does; a transactional logical message is such a write, and pgoutput does not send it)
        conn.execute("select pg_catalog.pg_logical_emit_message(true, 'keap-pipeline-test', 'flush')")
        rows = conn.execute(
            "select xid::text, data from pg_catalog.pg_logical_slot_get_binary_changes("
            "%s, null, null, 'proto_version', '1', 'publication_names', 'supabase_realtime')",
            (slot,),
        ).fetchall()
    for xid, data in rows:
        kind = data[:1]
        if kind == b"R":
            relid = struct.unpack_from("!I", data, 1)[0]
            namespace_end = data.index(b"\0", 5)
            relations[relid] = data[namespace_end + 1:data.index(b"\0", namespace_end + 1)].decode()
        elif kind in (b"I", b"U", b"D"):
            per_xact[int(xid)] += 1
            per_table[relations[struct.unpack_from("!I", data, 1)[0]]] += 1
    return per_xact, per_table


def changed_last(contacts: int, ids: range) -> tuple[bytes, ...]:
    """These contacts changed in Keap, their update times later than every other's (as changes since a sync are)."""
    dataset = Dataset(SandboxConfig(contacts=contacts))
    base = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for ident in ids:
        record = dataset.record("contacts", ident)
        record["given_name"] = "Changed"
        record["update_time"] = (base + timedelta(milliseconds=ident)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        out.append(json.dumps(record).encode())
    return tuple(out)


def test_first_load_and_resync_stay_within_the_change_budget(sandbox, migrated_database: str, slot: str) -> None:
    # a first load: pages of 400 new contacts, 800 changes each -> at most 150 contacts a transaction:
    # the pages handed out before the first commit showed a first load commit in parts (their diff finds
    # every record new; at most 3, two loading and one waiting), the later ones are split into batches
    # of 150, 150 and 100 that the two loaders load side by side
    handle = sandbox(contacts=2000)
    first = sync(handle, migrated_database, page_size=400, max_changes=BUDGET, run_id="first")
    assert first.counts.inserted == 2000 and 3 + 2 * 3 <= first.batches <= 5 * 3
    per_xact, per_table = streamed(migrated_database, slot)
    assert max(per_xact.values()) <= BUDGET
    assert per_table == {"sync_contacts": 2000, "sync_status": 2000}
    assert len(per_xact) >= 2 * 2000 // BUDGET
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))

    # a re-sync over every record where the last 700 changed: the unchanged pages grow the batches to
    # several pages, and the changed records all come in the last of them; it still commits in parts
    changed = changed_last(2000, range(1301, 2001))
    handle = sandbox(contacts=2000, raw_contacts=changed)
    since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
    again = sync(
        handle, migrated_database, page_size=400, max_pages_per_batch=10, max_changes=BUDGET, run_id="again",
        since=since, until=until, scope=window_scope(since, until),
    )
    assert again.counts.updated == 700 and again.counts.unchanged == 1300
    assert again.batches < 5  # batches of several pages: the split is by changed rows, not by pages
    per_xact, per_table = streamed(migrated_database, slot)
    assert max(per_xact.values()) <= BUDGET
    assert per_table == {"sync_contacts": 700, "sync_status": 700}
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    with psycopg.connect(migrated_database) as conn:
        assert conn.execute("select count(*) from public.sync_contacts where first_name = 'Changed'").fetchone() == (700,)
        # every part moved the window's cursor; the completed window has it at its end
        assert conn.execute(
            "select cursor_value from keap_pipeline.sync_cursors where scope = %s", (window_scope(since, until),)
        ).fetchone() == (until,)

def test_without_sync_status_in_the_publication_a_transaction_takes_twice_the_records(
    sandbox, migrated_database: str, slot: str
) -> None:
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute("alter publication supabase_realtime drop table public.sync_status")
    handle = sandbox(contacts=1200)
    report = sync(handle, migrated_database, page_size=600, max_changes=BUDGET, run_id="unpublished")
    assert report.counts.inserted == 1200
    per_xact, per_table = streamed(migrated_database, slot)
    assert per_table == {"sync_contacts": 1200}
    assert max(per_xact.values()) == BUDGET  # 300 records a transaction, each one change
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))


def test_a_reconcile_pass_soft_deletes_within_the_change_budget(sandbox, migrated_database: str, slot: str) -> None:
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.pipeline.reconcile import ReconcileSettings, reconcile_entity
    from tests.pipeline.conftest import client_for

    handle = sandbox(contacts=600)
    sync(handle, migrated_database, page_size=200, max_changes=BUDGET, run_id="first")
    streamed(migrated_database, slot)  # the first load's changes, consumed
    assert handle.state is not None
    for ident in range(101, 201):  # 100 contacts deleted in Keap
        assert handle.state.delete_record("contacts", ident)
    # 60 changes a transaction: 30 soft deletes (each its row and its sync_status row)
    settings = ReconcileSettings(page_size=200, max_share=0.5, max_count=1000, max_changes=60)
    with client_for(handle) as client:
        report = reconcile_entity(client, migrated_database, CONTACTS, settings)
    assert (report.status, report.missing, report.deleted) == ("completed", 100, 100)
    per_xact, per_table = streamed(migrated_database, slot)
    assert per_table == {"sync_contacts": 100, "sync_status": 100}
    assert sorted(per_xact.values()) == [20, 60, 60, 60], "100 soft deletes in transactions of at most 60 changes"

    # a stopped pass's confirmation is chunked the same way (the judgement that stopped streams nothing)
    from keap_pipeline.pipeline.reconcile import confirm_pass

    for ident in range(301, 351):
        assert handle.state.delete_record("contacts", ident)
    with client_for(handle) as client:
        stopped = reconcile_entity(client, migrated_database, CONTACTS, ReconcileSettings(
            page_size=200, max_share=0.5, max_count=10, max_changes=60,
        ))
    assert (stopped.status, stopped.missing, stopped.deleted) == ("stopped", 50, 0)
    assert confirm_pass(migrated_database, CONTACTS, stopped.pass_id, max_changes=60) == 50
    per_xact, per_table = streamed(migrated_database, slot)
    assert per_table == {"sync_contacts": 50, "sync_status": 50}
    assert sorted(per_xact.values()) == [40, 60]


def inserting_transactions(url: str) -> int:
    """How many transactions inserted the contacts (each leaves its xid as the rows' xmin)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(distinct xmin::text) from public.sync_contacts").fetchone()
    return int(row[0]) if row else 0


def test_the_default_budget_holds_while_something_decodes(sandbox, migrated_database: str, slot: str) -> None:
    from keap_pipeline.pipeline.batching import DEFAULT_MAX_CHANGES

    handle = sandbox(contacts=2000)
    report = sync(handle, migrated_database, page_size=1000, run_id="watched")  # no budget given: the default
    assert report.counts.inserted == 2000
    per_xact, per_table = streamed(migrated_database, slot)
    assert per_table == {"sync_contacts": 2000, "sync_status": 2000}
    assert max(per_xact.values()) <= DEFAULT_MAX_CHANGES  # 250 records (500 changes) a transaction
    assert len(per_xact) == inserting_transactions(migrated_database) == 2000 // (DEFAULT_MAX_CHANGES // 2)
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))


def test_with_nothing_decoding_batches_take_whole_pages(sandbox, migrated_database: str) -> None:
    from keap_pipeline.db.publication import decoding
    from keap_pipeline.pipeline.batching import UNWATCHED_MAX_CHANGES

    with psycopg.connect(migrated_database) as conn:
        assert not decoding(conn)
    handle = sandbox(contacts=2000)
    report = sync(handle, migrated_database, page_size=1000, run_id="unwatched")
    assert report.counts.inserted == 2000
    # no subscriber waits behind a batch: a page of 1,000 (2,000 changes) is one transaction
    assert UNWATCHED_MAX_CHANGES >= 2000 and inserting_transactions(migrated_database) == 2
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))


def test_an_explicit_budget_holds_with_nothing_decoding(sandbox, migrated_database: str) -> None:
    handle = sandbox(contacts=2000)
    report = sync(handle, migrated_database, page_size=1000, max_changes=500, run_id="forced")
    assert report.counts.inserted == 2000
    assert inserting_transactions(migrated_database) == 8  # 250 records a transaction
