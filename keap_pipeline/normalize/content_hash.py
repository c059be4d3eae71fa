"""A stable fingerprint of a normalized record's stored content, so unchanged records are recognised by key and hash alone."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import polars as pl

# Neither can occur inside a value: the normalizer rejects NUL, and \x1f is only a separator if
# NUL marks NULL (so NULL, '' and '\x1f' all hash differently).
_SEPARATOR = "\x1f"
_NULL = "\x00"


def add_content_hash(frame: pl.DataFrame, columns: Sequence[str], name: str = "content_hash") -> pl.DataFrame:
    """Append an md5 of the given columns, as 32 hex digits (PostgreSQL reads them as a uuid).

    The text hashed is built from values only, never from library formatting that could change
    between versions: strings as they are, datetimes and dates as epoch microseconds (a date as
    its UTC midnight), integers as their digits, booleans as true/false, decimals as their digits
    at the column's fixed scale (12.5000). tests/normalize/test_toolkit.py pins each form to a
    hand-computed md5, so a polars upgrade that changed one would fail there, not re-hash silently.

    Args:
        frame: a normalized frame.
        columns: the content columns, in a fixed order.
        name: the new column's name.

    Returns:
        The frame with the hash column last.
    """
    parts = []
    for column in columns:
        expr = pl.col(column)
        if frame.schema[column].is_temporal():
            expr = expr.dt.epoch("us")
        parts.append(expr.cast(pl.Utf8).fill_null(_NULL))
    if frame.height == 0:
        return frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(name))
    joined = frame.select(pl.concat_str(parts, separator=_SEPARATOR).alias("_k")).to_series()
    md5 = hashlib.md5  # noqa: S324 - a change detector, not a security boundary
    digests = [md5(text.encode("utf-8")).hexdigest() for text in joined]
    return frame.with_columns(pl.Series(name, digests, dtype=pl.Utf8))
