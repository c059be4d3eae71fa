"""The outbound sender's database side: the pusher's lock, claims, in-flight marks, write-back and finishing.

Every transaction here runs as the ingestion's role (``begin_push``): the pusher is the Keap side
of the pipeline, so what it writes back is never queued again, and it may set the keap_id of a
record it created. The SQL is sql/functions/81-outbound.sql; what to send is decided in
keap_pipeline/outbound/.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from keap_pipeline.db.connect import connect
from keap_pipeline.db.load import UpsertCounts, copy_frame, upsert_staged
from keap_pipeline.db.locks import RUN_LOCK_CLASS, entity_lock_key, holder_of_run_lock
from keap_pipeline.db.roles import INGEST_ROLE
from keap_pipeline.entities import Entity
from keap_pipeline.errors import KeapPipelineError
from keap_pipeline.jsontext import decode_json, dumps

log = logging.getLogger(__name__)

# advisory-lock class of the pushers' own keys ('kpsh'); 81-outbound.sql reads the same number
PUSHER_LOCK_CLASS = 0x6B70_7368


class SyncInProgress(KeapPipelineError):
    """A sync or replay of the entity holds (or waits for) its run lock: the push of that entity yields to it."""


@dataclass
class PusherLock:
    """A live pusher: its claim key and the connection that holds its locks."""

    entity: str
    key: int
    conn: psycopg.Connection


@contextmanager
def pusher_lock(database_url: str, entity: str, *, holder: str) -> Iterator[PusherLock]:
    """Be a pusher of `entity` for the block: a claim key whose advisory lock says this pusher is alive.

    The same connection holds the entity's run lock in SHARED mode: pushers of one entity run side
    by side, but never beside a sync or a dead-letter replay of it (they take the run lock
    exclusively, db.locks). So the push yields to a running sync, and a record is never written
    back by a push while a sync loads it. Both locks are transaction-level, in an idle transaction
    of their own (as db.locks.run_lock): a killed pusher's locks go with its connection, and its
    claims are then recovered by the next pusher.

    Args:
        database_url: the sync database.
        entity: the entity pushed (its run lock).
        holder: this pusher, as pg_stat_activity shows it (no secrets, no values).

    Yields:
        The live pusher.

    Raises:
        SyncInProgress: a sync or replay of the entity holds its run lock now.
    """
    conn = connect(database_url, application_name=holder[:63])
    try:
        conn.execute("select pg_catalog.set_config('idle_in_transaction_session_timeout', '0', true)")
        row = conn.execute(
            "select pg_catalog.pg_try_advisory_xact_lock_shared(%s, %s)", (RUN_LOCK_CLASS, entity_lock_key(entity))
        ).fetchone()
        if not (row and row[0]):
            other = holder_of_run_lock(conn, entity) or "a sync or replay of it"
            raise SyncInProgress(f"{entity}: {other} is running; the push yields to it and sends these items next time")
        while True:
            key = secrets.randbits(32) - (1 << 31)
            got = conn.execute("select pg_catalog.pg_try_advisory_xact_lock(%s, %s)", (PUSHER_LOCK_CLASS, key)).fetchone()
            if got and got[0]:
                break
        yield PusherLock(entity=entity, key=key, conn=conn)
    finally:
        try:
            if not conn.closed:
                conn.rollback()
        finally:
            conn.close()


def sync_waiting(lock: PusherLock) -> bool:
    """Whether a sync or replay of the pusher's entity is waiting for its run lock (the push then yields).

    A sync's and a replay's connections are named ``keap-pipeline <entity> ...`` (pipeline.sync.run_holder,
    pipeline.replay); a pusher's are not.
    """
    row = lock.conn.execute(
        "select exists (select 1 from pg_catalog.pg_stat_activity as a"
        " where a.datname = pg_catalog.current_database() and a.pid <> pg_catalog.pg_backend_pid()"
        " and a.application_name like %s)",
        (f"keap-pipeline {lock.entity} %",),
    ).fetchone()
    return bool(row and row[0])


def begin_push(conn: psycopg.Connection, *, lock_timeout_seconds: float) -> None:
    """The first statement of every push transaction: the ingestion's role and a bounded lock wait."""
    conn.execute(
        "select pg_catalog.set_config('role', %s, true), pg_catalog.set_config('lock_timeout', %s, true)",
        (INGEST_ROLE, f"{int(lock_timeout_seconds * 1000)}ms"),
    )


