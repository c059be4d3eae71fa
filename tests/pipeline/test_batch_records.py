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


def test_a_split_batch_keeps_every_record_its_bytes_and_its_rejections_once() -> None:
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.pipeline.pages import combine, normalize_page, split

    ids = range(1, 11)
    records = [{"id": str(i), "given_name": f"N{i}", "update_time": "2024-01-01T00:00:00.000Z"} for i in ids]
    records[3] = {"id": "4"}  # no update_time: rejected, a dead letter of the second part
    raw = json.dumps({"contacts": records, "next_page_token": None}).encode()
    page = normalize_page(CONTACTS, records, raw)
    batch, result = combine([page])
    parts = split(batch, result, 3)
    assert [len(r) for r, _ in parts] == [3, 3, 3, 1]
    seen = []
    for start, (part, normalized) in zip(range(0, 10, 3), parts, strict=True):
        assert [part[i] for i in range(len(part))] == records[start:start + len(part)]
        assert part.raw_record(0) is not None and json.loads(part.raw_record(0)) == records[start]  # type: ignore[attr-defined]
        ordinals = normalized.frame["ordinal"].to_list() + [r.ordinal for r in normalized.rejected]
        assert sorted(ordinals) == list(range(len(part)))
        seen += normalized.frame["keap_id"].to_list() + [r.keap_id for r in normalized.rejected]
    assert sorted(seen, key=int) == [str(i) for i in ids]
    assert [r.keap_id for r in parts[1][1].rejected] == ["4"] and parts[1][1].rejected[0].ordinal == 0
    assert split(batch, result, 10) == [(batch, result)]
