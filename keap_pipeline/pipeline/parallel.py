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
  batches before it still commit, and the error is raised in the caller.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import psycopg

log = logging.getLogger(__name__)

B = TypeVar("B")
R = TypeVar("R")


class RunAborted(Exception):
    """An earlier batch of the run failed; this one rolled back instead of committing after it."""


class CommitTurns:
    """Batch n may commit once batch n-1 has committed; none may after a failure."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._failed: BaseException | None = None

    def wait(self, seq: int) -> None:
        """Block until it is batch `seq`'s turn to commit.

        Raises:
            RunAborted: an earlier batch failed.
        """
        with self._cond:
            while self._next != seq and self._failed is None:
                self._cond.wait()
            if self._failed is not None:
                raise RunAborted(f"batch {seq} rolled back: an earlier batch failed") from self._failed

    def done(self, seq: int) -> None:
        """Batch `seq` committed (and reported): the next one may commit."""
        with self._cond:
            if seq != self._next:
                raise RuntimeError(f"batch {seq} committed out of turn (expected {self._next})")
            self._next = seq + 1
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
        load: loads one batch on a connection in ONE transaction and calls the `before_commit`
            it is given just before committing (load_batch's contract); returns its outcome.
        committed: called with each batch and outcome right after its commit, in turn order
            (so it may update shared state without a lock of its own).
    """

    open_connection: Callable[[], psycopg.Connection]
    size: int
    load: Callable[[psycopg.Connection, B, Callable[[], None]], R]
    committed: Callable[[B, R], None]
    _turns: CommitTurns = field(default_factory=CommitTurns, init=False)
    _jobs: queue.Queue[object] = field(default_factory=queue.Queue, init=False)
    _state: threading.Condition = field(default_factory=threading.Condition, init=False)
    _in_flight: dict[int, frozenset[str]] = field(default_factory=dict, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _seq: int = field(default=0, init=False)
    _closed: bool = field(default=False, init=False)

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
                    outcome = self.load(conn, job.batch, functools.partial(self._turns.wait, job.seq))
                    self.committed(job.batch, outcome)
                    self._turns.done(job.seq)
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
            if conn is not None:
                conn.close()

    def close(self, *, raise_failure: bool = True) -> None:
        """Wait for every batch handed out to commit (or roll back), stop the loaders, raise the first failure."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join()
        failure = self._turns.failure
        if raise_failure and failure is not None:
            raise failure
