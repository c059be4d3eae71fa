"""Locks PostgreSQL can see: one run per entity at a time, commit turns as lock waits, bounded row-lock waits.

Why these exist (issue 15): a parallel loader that has written its batch waits for its commit
turn (the batch before it must commit first). Done in Python alone, that wait is invisible to
PostgreSQL, so a cycle through it (run 1's loader waits on run 2's rows, run 2's later batch
waits for its turn behind its earlier batch, which waits on run 1's rows) is a deadlock that
nothing breaks. Here:

- a whole run of an entity holds that entity's *run lock* (a transaction-level advisory lock
  on a connection of its own), so two runs of one entity never load side by side: the second
  waits for it, bounded, or stops with a message naming the holder;
- each batch transaction holds its *turn lock* (run key, batch number) from its first statement
  to its end, and a batch waiting for its turn waits on that lock in PostgreSQL: any cycle
  through a commit turn (with an app's transaction, a replay, anything) is one PostgreSQL's
  deadlock detector sees and breaks (40P01, which a batch retries);
- loader transactions carry a lock_timeout (db.load.begin_load), so a row-lock wait nobody
  foresaw ends in an error the batch retries instead of a hang.

Every lock is transaction-scoped or taken and released inside one transaction, so all of this
works through transaction-mode poolers (Supavisor, PgBouncer) as well as on direct connections.
"""

from __future__ import annotations

import logging
import secrets
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from keap_pipeline.db.connect import connect
from keap_pipeline.errors import KeapPipelineError

log = logging.getLogger(__name__)

# advisory-lock namespaces (the first int4 of the two-key form): "kprn" for run locks; a run's
# turn locks use a random key of their own that is never this one
RUN_LOCK_CLASS = 0x6B70_726E
_POLL_SECONDS = 0.5
# how often a run looks that it still holds its run lock (RunLock.verify): a query on the lock's
# connection, at most this often
VERIFY_SECONDS = 5.0


class RunLocked(KeapPipelineError):
    """Another run of the same entity holds its run lock, and it was not released within the wait."""


class RunLockLost(RunLocked):
    """The run lock's connection was lost during the run, and another run took the lock before it could be taken again."""


def entity_lock_key(entity: str) -> int:
    """The run lock's second key of an entity: a stable signed 32-bit number of its name."""
    value = zlib.crc32(entity.encode("utf-8"))
    return value - (1 << 32) if value >= (1 << 31) else value


# pg_locks rows (alias l) of an entity's granted run lock in this database (advisory locks are per
# database: another database's run of the same entity is not this one's); params: class, entity key
_HELD_RUN_LOCK = sql.SQL(
    "l.locktype = 'advisory' and l.granted"
    " and l.database = (select d.oid from pg_catalog.pg_database as d where d.datname = pg_catalog.current_database())"
    " and l.classid::bigint = (%s::bigint & 4294967295) and l.objid::bigint = (%s::bigint & 4294967295)"
    " and l.objsubid = 2"
)


def holder_of_run_lock(conn: psycopg.Connection, entity: str) -> str | None:
    """Who holds `entity`'s run lock: its application name, backend pid and how long it has held it.

    Returns:
        A description for messages (no values of any record), or None when nobody holds it.
    """
    row = conn.execute(
        sql.SQL(
            "select a.pid, coalesce(nullif(a.application_name, ''), '?'), a.xact_start,"
            " extract(epoch from now() - a.xact_start)::bigint"
            " from pg_catalog.pg_locks l"
            " left join pg_catalog.pg_stat_activity a on a.pid = l.pid"
            " where {} and l.pid is distinct from pg_catalog.pg_backend_pid()"
        ).format(_HELD_RUN_LOCK),
        (RUN_LOCK_CLASS, entity_lock_key(entity)),
    ).fetchone()
    if row is None:
        return None
    pid, app, started, seconds = row
    since = f" since {started.isoformat(timespec='seconds')} ({seconds} s)" if started is not None else ""
    return f"'{app}' (backend pid {pid}){since}"


