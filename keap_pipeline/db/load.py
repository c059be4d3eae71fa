"""Loading one batch: COPY a normalized frame into its staging table, then one set-based upsert call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from typing import Literal, get_args

import polars as pl
import psycopg
from psycopg import sql

from keap_pipeline.db.roles import INGEST_ROLE
from keap_pipeline.entities import KEY_COLUMNS, Entity

# the one vocabulary (Dagster's config classes, the CLI's choices and the SQL functions' checks use it)
ConflictStrategy = Literal["keap_wins", "supabase_wins", "manual", "merge"]
MergeRule = Literal["keap_wins", "supabase_wins", "manual"]
CONFLICT_STRATEGIES: tuple[str, ...] = get_args(ConflictStrategy)
MERGE_RULES: tuple[str, ...] = get_args(MergeRule)


@dataclass
class UpsertCounts:
    """What the upsert function did with one batch (the columns of upsert_*_from_stage)."""

    seen: int = 0
    duplicates: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    local_pending: int = 0
    conflicts: int = 0
    conflicts_keap_wins: int = 0
    conflicts_supabase_wins: int = 0
    conflicts_merged: int = 0
    conflicts_parked: int = 0

    def add(self, other: UpsertCounts) -> None:
        """Add another batch's counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def begin_load(conn: psycopg.Connection, *, lock_timeout_seconds: float, relaxed_commit: bool) -> None:
    """The first statement of every transaction that loads Keap records (a batch, a replay), one round trip.

    - It runs as the ingestion's role (db.roles): only then do its writes count as Keap's.
    - It waits at most `lock_timeout_seconds` for any one lock (0 = no bound); then it fails with
      55P03, which the caller retries (pipeline.retries).
    - With `relaxed_commit` (a sync batch), its COMMIT returns before its WAL reaches disk
      (synchronous_commit = off, this transaction only). Safe there and only there: a batch's rows
      and its cursor commit together, so a server crash can lose at most the last few batches whole
      (never half of one), and the next run re-reads them from the older cursor. It saves one WAL
      flush per batch.

    All three are `set_config(..., is_local => true)`: they end with the transaction, so they work
    behind transaction-mode poolers and leave the connection as it was.
    """
    conn.execute(
        "select pg_catalog.set_config('role', %s, true),"
        " pg_catalog.set_config('lock_timeout', %s, true),"
        " pg_catalog.set_config('synchronous_commit',"
        "   case when %s then 'off' else pg_catalog.current_setting('synchronous_commit') end, true)",
        (INGEST_ROLE, f"{int(lock_timeout_seconds * 1000)}ms", relaxed_commit),
    )


def _split(qualified: str) -> sql.Identifier:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name)



