"""A spent daily quota stops the sync cleanly with its cursor saved; the next run resumes the window from it."""

from __future__ import annotations

from datetime import UTC, datetime

from keap_pipeline.db.connect import connect
from keap_pipeline.db.cursors import get_cursor, window_scope
from keap_pipeline.sandbox import RateLimits
from tests.pipeline.conftest import expected_rows, sandbox_records, sync, table_rows

SINCE = datetime(2000, 1, 1, tzinfo=UTC)
UNTIL = datetime(2100, 1, 1, tzinfo=UTC)


def test_spent_quota_stops_with_cursor_saved_and_the_window_resumes(sandbox, migrated_database: str) -> None:
    scope = window_scope(SINCE, UNTIL)
    # the sandbox answers 6 requests a day: the first run is stopped by Keap's quota part-way
    limited = sandbox(contacts=400, limits=RateLimits(per_second=None, per_minute=None, per_day=6))
    first = sync(limited, migrated_database, since=SINCE, until=UNTIL, scope=scope, page_size=50)
    assert first.stopped_early and "quota" in first.stopped_early.lower()
    loaded = first.counts.inserted
    assert 0 < loaded < 400
    with connect(migrated_database) as conn:
        cursor = get_cursor(conn, "contacts", scope)
    assert cursor is not None and cursor.value < UNTIL, "an interrupted window keeps its resume point"

    # the next day (a sandbox with quota again, same data): the run resumes from the cursor
    fresh = sandbox(contacts=400)
    second = sync(fresh, migrated_database, since=SINCE, until=UNTIL, scope=scope, page_size=50)
    assert second.stopped_early is None
    assert second.since == cursor.value
    assert second.records_seen < 400, "resumed, not read again from the start"
    assert table_rows(migrated_database) == expected_rows(sandbox_records(fresh))
    with connect(migrated_database) as conn:
        done = get_cursor(conn, "contacts", scope)
    assert done is not None and done.value == UNTIL
