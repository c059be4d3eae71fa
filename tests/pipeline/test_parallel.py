"""Parallel loaders: batches load side by side and commit in page order; runs side by side stay exact."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from keap_pipeline.db.cursors import INCREMENTAL, get_cursor
from keap_pipeline.entities import CONTACTS
from keap_pipeline.pipeline.parallel import CommitTurns, LoaderPool, RunAborted
from tests.pipeline.conftest import expected_rows, sandbox_records, scalar, sync, table_rows


class _Conn:
    """Stands in for a connection in the pool's own tests (their load functions never use it)."""

    closed = False

    def close(self) -> None:
        self.closed = True


def _pool(load: Callable[[Any, Any, Callable[[], None]], Any], size: int, log: list[Any]) -> LoaderPool[Any, Any]:
    def committed(batch: Any, outcome: Any) -> None:
        log.append(("committed", batch))

    return LoaderPool(open_connection=_Conn, size=size, load=load, committed=committed)  # type: ignore[arg-type]


def test_batches_commit_in_the_order_they_were_handed_out_even_when_later_ones_finish_first() -> None:
    log: list[Any] = []
    finished: list[int] = []

    def load(conn: Any, batch: int, before_commit: Callable[[], None]) -> int:
        time.sleep(0.05 if batch % 3 == 0 else 0.0)  # every third batch is slow
        finished.append(batch)
        before_commit()
        log.append(("commit", batch))
        return batch

    with _pool(load, 3, log) as pool:
        for batch in range(12):
            pool.submit(batch, [f"k{batch}"])
    assert [b for what, b in log if what == "commit"] == list(range(12))
    assert [b for what, b in log if what == "committed"] == list(range(12))
    assert finished != sorted(finished), "later batches did finish first: the order came from the turns"


def test_batches_that_share_a_record_are_never_in_flight_together() -> None:
    in_flight: set[str] = set()
    overlaps: list[str] = []
    lock = threading.Lock()

    def load(conn: Any, batch: tuple[int, list[str]], before_commit: Callable[[], None]) -> None:
        with lock:
            overlaps.extend(k for k in batch[1] if k in in_flight)
            in_flight.update(batch[1])
        time.sleep(0.01)
        before_commit()
        with lock:
            in_flight.difference_update(batch[1])

    with _pool(load, 4, []) as pool:
        for n in range(20):
            keys = [f"k{n}", f"k{n + 1}"]  # each batch shares a record with the one before
            pool.submit((n, keys), keys)
    assert overlaps == []


def test_a_failed_batch_stops_the_run_earlier_batches_commit_later_ones_roll_back() -> None:
    committed: list[int] = []
    rolled_back: list[int] = []

    def load(conn: Any, batch: int, before_commit: Callable[[], None]) -> int:
        if batch == 3:
            time.sleep(0.05)  # let later batches reach their turn and wait
            raise ValueError("batch 3 is bad")
        try:
            before_commit()
        except RunAborted:
            rolled_back.append(batch)
            raise
        committed.append(batch)
        return batch

    pool = _pool(load, 3, [])
    with pytest.raises(ValueError, match="batch 3 is bad"):
        with pool:
            for batch in range(10):
                pool.submit(batch, [str(batch)])
    assert committed == [0, 1, 2], "the batches before it committed, none after it"
    # the batches in flight beside it (4 and 5, unless the machine was too slow to start them before
    # it failed) waited for their turn and rolled back
    assert all(batch > 3 for batch in rolled_back)


def test_commit_turns_refuse_a_commit_out_of_turn() -> None:
    turns = CommitTurns()
    with pytest.raises(RuntimeError, match="out of turn"):
        turns.done(1)


@pytest.mark.parametrize("loaders", [1, 3])
def test_any_number_of_loaders_loads_exactly_the_sandbox(sandbox, migrated_database: str, loaders: int) -> None:
    handle = sandbox(contacts=1200)
    report = sync(handle, migrated_database, page_size=100, max_pages_per_batch=1, loaders=loaders, run_id="par")
    assert report.counts.inserted == 1200 and report.batches == 12
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    with psycopg.connect(migrated_database) as conn:
        cursor = get_cursor(conn, "contacts", INCREMENTAL)
    assert cursor is not None and cursor.value == report.cursor
    assert scalar(migrated_database, "select count(*) from public.sync_audit_log") == 1200
    assert scalar(migrated_database, "select count(*) from public.sync_status") == 1200


def test_two_runs_over_the_same_contacts_at_once_end_exact(sandbox, migrated_database: str) -> None:
    """Two runs of contacts started at the same moment: one loads, the other waits for its run
    lock (db.locks) and then finds nothing left to write; the tables end exact (issue 15: runs
    that loaded side by side could close a cycle through a commit turn and hang)."""
    handle = sandbox(contacts=2000)
    reports: dict[str, Any] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(name: str) -> None:
        start.wait()
        try:
            reports[name] = sync(
                handle, migrated_database, page_size=100, max_pages_per_batch=1, loaders=2, run_id=name,
                scope=f"window:{name}",
            )
        except BaseException as err:  # noqa: BLE001 - asserted below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    waited = sorted(r.waited_for_lock_seconds for r in reports.values())
    assert waited[0] < 0.1 < waited[1], "one run waited for the other"
    assert reports["a"].dead_lettered == reports["b"].dead_lettered == 0
    inserted = reports["a"].counts.inserted + reports["b"].counts.inserted
    assert inserted == 2000, "each contact inserted once, by one run or the other"
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    assert scalar(migrated_database, "select count(*) from public.sync_audit_log") == 2000
    assert scalar(migrated_database, "select count(*) from public.sync_status") == 2000
    assert scalar(migrated_database, "select count(*) from keap_pipeline.dead_letters") == 0


def test_a_record_refused_in_a_batch_of_several_pages_keeps_its_own_raw_record(sandbox, migrated_database: str) -> None:
    handle = sandbox(contacts=400)
    state = handle.state
    for ident in (150, 250, 399):  # pages 2, 3 and 4 of batches of three pages of 100
        state.update_contact(ident, {"company": {"company_name": "Refused Ltd"}})
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            "alter table public.sync_contacts add constraint test_refused_company"
            " check (company is distinct from 'Refused Ltd')"
        )
    report = sync(handle, migrated_database, page_size=100, pages_per_batch=3, max_pages_per_batch=3)
    assert report.batches == 2 and report.dead_lettered == 3
    with psycopg.connect(migrated_database) as conn:
        letters = dict(conn.execute("select keap_id, record_json from keap_pipeline.dead_letters").fetchall())
    assert set(letters) == {"150", "250", "399"}
    for keap_id, record in letters.items():
        served = {k: v for k, v in state.contact(int(keap_id)).items() if k in CONTACTS.fields}
        assert json.loads(record) == served, "the raw record as Keap served it, whole, from its own page"
