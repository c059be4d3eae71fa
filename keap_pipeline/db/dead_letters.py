"""Dead letters: Keap records that could not be loaded, kept whole with the reason, listed and replayed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


@dataclass(frozen=True)
class DeadLetter:
    """One stored dead letter."""

    id: int
    entity: str
    keap_id: str | None
    reason: str
    field: str | None
    status: str
    attempts: int
    run_id: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    record_json: str

    def record(self) -> Any:
        """The raw record as Keap sent it."""
        return json.loads(self.record_json)


@dataclass(frozen=True)
class NewDeadLetter:
    """A record to keep: what it was, why it failed, and where."""

    keap_id: str | None
    record: Any
    reason: str
    field: str | None = None


def record_dead_letters(
    conn: psycopg.Connection, entity: str, letters: Iterable[NewDeadLetter], run_id: str | None
) -> int:
    """Store dead letters inside the caller's transaction; the same open record seen again is updated.

    Args:
        conn: the batch's connection (the letters commit with the batch).
        entity: entity name.
        letters: the records that could not be loaded.
        run_id: the run that met them.

    Returns:
        How many were stored or refreshed.
    """
    rows = [
        (entity, d.keap_id, json.dumps(d.record, ensure_ascii=False, default=str), d.reason, d.field, run_id)
        for d in letters
    ]
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into keap_pipeline.dead_letters as d (entity, keap_id, record_json, reason, field, run_id)
            values (%s, %s, %s, %s, %s, %s)
            on conflict (entity, keap_id) where status = 'open' and keap_id is not null
            do update
            set record_json = excluded.record_json,
                reason = excluded.reason,
                field = excluded.field,
                run_id = excluded.run_id,
                attempts = d.attempts + 1,
                last_seen_at = now()
            """,
            rows,
        )
    return len(rows)


_COLUMNS = (
    "id, entity, keap_id, reason, field, status, attempts, run_id, first_seen_at, last_seen_at, record_json"
)


def list_dead_letters(
    conn: psycopg.Connection, entity: str | None = None, status: str | None = "open", limit: int = 100
) -> list[DeadLetter]:
    """List dead letters, newest first.

    Args:
        conn: any connection.
        entity: only this entity; all when None.
        status: only this status ('open', 'replayed', 'discarded'); all when None.
        limit: at most this many.

    Returns:
        The dead letters.
    """
    rows = conn.execute(
        f"select {_COLUMNS} from keap_pipeline.dead_letters"  # noqa: S608 - fixed column list
        " where (%(entity)s::text is null or entity = %(entity)s)"
        " and (%(status)s::text is null or status = %(status)s)"
        " order by last_seen_at desc, id desc limit %(limit)s",
        {"entity": entity, "status": status, "limit": limit},
    ).fetchall()
    return [DeadLetter(*r) for r in rows]


def dead_letter_summary(conn: psycopg.Connection, entity: str) -> tuple[int, list[tuple[str, int]]]:
    """Count open dead letters of an entity, with the most common reasons.

    Args:
        conn: any connection.
        entity: entity name.

    Returns:
        (open count, [(reason, count), ...] at most 10, most common first).
    """
    rows = conn.execute(
        "select reason, count(*) from keap_pipeline.dead_letters"
        " where entity = %s and status = 'open' group by reason order by count(*) desc, reason limit 10",
        (entity,),
    ).fetchall()
    total = conn.execute(
        "select count(*) from keap_pipeline.dead_letters where entity = %s and status = 'open'", (entity,)
    ).fetchone()
    return (int(total[0]) if total else 0), [(r, int(c)) for r, c in rows]


def close_superseded(conn: psycopg.Connection, entity: str, loaded_keap_ids: Sequence[str]) -> int:
    """Close the open dead letters of records that have now loaded (Keap sent a version that could).

    Args:
        conn: the batch's connection (closed together with the load).
        entity: entity name.
        loaded_keap_ids: the keap_ids the batch loaded.

    Returns:
        How many dead letters were closed (status 'replayed').
    """
    if not loaded_keap_ids:
        return 0
    cur = conn.execute(
        "update keap_pipeline.dead_letters set status = 'replayed', replayed_at = now()"
        " where entity = %s and status = 'open' and keap_id = any(%s)",
        (entity, list(loaded_keap_ids)),
    )
    return cur.rowcount


def mark_replayed(conn: psycopg.Connection, ids: Sequence[int]) -> None:
    """Mark dead letters replayed (inside the transaction that loaded them)."""
    if ids:
        conn.execute(
            "update keap_pipeline.dead_letters set status = 'replayed', replayed_at = now()"
            " where id = any(%s)",
            (list(ids),),
        )
