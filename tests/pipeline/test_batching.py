"""BatchSizer: pages per transaction follow the rows a batch writes; the diff is skipped on first loads."""

from __future__ import annotations

import pytest

from keap_pipeline.db.load import UpsertCounts
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
    sizer = BatchSizer(min_pages=1, max_pages=10, pages=pages)
    sizer.observe(outcome, records, pages)
    assert (sizer.pages, sizer.diff) == (expected_pages, expected_diff)


def test_sizer_respects_the_minimum_and_validates() -> None:
    sizer = BatchSizer(min_pages=3, max_pages=5)
    assert sizer.pages == 3
    sizer.observe(counts(inserted=9000), 9000, 3)
    assert sizer.pages == 3
    with pytest.raises(ValueError):
        BatchSizer(min_pages=6, max_pages=5)
