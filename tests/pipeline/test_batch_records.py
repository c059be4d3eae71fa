"""PageBytes / BatchRecords: a batch's raw records read back from the pages' bytes, in order, exactly."""

from __future__ import annotations

import json

import pytest

from keap_pipeline.pipeline.pages import BatchRecords, PageBytes


def _page(ids: range) -> tuple[list[dict], PageBytes]:
    records = [{"id": str(i), "note": "ü\u0000" if i % 2 else None, "big": 2**70 + i} for i in ids]
    raw = json.dumps({"contacts": records, "next_page_token": None}).encode()
    return records, PageBytes(raw, "contacts", len(records))


def test_records_of_several_pages_come_back_whole_and_in_order() -> None:
    pages = [_page(range(0, 3)), _page(range(3, 3)), _page(range(3, 8))]
    batch = BatchRecords([kept for _, kept in pages])
    expected = [r for records, _ in pages for r in records]
    assert len(batch) == len(expected) == 8
    assert [batch[i] for i in range(len(batch))] == expected
    assert batch[-1] == expected[-1] and batch[-1]["big"] == 2**70 + 7, "no float rounding of big integers"
    with pytest.raises(IndexError):
        batch[8]
    with pytest.raises(TypeError):
        batch[1:2]  # type: ignore[index]