def _hold(conn: psycopg.Connection, entity: str) -> bool:
    """Try to take `entity`'s run lock in conn's (idle, timeout-free) transaction."""
    # an idle transaction is how the lock is held: a server-wide idle-in-transaction timeout
    # must not end it (it would release the lock under a running run)
    conn.execute("select pg_catalog.set_config('idle_in_transaction_session_timeout', '0', true)")
    row = conn.execute(
        "select pg_catalog.pg_try_advisory_xact_lock(%s, %s)", (RUN_LOCK_CLASS, entity_lock_key(entity))
    ).fetchone()
    return bool(row and row[0])


@dataclass
class RunLock:
    """A held run lock: the connection that holds it, and how long the run waited for it."""

    entity: str
    waited_seconds: float
    conn: psycopg.Connection
    database_url: str = ""
    holder: str = ""
    verified_at: float = 0.0

    def verify(self, every_seconds: float | None = None) -> None:
        """Make sure the lock is still held; take it again if its connection was lost and nobody took it.

        The lock lives as long as its connection: a server restart, a pooler's or the server's
        idle timeout or the network ends it, and PostgreSQL releases the lock with it. A run that
        went on regardless would load beside the next run that takes the lock. Looks at most once
        per `every_seconds` (VERIFY_SECONDS): one query on the lock's connection.

        Raises:
            RunLockLost: the connection was lost and another run holds the lock now. What this
                run committed stands, cursor included; it must stop before loading more.
        """
        now = time.monotonic()
        if now - self.verified_at < (VERIFY_SECONDS if every_seconds is None else every_seconds):
            return
        self.verified_at = now
        try:
            row = self.conn.execute(
                sql.SQL(
                    "select exists (select from pg_catalog.pg_locks as l where {} and l.pid = pg_catalog.pg_backend_pid())"
                ).format(_HELD_RUN_LOCK),
                (RUN_LOCK_CLASS, entity_lock_key(self.entity)),
            ).fetchone()
            if row and row[0]:
                return
        except psycopg.Error:
            pass  # the connection is gone (or its transaction broken): take the lock again below
        try:
            self.conn.close()  # whatever it still held goes with it
        except psycopg.Error:  # pragma: no cover - closing a dead connection
            pass
        conn = connect(self.database_url, application_name=self.holder[:63])
        try:
            if _hold(conn, self.entity):
                self.conn, conn = conn, self.conn
                log.warning(
                    "%s: the run lock's connection was lost; no other run had taken the lock, so it was taken again",
                    self.entity,
                )
                return
            other = holder_of_run_lock(conn, self.entity) or "another run"
        finally:
            if conn is not self.conn:
                conn.close()
        raise RunLockLost(
            f"the {self.entity} run lock's connection was lost during the run, and {other} took the lock: "
            f"this run stopped so that two runs do not load side by side. What it committed stands, cursor "
            f"included; the other run goes on from there."
        )


