"""Parallel loaders: batches load on several connections at once and still commit in page order.

The database stage is the pipeline's bound (docs/benchmarks.md): one connection keeps one
PostgreSQL backend busy, so a second connection loads the next batch while the first one works.
What must not change with it is what a batch commit means: the cursor moves only over batches
that are all committed, so a killed run resumes without a gap. Hence:

- batches commit in the order they were handed out: a loader finishes its batch's work, then
  waits for its turn (the previous batch committed) before it moves the cursor and commits;
- batches in flight at the same time never share a record (keap_id): a batch that would is held
  back until the one it shares with has committed, so two loaders of one run never wait on each
  other's row locks (a wait that PostgreSQL could not see as part of a deadlock, since the other
  half is the commit turn here);
- the first failure stops the run: batches after it roll back instead of committing past it, the
  batches before it still commit, and the error is raised in the caller;
- the commit-turn wait is visible to PostgreSQL (db.locks): each batch transaction holds its
  turn lock, and the next batch waits on it in PostgreSQL, so a cycle through a turn (another
  run's loader, an app's transaction, a replay) is a deadlock PostgreSQL detects and breaks
  (40P01, retried) instead of a hang nobody sees (issue 15);
- a watchdog: a run whose batches in flight make no progress for `stall_seconds` is stopped
  with a message naming what its loaders wait on, its uncommitted batches roll back, and the
  cursor stays at the last committed batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import psycopg

from keap_pipeline.db.locks import describe_waits, new_run_key, take_turn_lock, wait_on_turn_lock
from keap_pipeline.errors import KeapPipelineError

log = logging.getLogger(__name__)

B = TypeVar("B")
R = TypeVar("R")


class RunAborted(Exception):
    """An earlier batch of the run failed; this one rolled back instead of committing after it."""


class TurnYielded(Exception):
    """The batch before this one restarted its transaction: roll this one back and redo it.

    A batch waiting for its turn holds its rows. When the batch it waits for had to restart
    (PostgreSQL broke a deadlock, or a lock wait timed out), the cycle may run through this
    batch's rows; giving them up lets whatever waits on them finish, so the restart succeeds.
    """


class StalledRun(KeapPipelineError):
    """No batch in flight committed within the run's stall limit; the run stopped instead of hanging."""


# how often a batch waiting for its turn looks again while the batch before it has no transaction
_TURN_POLL_SECONDS = 0.05


