"""What a normalizer returns: the staging frame and the records it could not load, with why."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl


@dataclass(frozen=True)
class Rejected:
    """A record that cannot be loaded as it is, kept whole for the dead-letter table.

    Attributes:
        record: the raw record exactly as Keap sent it (not copied, not cleaned).
        keap_id: the record's id as digits when it had a valid one, else None.
        reason: what is wrong, naming the field and, for lengths, the column limit.
        field: the Keap field at fault (e.g. "email_addresses[0].email"), None for the record itself.
        ordinal: its position in the batch; normalizers may leave it None, the pipeline fills
            it in (pipeline.batch.normalize_records).
    """

    # Kept out of repr: a full record must never reach a log line by accident.
    record: Any = dataclasses.field(repr=False)
    keap_id: str | None
    reason: str
    field: str | None
    ordinal: int | None = None


@dataclass(frozen=True)
class NormalizeResult:
    """One normalized batch.

    Attributes:
        frame: the staging rows, exactly the entity's staging columns, in order, with fixed dtypes.
        rejected: the records left out of ``frame``, in input order.
        fetched_at: when the batch was fetched from Keap (UTC-aware), for the loader and dead letters.
        known: the key columns (ordinal, keap_id, keap_updated_at, content_hash) of the records that
            were not normalized because their exact bytes were normalized before (pipeline.raw_keys);
            they are in neither ``frame`` nor ``rejected``. None: every record was normalized.
        raw_hashes: (ordinal, raw_hash) of the records of ``frame`` whose bytes were hashed, for the
            loader to remember (None: none were).
    """

    frame: pl.DataFrame
    rejected: list[Rejected] = dataclasses.field(default_factory=list)
    fetched_at: datetime | None = None
    known: pl.DataFrame | None = None
    raw_hashes: pl.DataFrame | None = None
