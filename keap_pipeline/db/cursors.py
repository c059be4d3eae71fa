"""Sync cursors: where each entity's sync got to, stored beside the data and advanced in the load's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

INCREMENTAL = "incremental"


def window_scope(start: datetime, end: datetime) -> str:
    """The cursor scope of a backfill window, e.g. 'window:2024-01-01T00:00:00+00:00/2024-02-01T00:00:00+00:00'."""
    return f"window:{start.isoformat()}/{end.isoformat()}"


@dataclass(frozen=True)
class Cursor:
    """Everything Keap updated before `value` is loaded for (entity, scope)."""

    entity: str
    scope: str
    value: datetime
    records_total: int
    updated_at: datetime
    # entities paged by id (CursorKind.ID): the last id committed of an unfinished pass, else None
    resume_after: str | None = None


def get_cursor(conn: psycopg.Connection, entity: str, scope: str = INCREMENTAL) -> Cursor | None:
    """Read a cursor.

    Args:
        conn: any connection.
        entity: entity name, e.g. 'contacts'.
        scope: INCREMENTAL or a window_scope(...).

    Returns:
        The cursor, or None when that scope never committed a batch.
    """
    row = conn.execute(
        "select entity, scope, cursor_value, records_total, updated_at, resume_after"
        " from keap_pipeline.sync_cursors where entity = %s and scope = %s",
        (entity, scope),
    ).fetchone()
    return Cursor(*row) if row else None


def advance_cursor(
    conn: psycopg.Connection,
    entity: str,
    scope: str,
    value: datetime,
    records: int,
    run_id: str | None,
    *,
    resume_after: str | None = None,
    pass_done: bool = False,
) -> None:
    """Move a cursor forward (never backward) inside the caller's transaction.

    Args:
        conn: the connection whose open transaction commits the batch this cursor covers.
        entity: entity name.
        scope: INCREMENTAL or a window_scope(...).
        value: the highest Keap update time of the batch.
        records: records in the batch, added to the running total.
        run_id: the Dagster run (or CLI invocation) that committed it.
        resume_after: for an id-ordered pass, the last id the batch covers (the pass resumes after it).
        pass_done: the id-ordered pass is complete: the next run starts from the first id.
    """
    conn.execute(
        """
        insert into keap_pipeline.sync_cursors as c (entity, scope, cursor_value, records_total, run_id, resume_after)
        values (%s, %s, %s, %s, %s, %s)
        on conflict (entity, scope) do update
        set cursor_value = greatest(c.cursor_value, excluded.cursor_value),
            records_total = c.records_total + excluded.records_total,
            run_id = excluded.run_id,
            resume_after = case when %s then null else coalesce(excluded.resume_after, c.resume_after) end,
            updated_at = now()
        """,
        (entity, scope, value, records, run_id, None if pass_done else resume_after, pass_done),
    )
