"""The raw record keys (sql/35): which records' exact bytes were normalized before, and into which keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import psycopg

from keap_pipeline.db.roles import INGEST_ROLE


class KnownKeys(NamedTuple):
    """The records of one page whose exact bytes were normalized before, and the keys stored for them."""

    ordinals: list[int]  # positions in the page (0-based), ascending
    updated_us: list[int | None]  # their keap_updated_at, epoch microseconds
    content_hashes: list[str]  # 32 hex digits each, as normalize.content_hash writes them


NONE_KNOWN = KnownKeys([], [], [])


def _pack_ids(ids: Sequence[str | None]) -> str:
    # ids are digits (jsontext.record_ids), so a comma never occurs in one
    return ",".join("" if i is None else i for i in ids)


def find_known(conn: psycopg.Connection, entity: str, ids: Sequence[str | None], hashes: Sequence[bytes]) -> KnownKeys:
    """The records of one page whose exact bytes (by keyed hash) were normalized before.

    One call of keap_pipeline.find_raw_record_keys (sql/functions/72) in a transaction of its own, as
    the ingestion's role (the table's only policy): it works behind transaction-mode poolers and on a
    connection of its own (the read-ahead thread's).

    Args:
        conn: a connection with no transaction open (not in autocommit mode).
        entity: the entity's name.
        ids: each record's id as its bytes say, digits only (None: unknown, never found).
        hashes: each record's 16-byte keyed hash (pipeline.raw_keys.raw_hashes), same length as ids.

    Returns:
        The positions found, with their stored keys.
    """
    with conn.transaction(), conn.cursor(binary=True) as cur:
        cur.execute("select pg_catalog.set_config('role', %s, true)", (INGEST_ROLE,))
        cur.execute(
            "select * from keap_pipeline.find_raw_record_keys(%s, %s, %s)", (entity, _pack_ids(ids), b"".join(hashes))
        )
        row = cur.fetchone()
    if row is None or row[0] is None:
        return NONE_KNOWN
    ordinals, updated, content = row
    return KnownKeys([o - 1 for o in ordinals], updated, content.split(","))


def remember_keys(
    conn: psycopg.Connection,
    entity: str,
    keap_ids: Sequence[str],
    hashes: Sequence[bytes],
    updated_us: Sequence[int | None],
    content_hashes: Sequence[str],
) -> None:
    """Store what normalizing these records' bytes gave, replacing each record's older bytes.

    Args:
        conn: a connection inside the batch's transaction (its role the ingestion's: begin_load).
        entity: the entity's name.
        keap_ids: one per record, no two alike (digits: the normalizer's id rule).
        hashes: their 16-byte keyed hashes.
        updated_us: their keap_updated_at as epoch microseconds.
        content_hashes: their content hashes (32 hex digits).
    """
    if not keap_ids:
        return
    conn.execute(
        "select keap_pipeline.remember_raw_record_keys(%s, %s, %s, %s, %s)",
        (entity, ",".join(keap_ids), b"".join(hashes), list(updated_us), ",".join(content_hashes)),
    )
