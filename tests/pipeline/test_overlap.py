"""Overlapping runs never hang (issue 15): the interleavings that used to deadlock invisibly, driven by events.

The choreography wraps `load_batch` (which batch is which, per run) and `load_isolating` (inside
a batch's transaction, before its upsert) to hold each batch at the point the interleaving
needs. Waiting for a state (a backend in a lock wait, a run waiting for another) polls
PostgreSQL or waits on events, bounded; nothing depends on how fast the machine is.

Every test here hung forever before the fix (the first two were run against that code: their
runs never finished within the join bound).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import keap_pipeline.pipeline.batch as batch_module
import keap_pipeline.pipeline.sync as sync_module
from keap_pipeline.db.cursors import INCREMENTAL, get_cursor
from tests.pipeline.conftest import (
    API_KEY,
    expected_rows,
    sandbox_records,
    scalar,
    sync,
    table_rows,
)

# how long a run may take here before the test calls it hung (they take about a second)
HUNG_AFTER = 60.0
# the stress tests load 100k contacts twice (their stall watchdogs fire after 60 s without a commit)
STRESS_BOUND = 600.0


def _until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _waits_on_lock(url: str, pid: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select wait_event_type from pg_stat_activity where pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


class Choreography:
    """Names the batches of each run by run and commit order (("r2", 0) ...) and holds them where a test says."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gates: dict[tuple[str, int], threading.Event] = {}  # the batch waits for this before loading
        self.written: dict[tuple[str, int], threading.Event] = {}  # set when the batch waits for its turn
        self.lock_first: dict[tuple[str, int], int] = {}  # lock its first N rows before its upsert
        self.holding: dict[tuple[str, int], threading.Event] = {}
        self.pids: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int], list[str]] = {}
        self._local = threading.local()
        original_load_batch = sync_module.load_batch
        original_isolating = batch_module.load_isolating

        def load_batch(conn: psycopg.Connection, entity: Any, records: Any, **kwargs: Any) -> Any:
            label = (kwargs["run_id"], _seq(kwargs))
            self._local.label = label
            self.pids[label] = conn.info.backend_pid
            self.keys[label] = kwargs["normalized"].frame.sort("ordinal")["keap_id"].to_list()
            gate = self.gates.get(label)
            if gate is not None:
                assert gate.wait(HUNG_AFTER), f"{label} was never released"
            written = self.written.get(label)
            if written is not None:
                key = "turn" if "turn" in kwargs else "before_commit"
                kwargs[key] = _SignallingTurn(kwargs[key], written)
            return original_load_batch(conn, entity, records, **kwargs)

        def load_isolating(conn: psycopg.Connection, entity: Any, frame: Any, *args: Any, **kwargs: Any) -> Any:
            label = getattr(self._local, "label", None)
            first = self.lock_first.pop(label, None) if label is not None else None
            if first is not None:
                keys = frame.sort("ordinal")["keap_id"].head(first).to_list()
                conn.execute("select 1 from public.sync_contacts where keap_id = any(%s) for update", (keys,))
                self.holding[label].set()
            return original_isolating(conn, entity, frame, *args, **kwargs)

        monkeypatch.setattr(sync_module, "load_batch", load_batch)
        monkeypatch.setattr(batch_module, "load_isolating", load_isolating)


def _seq(kwargs: dict[str, Any]) -> int:
    """The batch's place in its run's commit order (the code before the fix passed a partial)."""
    turn = kwargs.get("turn")
    if turn is not None:
        return int(turn.seq)
    return int(kwargs["before_commit"].args[0])


class _SignallingTurn:
    """A Turn that says when its batch has written its rows and waits for its turn."""

    def __init__(self, turn: Any, written: threading.Event) -> None:
        self._turn = turn
        self._written = written

    def begin(self) -> None:
        self._turn.begin()

    @property
    def seq(self) -> int:
        return int(self._turn.seq)

    def __call__(self) -> None:
        self._written.set()
        self._turn()


