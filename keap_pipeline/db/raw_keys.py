"""The raw record keys (sql/35): which records' exact bytes were normalized before, and into which keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import psycopg

from keap_pipeline.db.roles import INGEST_ROLE


class KnownKeys(NamedTuple):
    """What normalizing one record's bytes gave before: its keys, as the normalizer made them."""

    keap_id: str
    keap_updated_at: datetime | None
    content_hash: str  # 32 hex digits, as normalize.content_hash writes it


_FIND = """
select q.ordinal, r.keap_id, r.keap_updated_at, r.content_hash
from unnest(%s::text[], %s::bytea[]) with ordinality as q(keap_id, raw_hash, ordinal)
join keap_pipeline.raw_record_keys as r
    on r.entity = %s
   and r.keap_id = q.keap_id
   and r.raw_hash = q.raw_hash
"""


def find_known(
    conn: psycopg.Connection, entity: str, ids: Sequence[str | None], hashes: Sequence[bytes]
) -> dict[int, KnownKeys]:
    """The records of one page whose exact bytes (by keyed hash) were normalized before.

    Runs in a transaction of its own, as the ingestion's role (the table's only policy), so it works
    behind transaction-mode poolers and on a connection of its own (the read-ahead thread's).

    Args:
        conn: a connection with no transaction open (not in autocommit mode).
        entity: the entity's name.
        ids: each record's id as its bytes say (None: unknown, never found).
        hashes: each record's keyed hash (pipeline.raw_keys.raw_hashes), same length as ids.

    Returns:
        {position in the page: the keys stored for those bytes}; positions not found are absent.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("select pg_catalog.set_config('role', %s, true)", (INGEST_ROLE,))
        cur.execute(_FIND, (list(ids), list(hashes), entity))
        rows = cur.fetchall()
    return {int(o) - 1: KnownKeys(k, u, h.hex) for o, k, u, h in rows}


_REMEMBER = """
insert into keap_pipeline.raw_record_keys as r (entity, keap_id, raw_hash, keap_updated_at, content_hash)
select %s, q.keap_id, q.raw_hash, q.keap_updated_at, q.content_hash::uuid
from unnest(%s::text[], %s::bytea[], %s::timestamptz[], %s::text[]) as q(keap_id, raw_hash, keap_updated_at, content_hash)
on conflict (entity, keap_id) do update
set raw_hash = excluded.raw_hash,
    keap_updated_at = excluded.keap_updated_at,
    content_hash = excluded.content_hash
where r.raw_hash is distinct from excluded.raw_hash
"""


def remember_keys(
    conn: psycopg.Connection,
    entity: str,
    keap_ids: Sequence[str],
    hashes: Sequence[bytes],
    updated: Sequence[datetime | None],
    content_hashes: Sequence[str],
) -> None:
    """Store what normalizing these records' bytes gave, replacing each record's older bytes.

    Args:
        conn: a connection inside the batch's transaction (its role the ingestion's: begin_load).
        entity: the entity's name.
        keap_ids: one per record, no two alike.
        hashes: their keyed hashes.
        updated: their keap_updated_at.
        content_hashes: their content hashes (32 hex digits).
    """
    if not keap_ids:
        return
    conn.execute(_REMEMBER, (entity, list(keap_ids), list(hashes), list(updated), list(content_hashes)))
