"""Health at a glance: public.sync_health read per entity, its counters folded, and a sync's success recorded.

The counts come from ``public.sync_health_counters`` (sql/28): delta rows that statement triggers
append, summed by the view, folded by compaction. What the triggers cannot see is when a sync last
completed: the pipeline records it here, two facts per successful run of an entity
(``sync_succeeded``: when it finished; ``fresh_as_of``: when it started reading Keap, so every
change made in Keap before then is loaded), only for runs that read up to the present.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

from keap_pipeline.db.roles import as_ingestion
from keap_pipeline.entities import Entity

_COLUMNS = (
    "entity_type, total_records, synced, errors, conflicts, pending, avg_sync_time, last_synced_at,"
    " open_conflicts, queue_pending, queue_failed, open_dead_letters, unresolved_links, soft_deleted,"
    " last_successful_sync_at, sync_lag, linked_to_deleted_parent, queue_unsupported"
)


@dataclass(frozen=True)
class EntityHealth:
    """One row of public.sync_health (counts of live rows unless named otherwise).

    Attributes:
        entity_type: the sync table, e.g. "sync_contacts".
        total_records: live rows (deleted_at NULL).
        synced, errors, conflicts, pending: live rows by sync_status.
        avg_sync_time: mean seconds from created_at to last_synced_at, or None.
        last_synced_at: the newest last_synced_at written to a live row.
        open_conflicts: sync_conflicts rows not resolved.
        queue_pending, queue_failed: outbound sync_queue items pending / in status error.
        open_dead_letters: open dead letters (None for a reader who may not see them).
        unresolved_links: live rows with a Keap parent id but no link to its row yet.
        soft_deleted: rows with deleted_at set.
        last_successful_sync_at: when the last sync that read up to the present finished.
        sync_lag: now minus that sync's start: how old the newest Keap change known to be loaded can be.
        linked_to_deleted_parent: live rows linked to a soft-deleted parent (an order of a contact
            deleted in Keap: it stays, linked).
        queue_unsupported: outbound items the pusher has no Keap write path for yet (kept, not sent).
    """

    entity_type: str
    total_records: int
    synced: int
    errors: int
    conflicts: int
    pending: int
    avg_sync_time: Decimal | None
    last_synced_at: datetime | None
    open_conflicts: int
    queue_pending: int
    queue_failed: int
    open_dead_letters: int | None
    unresolved_links: int
    soft_deleted: int
    last_successful_sync_at: datetime | None
    sync_lag: timedelta | None
    linked_to_deleted_parent: int = 0
    queue_unsupported: int = 0

    @property
    def entity(self) -> str:
        """The entity's name in keap_pipeline.entities, e.g. "contacts"."""
        return self.entity_type.removeprefix("sync_")


def entity_type(entity: Entity) -> str:
    """The entity's name in the sync schema's bookkeeping: its target table, e.g. "sync_contacts"."""
    return entity.target_table.rpartition(".")[2]


def read_sync_health(conn: psycopg.Connection) -> dict[str, EntityHealth]:
    """Read public.sync_health, one row per entity, with the rights of the connection's user.

    Args:
        conn: any connection; the owner, service_role and admins read the counters, other users
            the counts of their own rows.

    Returns:
        The rows by entity name ("contacts", ...).
    """
    rows = conn.execute(f"select {_COLUMNS} from public.sync_health order by entity_type").fetchall()  # noqa: S608 - fixed column list
    return {h.entity: h for h in (EntityHealth(*row) for row in rows)}


def compact_counters(conn: psycopg.Connection) -> tuple[int, int]:
    """Fold the counters' delta rows into one per (entity, metric), in the caller's transaction.

    Args:
        conn: a connection of the schema's owner (the function is not granted to the API roles).

    Returns:
        The counter rows before and after.
    """
    row = conn.execute("select rows_before, rows_after from keap_pipeline.compact_sync_health_counters()").fetchone()
    assert row is not None  # the function returns one row
    return int(row[0]), int(row[1])


def server_time(conn: psycopg.Connection) -> datetime:
    """The database's clock (the view measures the lag with it)."""
    row = conn.execute("select statement_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def record_sync_success(conn: psycopg.Connection, entity: Entity, fresh_as_of: datetime) -> None:
    """Record a completed sync that read Keap up to the present, inside the caller's transaction.

    Args:
        conn: a connection whose open transaction may switch to the ingestion's role.
        entity: the entity synced.
        fresh_as_of: when the sync started reading Keap (server_time before the first page).
    """
    as_ingestion(conn)
    conn.execute(
        "insert into public.sync_health_counters (entity_type, metric, n, at)"
        " values (%(e)s, 'sync_succeeded', 0, statement_timestamp()), (%(e)s, 'fresh_as_of', 0, %(at)s)",
        {"e": entity_type(entity), "at": fresh_as_of},
    )


@dataclass(frozen=True)
class Freshness:
    """How recently an entity was synced: its last complete sync, and its last committed batch of any run."""

    fresh_as_of: datetime | None
    succeeded_at: datetime | None
    last_commit_at: datetime | None
    # the database's clock when these were read (the ages are measured with it, as the view's lag is)
    now: datetime


def freshness(conn: psycopg.Connection, entity: Entity) -> Freshness:
    """When the entity's last complete sync started and finished, and when any run last committed a batch.

    Args:
        conn: a connection of the schema's owner (it reads keap_pipeline.sync_cursors).
        entity: the entity.

    Returns:
        The three times (None when there is none) and the database's clock.
    """
    row = conn.execute(
        "select max(c.at) filter (where c.metric = 'fresh_as_of'), max(c.at) filter (where c.metric = 'sync_succeeded'),"
        " (select max(k.updated_at) from keap_pipeline.sync_cursors as k where k.entity = %(name)s),"
        " statement_timestamp()"
        " from public.sync_health_counters as c"
        " where c.entity_type = %(e)s and c.metric in ('fresh_as_of', 'sync_succeeded')",
        {"e": entity_type(entity), "name": entity.name},
    ).fetchone()
    assert row is not None
    return Freshness(*row)