class Runs:
    """Sync runs in threads; join them with a bound, and unstick them if they hung (for cleanup)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.reports: dict[str, Any] = {}
        self.errors: dict[str, BaseException] = {}
        self.threads: dict[str, threading.Thread] = {}

    def start(self, name: str, handle: Any, **kwargs: Any) -> None:
        def run() -> None:
            try:
                self.reports[name] = sync(handle, self.url, run_id=name, **kwargs)
            except BaseException as err:  # noqa: BLE001 - asserted by the tests
                self.errors[name] = err

        self.threads[name] = threading.Thread(target=run, name=f"run-{name}", daemon=True)
        self.threads[name].start()

    def join(self, bound: float = HUNG_AFTER) -> list[str]:
        """Join every run; returns the names of those that did not finish within `bound` seconds."""
        deadline = time.monotonic() + bound
        joined: set[str] = set()
        while set(self.threads) - joined:  # a run may start another while this waits
            for name, thread in list(self.threads.items()):
                thread.join(max(0.0, deadline - time.monotonic()))
                joined.add(name)
        return [name for name, thread in self.threads.items() if thread.is_alive()]

    def unstick(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
            )
        for thread in self.threads.values():
            thread.join(10)


@pytest.fixture
def choreography(monkeypatch: pytest.MonkeyPatch) -> Choreography:
    return Choreography(monkeypatch)


@pytest.fixture
def runs(migrated_database: str) -> Iterator[Runs]:
    runs = Runs(migrated_database)
    try:
        yield runs
    finally:
        if any(t.is_alive() for t in runs.threads.values()):
            runs.unstick()


def _loaded_then_changed(sandbox: Any, url: str, contacts: int = 300) -> Any:
    """A sandbox whose contacts are all loaded, then all changed in Keap (in id order)."""
    handle = sandbox(contacts=contacts)
    sync(handle, url, page_size=100, loaders=1, run_id="initial")
    for ident in range(1, contacts + 1):
        handle.state.update_contact(ident, {"given_name": f"Changed{ident}"})
    return handle


def test_a_run_joining_a_run_mid_batch_cannot_close_a_cycle_through_its_commit_turn(
    sandbox, migrated_database: str, choreography: Choreography, runs: Runs, caplog
) -> None:
    """The interleaving of issue 15: r2's batch D has written page 2 and waits for its turn behind
    C (page 1); r1's batch A (pages 1 and 2) holds page 1's rows and wants page 2's; C wants
    page 1's. Before the fix nothing broke that cycle. Now r1 cannot load beside r2 at all: it
    waits for r2's run lock, then both end exact."""
    handle = _loaded_then_changed(sandbox, migrated_database)
    caplog.set_level(logging.INFO, logger="keap_pipeline.db.locks")
    c, d, a = ("r2", 0), ("r2", 1), ("r1", 0)
    choreography.gates[c] = threading.Event()
    choreography.written[d] = threading.Event()
    choreography.lock_first[a] = 100
    choreography.holding[a] = threading.Event()

    runs.start("r2", handle, page_size=100, pages_per_batch=1, max_pages_per_batch=1, loaders=2)
    assert choreography.written[d].wait(30), "D wrote page 2 and waits for its turn"
    runs.start("r1", handle, page_size=100, pages_per_batch=2, max_pages_per_batch=2, loaders=2)

    def r1_waits_for_r2() -> bool:
        return any("waiting up to" in r.getMessage() for r in caplog.records)

    _until(lambda: choreography.holding[a].is_set() or r1_waits_for_r2(), "r1 to hold page 1 or wait for r2")
    if choreography.holding[a].is_set():  # the code before the fix: A goes on to wait on D's rows
        _until(lambda: _waits_on_lock(migrated_database, choreography.pids[a]), "A to wait on D's rows")
    choreography.gates[c].set()  # C now wants page 1 (held by A, if A got that far)

    assert runs.join() == [], "a run hung"
    assert runs.errors == {}
    assert runs.reports["r1"].waited_for_lock_seconds > 0, "r1 waited for r2's run lock"
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    assert scalar(migrated_database, "select count(*) from public.sync_contacts") == 300


