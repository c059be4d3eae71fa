"""Dead letters: Keap records that could not be loaded, kept whole with the reason, listed and replayed.

What is kept (sql/25): ``record_bytes``, the record's bytes exactly as they were in Keap's
response, and ``record_json``, the record as ASCII text (other characters as ``\\uXXXX``
escapes). Both always encode, whatever the record holds (a lone surrogate, a NUL escape, bytes
that are not UTF-8), and both read back to exactly what was received: every reader (listing,
replay, the Dagster check) goes through DeadLetter.record(), which decodes them as the client
decoded the page (keap_pipeline.jsontext).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from keap_pipeline.jsontext import UndecodableRecord, decode_record, record_json


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
    record_json: str = dataclasses.field(repr=False)
    record_bytes: bytes | None = dataclasses.field(default=None, repr=False)

    def raw(self) -> bytes:
        """The record's bytes: as Keap sent them (record_bytes), else record_json's."""
        if self.record_bytes is not None:
            return bytes(self.record_bytes)
        return self.record_json.encode("utf-8")

    def record(self) -> Any:
        """The record as Keap sent it, decoded as the client decodes a page (an UndecodableRecord if it is not JSON)."""
        return decode_record(self.raw())


@dataclass(frozen=True)
class NewDeadLetter:
    """A record to keep: what it was, why it failed, and where."""

    keap_id: str | None
    record: Any = dataclasses.field(repr=False)
    reason: str
    field: str | None = None
    # the record's bytes in Keap's response, when known (kept exactly in record_bytes)
    raw: bytes | None = dataclasses.field(default=None, repr=False)
    # its position in the batch (which of several versions of one record came last)
    ordinal: int | None = None

    def kept_bytes(self) -> bytes | None:
        """The bytes to keep: the page's, else an undecodable record's own."""
        if self.raw is not None:
            return self.raw
        if isinstance(self.record, UndecodableRecord):
            return self.record.raw
        return None


# A record seen again whose dead letter was closed (a later version loaded, or it was discarded)
# is a re-read of a settled version: it is not reopened. Otherwise the open letter of the record
# (by keap_id, or by record_key without one) is refreshed with this version.
_NOT_SETTLED = """
    where not exists (
        select 1 from keap_pipeline.dead_letters as o
        where o.entity = %(entity)s and o.status <> 'open'
          and o.record_key = coalesce(pg_catalog.md5(%(bytes)s::bytea), pg_catalog.md5(%(json)s::text))
          and o.keap_id is not distinct from %(keap_id)s::text
    )
"""
_REFRESH = """
    do update
    set record_json = excluded.record_json,
        record_bytes = excluded.record_bytes,
        reason = excluded.reason,
        field = excluded.field,
        run_id = excluded.run_id,
        attempts = d.attempts + 1,
        last_seen_at = now()
"""
_INSERT = """
    insert into keap_pipeline.dead_letters as d (entity, keap_id, record_json, record_bytes, reason, field, run_id)
    select %(entity)s, %(keap_id)s, %(json)s, %(bytes)s, %(reason)s, %(field)s, %(run_id)s
"""
_WITH_ID = (
    _INSERT + _NOT_SETTLED
    + " on conflict (entity, keap_id) where status = 'open' and keap_id is not null" + _REFRESH
)
_WITHOUT_ID = (
    _INSERT + _NOT_SETTLED
    + " on conflict (entity, record_key) where status = 'open' and keap_id is null" + _REFRESH
)


def record_dead_letters(
    conn: psycopg.Connection, entity: str, letters: Iterable[NewDeadLetter], run_id: str | None
) -> int:
    """Store dead letters inside the caller's transaction; the same open record seen again is updated.

    Whatever a record holds, its row encodes: record_json is ASCII (keap_pipeline.jsontext.record_json)
    and record_bytes its exact bytes, when known.

    Args:
        conn: the batch's connection (the letters commit with the batch).
        entity: entity name.
        letters: the records that could not be loaded, in Keap's order.
        run_id: the run that met them.

    Returns:
        How many were given (stored, refreshed, or already settled).
    """
    with_id: list[dict[str, Any]] = []
    without_id: list[dict[str, Any]] = []
    for d in letters:
        raw = d.kept_bytes()
        row = {
            "entity": entity, "keap_id": d.keap_id, "json": record_json(d.record, raw), "bytes": raw,
            "reason": d.reason, "field": d.field, "run_id": run_id,
        }
        (with_id if d.keap_id is not None else without_id).append(row)
    with conn.cursor() as cur:
        for query, rows in ((_WITH_ID, with_id), (_WITHOUT_ID, without_id)):
            if rows:
                cur.executemany(query, rows)
    return len(with_id) + len(without_id)


_COLUMNS = (
    "id, entity, keap_id, reason, field, status, attempts, run_id, first_seen_at, last_seen_at,"
    " record_json, record_bytes"
)


def list_dead_letters(
    conn: psycopg.Connection,
    entity: str | None = None,
    status: str | None = "open",
    limit: int = 100,
    ids: Sequence[int] | None = None,
) -> list[DeadLetter]:
    """List dead letters, newest first.

    Args:
        conn: any connection.
        entity: only this entity; all when None.
        status: only this status ('open', 'replayed', 'discarded'); all when None.
        limit: at most this many.
        ids: only these ids (chosen in the query, so the limit counts among them); all when None.

    Returns:
        The dead letters.
    """
    rows = conn.execute(
        f"select {_COLUMNS} from keap_pipeline.dead_letters"  # noqa: S608 - fixed column list
        " where (%(entity)s::text is null or entity = %(entity)s)"
        " and (%(status)s::text is null or status = %(status)s)"
        " and (%(ids)s::bigint[] is null or id = any(%(ids)s::bigint[]))"
        " order by last_seen_at desc, id desc limit %(limit)s",
        {"entity": entity, "status": status, "limit": limit, "ids": None if ids is None else list(ids)},
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
