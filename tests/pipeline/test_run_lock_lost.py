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

import psycopg
import pytest

from keap_pipeline.db import locks
from keap_pipeline.db.locks import RUN_LOCK_CLASS, RunLockLost, entity_lock_key, run_lock
from tests.pipeline.conftest import expected_rows, sandbox_records, sync, table_rows

BOUND = 30.0  # seconds a wait may take here before the test fails (they take well under one)


def _lock_pid(url: str) -> int | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select l.pid from pg_catalog.pg_locks as l where l.locktype = 'advisory' and l.granted"
            " and l.classid::bigint = (%s::bigint & 4294967295) and l.objid::bigint = (%s::bigint & 4294967295)"
            " and l.objsubid = 2",
            (RUN_LOCK_CLASS, entity_lock_key("contacts")),
        ).fetchone()
    return int(row[0]) if row else None


def _kill_the_lock_connection(url: str) -> int:
    """Terminate the backend that holds contacts' run lock, and wait until it is gone."""
    pid = _lock_pid(url)
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
    from tests.pgbouncer import running_pgbouncer

    handle = sandbox(contacts=3000)
    with running_pgbouncer(pg_server_url, pool_size=6, settings={"idle_transaction_timeout": "1"}) as pooler:
        url = pooler.url(migrated_database)
        with caplog.at_level(logging.WARNING, logger="keap_pipeline.db.locks"):
            report = sync(handle, url, page_size=200, loaders=1, progress=_once(lambda: time.sleep(2.5)))
        assert "client_idle_transaction_timeout" in pooler.log() or "idle transaction timeout" in pooler.log()
    assert report.committed_records == 3000
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    assert "so it was taken again" in caplog.text
