"""Links still waiting for their parent: rows whose Keap parent id is set but whose uuid link is NULL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from keap_pipeline.entities import Entity, Link


@dataclass(frozen=True)
class UnresolvedLinks:
    """One link of an entity: how many live rows wait for their parent, and since when.

    Attributes:
        parent: the parent entity (Link.parent), e.g. "contacts".
        keap_column: the column holding the parent's Keap id, e.g. "keap_contact_id".
        link_column: the uuid column left NULL until the parent arrives, e.g. "contact_id".
        rows: live (not soft-deleted) rows with the Keap id set and the link NULL.
        oldest_loaded_at: when the oldest of them was loaded (its created_at), or None.
    """

    parent: str
    keap_column: str
    link_column: str
    rows: int
    oldest_loaded_at: datetime | None


def parent_links(entity: Entity) -> tuple[Link, ...]:
    """The entity's links to other entities (lineage), leaving out lookup tables (parent "")."""
    return tuple(link for link in entity.links if link.parent)


def unresolved_links(conn: psycopg.Connection, entity: Entity) -> tuple[UnresolvedLinks, ...]:
    """Count, per parent link, the rows that carry a Keap parent id but no uuid link yet (one scan).

    The uuid link of a Link is its first target column (e.g. ``contact_id``; further columns such
    as ``product_name`` are copied from the same parent row). Only counts and load times are read,
    never a row's values.

    Args:
        conn: any connection that may read the entity's target table.
        entity: the entity; one result per link with a parent entity, in Link order.

    Returns:
        The counts (empty when the entity has no parent links).
    """
    links = parent_links(entity)
    if not links:
        return ()
    schema, _, table = entity.target_table.partition(".")
    waiting = [
        sql.SQL("{} is not null and {} is null").format(
            sql.Identifier(link.keap_column), sql.Identifier(link.columns[0][0])
        )
        for link in links
    ]
    aggregates = sql.SQL(", ").join(
        sql.SQL("count(*) filter (where {w}), min(created_at) filter (where {w})").format(w=w) for w in waiting
    )
    query = sql.SQL("select {aggregates} from {table} where deleted_at is null and ({any})").format(
        aggregates=aggregates,
        table=sql.Identifier(schema, table),
        any=sql.SQL(" or ").join(sql.SQL("({})").format(w) for w in waiting),
    )
    row = conn.execute(query).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return tuple(
        UnresolvedLinks(link.parent, link.keap_column, link.columns[0][0], int(row[2 * i]), row[2 * i + 1])
        for i, link in enumerate(links)
    )
