"""One batch in one transaction: normalize, COPY, upsert, dead letters, cursor; isolate rows PostgreSQL refuses."""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl
import psycopg

from keap_pipeline.db.cursors import advance_cursor
from keap_pipeline.db.dead_letters import NewDeadLetter, close_superseded, record_dead_letters
from keap_pipeline.db.load import UpsertCounts, load_frame, relax_commit
from keap_pipeline.db.locks import bound_lock_waits
from keap_pipeline.db.roles import as_ingestion
from keap_pipeline.entities import Entity
from keap_pipeline.errors import KeapPipelineError
from keap_pipeline.keap.client import decode_json
from keap_pipeline.normalize.result import NormalizeResult, Rejected
from keap_pipeline.pipeline.parallel import TurnYielded

if TYPE_CHECKING:
    from keap_pipeline.pipeline.parallel import Turn

log = logging.getLogger(__name__)

# a batch whose contacts an app keeps editing while it loads is retried this often, then fails
MAX_ATTEMPTS = 5
# a loader waits at most this long for any one row lock, then retries its batch (issue 15)
DEFAULT_LOCK_TIMEOUT_SECONDS = 30.0


class LockWaitsExhausted(KeapPipelineError):
    """A batch timed out waiting for row locks in every attempt; the run stops with its cursor exact."""


class PageBytes(Sequence[Any]):
    """A page's raw records kept as the response body's bytes, decoded again only when one is read.

    A batch's raw records are read again only for a record PostgreSQL refuses (its dead letter
    keeps the record as Keap sent it), yet they stay in memory while the batch waits and loads;
    as decoded dicts they take about five times the bytes of the JSON (3.1 MB against 0.63 MB for
    1000 contacts), so pages in flight keep the bytes instead.
    """

    def __init__(self, raw: bytes, list_key: str, count: int) -> None:
        self._raw = raw
        self._list_key = list_key
        self._count = count
        self._decoded: list[Any] | None = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("PageBytes supports integer indexes only")
        if self._decoded is None:
            # decoded once per page that has a refused record, kept while its batch lives
            self._decoded = decode_json(self._raw)[self._list_key]
        return self._decoded[index]


class BatchRecords(Sequence[Any]):
    """The raw records of several pages as one sequence, in order (no copy of the pages)."""

    def __init__(self, parts: Sequence[Sequence[Any]]) -> None:
        self._parts = list(parts)
        self._starts: list[int] = []
        total = 0
        for part in self._parts:
            self._starts.append(total)
            total += len(part)
        self._len = total

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("BatchRecords supports integer indexes only")
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        part = bisect.bisect_right(self._starts, index) - 1
        return self._parts[part][index - self._starts[part]]


@dataclass(frozen=True)
class NormalizedPage:
    """One page of raw records with its normalized form (made ahead, in the read-ahead thread)."""

    records: Sequence[Any]
    result: NormalizeResult


def normalize_page(entity: Entity, records: list[Any], raw: bytes | None = None) -> NormalizedPage:
    """Normalize one page of raw records.

    Args:
        entity: the entity (its normalizer).
        records: the page's raw records, in Keap's order.
        raw: the page's response body, when there is one: the page then keeps these bytes
            instead of the decoded records (PageBytes).

    Returns:
        The page with its normalized frame and rejections.
    """
    result = entity.resolve_normalizer()(records, fetched_at=datetime.now(UTC))
    kept: Sequence[Any] = records if raw is None else PageBytes(raw, entity.list_key, len(records))
    return NormalizedPage(kept, result)