def _copy(conn: psycopg.Connection, table: str, columns: tuple[str, ...], frame: pl.DataFrame, batch_id: uuid.UUID) -> None:
    data = frame.select(pl.lit(str(batch_id)).alias("batch_id"), *columns)
    statement = sql.SQL("copy {} ({}) from stdin (format csv)").format(
        _split(table),
        sql.SQL(", ").join(sql.Identifier(n) for n in ("batch_id", *columns)),
    )
    payload = data.write_csv(include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.6f%:z")
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(payload.encode("utf-8"))


def diff_frame(conn: psycopg.Connection, entity: Entity, frame: pl.DataFrame) -> tuple[pl.DataFrame, UpsertCounts]:
    """Phase one: COPY only keys and content hashes, and keep the rows the database does not already hold.

    Args:
        conn: a connection inside the batch's transaction.
        entity: the entity (keys staging table and diff function).
        frame: the normalized batch.

    Returns:
        (the rows that must be loaded, counts of the others: seen, unchanged, stale, duplicates).
    """
    counts = UpsertCounts()
    if frame.height == 0:
        return frame, counts
    batch_id = uuid.uuid4()
    _copy(conn, entity.keys_staging_table, KEY_COLUMNS, frame, batch_id)
    query = sql.SQL("select ordinal, verdict from {}(%s)").format(_split(entity.diff_function))
    with conn.cursor() as cur:
        verdicts = cur.execute(query, (batch_id,)).fetchall()  # every record but the unchanged ones
    load = [ordinal for ordinal, verdict in verdicts if verdict == "load"]
    counts.stale = sum(1 for _, verdict in verdicts if verdict == "stale")
    counts.duplicates = sum(1 for _, verdict in verdicts if verdict == "duplicate")
    counts.unchanged = frame.height - len(verdicts)
    counts.seen = frame.height - len(load)
    if len(load) == frame.height:
        return frame, counts
    return frame.filter(pl.col("ordinal").is_in(load)), counts


def copy_frame(conn: psycopg.Connection, entity: Entity, frame: pl.DataFrame, batch_id: uuid.UUID) -> int:
    """COPY a normalized frame into the entity's staging table under `batch_id`.

    The frame is rendered to CSV by polars (in Rust) and streamed; empty strings are quoted,
    NULLs are not, so PostgreSQL's CSV reader keeps the two apart.

    Args:
        conn: a connection inside the batch's transaction.
        entity: the entity (staging table and columns).
        frame: exactly the entity's staging columns, in order.
        batch_id: the batch key the upsert function will consume.

    Returns:
        The number of rows copied.

    Raises:
        ValueError: the frame's columns are not the staging columns.
    """
    names = entity.staging_column_names
    if tuple(frame.columns) != names:
        raise ValueError(f"{entity.name}: frame columns {frame.columns} are not the staging columns {names}")
    if frame.height == 0:
        return 0
    _copy(conn, entity.staging_table, names, frame, batch_id)
    return frame.height


def upsert_staged(
    conn: psycopg.Connection,
    entity: Entity,
    batch_id: uuid.UUID,
    *,
    strategy: str = "keap_wins",
    merge_rule: str = "manual",
) -> UpsertCounts:
    """Run the entity's set-based upsert function over one staged batch.

    Args:
        conn: a connection inside the batch's transaction (the one that staged it).
        entity: the entity (its upsert function).
        batch_id: the staged batch.
        strategy: conflict strategy: keap_wins, supabase_wins, manual or merge.
        merge_rule: for merge, fields changed on both sides: keap_wins, supabase_wins or manual (park).

    Returns:
        The function's counts.

    Raises:
        ValueError: an unknown strategy or rule.
    """
    if strategy not in CONFLICT_STRATEGIES:
        raise ValueError(f"unknown conflict strategy {strategy!r}; use one of {', '.join(CONFLICT_STRATEGIES)}")
    if merge_rule not in MERGE_RULES:
        raise ValueError(f"unknown merge rule {merge_rule!r}; use one of {', '.join(MERGE_RULES)}")
    query = sql.SQL("select * from {}(%s, %s, %s)").format(_split(entity.upsert_function))
    with conn.cursor() as cur:
        cur.execute(query, (batch_id, strategy, merge_rule))
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        names = [d.name for d in cur.description]
    return UpsertCounts(**dict(zip(names, row, strict=True)))


def load_frame(
    conn: psycopg.Connection,
    entity: Entity,
    frame: pl.DataFrame,
    *,
    strategy: str = "keap_wins",
    merge_rule: str = "manual",
    diff: bool = True,
) -> UpsertCounts:
    """Both phases of one batch inside the caller's transaction: diff by key and hash, then COPY + upsert what changed.

    Args:
        conn: a connection inside the batch's transaction.
        entity: the entity.
        frame: the normalized batch.
        strategy: conflict strategy.
        merge_rule: merge rule for fields changed on both sides.
        diff: run phase one; without it every row is staged (the upsert still writes only what changed).

    Returns:
        The counts of both phases.
    """
    todo, counts = diff_frame(conn, entity, frame) if diff else (frame, UpsertCounts())
    if todo.height:
        batch_id = uuid.uuid4()
        copy_frame(conn, entity, todo, batch_id)
        counts.add(upsert_staged(conn, entity, batch_id, strategy=strategy, merge_rule=merge_rule))
    return counts