class CommitTurns:
    """Batch n may commit once batch n-1 has committed; none may after a failure."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._failed: BaseException | None = None
        self._attempts: dict[int, int] = {}

    def began(self, seq: int) -> None:
        """Batch `seq` began a transaction attempt."""
        with self._cond:
            self._attempts[seq] = self._attempts.get(seq, 0) + 1
            self._cond.notify_all()

    def wait(self, seq: int, on_wait: Callable[[int], None] | None = None) -> None:
        """Block until it is batch `seq`'s turn to commit.

        Args:
            seq: the batch.
            on_wait: called with the batch awaited (seq - 1), outside the lock, each time the
                turn has not come yet, to wait where PostgreSQL sees it (wait_on_turn_lock);
                between its calls this waits in Python for at most a poll interval.

        Raises:
            RunAborted: an earlier batch failed.
            TurnYielded: (with on_wait) the batch awaited restarted its transaction meanwhile.
        """
        with self._cond:
            seen = max(self._attempts.get(seq - 1, 0), 1)
            while self._next != seq and self._failed is None:
                if on_wait is not None and self._attempts.get(seq - 1, 0) > seen:
                    raise TurnYielded(f"batch {seq - 1} restarted")
                if on_wait is None:
                    self._cond.wait()
                    continue
                self._cond.release()
                try:
                    on_wait(seq - 1)
                finally:
                    self._cond.acquire()
                if self._next != seq and self._failed is None:
                    self._cond.wait(_TURN_POLL_SECONDS)
            if self._failed is not None:
                raise RunAborted(f"batch {seq} rolled back: an earlier batch failed") from self._failed

    def done(self, seq: int) -> None:
        """Batch `seq` committed (and reported): the next one may commit."""
        with self._cond:
            if seq != self._next:
                raise RuntimeError(f"batch {seq} committed out of turn (expected {self._next})")
            self._next = seq + 1
            self._attempts.pop(seq - 1, None)  # only batch seq waited on it, and seq is done
            self._cond.notify_all()

    def fail(self, err: BaseException) -> None:
        """A batch failed: no later batch commits."""
        with self._cond:
            if self._failed is None:
                self._failed = err
            self._cond.notify_all()

    @property
    def failure(self) -> BaseException | None:
        """The first failure, if any."""
        with self._cond:
            return self._failed


@dataclass
class Turn:
    """One batch's place in the commit order, handed to `load` (LoaderPool's contract).

    `load` calls `begin()` as the first statement of each transaction attempt (`resume()` in the
    first attempt of a later part, when a batch commits in parts) and the turn itself (`turn()`)
    after its writes, just before it commits. On a real connection both are
    visible to PostgreSQL: `begin` takes the batch's turn lock, and the wait holds the next
    batch in a lock wait on the previous batch's turn lock while that batch has a transaction.
    """

    seq: int
    _turns: CommitTurns
    _conn: object
    _run_key: int

    def begin(self) -> None:
        """Take this batch's turn lock in the transaction just begun."""
        self._turns.began(self.seq)
        if isinstance(self._conn, psycopg.Connection):
            take_turn_lock(self._conn, self._run_key, self.seq)

    def resume(self) -> None:
        """Take this batch's turn lock again, for the next transaction of a batch that commits in parts.

        Not a restart: the batch's earlier part committed, so the next batch, waiting for its turn,
        keeps its rows (a retried part calls `begin()`, which tells it to let go of them).
        """
        if isinstance(self._conn, psycopg.Connection):
            take_turn_lock(self._conn, self._run_key, self.seq)

    def __call__(self) -> None:
        """Wait for this batch's turn to commit.

        Raises:
            RunAborted: an earlier batch failed.
        """
        conn = self._conn
        if isinstance(conn, psycopg.Connection) and self.seq > 0:
            self._turns.wait(self.seq, lambda awaited: wait_on_turn_lock(conn, self._run_key, awaited))
        else:
            self._turns.wait(self.seq)


@dataclass
class _Job(Generic[B]):
    seq: int
    batch: B


_STOP = object()


