"""Finished sync_queue items (the history queue_retention purges), written straight into the table."""

from __future__ import annotations

import psycopg


def add_finished(conn: psycopg.Connection, status: str, days_ago: int, count: int = 1) -> None:
    """`count` items of contacts in `status` (completed or cancelled), finished `days_ago` days ago."""
    conn.execute(
        "insert into public.sync_queue (operation, entity_type, entity_id, payload, status, completed_at)"
        " select 'update', 'sync_contacts', gen_random_uuid(), jsonb_build_object('n', g), %s,"
        " now() - make_interval(days => %s)"
        " from generate_series(1, %s) as g",
        (status, days_ago, count),
    )