@dataclass(frozen=True)
class Claimed:
    """One claimed queue item."""

    id: uuid.UUID
    entity_type: str
    entity_id: uuid.UUID
    operation: str
    status: str
    attempts: int
    max_attempts: int
    recovered: bool


def claim(conn: psycopg.Connection, key: int, table: str, limit: int) -> list[Claimed]:
    """Claim up to `limit` items of one sync table (keap_pipeline.claim_outbound), inside the caller's transaction."""
    rows = conn.execute(
        "select id, entity_type, entity_id, operation, status, attempts, max_attempts, recovered"
        " from keap_pipeline.claim_outbound(%s, %s, %s)",
        (key, [table], limit),
    ).fetchall()
    return [Claimed(*row) for row in rows]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json(value: Any) -> str:
    """JSON text for a jsonb parameter: the C encoder, or jsontext's (Decimals as their digits) when it cannot."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError):
        return dumps(value, ensure_ascii=False)


def _ident(qualified: str) -> sql.Identifier:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name)


def read_rows(conn: psycopg.Connection, entity: Entity, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """The current rows of these records, every column (numbers exact: Decimals where a float would round)."""
    if not ids:
        return {}
    query = sql.SQL("select t.id, pg_catalog.to_jsonb(t.*)::text from {} as t where t.id = any(%s)").format(
        _ident(entity.target_table)
    )
    return {row[0]: decode_json(row[1].encode("utf-8")) for row in conn.execute(query, (list(ids),))}


def audited_keap_ids(conn: psycopg.Connection, table: str, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """For records hard-deleted here: the keap_id their audited DELETE names (the trigger wrote it; nobody else can).

    A queue item's payload is not trusted for this: roles that may write the queue directly could
    put any keap_id there.
    """
    if not ids:
        return {}
    rows = conn.execute(
        "select distinct on (a.entity_id) a.entity_id, a.old_data ->> 'keap_id'"
        " from public.sync_audit_log as a"
        " where a.entity_type = %s and a.entity_id = any(%s) and a.operation = 'DELETE'"
        " order by a.entity_id, a.created_at desc",
        (table, list(ids)),
    ).fetchall()
    return {r[0]: r[1] for r in rows if r[1]}


@dataclass(frozen=True)
class UnconfirmedSend:
    """A record's requests whose outcome is unknown: since when, and each row as it was sent."""

    sent_at: datetime
    payloads: tuple[dict[str, Any], ...]


def unconfirmed_sends(conn: psycopg.Connection, table: str, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, UnconfirmedSend]:
    """Records whose earlier requests may have reached Keap unconfirmed (a crash, a timeout, a 5xx)."""
    if not ids:
        return {}
    rows = conn.execute(
        "select q.entity_id, q.sent_at, q.payload::text"
        " from public.sync_queue as q"
        " where q.entity_type = %s and q.entity_id = any(%s) and q.sent_at is not null"
        " order by q.entity_id, q.sent_at",
        (table, list(ids)),
    ).fetchall()
    found: dict[uuid.UUID, UnconfirmedSend] = {}
    for entity_id, sent_at, payload in rows:
        earlier = found.get(entity_id)
        decoded = decode_json(payload.encode("utf-8"))
        if earlier is None:
            found[entity_id] = UnconfirmedSend(sent_at, (decoded,))
        else:
            found[entity_id] = UnconfirmedSend(earlier.sent_at, (*earlier.payloads, decoded))
    return found


