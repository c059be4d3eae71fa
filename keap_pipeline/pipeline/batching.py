"""How many Keap pages go into one transaction, and how many rows one transaction may write: both by streamed changes."""

from __future__ import annotations

from dataclasses import dataclass, field

from keap_pipeline.db.load import UpsertCounts
from keap_pipeline.db.publication import StreamCost

# the most changes one batch transaction streams to realtime subscribers (docs/realtime.md), while
# anything decodes the database's WAL (a logical replication slot exists: db.publication.decoding)
DEFAULT_MAX_CHANGES = 500
# ... and while nothing does: no subscriber waits behind a batch, so batches are as large as before
# the budget (measured: 200k contacts, a first load at 11.5-12.0k records/s with 4,000 against
# 8.8k with 500; docs/benchmarks.md "Re-reading unchanged records")
UNWATCHED_MAX_CHANGES = 4000
# how often a run without an explicit budget looks again whether a decoder came or went
DECODING_RECHECK_SECONDS = 5.0


@dataclass
class BatchSizer:
    """Adapts the pages per batch to the changes a batch streams, and caps the rows one transaction writes.

    Realtime subscribers see a transaction only when it commits, whole, and every change decoded
    behind a large transaction waits for it (docs/realtime.md): a batch should stream at most
    `max_changes` changes. A written record streams `cost.per_row` of them (its row and its
    sync_status row, where published), a conflict one more. Unchanged rows write nothing and
    stream nothing, so a re-sync where little changed can take many pages per transaction and pay
    the per-batch costs once; but when its changed rows come together (a re-sync's come last, in
    update-time order), the batch commits in parts of at most `max_rows` written rows
    (pipeline.batch). A first load's page, every record of it written, is split into batches of
    `max_rows` before it reaches the loaders (pipeline.pages.split), so they load side by side. Whether to run the key/hash diff first is decided here too: a first load
    (nearly every row new) skips it, because it would only confirm that everything must be loaded.
    """

    min_pages: int = 1
    max_pages: int = 10
    max_changes: int = DEFAULT_MAX_CHANGES
    cost: StreamCost = field(default_factory=lambda: StreamCost(per_row=1, per_conflict=0))
    pages: int = 0
    diff: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.min_pages <= self.max_pages:
            raise ValueError(f"need 1 <= min_pages ({self.min_pages}) <= max_pages ({self.max_pages})")
        if self.max_changes < 1:
            raise ValueError(f"max_changes must be at least 1, got {self.max_changes}")
        self.pages = self.pages or self.min_pages

    @property
    def max_rows(self) -> int:
        """The most records one transaction may write: the budget over what each streams (at least 1)."""
        return max(1, self.max_changes // max(self.cost.per_row, 1))

    def observe(self, counts: UpsertCounts, records: int, pages: float) -> None:
        """Take the outcome of the batch just committed into account for the next one.

        Args:
            counts: what the batch did.
            records: how many records it held.
            pages: how many pages it held (a share of one for a part of a split page).
        """
        changes = self.cost.changes(counts)
        if records:
            self.diff = counts.inserted < 0.9 * records
        per_page = changes / max(pages, 1e-9)
        fits = int(self.max_changes // max(per_page, 1.0))
        # grow at most twofold per batch (the next pages may change more), shrink at once
        self.pages = max(self.min_pages, min(self.max_pages, fits, self.pages * 2))
