"""keap_pipeline.find_raw_record_keys (sql/functions/72) on a table that grew since it was last analyzed:
one index probe per id of the page, never a scan of all the entity's rows compared with every id."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from keap_pipeline.db.raw_keys import find_known

pytestmark = pytest.mark.db

ROWS = 20_000
PAGE = 500


def _hash(keap_id: str) -> bytes:
    return hashlib.md5(keap_id.encode(), usedforsecurity=False).digest()


def _index_scans(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set stats_fetch_consistency = none")
        row = conn.execute(
            "select coalesce(idx_scan, 0) from pg_catalog.pg_stat_user_tables"
            " where schemaname = 'keap_pipeline' and relname = 'raw_record_keys'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_page_probes_the_index_per_id_on_a_table_never_analyzed(migrated_database: str) -> None:
    # the state of a first re-read: the table filled since the last ANALYZE (here: never analyzed),
    # so the planner believes it holds a few rows
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            "insert into keap_pipeline.raw_record_keys (entity, keap_id, raw_hash, keap_updated_at, content_hash)"
            " select 'orders', i::text, decode(md5(i::text), 'hex'), null, gen_random_uuid()"
            " from generate_series(1, %s) as i",
            (ROWS,),
        )
        conn.commit()
        ids = [str(i) for i in range(1, 2 * PAGE, 2)]  # half of them with the stored bytes, half with others
        hashes = [_hash(i) if n % 2 == 0 else b"\x00" * 16 for n, i in enumerate(ids)]
        before = _index_scans(migrated_database)
        known = find_known(conn, "orders", ids, hashes)
        conn.execute("select pg_catalog.pg_stat_force_next_flush()")
        conn.commit()
    assert known.ordinals == list(range(0, PAGE, 2))
    assert len(known.content_hashes) == len(known.ordinals)
    # one probe per id (the plain join's plan was one bitmap scan of every 'orders' row: a single scan)
    assert _index_scans(migrated_database) - before >= PAGE
