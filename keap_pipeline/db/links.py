"""Links that arrive out of order: fill the uuid links of rows whose Keap parent was loaded after them.

Counting the rows still waiting is db/link_health.py (the Dagster check reads it).
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from keap_pipeline.db.load import begin_load
from keap_pipeline.entities import ENTITIES, Entity

log = logging.getLogger(__name__)


def dependents(entity: Entity) -> tuple[Entity, ...]:
    """The entities with a link to `entity` (their rows may wait for its records), itself first when it links."""
    linked = [e for e in ENTITIES.values() if any(link.parent == entity.name for link in e.links)]
    own = (entity,) if entity.links else ()
    return own + tuple(e for e in linked if e is not entity)


def resolve_links(conn: psycopg.Connection, entity: Entity, *, lock_timeout_seconds: float) -> int:
    """Link the rows of `entity` whose parents are loaded now (one set-based UPDATE per link), in one transaction.

    Args:
        conn: a connection with no transaction open.
        entity: the entity whose rows are linked (it has links).
        lock_timeout_seconds: the longest wait for one row lock (0 = no bound).

    Returns:
        How many rows were linked.
    """
    query = sql.SQL("select {}()").format(sql.Identifier(*entity.link_function.split(".")))
    with conn.transaction():
        begin_load(conn, lock_timeout_seconds=lock_timeout_seconds, relaxed_commit=False)
        row = conn.execute(query).fetchone()
    linked = int(row[0]) if row else 0
    if linked:
        log.info("%s: linked %s rows whose parents arrived later", entity.name, linked)
    return linked