@contextmanager
def run_lock(
    database_url: str,
    entity: str,
    *,
    wait_seconds: float,
    holder: str,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[RunLock]:
    """Hold `entity`'s run lock for the block: at most one run (sync, replay) of an entity at a time.

    The lock is a transaction-level advisory lock on a connection of its own, kept in an open,
    idle transaction that holds no snapshot and no transaction id (it does not hold back VACUUM)
    and survives transaction-mode poolers. If its connection dies, PostgreSQL releases it.

    Args:
        database_url: the sync database.
        entity: e.g. 'contacts'.
        wait_seconds: how long to wait for another run to finish; 0 = not at all.
        holder: this run, as pg_stat_activity shows it to the next one (application_name);
            no secrets, no record values.
        on_wait: told once, with the holder's description, when this run has to wait (without
            one, that is logged at INFO).

    Yields:
        The held lock (with how long it waited).

    Raises:
        RunLocked: another run kept the lock for longer than `wait_seconds`.
    """
    conn = connect(database_url, application_name=holder[:63])
    lock: RunLock | None = None
    try:
        started = time.monotonic()
        told = False
        while True:
            if _hold(conn, entity):
                break
            conn.rollback()
            other = holder_of_run_lock(conn, entity) or "another run (it has just finished or is not visible to this role)"
            waited = time.monotonic() - started
            if waited >= wait_seconds:
                raise RunLocked(
                    f"another {entity} run is in progress: {other}. It loads what this run would; "
                    f"run again after it ends" + (f" (waited {waited:.0f} s)" if wait_seconds else "")
                    + ", or allow a longer wait (`--wait SECONDS`, or the asset's `lock_wait_seconds`)."
                )
            if not told:
                told = True
                if on_wait is not None:
                    on_wait(other)  # the caller tells its user (the CLI prints, Dagster logs): not twice
                else:
                    log.info("%s: waiting up to %.0f s for %s to finish", entity, wait_seconds, other)
            time.sleep(min(_POLL_SECONDS, max(0.0, wait_seconds - waited)))
        lock = RunLock(
            entity=entity, waited_seconds=time.monotonic() - started, conn=conn, database_url=database_url,
            holder=holder, verified_at=time.monotonic(),
        )
        yield lock
    finally:
        held = lock.conn if lock is not None else conn
        try:
            if not held.closed:
                held.rollback()
        finally:
            held.close()
            if held is not conn:
                conn.close()


def new_run_key() -> int:
    """A random first key for one run's turn locks (signed 32 bits, never the run-lock class)."""
    while True:
        key = secrets.randbits(32) - (1 << 31)
        if key != RUN_LOCK_CLASS:
            return key


def take_turn_lock(conn: psycopg.Connection, run_key: int, seq: int) -> None:
    """First statement of batch `seq`'s transaction: hold its turn lock until it commits or rolls back."""
    conn.execute("select pg_catalog.pg_advisory_xact_lock(%s, %s)", (run_key, seq))


def wait_on_turn_lock(conn: psycopg.Connection, run_key: int, seq: int) -> None:
    """Wait, inside this transaction and visibly to PostgreSQL, until batch `seq`'s transaction ends.

    Returns at once when batch `seq` has no transaction open (it has not begun, is between two
    attempts, or is done): then it holds no row locks either, so the wait that follows in Python
    can be part of no cycle. The shared lock is released again at once.
    """
    conn.execute(
        "select pg_catalog.pg_advisory_unlock_shared(%s, %s)"
        " from (select pg_catalog.pg_advisory_lock_shared(%s, %s) offset 0) as waited",
        (run_key, seq, run_key, seq),
    )


def describe_waits(conn: psycopg.Connection, pids: Sequence[int]) -> list[str]:
    """What each of these backends is doing and waiting on, and who blocks it (no query texts, no values).

    Args:
        conn: any connection to the database (not one of `pids`).
        pids: backend pids of the loaders.

    Returns:
        One line per backend found.
    """
    rows = conn.execute(
        "select a.pid, a.state, a.wait_event_type, a.wait_event,"
        " extract(epoch from now() - a.state_change)::bigint,"
        " (select pg_catalog.string_agg(format('pid %%s (%%s, %%s)', b.pid, coalesce(nullif(b.application_name, ''), '?'), b.state), '; ')"
        "    from pg_catalog.pg_stat_activity b where b.pid = any(pg_catalog.pg_blocking_pids(a.pid)))"
        " from pg_catalog.pg_stat_activity a where a.pid = any(%s) order by a.pid",
        (list(pids),),
    ).fetchall()
    out = []
    for pid, state, wait_type, wait_event, seconds, blockers in rows:
        waiting = f"waiting on {wait_type}/{wait_event}" if wait_type else "not waiting in PostgreSQL"
        line = f"backend {pid}: {state or '?'} for {seconds} s, {waiting}"
        if blockers:
            line += f", blocked by {blockers}"
        out.append(line)
    return out
