"""What a sync run did, for logs, Dagster metadata and the command line."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from keap_pipeline.db.load import UpsertCounts


@dataclass
class SyncReport:
    """Totals of one sync of one entity over one window."""

    entity: str
    scope: str
    strategy: str
    since: datetime | None
    until: datetime | None
    pages: int = 0
    batches: int = 0
    records_seen: int = 0
    dead_lettered: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    cursor: datetime | None = None
    requests: int = 0
    quota_available: int | None = None
    seconds: float = 0.0
    stopped_early: str | None = None
    waited_for_lock_seconds: float = 0.0
    # rows (of this entity or of those linking to it) whose parent link was filled after the load
    linked: int = 0
    # what the committed batches held (pages and records_seen count what was fetched, which runs ahead)
    # (a float: a page of many changed records may be split over batches, each committing a share of it)
    committed_pages: float = 0.0
    committed_records: int = 0

    @property
    def records_per_second(self) -> float:
        """Records seen per wall-clock second."""
        return self.records_seen / self.seconds if self.seconds > 0 else 0.0

    def progress_line(self) -> str:
        """One line after a committed batch: what is committed so far, so that no two lines of a run repeat.

        The fetch runs ahead of the commits (read-ahead, loaders): counting what was fetched
        printed the same "5 pages, 5000 records" once per batch still committing after the last page.
        """
        rate = self.committed_records / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.entity}: {self.committed_records:,} records in {self.committed_pages:g} pages committed "
            f"({self.pages} fetched), {rate:,.0f}/s, cursor {self.cursor.isoformat() if self.cursor else '-'}"
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (datetimes as ISO strings)."""
        data = asdict(self)
        for key in ("since", "until", "cursor"):
            value = getattr(self, key)
            data[key] = value.isoformat() if value else None
        data["records_per_second"] = round(self.records_per_second, 1)
        return data

    def summary(self) -> str:
        """One line for logs and the command line."""
        c = self.counts
        return (
            f"{self.entity} [{self.scope}]: {self.records_seen} seen in {self.pages} pages, "
            f"{c.inserted} inserted, {c.updated} updated, {c.unchanged} unchanged, {c.stale} stale, "
            f"{c.conflicts} conflicts ({self.strategy}), {self.dead_lettered} dead-lettered, "
            f"{self.requests} requests, {self.seconds:.1f}s, {self.records_per_second:,.0f} records/s"
            + (f", {self.linked} linked" if self.linked else "")
            + (f"; waited {self.waited_for_lock_seconds:.1f}s for another run" if self.waited_for_lock_seconds >= 0.1 else "")
            + (f"; stopped early: {self.stopped_early}" if self.stopped_early else "")
        )
