"""One batch in one transaction: normalize, COPY, upsert, dead letters, cursor; isolate rows PostgreSQL refuses."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl
import psycopg

from keap_pipeline.db.cursors import advance_cursor
from keap_pipeline.db.dead_letters import NewDeadLetter, close_superseded, record_dead_letters
from keap_pipeline.db.load import UpsertCounts, begin_load, diff_frame, load_frame
from keap_pipeline.db.raw_keys import remember_keys
from keap_pipeline.entities import KEY_COLUMNS, CursorKind, Entity
from keap_pipeline.normalize.result import NormalizeResult
from keap_pipeline.pipeline.pages import normalize_records, raw_record
from keap_pipeline.pipeline.parallel import TurnYielded
from keap_pipeline.pipeline.raw_keys import at_positions
from keap_pipeline.pipeline.retries import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    MAX_ATTEMPTS,
    give_up,
    loaded_concurrently,
    retry_pause,
    worth_retrying,
)

if TYPE_CHECKING:
    from keap_pipeline.pipeline.parallel import Turn

log = logging.getLogger(__name__)

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


def pass_position(frame: pl.DataFrame, rejected_ids: Iterable[str | None]) -> str | None:
    """The highest Keap id a batch of an id-ordered pass covers (loaded or dead-lettered), as digits.

    The listing is ordered by id, so a killed pass resumes after it (`id_filter>N`). Ids compare as
    numbers, not as text ("10" > "9").

    Args:
        frame: the rows the batch (or its part) covers.
        rejected_ids: the Keap ids of the records the normalizer rejected there.
    """
    ids = [k for k in frame["keap_id"].to_list() if k] if frame.height else []
    ids += [k for k in rejected_ids if k]
    digits = [int(k) for k in ids if k.isascii() and k.isdigit()]
    return str(max(digits)) if digits else None


@dataclass
class BatchOutcome:
    """What one committed batch did."""

    counts: UpsertCounts
    dead_lettered: int
    max_updated_at: datetime | None
    parts: int = 1  # the transactions it committed in (see load_batch's max_rows)


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


@dataclass
class _Part:
    """What a batch that commits in parts has still to write: its rows from ordinal `start` on."""

    start: int
    rows: pl.DataFrame  # the rows to stage, in ordinal order: all of them, or the diff's verdicts 'load'
    diff: bool  # whether `rows` still need the key/hash diff
    known: pl.DataFrame | None = None  # keys of records not normalized (pipeline.raw_keys), to diff first


def _judge_known(
    conn: psycopg.Connection,
    entity: Entity,
    records: Sequence[Any],
    rows: pl.DataFrame,
    known: pl.DataFrame,
    counts: UpsertCounts,
) -> tuple[pl.DataFrame, bool, list[NewDeadLetter]]:
    """The key/hash diff over the normalized rows and the known records' keys; known records it loads are normalized now.

    A record whose bytes were normalized before (pipeline.raw_keys) comes with its keys only. The
    diff judges it as it judges any row (the sync table may have changed since: an app edit, a
    write-back, a deletion); the few it says to load are decoded and normalized here, in the loader.

    Returns:
        (the rows to stage, whether they still need the diff, dead letters of the records normalized here).
    """
    try:
        with conn.transaction():
            todo, found = diff_frame(conn, entity, pl.concat([rows.select(KEY_COLUMNS), known]))
    except RECORD_FAULTS:
        todo = None  # a key the keys' COPY refuses: normalize them all, diff and isolate as usual
    stage_diff = todo is None
    late = known["ordinal"].to_list()
    if todo is not None:
        counts.add(found)
        load = todo["ordinal"].to_list()
        wanted = set(load)
        late = [o for o in late if o in wanted]
        rows = rows.filter(pl.col("ordinal").is_in(load))
    letters: list[NewDeadLetter] = []
    if late:
        normalized = at_positions(
            normalize_records(entity, [records[o] for o in late], fetched_at=datetime.now(UTC)), late
        )
        rows = pl.concat([rows, normalized.frame]).sort("ordinal")
        letters = [
            NewDeadLetter(
                keap_id=r.keap_id, record=r.record, reason=r.reason, field=r.field,
                raw=None if r.ordinal is None else raw_record(records, r.ordinal), ordinal=r.ordinal,
            )
            for r in normalized.rejected
        ]
    return rows, stage_diff, letters


def _remember(
    conn: psycopg.Connection, entity: Entity, fresh: pl.DataFrame, letters: Iterable[NewDeadLetter]
) -> None:
    """Store the raw hashes and keys of a part's records normalized in the read-ahead, but of its dead letters."""
    dead = [d.keap_id for d in letters if d.keap_id is not None]
    if dead:
        fresh = fresh.filter(~pl.col("keap_id").is_in(dead))
    if not fresh.height:
        return
    # a record read twice in the batch: its later bytes
    fresh = fresh.sort("ordinal").unique(subset="keap_id", keep="last", maintain_order=True)
    remember_keys(
        conn, entity.name, fresh["keap_id"].to_list(), fresh["raw_hash"].to_list(),
        fresh["keap_updated_at"].dt.epoch("us").to_list(), fresh["content_hash"].to_list(),
    )


def _covered(frame: pl.DataFrame, start: int, end: int | None) -> pl.DataFrame:
    """The batch's rows with ordinals in [start, end) (end None: to the last)."""
    if start == 0 and end is None:
        return frame
    keep = pl.col("ordinal") >= start
    if end is not None:
        keep = keep & (pl.col("ordinal") < end)
    return frame.filter(keep)


