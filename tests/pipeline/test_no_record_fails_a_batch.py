"""The generic machinery (pipeline.batch), for every entity: a normalizer that raises on a record, a
record that is not JSON, several versions of one record in a batch."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import polars as pl

from keap_pipeline.db.dead_letters import NewDeadLetter
from keap_pipeline.entities import CONTACTS
from keap_pipeline.jsontext import UndecodableRecord
from keap_pipeline.normalize.contacts import normalize_contacts
from keap_pipeline.pipeline.batch import settle_letters
from keap_pipeline.pipeline.pages import normalize_records

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def crashy_normalizer(records: list[Any], *, fetched_at: datetime) -> Any:
    """A normalizer with a bug: it raises on any record holding "boom"."""
    if any(isinstance(r, dict) and r.get("given_name") == "boom" for r in records):
        raise AttributeError("'NoneType' has no attribute 'x': the value boom")
    return normalize_contacts(records, fetched_at=fetched_at)


CRASHY = dataclasses.replace(CONTACTS, normalizer="tests.pipeline.test_no_record_fails_a_batch:crashy_normalizer")


def _contact(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": str(n), "update_time": "2024-05-01T00:00:00Z", **fields}


def test_a_record_the_normalizer_crashes_on_is_rejected_alone_by_type_not_text() -> None:
    records = [_contact(1), _contact(2, given_name="boom"), UndecodableRecord(b"{x", "the record is not valid JSON"), _contact(4, id="x")]
    result = normalize_records(CRASHY, records, fetched_at=NOW)
    assert result.frame["ordinal"].to_list() == [0]
    assert [(r.ordinal, r.reason) for r in result.rejected] == [
        (1, "the contacts normalizer failed on this record (AttributeError)"),
        (2, "the record is not valid JSON"),
        (3, "id is not a string of digits"),
    ]


def test_rejections_carry_their_ordinals() -> None:
    records = [_contact(1), _contact(2, id=None), _contact(3), None]
    result = normalize_records(CONTACTS, records, fetched_at=NOW)
    assert [r.ordinal for r in result.rejected] == [1, 3]


def _letter(keap_id: str | None, ordinal: int) -> NewDeadLetter:
    return NewDeadLetter(keap_id=keap_id, record={}, reason="r", ordinal=ordinal)


def test_the_last_version_of_a_record_in_a_batch_decides() -> None:
    frame = pl.DataFrame({"ordinal": [0, 3, 5], "keap_id": ["1", "2", "3"]}, schema={"ordinal": pl.Int32, "keap_id": pl.Utf8})
    letters = [_letter("1", 1), _letter("1", 2), _letter("2", 1 + 1), _letter(None, 4), _letter("3", 6), _letter("4", 7)]
    kept, closing = settle_letters(frame, letters)
    # 1: bad twice after its load: the last bad one is kept, its letter stays open
    # 2: bad, then loaded: superseded, its letters close; 3: loaded then bad: kept, not closed
    assert [(d.keap_id, d.ordinal) for d in kept] == [("1", 2), (None, 4), ("3", 6), ("4", 7)]
    assert closing == ["2"]