def test_an_app_transaction_cannot_close_a_cycle_through_a_commit_turn_either(
    sandbox, migrated_database: str, choreography: Choreography, runs: Runs
) -> None:
    """One run, and an app's transaction in the role of the other run: the app holds a page-1 row
    and waits on a page-2 row that D wrote (D waits for its turn behind C); C wants the app's row.
    The run lock cannot help here; the turn wait is a lock wait PostgreSQL sees, so it detects
    the deadlock, and the run ends exact whichever transaction it picked."""
    handle = _loaded_then_changed(sandbox, migrated_database)
    c, d = ("r", 0), ("r", 1)
    choreography.gates[c] = threading.Event()
    choreography.written[d] = threading.Event()
    runs.start("r", handle, page_size=100, pages_per_batch=1, max_pages_per_batch=1, loaders=2)
    assert choreography.written[d].wait(30), "D wrote page 2 and waits for its turn"
    page1_key, page2_key = choreography.keys[c][0], choreography.keys[d][50]

    app = psycopg.connect(migrated_database)
    app_result: dict[str, Any] = {}

    def app_transaction() -> None:
        try:
            app.execute("update public.sync_contacts set company = 'app' where keap_id = %s", (page1_key,))
            app.execute("update public.sync_contacts set company = 'app' where keap_id = %s", (page2_key,))
            app_result["done"] = True
        except psycopg.Error as err:
            app_result["error"] = err
        finally:
            app.rollback()  # the app's edits are not the point: the table must end as Keap has it

    app_thread = threading.Thread(target=app_transaction, daemon=True)
    try:
        app_thread.start()
        _until(lambda: _waits_on_lock(migrated_database, app.info.backend_pid), f"the app to wait on D's row ({app_result}) {_activity(migrated_database)}")
        choreography.gates[c].set()  # C wants the app's page-1 row: the cycle is closed
        assert runs.join() == [], "the run hung"
        app_thread.join(HUNG_AFTER)
        assert not app_thread.is_alive(), "the app's transaction hung"
    finally:
        app.close()
    assert runs.errors == {}
    if "error" in app_result:
        assert isinstance(app_result["error"], psycopg.errors.DeadlockDetected)
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))


def test_a_row_held_by_someone_else_times_out_retries_and_then_fails_the_run_with_the_cursor_exact(
    sandbox, migrated_database: str
) -> None:
    """A transaction that holds a contact's row and never ends: each attempt gives up after the
    lock timeout, and after the last one the run fails with what to do; nothing after the last
    committed batch is written, so a later run (the row free again) loads the rest."""
    from keap_pipeline.pipeline.retries import LockWaitsExhausted

    handle = _loaded_then_changed(sandbox, migrated_database, contacts=200)
    before = _incremental_cursor(migrated_database)
    holder = psycopg.connect(migrated_database)
    try:
        holder.execute("select 1 from public.sync_contacts where keap_id = '150' for update")
        with pytest.raises(LockWaitsExhausted, match="waited more than 0.2 s"):
            sync(handle, migrated_database, page_size=100, loaders=2, lock_timeout_seconds=0.2, run_id="blocked")
        cursor = _incremental_cursor(migrated_database)
        changed_first_page = scalar(
            migrated_database, "select count(*) from public.sync_contacts where first_name like 'Changed%%'"
        )
    finally:
        holder.close()
    assert cursor is not None and before is not None and cursor >= before
    assert changed_first_page in (0, 100), "whole batches only"
    sync(handle, migrated_database, page_size=100, loaders=2, run_id="after")
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))


def test_a_stalled_run_stops_with_what_it_waits_on_instead_of_hanging(sandbox, migrated_database: str) -> None:
    """With no lock timeout, a batch blocked on a row that an idle transaction holds: the
    watchdog stops the run, naming the wait and the holder, and the cursor is unchanged."""
    from keap_pipeline.pipeline.parallel import StalledRun

    handle = _loaded_then_changed(sandbox, migrated_database, contacts=200)
    before = _incremental_cursor(migrated_database)
    holder = psycopg.connect(migrated_database, application_name="someone's psql")
    try:
        holder.execute("select 1 from public.sync_contacts where keap_id = '50' for update")
        with pytest.raises(StalledRun) as raised:
            sync(
                handle, migrated_database, page_size=100, loaders=2, lock_timeout_seconds=0, stall_seconds=2,
                run_id="stalled",
            )
        assert _incremental_cursor(migrated_database) == before
    finally:
        holder.close()
    message = str(raised.value)
    assert "no batch of contacts committed for 2 s" in message
    assert "Lock/transactionid" in message and "someone's psql" in message and "idle in transaction" in message
    assert "@" not in message  # no e-mail address (or other record value) in it
    sync(handle, migrated_database, page_size=100, loaders=2, run_id="after")
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))


def _activity(url: str) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("select pid, application_name, state, wait_event_type, wait_event, left(query, 60) from pg_stat_activity where datname = current_database()").fetchall()


