"""What a batch streams to realtime subscribers: the changes of the tables the supabase_realtime publication carries."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from keap_pipeline.db.load import UpsertCounts
from keap_pipeline.entities import Entity

# Supabase streams postgres_changes from this publication (created empty there; sql/14 fills it)
REALTIME_PUBLICATION = "supabase_realtime"
# the side tables an ingested record writes besides its own row
STATUS_TABLE = "public.sync_status"
CONFLICTS_TABLE = "public.sync_conflicts"


@dataclass(frozen=True)
class StreamCost:
    """How many streamed changes (published rows inserted or updated) a batch's writes make.

    Every record a batch writes (inserted, updated or in conflict) writes its own row and its
    sync_status row; a conflict also writes a sync_conflicts row. Each of them is a change that
    logical decoding sends to every subscriber, in one burst when the transaction commits, when
    its table is published. (The audit log and the queue are written too, but not published.)

    Attributes:
        per_row: changes streamed per record written (0, 1 or 2).
        per_conflict: changes streamed on top of that per record in conflict (0 or 1).
    """

    per_row: int = 2
    per_conflict: int = 1

    def changes(self, counts: UpsertCounts) -> int:
        """The changes a batch with these counts streamed."""
        written = counts.inserted + counts.updated + counts.conflicts
        return written * self.per_row + counts.conflicts * self.per_conflict


def published_tables(conn: psycopg.Connection, publication: str = REALTIME_PUBLICATION) -> set[str]:
    """The tables (schema.name) a publication carries, FOR ALL TABLES included; empty when it does not exist."""
    rows = conn.execute(
        "select pt.schemaname || '.' || pt.tablename from pg_catalog.pg_publication_tables as pt where pt.pubname = %s",
        (publication,),
    ).fetchall()
    return {r[0] for r in rows}


def stream_cost(conn: psycopg.Connection, entity: Entity) -> StreamCost:
    """What `entity`'s batches stream per written record, from the publication as it is now.

    Args:
        conn: a connection to the sync database.
        entity: the entity (its target table).

    Returns:
        The cost; StreamCost(0, 0) when nothing of it is published.
    """
    published = published_tables(conn)
    return StreamCost(
        per_row=(entity.target_table in published) + (STATUS_TABLE in published),
        per_conflict=int(CONFLICTS_TABLE in published),
    )


def decoding(conn: psycopg.Connection) -> bool:
    """Whether anything decodes this database's WAL now: a logical replication slot of it exists.

    Supabase Realtime, a logical replication subscriber and pg_recvlogical each hold one (active or
    not: an inactive slot's consumer decodes what it missed, large transactions first, when it comes
    back). Every logical decoder reads every transaction, published tables or not, in commit order.
    """
    row = conn.execute(
        "select exists (select from pg_catalog.pg_replication_slots as s"
        " where s.slot_type = 'logical' and s.database = pg_catalog.current_database())"
    ).fetchone()
    return bool(row and row[0])