def _within(ordinal: int | None, start: int, end: int | None) -> bool:
    # a dead letter without an ordinal goes with the batch's last part
    if ordinal is None:
        return end is None
    return ordinal >= start and (end is None or ordinal < end)


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
    max_rows: int | None = None,
) -> BatchOutcome:
    """Load one batch of raw Keap records in ONE transaction, cursor included; in parts when it writes more than `max_rows`.

    A batch whose rows to write (after the key/hash diff, when it runs) number more than
    `max_rows` commits in parts, in order: each part writes at most `max_rows` of them, with the
    dead letters of its records, and moves the cursor to its last record (the cursor bound is
    inclusive, so a run killed between parts re-reads from there and writes nothing twice). This
    keeps every transaction's streamed changes within the realtime budget (BatchSizer) even when a
    batch of mostly unchanged pages ends with many changed records. The diff runs once, in the
    first part.

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
            attempt's transaction (`turn.resume()` in a later part's first attempt), `turn()` after
            the rows are written and before the cursor moves and it commits; an exception it raises
            rolls the transaction back.
        lock_timeout_seconds: the longest wait for any one lock, then the attempt is retried
            (0 = no bound).
        max_rows: the most rows one transaction writes (None: the whole batch in one).

    Returns:
        The batch's counts, dead letters and highest Keap update time, and how many parts it took.
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
    if max_rows is not None and frame.height > max_rows:
        frame = frame.sort("ordinal")  # parts are ranges of ordinals
    # records not normalized because their bytes were (pipeline.raw_keys): their keys count like rows'
    known = result.known if result.known is not None and result.known.height else None
    keys = frame.select(KEY_COLUMNS) if known is None else pl.concat([frame.select(KEY_COLUMNS), known]).sort("ordinal")
    fresh = None
    if result.raw_hashes is not None and result.raw_hashes.height and frame.height:
        fresh = keys.join(result.raw_hashes, on="ordinal", how="inner")
    max_updated = keys["keap_updated_at"].max() if keys.height else None
    total = UpsertCounts()
    dead_lettered = 0
    parts = 0
    part: _Part | None = _Part(start=0, rows=frame, diff=diff, known=known)
    while part is not None:
        counts, kept, part = _commit_part(
            conn, entity, records, keys, letters, part, first=parts == 0, max_rows=max_rows, scope=scope,
            run_id=run_id, strategy=strategy, merge_rule=merge_rule, turn=turn,
            lock_timeout_seconds=lock_timeout_seconds, fresh=fresh,
        )
        parts += 1
        total.add(counts)
        dead_lettered += kept
    return BatchOutcome(
        counts=total, dead_lettered=dead_lettered, max_updated_at=max_updated, parts=parts  # type: ignore[arg-type]
    )


def _commit_part(
    conn: psycopg.Connection,
    entity: Entity,
    records: Sequence[Any],
    frame: pl.DataFrame,
    letters: Sequence[NewDeadLetter],
    part: _Part,
    *,
    first: bool,
    max_rows: int | None,
    scope: str,
    run_id: str | None,
    strategy: str,
    merge_rule: str,
    turn: Turn | None,
    lock_timeout_seconds: float,
    fresh: pl.DataFrame | None = None,
) -> tuple[UpsertCounts, int, _Part | None]:
    """One transaction of load_batch, retried as a whole: (its counts, dead letters kept, the part after it or None).

    `frame` holds the keys (ordinal, keap_id, keap_updated_at) of every record of the batch that is
    not a normalizer's dead letter, normalized or known; `fresh` the raw hashes of those normalized
    in the read-ahead, to remember.
    """
    attempt = 0
    yields = 0
    while True:
        attempt += 1
        counts = UpsertCounts()
        refused: list[NewDeadLetter] = []
        end: int | None = None
        rest: pl.DataFrame | None = None
        try:
            with conn.transaction():
                if turn is not None:
                    if first or attempt > 1:
                        turn.begin()
                    else:
                        turn.resume()
                begin_load(conn, lock_timeout_seconds=lock_timeout_seconds, relaxed_commit=True)
                rows, stage_diff = part.rows, part.diff
                if part.known is not None:
                    rows, stage_diff, late = _judge_known(conn, entity, records, rows, part.known, counts)
                    refused.extend(late)
                if max_rows is not None and rows.height > max_rows:
                    if stage_diff:
                        try:
                            with conn.transaction():
                                todo, found = diff_frame(conn, entity, rows)
                            rows, stage_diff = todo, False
                            counts.add(found)
                        except RECORD_FAULTS:
                            pass  # a record the keys' COPY refuses: each part diffs and isolates it below
                    if rows.height > max_rows:
                        end = int(rows["ordinal"][max_rows])
                        rows, rest = rows.slice(0, max_rows), rows.slice(max_rows)
                covered = _covered(frame, part.start, end)
                if rows.height:
                    load_isolating(conn, entity, rows, records, strategy, merge_rule, counts, refused, stage_diff)
                mine = [d for d in letters if _within(d.ordinal, part.start, end)]
                kept, loaded = settle_letters(covered, [*mine, *refused])
                record_dead_letters(conn, entity.name, kept, run_id)
                close_superseded(conn, entity.name, loaded)
                if fresh is not None:
                    _remember(conn, entity, _covered(fresh, part.start, end), [*mine, *refused])
                if turn is not None:
                    turn()
                max_updated = covered["keap_updated_at"].max() if covered.height else None
                if max_updated is not None:
                    resume_after = (
                        pass_position(covered, (d.keap_id for d in mine))
                        if entity.cursor is CursorKind.ID else None
                    )
                    advance_cursor(
                        conn, entity.name, scope, max_updated,  # type: ignore[arg-type]
                        (len(records) if end is None else end) - part.start, run_id, resume_after=resume_after,
                    )
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
    after = None if end is None or rest is None else _Part(start=end, rows=rest, diff=stage_diff)
    return counts, len(kept), after