def _incremental_cursor(url: str) -> Any:
    with psycopg.connect(url) as conn:
        cursor = get_cursor(conn, "contacts", INCREMENTAL)
    return cursor.value if cursor else None


@contextlib.contextmanager
def _no_run_lock(*args: Any, **kwargs: Any) -> Iterator[Any]:
    """A run that holds no run lock and never finds out (the worst case of a lock connection a pooler
    or an operator killed: RunLock.verify normally notices before the next batch)."""
    yield types.SimpleNamespace(waited_seconds=0.0, verify=lambda: None)


@pytest.mark.parametrize(
    ("join_after", "second_holds_lock"),
    [(1, True), (40_000, True), (90_000, True), (1, False), (50_000, False)],
    ids=["join-at-start", "join-at-40k", "join-at-90k", "no-lock-join-at-start", "no-lock-join-at-50k"],
)
def test_stress_two_first_loads_of_100k_contacts_end_exact_wherever_the_second_joins(
    sandbox, migrated_database: str, monkeypatch: pytest.MonkeyPatch, join_after: int, second_holds_lock: bool
) -> None:
    """Two full first loads of the same 100,000 contacts, the second started once the first has
    seen `join_after` records. With the run lock the second waits; without it (its lock lost) the
    two load side by side, and every cycle they form is one PostgreSQL breaks. Both end; the
    tables equal the sandbox."""
    handle = sandbox(contacts=100_000)
    runs = Runs(migrated_database)
    joined = threading.Event()
    if not second_holds_lock:
        real_lock = sync_module.run_lock

        def lock_for(url: str, entity: str, **kwargs: Any) -> Any:
            if kwargs["holder"].endswith(" second"):
                return _no_run_lock()
            return real_lock(url, entity, **kwargs)

        monkeypatch.setattr(sync_module, "run_lock", lock_for)

    commits: list[str] = []  # which run committed each batch, in commit order

    def progress(report: Any) -> None:
        commits.append("first")
        if report.records_seen >= join_after and not joined.is_set():
            joined.set()
            runs.start("second", handle, page_size=1000, loaders=2, stall_seconds=60,
                       progress=lambda _: commits.append("second"))

    try:
        runs.start("first", handle, page_size=1000, loaders=2, stall_seconds=60, progress=progress)
        assert joined.wait(HUNG_AFTER), "the first run made progress"
        assert runs.join(STRESS_BOUND) == [], "a run hung"
    finally:
        if any(t.is_alive() for t in runs.threads.values()):
            runs.unstick()
    assert runs.errors == {}
    inserted = runs.reports["first"].counts.inserted + runs.reports["second"].counts.inserted
    assert inserted == 100_000
    if not second_holds_lock and join_after == 1:
        # the runs loaded side by side (else this proves nothing): the second committed batches while
        # the first still had batches to commit. Whether they also met on a row (a retry, logged at
        # INFO: 34 and 14 in two runs of this test) depends on scheduling, so it is not asserted.
        assert "second" in commits and commits.index("second") < len(commits) - 1 - commits[::-1].index("first")
    if second_holds_lock:
        assert runs.reports["second"].waited_for_lock_seconds > 0 or join_after > 90_000
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    assert scalar(migrated_database, "select count(*) from public.sync_status") == 100_000
    assert scalar(migrated_database, "select count(*) from keap_pipeline.dead_letters") == 0


