"""The database side of a reconcile pass (deletions in Keap): its record, the ids it COPYs, the generated SQL calls.

A pass is a row of keap_pipeline.reconcile_passes. Its ids go into the entity's ids table
(entities.Entity.ids_staging_table) page by page, each page in its own short transaction; the
pass is judged, set-based, by keap_pipeline.reconcile_<entity>_from_stage in one transaction at
the end (sql/functions/70-entity-template.sql), and its soft deletes are applied in transactions of
at most `chunk_rows` rows each (the first in the judgement's), so that none streams more changes to
realtime subscribers than a sync batch may (docs/realtime.md). Every transaction here runs as the ingestion
(db.roles): only then is a soft delete Keap's (audited as keap, never queued back).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from keap_pipeline.db.errors import DatabaseError
from keap_pipeline.db.load import begin_load
from keap_pipeline.db.publication import stream_cost
from keap_pipeline.entities import Entity

# the statuses of a pass (reconcile_passes_status_known)
RUNNING, COMPLETED, STOPPED, CONFIRMED = "running", "completed", "stopped", "confirmed"
INTERRUPTED, FAILED, SKIPPED = "interrupted", "failed", "skipped"
# a pass whose process died is found 'running' by the next pass of its entity
ABANDONED_REASON = "the process ended before the pass completed (killed or crashed); nothing of it was deleted"
# ... or while it was applying its deletions in chunks: those committed stay, the rest is left to the next pass
ABANDONED_APPLYING = (
    "the process ended while the pass applied its deletions (killed or crashed): {deleted} of them were applied "
    "(each chunk committed whole); the rest were not, and the next pass judges them again"
)


class ReconcileError(DatabaseError):
    """A reconcile pass cannot be confirmed or applied as asked (wrong pass, wrong state, superseded)."""


@dataclass(frozen=True)
class PassStart:
    """A pass just begun: its id, the database's clock then, and the protected Keap update times.

    Attributes:
        id: the pass (reconcile_passes.id).
        started_at: rows created or written by a sync at or after this are kept.
        protect_since: rows whose Keap update time is at or after this are kept (the start less the
            clock-skew allowance: Keap's clock is not ours).
        known_rows: rows of the entity with a keap_id now (what the listing is expected to hold,
            for the quota estimate).
        abandoned: passes of the entity found still 'running' (their process died), now interrupted.
    """

    id: uuid.UUID
    started_at: datetime
    protect_since: datetime
    known_rows: int
    abandoned: int


@dataclass(frozen=True)
class Judgement:
    """What reconcile_<entity>_from_stage did (its columns).

    Attributes:
        live: rows with a keap_id and not deleted, after the restores.
        missing: live rows Keap did not list (and the pass may judge): recorded.
        deleted: of those, soft-deleted now (0 when stopped).
        restored: rows Keap deleted before and lists again, restored.
        kept_recent: live rows Keap did not list that were created, synced or updated in Keap after
            the pass started: kept.
        deleted_here_too: rows deleted locally and gone from Keap too (not reported as Keap's).
        stopped: the safety limits held the deletions back.
    """

    live: int
    missing: int
    deleted: int
    restored: int
    kept_recent: int
    deleted_here_too: int
    stopped: bool


@dataclass(frozen=True)
class PassRecord:
    """A pass as recorded (for checks, confirmations and the command line)."""

    id: uuid.UUID
    entity: str
    status: str
    started_at: datetime
    protect_since: datetime
    finished_at: datetime | None
    pages: int
    listed: int
    requests: int
    live: int | None
    missing: int | None
    deleted: int | None
    restored: int | None
    max_share: float | None
    max_count: int | None
    reason: str | None


def _table(qualified: str) -> sql.Identifier:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name)


def _function(qualified: str) -> sql.Identifier:
    return _table(qualified)


def begin_pass(
    conn: psycopg.Connection,
    entity: Entity,
    *,
    run_id: str | None,
    clock_skew: timedelta,
    max_share: float,
    max_count: int,
    lock_timeout_seconds: float,
) -> PassStart:
    """Record a new pass of `entity` and empty its ids table; passes left 'running' become interrupted.

    Call it holding the entity's reconcile lock (one pass of an entity at a time), so a 'running'
    pass found here is one whose process died.

    Args:
        conn: a connection (not in a transaction).
        entity: the entity.
        run_id: kept with the pass.
        clock_skew: how far Keap's clock may be ahead of the database's.
        max_share: the pass's share limit (kept with it).
        max_count: the pass's count limit (kept with it).
        lock_timeout_seconds: the longest wait for a lock (0 = no bound).

    Returns:
        The pass.
    """
    with conn.transaction():
        begin_load(conn, lock_timeout_seconds=lock_timeout_seconds, relaxed_commit=False)
        # a pass killed while applying its deletions in chunks has its figures (live is set) and
        # recorded ids left: its reason says what was applied, and the ids go (the next pass judges
        # those rows again from its own listing)
        abandoned_ids = [r[0] for r in conn.execute(
            "update keap_pipeline.reconcile_passes set status = %s, finished_at = now(),"
            " reason = case when live is null then %s else replace(%s, '{deleted}', coalesce(deleted, 0)::text) end"
            " where entity = %s and status = %s returning id",
            (INTERRUPTED, ABANDONED_REASON, ABANDONED_APPLYING, entity.name, RUNNING),
        ).fetchall()]
        abandoned = len(abandoned_ids)
        if abandoned_ids:
            conn.execute(
                "delete from keap_pipeline.reconcile_pending_deletions where pass_id = any(%s)", (abandoned_ids,)
            )
        conn.execute(sql.SQL("truncate {}").format(_table(entity.ids_staging_table)))
        row = conn.execute(
            "insert into keap_pipeline.reconcile_passes (entity, run_id, protect_since, max_share, max_count)"
            " values (%s, %s, now() - %s, %s, %s) returning id, started_at, protect_since",
            (entity.name, run_id, clock_skew, max_share, max_count),
        ).fetchone()
        assert row is not None
        known = conn.execute(
            sql.SQL("select count(*) from {} where keap_id is not null").format(_table(entity.target_table))
        ).fetchone()
    return PassStart(row[0], row[1], row[2], int(known[0]) if known else 0, abandoned)


def copy_ids(
    conn: psycopg.Connection,
    entity: Entity,
    pass_id: uuid.UUID,
    ids: Sequence[str],
    *,
    pages: int,
    requests: int,
) -> None:
    """COPY listed ids into the entity's ids table and note the pass's progress, in one transaction.

    The table holds the ids of the pass in progress only (begin_pass empties it; one pass of an
    entity at a time).

    Args:
        conn: a connection (not in a transaction).
        entity: the entity.
        pass_id: the pass.
        ids: Keap ids (digits, as the normalizer reads them).
        pages: pages read so far.
        requests: requests spent so far.
    """
    statement = sql.SQL("copy {} (keap_id) from stdin").format(_table(entity.ids_staging_table))
    with conn.transaction():
        begin_load(conn, lock_timeout_seconds=0, relaxed_commit=True)
        if ids:
            # ids are ASCII digits (page_ids keeps no other), so COPY's text format needs no escaping
            payload = ("\n".join(ids) + "\n").encode("ascii")
            with conn.cursor() as cur, cur.copy(statement) as copy:
                copy.write(payload)
        conn.execute(
            "update keap_pipeline.reconcile_passes set pages = %s, listed = listed + %s, requests = %s where id = %s",
            (pages, len(ids), requests, pass_id),
        )


def missing_ids(conn: psycopg.Connection, entity: Entity, start: PassStart) -> list[str]:
    """The keap_ids of the live rows the pass did not list (and may judge), without writing.

    Args:
        conn: a connection (not in a transaction).
        entity: the entity.
        start: the pass.

    Returns:
        The ids, in keap_id order.
    """
    with conn.transaction():
        begin_load(conn, lock_timeout_seconds=0, relaxed_commit=False)
        rows = conn.execute(
            sql.SQL("select k from {}(%s, %s) as m, unnest(m.keap_ids) as k order by k").format(
                _function(entity.missing_function)
            ),
            (start.started_at, start.protect_since),
        ).fetchall()
    return [r[0] for r in rows]


def judge_pass(
    conn: psycopg.Connection,
    entity: Entity,
    start: PassStart,
    *,
    max_share: float,
    max_count: int,
    pages: int,
    requests: int,
    lock_timeout_seconds: float,
    chunk_rows: int | None = None,
) -> Judgement:
    """Run the entity's reconcile function on a completed listing and record the outcome; apply its deletions in chunks.

    Restores what Keap lists again, records what it no longer lists and soft-deletes that unless
    the safety limits stop it (the pass is then 'stopped', its ids kept for a confirmation). The
    ids table is emptied in the judgement's transaction. Of the soft deletes, that transaction
    applies the first `chunk_rows`, and each further transaction the next `chunk_rows` (each
    commits whole, and moves the pass's `deleted`); the pass stays 'running' until the last
    commits, which marks it completed. Killed in between, the next pass marks it interrupted with
    what it applied (begin_pass) and judges the rest again.

    Args:
        conn: a connection (not in a transaction).
        entity: the entity.
        start: the pass (its listing complete: every page read).
        max_share: stop when more than this share of the live rows would be deleted.
        max_count: stop when more than this many rows would be deleted.
        pages: pages the pass read.
        requests: requests it spent.
        lock_timeout_seconds: the longest wait for one row lock (0 = no bound).
        chunk_rows: the most soft deletes one transaction applies (None: all in the judgement's;
            deletion_chunk gives the realtime budget's).

    Returns:
        What the function did (`deleted`: over every chunk).
    """
    _check_chunk(chunk_rows)
    with conn.transaction():
        begin_load(conn, lock_timeout_seconds=lock_timeout_seconds, relaxed_commit=False)
        row = conn.execute(
            sql.SQL("select * from {}(%s, %s, %s, %s::numeric, %s::bigint, %s::bigint)").format(
                _function(entity.reconcile_function)
            ),
            (start.id, start.started_at, start.protect_since, max_share, max_count, chunk_rows),
        ).fetchone()
        assert row is not None
        live, missing, deleted, restored, kept, here, stopped = row
        judged = Judgement(int(live), int(missing), int(deleted), int(restored), int(kept), int(here), bool(stopped))
        reason = stop_reason(entity, judged, max_share, max_count, start.id) if judged.stopped else None
        left = 0 if judged.stopped else pending_count(conn, start.id)
        status = STOPPED if judged.stopped else COMPLETED if not left else RUNNING
        conn.execute(
            "update keap_pipeline.reconcile_passes set status = %s,"
            " finished_at = case when %s then now() end, pages = %s, requests = %s,"
            " live = %s, missing = %s, deleted = %s, restored = %s, kept_recent = %s, deleted_here_too = %s,"
            " reason = %s where id = %s",
            (
                status, status != RUNNING, pages, requests, judged.live, judged.missing,
                judged.deleted, judged.restored, judged.kept_recent, judged.deleted_here_too, reason, start.id,
            ),
        )
        conn.execute(sql.SQL("truncate {}").format(_table(entity.ids_staging_table)))
    total = judged.deleted
    while left:
        with conn.transaction():
            begin_load(conn, lock_timeout_seconds=lock_timeout_seconds, relaxed_commit=False)
            applied = _apply_chunk(conn, entity, start.id, start.started_at, start.protect_since, chunk_rows)
            total += applied
            left = pending_count(conn, start.id)
            conn.execute(
                "update keap_pipeline.reconcile_passes set deleted = deleted + %s,"
                " status = case when %s then %s else status end, finished_at = case when %s then now() end"
                " where id = %s",
                (applied, not left, COMPLETED, not left, start.id),
            )
    return Judgement(
        judged.live, judged.missing, total, judged.restored, judged.kept_recent, judged.deleted_here_too, judged.stopped
    )


def deletion_chunk(conn: psycopg.Connection, entity: Entity, max_changes: int) -> int:
    """How many soft deletes one transaction may apply within `max_changes` streamed changes.

    A soft delete updates the entity's row and upserts its sync_status row: one change each where
    the table is published (db.publication.stream_cost, the same count as a sync batch's).

    Args:
        conn: a connection to the sync database (not in a transaction).
        entity: the entity.
        max_changes: the budget (pipeline.batching.DEFAULT_MAX_CHANGES, the sync's --max-changes).

    Returns:
        Rows per transaction, at least 1 (max_changes when nothing of the entity is published: the
        transactions stay short anyway).

    Raises:
        ValueError: max_changes below 1.
    """
    if max_changes < 1:
        raise ValueError(f"max_changes must be 1 or more, got {max_changes}")
    # in a transaction block of its own: a bare query would leave one open on a connection that is
    # not autocommit, and every later `with conn.transaction()` would be a savepoint inside it (one
    # transaction after all, which is what the chunks are there to avoid)
    with conn.transaction():
        per_row = stream_cost(conn, entity).per_row
    return max(1, max_changes // per_row) if per_row else max_changes


def _check_chunk(chunk_rows: int | None) -> None:
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be 1 or more (None: all at once), got {chunk_rows}")


def _apply_chunk(
    conn: psycopg.Connection, entity: Entity, pass_id: uuid.UUID, started_at: datetime, protect_since: datetime,
    chunk_rows: int | None,
) -> int:
    row = conn.execute(
        sql.SQL("select {}(%s, %s, %s, %s::bigint)").format(_function(entity.apply_deletions_function)),
        (pass_id, started_at, protect_since, chunk_rows),
    ).fetchone()
    return int(row[0]) if row else 0


def stop_reason(entity: Entity, judged: Judgement, max_share: float, max_count: int, pass_id: uuid.UUID) -> str:
    """What a stopped pass says: the figure, the limit it passed, where its ids are and how to apply them."""
    share = judged.missing / judged.live if judged.live else 0.0
    limit = f"the count limit {max_count}" if judged.missing > max_count else f"the share limit {max_share:.2%}"
    return (
        f"safety stop: would delete {judged.missing} of {judged.live} live {entity.name} ({share:.2%}), more than "
        f"{limit}; nothing deleted. Review keap_pipeline.reconcile_pending_deletions (pass_id {pass_id}) and apply "
        f"with `keap-pipeline reconcile {entity.name} --confirm {pass_id}`"
    )


def end_pass(
    conn: psycopg.Connection, entity: Entity, pass_id: uuid.UUID, status: str, reason: str, *, pages: int, requests: int
) -> None:
    """Close a pass that deletes nothing (interrupted, failed, skipped) and empty its ids table.

    Args:
        conn: a connection (rolled back first if a transaction failed).
        entity: the entity.
        pass_id: the pass.
        status: INTERRUPTED, FAILED or SKIPPED.
        reason: why (names counts and causes, never a record's values).
        pages: pages read.
        requests: requests spent.
    """
    with conn.transaction():
        begin_load(conn, lock_timeout_seconds=0, relaxed_commit=False)
        conn.execute(
            "update keap_pipeline.reconcile_passes set status = %s, reason = %s, finished_at = now(),"
            " pages = %s, requests = %s where id = %s",
            (status, reason, pages, requests, pass_id),
        )
        conn.execute(sql.SQL("truncate {}").format(_table(entity.ids_staging_table)))


def confirm_pass(
    conn: psycopg.Connection, entity: Entity, pass_id: uuid.UUID, *, lock_timeout_seconds: float,
    chunk_rows: int | None = None,
) -> int:
    """Apply the deletions a stopped pass recorded: a person has looked at them and said yes.

    Rows changed since the pass started (written by a sync, updated in Keap, deleted or restored
    here) are left alone, as the pass itself would have. They are applied `chunk_rows` per
    transaction (each commits whole and moves the pass's `deleted`); the pass stays 'stopped', its
    remaining ids recorded, until the last chunk marks it confirmed, so a confirmation that was
    killed half-way is finished by confirming again.

    Args:
        conn: a connection (not in a transaction).
        entity: the entity.
        pass_id: the stopped pass.
        lock_timeout_seconds: the longest wait for one row lock (0 = no bound).
        chunk_rows: the most soft deletes one transaction applies (None: all in one).

    Returns:
        How many rows were soft-deleted (by this call and by an earlier, interrupted one).

    Raises:
        ReconcileError: the pass is not a stopped pass of this entity, or a later pass judged the
            entity since (its record is stale: look at the latest pass instead).
    """
    _check_chunk(chunk_rows)
    while True:
        done, count = _confirm_chunk(conn, entity, pass_id, lock_timeout_seconds=lock_timeout_seconds, chunk_rows=chunk_rows)
        if done:
            return count


def _confirm_chunk(
    conn: psycopg.Connection, entity: Entity, pass_id: uuid.UUID, *, lock_timeout_seconds: float, chunk_rows: int | None
) -> tuple[bool, int]:
    """One transaction of a confirmation: the checks, one chunk; (whether the pass is now confirmed, its deleted)."""
    with conn.transaction():
        begin_load(conn, lock_timeout_seconds=lock_timeout_seconds, relaxed_commit=False)
        row = conn.execute(
            "select status, started_at, protect_since from keap_pipeline.reconcile_passes"
            " where id = %s and entity = %s for update",
            (pass_id, entity.name),
        ).fetchone()
        if row is None:
            raise ReconcileError(f"no reconcile pass {pass_id} of {entity.name}; `keap-pipeline reconcile --list` shows them")
        status, started_at, protect_since = row
        if status != STOPPED:
            raise ReconcileError(
                f"pass {pass_id} of {entity.name} is {status}, not stopped: only a pass the safety limits stopped "
                "waits for a confirmation"
            )
        later = conn.execute(
            "select count(*) from keap_pipeline.reconcile_passes"
            " where entity = %s and started_at > %s and status in (%s, %s, %s)",
            (entity.name, started_at, COMPLETED, STOPPED, CONFIRMED),
        ).fetchone()
        if later and later[0]:
            raise ReconcileError(
                f"pass {pass_id} of {entity.name} was superseded by a later pass; confirm the latest stopped pass "
                "instead (its ids are current)"
            )
        applied = _apply_chunk(conn, entity, pass_id, started_at, protect_since, chunk_rows)
        done = pending_count(conn, pass_id) == 0
        row = conn.execute(
            "update keap_pipeline.reconcile_passes set deleted = coalesce(deleted, 0) + %s"
            " where id = %s returning deleted",
            (applied, pass_id),
        ).fetchone()
        count = int(row[0]) if row else applied
        if done:
            conn.execute(
                "update keap_pipeline.reconcile_passes set status = %s, reason = coalesce(reason, '') || %s where id = %s",
                (CONFIRMED, f"; confirmed: {count} soft-deleted", pass_id),
            )
    return done, count


def pending_count(conn: psycopg.Connection, pass_id: uuid.UUID) -> int:
    """How many deletions a pass holds back for a confirmation."""
    row = conn.execute(
        "select count(*) from keap_pipeline.reconcile_pending_deletions where pass_id = %s", (pass_id,)
    ).fetchone()
    return int(row[0]) if row else 0


def recent_passes(conn: psycopg.Connection, entity: str | None = None, *, limit: int = 20) -> list[PassRecord]:
    """The latest passes, newest first (of one entity, or of all).

    Args:
        conn: any connection.
        entity: an entity name, or None for all.
        limit: at most this many.

    Returns:
        The passes.
    """
    rows = conn.execute(
        "select id, entity, status, started_at, protect_since, finished_at, pages, listed, requests, live, missing,"
        " deleted, restored, max_share, max_count, reason from keap_pipeline.reconcile_passes"
        " where %s::text is null or entity = %s order by started_at desc limit %s",
        (entity, entity, limit),
    ).fetchall()
    return [
        PassRecord(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
            float(r[13]) if r[13] is not None else None, r[14], r[15],
        )
        for r in rows
    ]


def latest_judged_pass(conn: psycopg.Connection, entity: str) -> PassRecord | None:
    """The entity's latest pass that got to an end other than skipped (what its asset check reports)."""
    for record in recent_passes(conn, entity, limit=50):
        if record.status not in (RUNNING, SKIPPED):
            return record
    return None
