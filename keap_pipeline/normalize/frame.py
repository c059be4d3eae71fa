"""From one entity's row rule to its staging frame: schema from the entity table, rejections, content hash.

An entity's normalizer is a function ``row(ordinal, record) -> tuple`` (the staging columns but
content_hash, in order; ``fields.Reject`` for a record that cannot be loaded) wrapped in a
``RowNormalizer``, which does what every entity shares: refuse a batch it cannot take at all
(a naive fetched_at, more records than an Int32 ordinal numbers), turn each Reject into a
``Rejected`` with the record's id when it has a valid one, build the frame with exactly the
staging columns' types, find the rows holding a lone surrogate (not UTF-8: neither polars nor
PostgreSQL can hold one) and reject them naming their Keap field, and append the content hash
of ``entity.hashed_columns``.

Row values are what the frame's types are built from cheaply: strings, ints, bools, Decimals,
and for timestamptz epoch microseconds, for date days since 1970-01-01.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from keap_pipeline.entities import Column, Entity
from keap_pipeline.normalize.content_hash import add_content_hash
from keap_pipeline.normalize.errors import BatchTooLargeError, NaiveFetchedAtError
from keap_pipeline.normalize.fields import INT32_MAX, SURROGATE_RULE, Reject, id_digits, type_name
from keap_pipeline.normalize.result import NormalizeResult, Rejected

UTC_US = pl.Datetime("us", "UTC")
_NUMERIC = re.compile(r"numeric\((\d+),(\d+)\)")
# Data type instances, not classes: pl.Schema stores instances either way, and a dict of
# instances is typed as one (a dict mixing classes and instances is not).
_TYPES: dict[str, pl.DataType] = {
    "integer": pl.Int32(),
    "bigint": pl.Int64(),
    "boolean": pl.Boolean(),
    "text": pl.Utf8(),
    "jsonb": pl.Utf8(),
    "uuid": pl.Utf8(),
    "date": pl.Date(),
    "timestamptz": UTC_US,
}

Row = Callable[[int, Any], tuple[Any, ...]]


def polars_type(column: Column) -> pl.DataType:
    """The frame type of a staging column (varchar, text, jsonb and uuid are text; numeric(p,s) is Decimal(p,s)).

    Raises:
        ValueError: a PostgreSQL type the normalizers do not produce.
    """
    if column.pg_type.startswith("varchar("):
        return pl.Utf8()
    numeric = _NUMERIC.fullmatch(column.pg_type.replace(" ", ""))
    if numeric is not None:
        return pl.Decimal(int(numeric.group(1)), int(numeric.group(2)))
    try:
        return _TYPES[column.pg_type]
    except KeyError:
        raise ValueError(f"staging column {column.name}: no frame type for {column.pg_type}") from None


def staging_schema(entity: Entity) -> pl.Schema:
    """The schema of the entity's staging frame: every staging column, in COPY order."""
    return pl.Schema({c.name: polars_type(c) for c in entity.staging_columns})


def valid_id(record: Any, limit: int) -> str | None:
    """The record's ``id`` as digits when it has a valid one (within the keap_id limit), for a Rejected."""
    if type(record) is not dict:
        return None
    try:
        keap_id = id_digits(record.get("id"), "id")
    except Reject:
        return None
    return keap_id if len(keap_id) <= limit else None


def record_id(record: Any, limit: int) -> str:
    """The keap_id of a record: its ``id`` as digits within the column limit.

    Raises:
        Reject: the record is not an object, or its id is missing, not digits or too long.
    """
    if type(record) is not dict:
        raise Reject(None, f"the record must be a JSON object, got a JSON {type_name(record)}")
    keap_id = record.get("id")
    if type(keap_id) is not str or not keap_id.isdigit() or not keap_id.isascii():
        keap_id = id_digits(keap_id, "id")
    if len(keap_id) > limit:
        raise Reject(
            "id", f"id is {len(keap_id)} characters, longer than the column limit keap_id varchar({limit})"
        )
    return keap_id