def test_stress_a_dead_letter_replay_racing_a_sync_ends_exact(sandbox, migrated_database: str) -> None:
    """Dead letters replayed while a sync of 30,000 changed contacts runs: the replay waits for the
    sync's run lock (or the sync for the replay's), both end, every letter is replayed, the table
    equals the sandbox."""
    from keap_pipeline.pipeline.replay import replay_dead_letters

    handle = sandbox(contacts=30_000)
    refused = list(range(7, 30_000, 600))  # 50 contacts in every part of the timeline
    for ident in refused:
        handle.state.update_contact(ident, {"company": {"company_name": "Refused Ltd"}})
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            "alter table public.sync_contacts add constraint test_refused_company"
            " check (company is distinct from 'Refused Ltd')"
        )
    first = sync(handle, migrated_database, page_size=1000, loaders=2, run_id="first")
    assert first.dead_lettered == len(refused)
    with psycopg.connect(migrated_database) as conn:
        conn.execute("alter table public.sync_contacts drop constraint test_refused_company")
    for ident in range(2, 30_001, 2):  # half the contacts change in Keap, none of the refused (odd) ones
        handle.state.update_contact(ident, {"given_name": f"Changed{ident}"})

    runs = Runs(migrated_database)
    replayed: dict[str, Any] = {}

    def progress(report: Any) -> None:
        if report.batches == 2 and "started" not in replayed:
            replayed["started"] = True

            def replay() -> None:
                try:
                    replayed["report"] = replay_dead_letters(migrated_database, "contacts")
                except BaseException as err:  # noqa: BLE001 - asserted below
                    replayed["error"] = err

            thread = threading.Thread(target=replay, daemon=True)
            runs.threads["replay"] = thread
            thread.start()

    try:
        runs.start("sync", handle, page_size=500, loaders=2, stall_seconds=60, progress=progress)
        assert runs.join(STRESS_BOUND) == [], "the sync or the replay hung"
    finally:
        if any(t.is_alive() for t in runs.threads.values()):
            runs.unstick()
    assert runs.errors == {} and "error" not in replayed, replayed.get("error")
    report = replayed["report"]
    assert report.still_failing == []
    # the replay loads each letter the sync did not close first (the sync re-reads the record at its
    # cursor, which may be a refused one: it loads now and closes its letter itself)
    closed_by_sync = scalar(
        migrated_database,
        "select count(*) from keap_pipeline.dead_letters where status = 'replayed' and not (id = any(%s))",
        (report.replayed,),
    )
    assert len(report.replayed) + closed_by_sync == len(refused) and len(report.replayed) >= len(refused) - 1
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    assert scalar(migrated_database, "select count(*) from keap_pipeline.dead_letters where status = 'open'") == 0


def _cli(*args: str, url: str, base_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEAP_API_KEY": API_KEY}
    env.pop("KEAP_PIPELINE_DATABASE_URL", None)
    extra = ["--base-url", base_url, "--no-pacing"] if base_url else []
    return subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "keap_pipeline.cli", *args, *extra, "--database-url", url],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_a_cli_run_beside_another_run_waits_for_it_or_exits_75_naming_it(sandbox, migrated_database: str) -> None:
    """What a user sees when `keap-pipeline sync` meets a run in progress (here: a Dagster run's
    lock, held by the test): with --wait 0 it exits 75 at once naming the holder; with a wait it
    says it waits and loads once the other run ends. A replay meets the same lock."""
    from keap_pipeline.db.locks import run_lock

    handle = sandbox(contacts=300)
    with run_lock(migrated_database, "contacts", wait_seconds=0, holder="keap-pipeline contacts 3f2a-dagster-run"):
        refused = _cli("sync", "contacts", "--wait", "0", url=migrated_database, base_url=handle.base_url)
        replay = _cli("dead-letters", "replay", "--wait", "0", url=migrated_database)
    assert refused.returncode == 75, refused.stderr
    assert "another contacts run is in progress: 'keap-pipeline contacts 3f2a-dagster-run' (backend pid" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert scalar(migrated_database, "select count(*) from public.sync_contacts") == 0
    assert replay.returncode == 75 and "another contacts run is in progress" in replay.stderr

    released = threading.Event()
    holding = threading.Event()

    def hold_briefly() -> None:
        with run_lock(migrated_database, "contacts", wait_seconds=0, holder="keap-pipeline contacts other"):
            holding.set()
            released.wait(30)

    holder = threading.Thread(target=hold_briefly, daemon=True)
    holder.start()
    assert holding.wait(30)  # the holder has the lock before the CLI starts (a loaded machine can take a while)
    # the other run ends once the CLI has said that it waits (not after a fixed time: starting the
    # CLI can take seconds on a loaded machine, and it must not find the lock free already)
    env = {**os.environ, "KEAP_API_KEY": API_KEY}
    env.pop("KEAP_PIPELINE_DATABASE_URL", None)
    proc = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "keap_pipeline.cli", "sync", "contacts", "--wait", "60", "--base-url", handle.base_url,
         "--no-pacing", "--database-url", migrated_database],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    released.set()
    out, err = proc.communicate(timeout=120)
    waited = subprocess.CompletedProcess(proc.args, proc.returncode, first + out, err)
    holder.join()
    assert waited.returncode == 0, waited.stderr
    assert "another contacts run is in progress: 'keap-pipeline contacts other'" in first
    assert "waited" in waited.stdout and "for another run" in waited.stdout
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
