"""One batch in one transaction: normalize, COPY, upsert, dead letters, cursor; isolate rows PostgreSQL refuses."""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
import re
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
from keap_pipeline.jsontext import UndecodableRecord, decode_list_body, list_spans, record_json
from keap_pipeline.normalize.errors import NormalizeError
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
        self._spans: list[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("PageBytes supports integer indexes only")
        if self._decoded is None:
            # decoded once per page that has a refused record, kept while its batch lives (as
            # the client decoded it: a record that is not JSON alone is an UndecodableRecord)
            self._decoded = decode_list_body(self._raw, self._list_key)[self._list_key]
        return self._decoded[index]

    def raw_record(self, index: int) -> bytes | None:
        """The record's own bytes in the page, exactly as Keap sent them (None if the page cannot be split)."""
        if self._spans is None:
            spans = list_spans(self._raw, self._list_key)
            self._spans = spans if spans is not None and len(spans) == self._count else []
        if not self._spans:
            return None
        start, end = self._spans[index]
        return self._raw[start:end]


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

    def raw_record(self, index: int) -> bytes | None:
        """The record's own bytes in its page, when its page kept them (see PageBytes)."""
        part = bisect.bisect_right(self._starts, index) - 1
        return raw_record(self._parts[part], index - self._starts[part])


def batch_keys(records: Sequence[Any], result: NormalizeResult) -> set[str]:
    """What a batch writes, for LoaderPool: batches in flight together must not share one.

    The keap_ids of its rows and dead letters, and for a dead letter without an id the digest
    of its record (two batches holding the same id-less record write one dead-letter row: the
    second would wait on the first's uncommitted row while the first waits for its commit turn).

    Args:
        records: the batch's raw records.
        result: their normalized form (rejections with ordinals).

    Returns:
        The keys.
    """
    keys: set[str] = set(result.frame["keap_id"].to_list()) if result.frame.height else set()
    for r in result.rejected:
        if r.keap_id:
            keys.add(r.keap_id)
        else:
            raw = None if r.ordinal is None else raw_record(records, r.ordinal)
            text = record_json(r.record, raw if raw is not None else getattr(r.record, "raw", None))
            keys.add("record:" + hashlib.sha256(text.encode("utf-8")).hexdigest())
    return keys


def raw_record(records: Sequence[Any], index: int) -> bytes | None:
    """A record's bytes as Keap sent them, when `records` kept them (PageBytes, BatchRecords), else None."""
    read = getattr(records, "raw_record", None)
    return read(index) if read is not None else None


def _rejected_ordinals(result: NormalizeResult, count: int) -> list[Rejected] | None:
    """The result's rejections with their ordinals (the positions the frame does not hold, in order)."""
    ordinals = result.frame["ordinal"].to_list() if result.frame.height else []
    missing = sorted(set(range(count)) - set(ordinals))
    if len(ordinals) + len(result.rejected) != count or len(missing) != len(result.rejected):
        return None
    return [
        r if r.ordinal == i else dataclasses.replace(r, ordinal=i)
        for i, r in zip(missing, result.rejected, strict=True)
    ]


def normalize_records(entity: Entity, records: Sequence[Any], *, fetched_at: datetime) -> NormalizeResult:
    """Run the entity's normalizer so that no record can fail the batch, whatever it holds.

    Every entity's records pass through here: a record that is not JSON on its own
    (UndecodableRecord) is rejected before the normalizer sees it; a normalizer that raises on
    a batch (a record it did not foresee) is run again record by record, and a record it still
    raises on is rejected naming the exception's type (never its text). Only the normalizer's own
    NormalizeError (a batch it cannot take at all: a naive fetched_at, too many records) passes.
    Every rejection carries its ordinal.

    Args:
        entity: the entity (its normalizer).
        records: the batch's raw records, in Keap's order.
        fetched_at: when they were fetched (time-zone aware).

    Returns:
        Exactly one frame row or one rejection per record: frame.height + len(rejected) == len(records).
    """
    normalize = entity.resolve_normalizer()
    if not any(isinstance(r, UndecodableRecord) for r in records):
        try:
            result = normalize(records, fetched_at=fetched_at)
        except NormalizeError:
            raise
        except Exception:  # noqa: BLE001 - found record by record below
            log.warning("%s: the normalizer failed on a batch; normalizing it record by record", entity.name)
        else:
            rejected = _rejected_ordinals(result, len(records))
            if rejected is not None:
                return NormalizeResult(frame=result.frame, rejected=rejected, fetched_at=result.fetched_at)
            log.warning("%s: the normalizer did not account for every record; normalizing record by record", entity.name)
    frames: list[pl.DataFrame] = []
    rejected = []
    for ordinal, record in enumerate(records):
        if isinstance(record, UndecodableRecord):
            rejected.append(Rejected(record, None, record.reason, None, ordinal))
            continue
        try:
            one = normalize([record], fetched_at=fetched_at)
        except NormalizeError:
            raise
        except Exception as exc:  # noqa: BLE001 - this record is the one; its text may quote values
            reason = f"the {entity.name} normalizer failed on this record ({type(exc).__name__})"
            rejected.append(Rejected(record, None, reason, None, ordinal))
            continue
        if one.frame.height:
            frames.append(one.frame.with_columns(pl.lit(ordinal, dtype=pl.Int32).alias("ordinal")))
        rejected.extend(dataclasses.replace(r, ordinal=ordinal) for r in one.rejected)
    empty = normalize([], fetched_at=fetched_at).frame
    frame = pl.concat(frames) if frames else empty
    return NormalizeResult(frame=frame.select(empty.columns), rejected=rejected, fetched_at=fetched_at)


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
    result = normalize_records(entity, records, fetched_at=datetime.now(UTC))
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
        rejected.extend(
            r if r.ordinal is None else dataclasses.replace(r, ordinal=r.ordinal + offset) for r in page.result.rejected
        )
        offset += len(page.records)
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


# what PostgreSQL refuses because of one record's values: data exceptions (22: too long, out of
# range, invalid text), integrity violations (23: a constraint) and program limits (54: a value
# too big for an index row, nesting too deep for jsonb)
RECORD_FAULTS: tuple[type[psycopg.Error], ...] = (
    psycopg.errors.DataError,
    psycopg.errors.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
)
_CONTEXT_COLUMN = re.compile(r"\bcolumn ([a-z_][a-z0-9_]*)")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def refusal_reason(entity: Entity, err: psycopg.Error) -> tuple[str, str | None]:
    """Why PostgreSQL refused one record, built from names only, never from its message.

    PostgreSQL's messages can quote the value ('invalid input syntax for type numeric: "..."',
    a RAISE in a trigger, ...), and reasons reach logs and Dagster metadata: the reason is the
    condition and SQLSTATE with the constraint, column and table the error names.

    Args:
        entity: the entity (its staging columns: the only column names read from CONTEXT).
        err: the error.

    Returns:
        (reason, column name or None).
    """
    diag = err.diag
    sqlstate = diag.sqlstate or "unknown"
    condition = _CAMEL.sub("_", type(err).__name__).lower()
    column = diag.column_name
    if column is None and diag.context:
        # COPY says "COPY stage_contacts, line 1, column email: <the value>": the name, not the value
        m = _CONTEXT_COLUMN.search(diag.context)
        if m is not None and m.group(1) in entity.staging_column_names:
            column = m.group(1)
    parts = [f"refused by PostgreSQL: {condition} ({sqlstate})"]
    if diag.constraint_name:
        parts.append(f"constraint {diag.constraint_name}")
    if column:
        parts.append(f"column {column}")
    if diag.table_name:
        parts.append(f"table {diag.schema_name}.{diag.table_name}" if diag.schema_name else f"table {diag.table_name}")
    return ", ".join(parts), column


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
    except RECORD_FAULTS as err:
        if loaded_concurrently(entity, err):
            raise  # not this record's fault: the whole batch is retried (load_batch)
        if frame.height == 1:
            ordinal = int(frame["ordinal"][0])
            keap_id = frame["keap_id"][0]
            reason, column = refusal_reason(entity, err)
            log.warning("%s %s: %s", entity.name, keap_id, reason)
            refused.append(
                NewDeadLetter(
                    keap_id=keap_id,
                    record=records[ordinal],
                    reason=reason,
                    field=column,
                    raw=raw_record(records, ordinal),
                    ordinal=ordinal,
                )
            )
            return
    half = frame.height // 2
    for part in (frame.slice(0, half), frame.slice(half)):
        load_isolating(conn, entity, part, records, strategy, merge_rule, counts, refused, diff)


def settle_letters(frame: pl.DataFrame, letters: Sequence[NewDeadLetter]) -> tuple[list[NewDeadLetter], list[str]]:
    """Which of a batch's dead letters to keep, and whose open dead letters its loads close.

    A record can come more than once in a batch (Keap re-sent it while the listing ran). What
    counts is its last version in Keap's order: a dead letter followed by a version that loads is
    superseded (not kept), of several failing versions only the last is kept, and a load
    followed by a version that cannot load does not close the record's open dead letter (the
    latest version is the one that failed). Records without an id are all kept.

    Args:
        frame: the batch's loadable rows (ordinal, keap_id, ...), refused ones included.
        letters: the batch's dead letters (rejected and refused), with ordinals.

    Returns:
        (the dead letters to record, in Keap's order; the keap_ids whose open dead letters close).
    """
    last_dead: dict[str, int] = {}
    for d in letters:
        if d.keap_id is not None:
            last_dead[d.keap_id] = max(last_dead.get(d.keap_id, -1), -1 if d.ordinal is None else d.ordinal)
    dead_at = {(d.keap_id, d.ordinal) for d in letters if d.keap_id is not None}
    last_loaded: dict[str, int] = {}
    if frame.height:
        for ordinal, keap_id in zip(frame["ordinal"].to_list(), frame["keap_id"].to_list(), strict=True):
            if (keap_id, ordinal) not in dead_at and ordinal > last_loaded.get(keap_id, -1):
                last_loaded[keap_id] = ordinal
    kept = [
        d
        for d in letters
        if d.keap_id is None
        or (last_loaded.get(d.keap_id, -1) < last_dead[d.keap_id] and (-1 if d.ordinal is None else d.ordinal) == last_dead[d.keap_id])
    ]
    kept.sort(key=lambda d: -1 if d.ordinal is None else d.ordinal)
    closing = [k for k, ordinal in last_loaded.items() if ordinal > last_dead.get(k, -1)]
    return kept, closing


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
    result = normalized or normalize_records(entity, records, fetched_at=fetched_at or datetime.now(UTC))
    letters = [
        NewDeadLetter(
            keap_id=r.keap_id, record=r.record, reason=r.reason, field=r.field,
            raw=None if r.ordinal is None else raw_record(records, r.ordinal), ordinal=r.ordinal,
        )
        for r in result.rejected
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
                kept, loaded = settle_letters(frame, [*letters, *refused])
                record_dead_letters(conn, entity.name, kept, run_id)
                close_superseded(conn, entity.name, loaded)
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
        counts=counts, dead_lettered=len(kept), max_updated_at=max_updated  # type: ignore[arg-type]
    )
