"""A batch's raw records (kept as the response's bytes while in flight) and their normalized form."""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from keap_pipeline.entities import Entity
from keap_pipeline.jsontext import UndecodableRecord, decode_list_body, list_spans, record_json
from keap_pipeline.normalize.errors import NormalizeError
from keap_pipeline.normalize.result import NormalizeResult, Rejected

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)


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
    if result.known is not None and result.known.height:
        keys.update(result.known["keap_id"].to_list())
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
    known: list[pl.DataFrame] = []
    hashes: list[pl.DataFrame] = []
    rejected: list[Rejected] = []
    offset = 0
    for page in pages:
        shifted = (pl.col("ordinal") + offset).cast(pl.Int32)
        frames.append(page.result.frame.with_columns(shifted))
        if page.result.known is not None:
            known.append(page.result.known.with_columns(shifted))
        if page.result.raw_hashes is not None:
            hashes.append(page.result.raw_hashes.with_columns(shifted))
        rejected.extend(
            r if r.ordinal is None else dataclasses.replace(r, ordinal=r.ordinal + offset) for r in page.result.rejected
        )
        offset += len(page.records)
    records = BatchRecords([page.records for page in pages])
    return records, NormalizeResult(
        frame=pl.concat(frames), rejected=rejected, fetched_at=pages[0].result.fetched_at,
        known=pl.concat(known) if known else None, raw_hashes=pl.concat(hashes) if hashes else None,
    )


class RecordSlice(Sequence[Any]):
    """Records [start, end) of a batch's raw records as a sequence of their own (no copy)."""

    def __init__(self, records: Sequence[Any], start: int, end: int) -> None:
        self._records = records
        self._start = start
        self._len = end - start

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("RecordSlice supports integer indexes only")
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        return self._records[self._start + index]

    def raw_record(self, index: int) -> bytes | None:
        """The record's own bytes in its page, when its page kept them (see PageBytes)."""
        return raw_record(self._records, self._start + index)


def split(records: Sequence[Any], result: NormalizeResult, size: int) -> list[tuple[Sequence[Any], NormalizeResult]]:
    """A batch cut into consecutive batches of at most `size` records, ordinals renumbered to match.

    A first load writes every record it reads, so a page holds more writes than one transaction
    may stream (BatchSizer.max_rows): its records go to the loaders as several batches, which load
    side by side and commit in order like any others.

    Args:
        records: the batch's raw records.
        result: their normalized form.
        size: the most records per batch (>= 1).

    Returns:
        The batches, in order (the batch itself when it is small enough).
    """
    if len(records) <= size:
        return [(records, result)]
    out: list[tuple[Sequence[Any], NormalizeResult]] = []

    def part(frame: pl.DataFrame | None, start: int, end: int) -> pl.DataFrame | None:
        if frame is None:
            return None
        ordinal = pl.col("ordinal")
        return frame.filter((ordinal >= start) & (ordinal < end)).with_columns((ordinal - start).cast(pl.Int32))

    for start in range(0, len(records), size):
        end = min(start + size, len(records))
        frame = part(result.frame, start, end)
        assert frame is not None
        rejected = [
            r if r.ordinal is None else dataclasses.replace(r, ordinal=r.ordinal - start)
            for r in result.rejected
            if (r.ordinal is None and start == 0) or (r.ordinal is not None and start <= r.ordinal < end)
        ]
        out.append((
            RecordSlice(records, start, end),
            NormalizeResult(
                frame=frame, rejected=rejected, fetched_at=result.fetched_at,
                known=part(result.known, start, end), raw_hashes=part(result.raw_hashes, start, end),
            ),
        ))
    return out