def combine(pages: Sequence[NormalizedPage]) -> tuple[Sequence[Any], NormalizeResult]:
    """One batch out of several normalized pages: records concatenated, ordinals renumbered to match.

    Args:
        pages: at least one page.

    Returns:
        (all raw records, their combined NormalizeResult).
    """
    if len(pages) == 1:
        return pages[0].records, pages[0].result
    frames: list[pl.DataFrame] = []
    rejected: list[Rejected] = []
    offset = 0
    for page in pages:
        frames.append(page.result.frame.with_columns((pl.col("ordinal") + offset).cast(pl.Int32)))
        offset += len(page.records)
        rejected.extend(page.result.rejected)
    records = BatchRecords([page.records for page in pages])
    return records, NormalizeResult(frame=pl.concat(frames), rejected=rejected, fetched_at=pages[0].result.fetched_at)


def loaded_concurrently(entity: Entity, err: psycopg.Error) -> bool:
    """Whether `err` says another transaction inserted one of the batch's records first.

    The upsert inserts only records it did not find, so a duplicate key on the target's keap_id
    means a concurrent loader (another run) inserted it after this batch looked: retrying the
    batch finds the row and treats it as an update.
    """
    if not isinstance(err, psycopg.errors.UniqueViolation) or entity.target_table is None:
        return False
    schema, _, table = entity.target_table.partition(".")
    return err.diag.table_name == table and err.diag.schema_name == schema and err.diag.constraint_name == f"{table}_keap_id_key"


def worth_retrying(entity: Entity, err: psycopg.Error) -> bool:
    """Whether a transaction that loads `entity` failed only because a concurrent one got there first.

    An app or another run's loader changed (40001) or inserted (a duplicate keap_id) one of its
    records between classification and write, or the two deadlocked and PostgreSQL picked this
    one (40P01): run the whole transaction again, and it sees the other's rows.
    """
    return isinstance(
        err,
        (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable),
    ) or loaded_concurrently(entity, err)


def retry_pause(attempt: int) -> None:
    """A short, growing pause before attempt `attempt + 1`, so the transaction that won can finish."""
    time.sleep(min(1.0, 0.05 * 2**attempt))


def give_up(entity: Entity, err: psycopg.Error, attempts: int, lock_timeout_seconds: float) -> BaseException:
    """The error to raise after the last attempt: lock timeouts become a message that says what to do."""
    if isinstance(err, psycopg.errors.LockNotAvailable):
        return LockWaitsExhausted(
            f"a batch of {entity.name} waited more than {lock_timeout_seconds:g} s for rows another transaction "
            f"holds, in each of {attempts} attempts (a long transaction of an app or an operator on these rows?). "
            "Nothing of this batch was written; the batches before it are committed with their cursor, and the "
            "next run resumes there. pg_stat_activity shows who holds the rows; raise the wait with `--lock-timeout`."
        )
    return err


@dataclass
class BatchOutcome:
    """What one committed batch did."""

    counts: UpsertCounts
    dead_lettered: int
    max_updated_at: datetime | None


def load_isolating(
    conn: psycopg.Connection,
    entity: Entity,
    frame: pl.DataFrame,
    records: Sequence[Any],
    strategy: str,
    merge_rule: str,
    counts: UpsertCounts,
    refused: list[NewDeadLetter],
    diff: bool = True,
) -> None:
    """COPY + upsert under a savepoint; when PostgreSQL refuses the rows, halve until the culprit is alone.

    The normalizer already rejects what it knows the database refuses; this catches the rest
    (a constraint it does not know), so one bad record costs its own dead letter, not the batch.
    """
    try:
        with conn.transaction():
            found = load_frame(conn, entity, frame, strategy=strategy, merge_rule=merge_rule, diff=diff)
        counts.add(found)
        return
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as err:
        if loaded_concurrently(entity, err):
            raise  # not this record's fault: the whole batch is retried (load_batch)
        if frame.height == 1:
            ordinal = int(frame["ordinal"][0])
            keap_id = frame["keap_id"][0]
            message = (err.diag.message_primary or str(err)).strip()
            log.warning("%s %s refused by PostgreSQL: %s", entity.name, keap_id, message)
            refused.append(
                NewDeadLetter(
                    keap_id=keap_id,
                    record=records[ordinal],
                    reason=f"refused by PostgreSQL ({err.diag.sqlstate}): {message}",
                    field=err.diag.column_name,
                )
            )
            return
    half = frame.height // 2
    for part in (frame.slice(0, half), frame.slice(half)):
        load_isolating(conn, entity, part, records, strategy, merge_rule, counts, refused, diff)