class RowNormalizer:
    """An entity's normalizer: its row rule, plus everything every entity's normalizer shares.

    Args:
        entity: the entity (its staging columns and hashed columns).
        row: ``(ordinal, record) -> tuple`` of the staging columns but content_hash; raises Reject.
        sources: for every text column of the row, the Keap field its text comes from (named in
            the rejection of a row holding a lone surrogate).

    Raises:
        ValueError: ``sources`` does not name exactly the row's text columns.
    """

    def __init__(self, entity: Entity, row: Row, sources: Mapping[str, str]) -> None:
        self.entity = entity
        self.schema = staging_schema(entity)
        self.row_schema = pl.Schema({n: t for n, t in self.schema.items() if n != "content_hash"})
        text_columns = [n for n, t in self.row_schema.items() if t == pl.Utf8()]
        if sorted(sources) != sorted(text_columns):
            raise ValueError(f"{entity.name}: sources must name the text columns {text_columns}, got {sorted(sources)}")
        names = list(self.row_schema)
        self._text_sources = tuple((names.index(n), sources[n]) for n in text_columns)
        self._row = row
        self._id_limit = entity.column_limits["keap_id"]
        self._hashed = entity.hashed_columns

    def __call__(self, records: Sequence[Any], *, fetched_at: datetime) -> NormalizeResult:
        """Normalize one batch: exactly one row or one Rejected per record (ordinal = position).

        Raises:
            NaiveFetchedAtError: fetched_at has no time zone.
            BatchTooLargeError: more records than an Int32 ordinal can number.
        """
        if fetched_at.tzinfo is None or fetched_at.utcoffset() is None:
            raise NaiveFetchedAtError("fetched_at must be time-zone aware (e.g. datetime.now(timezone.utc))")
        if len(records) > INT32_MAX:
            raise BatchTooLargeError(f"{len(records)} records in one batch; at most {INT32_MAX}")
        row = self._row
        rows: list[tuple[Any, ...]] = []
        rejected: list[tuple[int, Rejected]] = []
        append = rows.append
        for ordinal, record in enumerate(records):
            try:
                append(row(ordinal, record))
            except Reject as exc:
                rejected.append((ordinal, self._rejected(record, exc.reason, exc.field)))
        try:
            frame = self.frame(rows)
        except UnicodeEncodeError:
            # Rare slow path: some stored text holds a lone surrogate (JSON "\ud800" decodes to one),
            # which neither polars nor PostgreSQL can hold; find those rows and reject them.
            kept = []
            for one in rows:
                field = self._surrogate_field(one)
                if field is None:
                    kept.append(one)
                    continue
                ordinal = one[0]
                reason = f"{field} {SURROGATE_RULE}"
                rejected.append((ordinal, self._rejected(records[ordinal], reason, field)))
            rejected.sort(key=lambda pair: pair[0])
            frame = self.frame(kept)
        return NormalizeResult(frame=frame, rejected=[r for _, r in rejected], fetched_at=fetched_at)

    def _rejected(self, record: Any, reason: str, field: str | None) -> Rejected:
        return Rejected(record, valid_id(record, self._id_limit), reason, field)

    def _surrogate_field(self, row: tuple[Any, ...]) -> str | None:
        """The Keap field of a row holding text that is not valid UTF-8 (a lone surrogate), if any."""
        for pos, field in self._text_sources:
            value = row[pos]
            if value is not None and not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return field
        return None

    def frame(self, rows: list[tuple[Any, ...]]) -> pl.DataFrame:
        """The staging frame of rows (raises UnicodeEncodeError for a lone surrogate in any text)."""
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(self.row_schema)
        series = []
        for (name, dtype), values in zip(self.row_schema.items(), columns, strict=True):
            if dtype == UTC_US:
                # Epoch microseconds -> Datetime: exact, and far faster than converting datetimes.
                series.append(pl.Series(name, values, dtype=pl.Int64).cast(UTC_US))
            elif dtype == pl.Date():
                series.append(pl.Series(name, values, dtype=pl.Int32).cast(pl.Date))
            else:
                series.append(pl.Series(name, values, dtype=dtype))
        return add_content_hash(pl.DataFrame(series), self._hashed)