def open_conflicts(conn: psycopg.Connection, table: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Records with an unresolved sync_conflicts row: parked, their changes wait for the resolution."""
    if not ids:
        return set()
    rows = conn.execute(
        "select distinct c.entity_id from public.sync_conflicts as c"
        " where c.entity_type = %s and c.entity_id = any(%s) and c.resolved_at is null",
        (table, list(ids)),
    ).fetchall()
    return {r[0] for r in rows}


def linked_keap_ids(conn: psycopg.Connection, entity: Entity, keap_ids: Iterable[str]) -> set[str]:
    """Which of these Keap ids belong to a row already (such a Keap record is someone's, never adopted)."""
    wanted = sorted(set(keap_ids))
    if not wanted:
        return set()
    query = sql.SQL("select t.keap_id from {} as t where t.keap_id = any(%s)").format(_ident(entity.target_table))
    return {r[0] for r in conn.execute(query, (wanted,))}


def item_statuses(conn: psycopg.Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The queue status of these items now."""
    if not ids:
        return {}
    return dict(conn.execute("select id, status from public.sync_queue where id = any(%s)", (list(ids),)).fetchall())


def drop_claims(conn: psycopg.Connection, key: int, ids: Sequence[uuid.UUID]) -> None:
    """Let go of items this pusher claimed that someone else settled meanwhile (cancelled or held by the precheck)."""
    if ids:
        conn.execute(
            "update public.sync_queue set claim_key = null where id = any(%s) and claim_key = %s"
            " and status not in ('pending', 'processing')",
            (list(ids), key),
        )


def precheck(conn: psycopg.Connection, entity: Entity, frame: pl.DataFrame, *, strategy: str, merge_rule: str) -> UpsertCounts:
    """Keap's current records of the claimed items, loaded as the ingestion loads them (its own upsert).

    Whatever Keap changed since the version a record's local edit is based on (the row's keap_updated_at
    and keap_hash) is then a conflict, resolved by the configured strategy exactly as a sync resolves it:
    keap_wins overwrites the row and cancels the item, supabase_wins keeps the local row (the item is
    sent), manual parks it (the item is held), merge merges fields changed on one side only (the merged
    row is sent). A record Keap did not change is 'unchanged' and nothing is written.
    """
    if frame.height == 0:
        return UpsertCounts()
    batch_id = uuid.uuid4()
    copy_frame(conn, entity, frame, batch_id)
    return upsert_staged(conn, entity, batch_id, strategy=strategy, merge_rule=merge_rule)


def mark_in_flight(conn: psycopg.Connection, key: int, items: Mapping[uuid.UUID, dict[str, Any]]) -> int:
    """Put items in flight (keap_pipeline.mark_outbound_in_flight), each with the row as it is sent."""
    if not items:
        return 0
    payload = _json([{"item": str(i), "payload": row} for i, row in items.items()])
    row = conn.execute("select keap_pipeline.mark_outbound_in_flight(%s, %s::jsonb)", (key, payload)).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class WriteBack:
    """One row to write back: the queue item, the record, the staged answer's ordinal (None: deleted in Keap)."""

    item: uuid.UUID
    entity_id: uuid.UUID
    ordinal: int | None
    version: int
    complete: bool


def write_back(conn: psycopg.Connection, key: int, entity: Entity, frame: pl.DataFrame, rows: Sequence[WriteBack]) -> int:
    """Stage Keap's answers (normalized by the ingestion's own normalizer) and write them back (write_back_<entity>)."""
    if not rows:
        return 0
    batch_id = uuid.uuid4()
    copy_frame(conn, entity, frame, batch_id)
    items = _json(
        [
            {"item": str(r.item), "entity_id": str(r.entity_id), "ordinal": r.ordinal, "version": r.version,
             "complete": r.complete}
            for r in rows
        ]
    )
    query = sql.SQL("select keap_pipeline.{}(%s, %s, %s::jsonb)").format(sql.Identifier(f"write_back_{entity.name}"))
    row = conn.execute(query, (key, batch_id, items)).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Finish:
    """How a claimed item ends without a write-back (keap_pipeline.finish_outbound).

    outcome: retry (later, after delay_seconds; an error once its attempts are used up), failed,
    held, release (back to pending, not counted as an attempt when unsent), done, unsupported.
    unsent: Keap surely did not act on the item's last request (its sent_at is cleared).
    """

    item: uuid.UUID
    outcome: str
    reason: str | None = None
    delay_seconds: float = 0.0
    unsent: bool = False


def finish(conn: psycopg.Connection, key: int, rows: Sequence[Finish]) -> dict[uuid.UUID, str]:
    """End items (keap_pipeline.finish_outbound); returns each item's new status."""
    if not rows:
        return {}
    items = _json(
        [
            {"item": str(r.item), "outcome": r.outcome, "reason": r.reason, "delay_seconds": r.delay_seconds,
             "unsent": r.unsent}
            for r in rows
        ]
    )
    return dict(conn.execute("select item, final_status from keap_pipeline.finish_outbound(%s, %s::jsonb)", (key, items)).fetchall())


def mark_unsupported(conn: psycopg.Connection, supported: Sequence[str], reason: str) -> int:
    """Keep pending items of the other sync tables as unsupported (keap_pipeline.mark_unsupported_outbound)."""
    row = conn.execute("select keap_pipeline.mark_unsupported_outbound(%s, %s)", (list(supported), reason)).fetchone()
    return int(row[0]) if row else 0


def retry_failed(conn: psycopg.Connection, tables: Sequence[str]) -> int:
    """Failed items of these sync tables pending again, with fresh attempts (keap_pipeline.retry_failed_outbound)."""
    row = conn.execute("select keap_pipeline.retry_failed_outbound(%s)", (list(tables),)).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class QueueCounts:
    """Outbound items of one sync table by state, and the commonest reasons of the failed and unsupported."""

    entity_type: str
    pending: int
    due: int
    in_flight: int
    held: int
    failed: int
    unsupported: int
    reasons: tuple[tuple[str, int], ...]


def queue_counts(conn: psycopg.Connection) -> list[QueueCounts]:
    """The outbound queue of every sync table (app changes only: create, update, delete items)."""
    rows = conn.execute(
        "select t.entity_type,"
        " (select count(*) from public.sync_queue q where q.entity_type = t.entity_type and q.status = 'pending'),"
        " (select count(*) from public.sync_queue q where q.entity_type = t.entity_type and q.status = 'pending'"
        "   and q.scheduled_at <= now()),"
        " (select count(*) from public.sync_queue q where q.entity_type = t.entity_type and q.status = 'processing'),"
        " (select count(*) from public.sync_queue q where q.entity_type = t.entity_type and q.status = 'held'),"
        " (select count(*) from public.sync_queue q where q.entity_type = t.entity_type and q.status = 'error'"
        "   and q.entity_id is not null and q.operation in ('create', 'update', 'delete')),"
        " (select count(*) from public.sync_queue q where q.entity_type = t.entity_type and q.status = 'unsupported')"
        " from unnest(array['sync_contacts', 'sync_tags', 'sync_orders', 'sync_subscriptions', 'sync_products'])"
        "   as t(entity_type)"
    ).fetchall()
    reasons = conn.execute(
        "select q.entity_type, left(coalesce(q.error_message, '?'), 200) as reason, count(*)"
        " from public.sync_queue q"
        " where q.status in ('error', 'unsupported') and q.entity_id is not null"
        "   and q.operation in ('create', 'update', 'delete')"
        " group by 1, 2 order by 3 desc limit 50"
    ).fetchall()
    by_table: dict[str, list[tuple[str, int]]] = {}
    for table, reason, count in reasons:
        by_table.setdefault(table, []).append((reason, count))
    return [
        QueueCounts(t, pending, due, in_flight, held, failed, unsupported, tuple(by_table.get(t, ())))
        for t, pending, due, in_flight, held, failed, unsupported in rows
    ]


@dataclass(frozen=True)
class DueWork:
    """What a push would find now: due items of the sent tables, in-flight items of dead pushers, items to keep as unsupported."""

    due: int
    orphaned: int
    unsupported_pending: int

    @property
    def any(self) -> bool:
        """Whether a push run has anything to do."""
        return bool(self.due or self.orphaned or self.unsupported_pending)


def due_work(conn: psycopg.Connection, supported: Sequence[str], *, cap: int = 1000) -> DueWork:
    """Cheap counts (each capped at `cap`, partial indexes only) for a sensor deciding whether to start a push."""
    row = conn.execute(
        "select"
        " (select count(*) from (select 1 from public.sync_queue where status = 'pending' and scheduled_at <= now()"
        "   and entity_type = any(%s) limit %s) as d),"
        " (select count(*) from (select 1 from public.sync_queue where status = 'processing'"
        "   and not (claim_key = any(keap_pipeline.outbound_live_claims())) limit %s) as o),"
        " (select count(*) from (select 1 from public.sync_queue where status = 'pending'"
        "   and not (entity_type = any(%s)) and entity_id is not null limit %s) as u)",
        (list(supported), cap, cap, list(supported), cap),
    ).fetchone()
    assert row is not None
    return DueWork(*row)
