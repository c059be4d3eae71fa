"""A run whose run-lock connection dies mid-run (a server restart, a pooler's or the server's idle
timeout, the network): PostgreSQL releases the lock with the connection. The run takes it again when
nobody else did, and stops before loading more when another run took it (the two would otherwise
load side by side)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from keap_pipeline.db import locks
from keap_pipeline.db.locks import RUN_LOCK_CLASS, RunLockLost, entity_lock_key, run_lock
from keap_pipeline.entities import CONTACTS
from keap_pipeline.pipeline.reconcile import (
    ReconcileSettings,
    reconcile_entity,
    reconcile_lock_name,
)
from tests.pgbouncer import running_pgbouncer
from tests.pipeline.conftest import (
    API_KEY,
    client_for,
    expected_rows,
    sandbox_records,
    scalar,
    sync,
    table_rows,
)

BOUND = 30.0  # seconds a wait may take here before the test fails (they take well under one)


def _lock_pid(url: str, name: str = "contacts") -> int | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select l.pid from pg_catalog.pg_locks as l where l.locktype = 'advisory' and l.granted"
            # this database's lock only: tests of other databases on the same server hold their own
            " and l.database = (select d.oid from pg_catalog.pg_database as d where d.datname = current_database())"
            " and l.classid::bigint = (%s::bigint & 4294967295) and l.objid::bigint = (%s::bigint & 4294967295)"
            " and l.objsubid = 2",
            (RUN_LOCK_CLASS, entity_lock_key(name)),
        ).fetchone()
    return int(row[0]) if row else None


def _kill_the_lock_connection(url: str, name: str = "contacts") -> int:
    """Terminate the backend that holds the run lock `name` (an entity's, or a reconcile's), and wait until it is gone."""
    pid = _lock_pid(url, name)
    assert pid is not None, "the run holds its lock"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_catalog.pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + BOUND
        while conn.execute("select count(*) from pg_catalog.pg_stat_activity where pid = %s", (pid,)).fetchone() != (0,):
            assert time.monotonic() < deadline, "the backend did not go"
            time.sleep(0.05)
    return pid


def _once(action: Callable[[], None]) -> Callable[[Any], None]:
    """A progress callback that runs `action` after the first committed batch only."""
    done: list[bool] = []

    def progress(_report: Any) -> None:
        if not done:
            done.append(True)
            action()

    return progress


@pytest.fixture(autouse=True)
def verify_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "VERIFY_SECONDS", 0.0)


def test_a_lost_lock_nobody_took_is_taken_again_and_the_run_ends_exact(
    sandbox, migrated_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    handle = sandbox(contacts=3000)
    killed: list[int] = []
    with caplog.at_level(logging.WARNING, logger="keap_pipeline.db.locks"):
        report = sync(handle, migrated_database, page_size=200, loaders=1,
                      progress=_once(lambda: killed.append(_kill_the_lock_connection(migrated_database))))
    assert killed
    assert report.committed_records == 3000
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    assert "the run lock's connection was lost; no other run had taken the lock, so it was taken again" in caplog.text
    assert _lock_pid(migrated_database) is None, "the lock taken again is released at the end"


def test_a_lost_lock_another_run_took_stops_the_run_and_the_next_one_ends_exact(sandbox, migrated_database: str) -> None:
    handle = sandbox(contacts=3000)
    taken = threading.Event()
    release = threading.Event()

    def other_run() -> None:
        with run_lock(migrated_database, "contacts", wait_seconds=BOUND, holder="keap-pipeline contacts the-other-run"):
            taken.set()
            release.wait(BOUND * 4)

    other = threading.Thread(target=other_run, daemon=True)

    def lose_the_lock_to_another_run() -> None:
        _kill_the_lock_connection(migrated_database)
        other.start()
        assert taken.wait(BOUND), "the other run took the lock"

    try:
        with pytest.raises(RunLockLost, match="'keap-pipeline contacts the-other-run' .* took the lock"):
            sync(handle, migrated_database, page_size=200, loaders=1, progress=_once(lose_the_lock_to_another_run))
        # it stopped: what it committed is exact, the rest waits for the next run
        committed = table_rows(migrated_database)
        expected = expected_rows(sandbox_records(handle))
        assert 0 < len(committed) < len(expected)
        assert {k: expected[k] for k in committed} == committed
    finally:
        release.set()
        other.join(BOUND)
    sync(handle, migrated_database, page_size=200)
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))


def test_a_poolers_idle_transaction_timeout_cuts_the_lock_and_the_run_takes_it_again(
    sandbox, migrated_database: str, pg_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the real thing behind docs/operations.md's warning: PgBouncer with idle_transaction_timeout
    # closes the run lock's idle transaction (and its client) while the run goes on
    handle = sandbox(contacts=3000)
    with running_pgbouncer(pg_server_url, pool_size=6, settings={"idle_transaction_timeout": "1"}) as pooler:
        url = pooler.url(migrated_database)
        with caplog.at_level(logging.WARNING, logger="keap_pipeline.db.locks"):
            report = sync(handle, url, page_size=200, loaders=1, progress=_once(lambda: time.sleep(2.5)))
        assert "client_idle_transaction_timeout" in pooler.log() or "idle transaction timeout" in pooler.log()
    assert report.committed_records == 3000
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    assert "so it was taken again" in caplog.text


def test_a_reconcile_pass_whose_lock_another_pass_took_deletes_nothing(sandbox, migrated_database: str) -> None:
    # a pass lists for long; its lock's connection dies and another pass takes the lock: judging now
    # would race the other pass's deletions, so it stops before judging (nothing deleted), and the
    # next pass does the work
    handle = sandbox(contacts=40)
    sync(handle, migrated_database, page_size=25)
    assert httpx.delete(f"{handle.base_url}/contacts/3", headers={"X-Keap-API-Key": API_KEY}).status_code == 204
    name = reconcile_lock_name(CONTACTS)
    taken = threading.Event()
    release = threading.Event()

    def other_pass() -> None:
        with run_lock(migrated_database, name, wait_seconds=BOUND, holder="keap-pipeline contacts the-other-pass"):
            taken.set()
            release.wait(BOUND * 4)

    other = threading.Thread(target=other_pass, daemon=True)

    def lose_the_lock() -> None:
        _kill_the_lock_connection(migrated_database, name)
        other.start()
        assert taken.wait(BOUND)

    settings = ReconcileSettings(page_size=7, max_share=0.2, max_count=100)
    deleted = "select count(*) from public.sync_contacts where keap_id = '3' and deleted_at is not null"
    try:
        with client_for(handle) as client, pytest.raises(RunLockLost, match="the-other-pass"):
            reconcile_entity(client, migrated_database, CONTACTS, settings, progress=_once(lose_the_lock))
        assert scalar(migrated_database, deleted) == 0
        assert scalar(migrated_database, "select status from keap_pipeline.reconcile_passes order by started_at desc limit 1") == "failed"
    finally:
        release.set()
        other.join(BOUND)
    with client_for(handle) as client:
        report = reconcile_entity(client, migrated_database, CONTACTS, settings)
    assert report.status == "completed" and report.deleted == 1
    assert scalar(migrated_database, deleted) == 1


def test_the_holder_named_is_this_databases(migrated_database: str, fresh_database: str) -> None:
    # advisory locks are per database: a run of contacts in another database of the server (another
    # project, a staging copy) holds a lock of the same key, and must not be the one a refusal names
    with (
        run_lock(fresh_database, "contacts", wait_seconds=0, holder="keap-pipeline contacts elsewhere"),
        run_lock(migrated_database, "contacts", wait_seconds=0, holder="keap-pipeline contacts here"),
    ):
        for _ in range(5):
            with pytest.raises(locks.RunLocked, match="'keap-pipeline contacts here'"):
                with run_lock(migrated_database, "contacts", wait_seconds=0, holder="keap-pipeline contacts third"):
                    pass
