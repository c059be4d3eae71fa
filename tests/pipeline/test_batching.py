"""BatchSizer: pages per transaction follow the changes a batch streams; the diff is skipped on first loads."""

from __future__ import annotations

import pytest

from keap_pipeline.db.load import UpsertCounts
from keap_pipeline.db.publication import StreamCost
from keap_pipeline.pipeline.batching import BatchSizer


def counts(inserted: int = 0, updated: int = 0, unchanged: int = 0, conflicts: int = 0) -> UpsertCounts:
    return UpsertCounts(inserted=inserted, updated=updated, unchanged=unchanged, conflicts=conflicts)


@pytest.mark.parametrize(
    ("pages", "outcome", "records", "expected_pages", "expected_diff"),
    [
        # first load: every row new, 1000 per page -> one page per transaction, no diff
        (1, counts(inserted=1000), 1000, 1, False),
        # a re-sync with 1% changed grows twofold per batch ...
        (1, counts(updated=10, unchanged=990), 1000, 2, True),
        (2, counts(updated=20, unchanged=1980), 2000, 4, True),
        # ... up to the maximum
        (8, counts(updated=80, unchanged=7920), 8000, 10, True),
        (10, counts(updated=100, unchanged=9900), 10000, 10, True),
        # nothing changed at all
        (4, counts(unchanged=4000), 4000, 8, True),
        # many changes again: shrink at once to what keeps ~1000 written rows per transaction
        (10, counts(updated=5000, unchanged=5000), 10000, 2, True),
        (10, counts(inserted=10000), 10000, 1, False),
        # conflicts write too
        (4, counts(conflicts=2000, unchanged=2000), 4000, 2, True),
    ],
)
def test_sizer(pages: int, outcome: UpsertCounts, records: int, expected_pages: int, expected_diff: bool) -> None:
    sizer = BatchSizer(min_pages=1, max_pages=10, max_changes=1000, pages=pages)
    sizer.observe(outcome, records, pages)
    assert (sizer.pages, sizer.diff) == (expected_pages, expected_diff)


def test_sizer_respects_the_minimum_and_validates() -> None:
    sizer = BatchSizer(min_pages=3, max_pages=5)
    assert sizer.pages == 3
    sizer.observe(counts(inserted=9000), 9000, 3)
    assert sizer.pages == 3
    with pytest.raises(ValueError):
        BatchSizer(min_pages=6, max_pages=5)


def test_the_budget_counts_streamed_changes_not_rows() -> None:
    # each written contact streams its row and its sync_status row; a conflict a sync_conflicts row too
    cost = StreamCost(per_row=2, per_conflict=1)
    sizer = BatchSizer(min_pages=1, max_pages=10, max_changes=1000, cost=cost)
    assert sizer.max_rows == 500
    sizer.observe(counts(inserted=1000), 1000, 1)  # 2,000 changes on one page: one page a batch, in parts
    assert (sizer.pages, sizer.diff) == (1, False)
    sizer.observe(counts(updated=100, unchanged=900), 1000, 1)  # 200 changes a page: may grow
    assert sizer.pages == 2
    sizer.pages = 10
    sizer.observe(counts(updated=300, conflicts=100, unchanged=9600), 10000, 10)  # 900 changes over 10 pages
    assert sizer.pages == 10
    sizer.observe(counts(updated=400, conflicts=100, unchanged=9500), 10000, 10)  # 1,100: one page less fits
    assert sizer.pages == 9
    assert cost.changes(counts(updated=400, conflicts=100)) == 500 * 2 + 100


def test_nothing_published_means_rows_alone_are_capped() -> None:
    sizer = BatchSizer(max_changes=1000, cost=StreamCost(per_row=0, per_conflict=0))
    assert sizer.max_rows == 1000
    sizer.observe(counts(inserted=1000), 1000, 1)
    assert sizer.pages == 2  # nothing streamed: pages grow as for unchanged rows
    assert BatchSizer(max_changes=1, cost=StreamCost(per_row=2, per_conflict=1)).max_rows == 1
    with pytest.raises(ValueError):
        BatchSizer(max_changes=0)