def load_batch(
    conn: psycopg.Connection,
    entity: Entity,
    records: Sequence[Any],
    *,
    scope: str,
    run_id: str | None,
    strategy: str,
    merge_rule: str,
    fetched_at: datetime | None = None,
    diff: bool = True,
    normalized: NormalizeResult | None = None,
    turn: Turn | None = None,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
) -> BatchOutcome:
    """Load one batch of raw Keap records in ONE transaction, cursor included.

    Args:
        conn: a connection with no transaction open.
        entity: the entity.
        records: the raw records of the batch's pages, in Keap's order.
        scope: the cursor scope to advance.
        run_id: the run, kept with dead letters and the cursor.
        strategy: conflict strategy.
        merge_rule: the merge rule for fields changed on both sides.
        fetched_at: when the pages were fetched (UTC); now when None.
        diff: run the key/hash diff before staging full rows (see BatchSizer).
        normalized: `records` already normalized (see combine); normalized here when None.
        turn: the batch's commit turn (pipeline.parallel): `turn.begin()` runs first in each
            attempt's transaction, `turn()` after the batch's rows are written and before the
            cursor moves and it commits; an exception it raises rolls the batch back.
        lock_timeout_seconds: the longest wait for any one lock, then the attempt is retried
            (0 = no bound).

    Returns:
        The batch's counts, dead letters and highest Keap update time.
    """
    result = normalized or entity.resolve_normalizer()(records, fetched_at=fetched_at or datetime.now(UTC))
    letters = [
        NewDeadLetter(keap_id=r.keap_id, record=r.record, reason=r.reason, field=r.field) for r in result.rejected
    ]
    frame: pl.DataFrame = result.frame
    max_updated = frame["keap_updated_at"].max() if frame.height else None
    attempt = 0
    yields = 0
    while True:
        attempt += 1
        counts = UpsertCounts()
        refused: list[NewDeadLetter] = []
        try:
            with conn.transaction():
                if turn is not None:
                    turn.begin()
                as_ingestion(conn)
                relax_commit(conn)
                bound_lock_waits(conn, lock_timeout_seconds)
                if frame.height:
                    load_isolating(conn, entity, frame, records, strategy, merge_rule, counts, refused, diff)
                record_dead_letters(conn, entity.name, [*letters, *refused], run_id)
                refused_ids = {r.keap_id for r in refused}
                close_superseded(
                    conn, entity.name, [k for k in frame["keap_id"].to_list() if k not in refused_ids]
                )
                if turn is not None:
                    turn()
                if max_updated is not None:
                    advance_cursor(conn, entity.name, scope, max_updated, len(records), run_id)  # type: ignore[arg-type]
        except psycopg.Error as err:
            if not worth_retrying(entity, err):
                raise
            if attempt == MAX_ATTEMPTS:
                raise give_up(entity, err, attempt, lock_timeout_seconds) from err
            log.info("%s: batch retried (%s/%s): %s", entity.name, attempt, MAX_ATTEMPTS, err.diag.message_primary)
            retry_pause(attempt)
            continue
        except TurnYielded:
            # the batch before this one restarted: this one let go of its rows and redoes its work,
            # which is not an attempt of its own (bounded: the batch before it restarts at most
            # MAX_ATTEMPTS - 1 times before it commits or fails the run)
            yields += 1
            attempt -= 1
            if yields > MAX_ATTEMPTS * MAX_ATTEMPTS:
                raise
            log.info("%s: batch redone after the batch before it restarted", entity.name)
            continue
        break
    return BatchOutcome(
        counts=counts, dead_lettered=len(letters) + len(refused), max_updated_at=max_updated  # type: ignore[arg-type]
    )