@dataclass
class LoaderPool(Generic[B, R]):
    """`size` threads, each with its own database connection, loading batches in turn order.

    Args:
        open_connection: opens one loader's connection.
        size: how many loaders (connections).
        load: loads one batch on a connection in ONE transaction, calling the Turn it is given
            (`turn.begin()` first in each attempt, `turn()` just before committing: load_batch's
            contract); returns its outcome.
        committed: called with each batch and outcome right after its commit, in turn order
            (so it may update shared state without a lock of its own).
        stall_seconds: stop the run when batches are in flight and none committed for this
            long (0 = never); see StalledRun.
        name: what the batches are of, for messages (e.g. 'contacts').
    """

    open_connection: Callable[[], psycopg.Connection]
    size: int
    load: Callable[[psycopg.Connection, B, Turn], R]
    committed: Callable[[B, R], None]
    stall_seconds: float = 0.0
    name: str = "batches"
    _turns: CommitTurns = field(default_factory=CommitTurns, init=False)
    _run_key: int = field(default_factory=new_run_key, init=False)
    _conns: dict[str, psycopg.Connection] = field(default_factory=dict, init=False)
    _progress_at: float = field(default_factory=time.monotonic, init=False)
    _jobs: queue.Queue[object] = field(default_factory=queue.Queue, init=False)
    _state: threading.Condition = field(default_factory=threading.Condition, init=False)
    _in_flight: dict[int, frozenset[str]] = field(default_factory=dict, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _seq: int = field(default=0, init=False)
    _closed: bool = field(default=False, init=False)
    _finished: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"need at least one loader, got {self.size}")

    def __enter__(self) -> LoaderPool[B, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(raise_failure=exc[0] is None)

    def _start(self) -> None:
        # threads start with the first batch, so a run that fetches nothing opens no connection
        for i in range(self.size):
            thread = threading.Thread(target=self._run, name=f"keap-loader-{i + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.stall_seconds > 0:
            threading.Thread(target=self._watch, name="keap-loader-watchdog", daemon=True).start()

    def submit(self, batch: B, keys: Iterable[str]) -> None:
        """Hand one batch to a loader; blocks while `size` batches are in flight or one shares a key.

        Args:
            batch: the batch.
            keys: the records (keap_ids) it writes.

        Raises:
            The first failure of an earlier batch (nothing more is handed out after one).
        """
        if not self._threads:
            self._start()
        job_keys = frozenset(keys)
        with self._state:
            while self._turns.failure is None and (
                len(self._in_flight) >= self.size
                or any(not job_keys.isdisjoint(other) for other in self._in_flight.values())
            ):
                self._state.wait()
            failure = self._turns.failure
            if failure is not None:
                raise failure
            seq = self._seq
            self._seq += 1
            if not self._in_flight:
                self._progress_at = time.monotonic()  # the stall clock runs only while batches are in flight
            self._in_flight[seq] = job_keys
        self._jobs.put(_Job(seq, batch))

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    return
                assert isinstance(job, _Job)
                try:
                    if self._turns.failure is not None:
                        raise RunAborted(f"batch {job.seq} not loaded: an earlier batch failed")
                    if conn is None or conn.closed:
                        conn = self.open_connection()
                        with self._state:
                            self._conns[threading.current_thread().name] = conn
                    outcome = self.load(conn, job.batch, Turn(job.seq, self._turns, conn, self._run_key))
                    self.committed(job.batch, outcome)
                    self._turns.done(job.seq)
                    with self._state:
                        self._progress_at = time.monotonic()
                except BaseException as err:  # noqa: BLE001 - stops the run; raised in the caller
                    if not isinstance(err, RunAborted):
                        # the error itself is raised in the caller; its text may quote record values
                        log.warning("batch %s failed (%s): the batches after it roll back", job.seq, type(err).__name__)
                    self._turns.fail(err)
                finally:
                    with self._state:
                        self._in_flight.pop(job.seq, None)
                        self._state.notify_all()
        finally:
            with self._state:
                self._conns.pop(threading.current_thread().name, None)
            if conn is not None:
                conn.close()

    def _watch(self) -> None:
        """Stop the run when batches are in flight and none has committed for `stall_seconds`."""
        interval = min(1.0, self.stall_seconds / 4)
        # runs until the loaders are gone (close() waits for them with the watchdog still on)
        while not self._finished.wait(interval) and self._turns.failure is None:
            with self._state:
                stalled = bool(self._in_flight) and time.monotonic() - self._progress_at >= self.stall_seconds
                conns = dict(self._conns)
            if stalled:
                self._stop_stalled(conns)
                return

    def _stop_stalled(self, conns: dict[str, psycopg.Connection]) -> None:
        pids = {}
        for name, conn in conns.items():
            try:
                pids[name] = conn.info.backend_pid
            except psycopg.Error:
                continue
        try:
            with self.open_connection() as diag:
                waits = describe_waits(diag, list(pids.values()))
        except psycopg.Error as err:
            waits = [f"(could not ask the database what they wait on: {type(err).__name__})"]
        message = (
            f"no batch of {self.name} committed for {self.stall_seconds:.0f} s; the run is stopped: its "
            "uncommitted batches roll back and the cursor stays at the last committed batch, so the next "
            "run resumes there. What the loaders waited on: " + ("; ".join(waits) or "nothing in PostgreSQL")
            + " (a batch waiting for its commit turn waits on a lock of its own run)"
        )
        log.error("%s", message)
        self._turns.fail(StalledRun(message))
        with self._state:
            self._state.notify_all()
        for conn in conns.values():
            try:
                conn.cancel_safe(timeout=5.0)
            except (psycopg.Error, OSError):
                pass

    def close(self, *, raise_failure: bool = True) -> None:
        """Wait for every batch handed out to commit (or roll back), stop the loaders, raise the first failure."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._finished.set()
        failure = self._turns.failure
        if raise_failure and failure is not None:
            raise failure
