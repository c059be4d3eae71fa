"""How many Keap pages go into one transaction: small while rows change, larger while they do not."""

from __future__ import annotations

from dataclasses import dataclass

from keap_pipeline.db.load import UpsertCounts


@dataclass
class BatchSizer:
    """Adapts the pages per batch to the rows a batch actually writes.

    Realtime subscribers see a transaction only when it commits, whole, so a batch should write
    at most about `max_written` rows (docs/benchmarks.md: 1,000 changed rows delay the stream by
    ~13 ms, 10,000 by 80-250 ms). Unchanged rows write nothing and stream nothing, so a re-sync
    where little changed can take many pages per transaction and pay the per-batch costs once.
    Whether to run the key/hash diff first is decided the same way: a first load (nearly every row
    new) skips it, because it would only confirm that everything must be loaded.
    """

    min_pages: int = 1
    max_pages: int = 10
    max_written: int = 1000
    pages: int = 0
    diff: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.min_pages <= self.max_pages:
            raise ValueError(f"need 1 <= min_pages ({self.min_pages}) <= max_pages ({self.max_pages})")
        self.pages = self.pages or self.min_pages

    def observe(self, counts: UpsertCounts, records: int, pages: int) -> None:
        """Take the outcome of the batch just committed into account for the next one.

        Args:
            counts: what the batch did.
            records: how many records it held.
            pages: how many pages it held.
        """
        written = counts.inserted + counts.updated + counts.conflicts
        if records:
            self.diff = counts.inserted < 0.9 * records
        per_page = written / max(pages, 1)
        fits = int(self.max_written // max(per_page, 1.0))
        # grow at most twofold per batch (the next pages may change more), shrink at once
        self.pages = max(self.min_pages, min(self.max_pages, fits, self.pages * 2))
