"""Counters a KeapClient keeps, for the pipeline's "requests" and "quota left" metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass
class ClientStats:
    """Running totals of one client, plus the latest quota figures Keap reported.

    requests: HTTP requests sent (retries included); retries: of those, repeats after a 429,
    5xx or transport error; throttled: 429 answers; refreshes: 401s answered by refreshing the
    OAuth token (or adopting one another process refreshed); pages/records: list pages and
    records yielded; paced_seconds: time spent waiting in the pacer; quota_*: the daily quota
    from the last x-keap-* headers (None until a response carried them); throttle_available:
    what is left of the short-window throttle.
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    refreshes: int = 0
    pages: int = 0
    records: int = 0
    paced_seconds: float = 0.0
    quota_available: int | None = None
    quota_limit: int | None = None
    quota_resets_at: datetime | None = None
    throttle_available: int | None = None

    def as_metadata(self) -> dict[str, Any]:
        """The stats as plain JSON-able values (datetimes as ISO strings)."""
        data = asdict(self)
        if self.quota_resets_at is not None:
            data["quota_resets_at"] = self.quota_resets_at.isoformat()
        return data
