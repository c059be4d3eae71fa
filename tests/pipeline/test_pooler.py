"""The pipeline through a real PgBouncer in transaction mode: migrations, `sync all`, a re-sync, dead letters.

Transaction mode hands each transaction to whichever server connection is free, so anything that
relies on session state (prepared statements, session advisory locks, SET, temp tables) breaks or
leaks. These tests run the real command line against the sandbox (real sockets) with
KEAP_PIPELINE_DATABASE_URL pointing at the pooler, and compare with the same run on a direct
connection.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg import sql

from keap_pipeline.entities import ENTITIES
from tests.conftest import _unique, create_database, drop_database
from tests.pgbouncer import Pooler, running_pgbouncer
from tests.pipeline.conftest import API_KEY

pytestmark = pytest.mark.slow


@pytest.fixture
def pooler(pg_server_url: str) -> Iterator[Pooler]:
    """PgBouncer in transaction mode in front of the test server, with a small pool (server connections get shared)."""
    with running_pgbouncer(pg_server_url, pool_size=6) as running:
        yield running


@pytest.fixture
def empty_database(pg_server_url: str) -> Iterator[str]:
    """A database with nothing in it (direct URL), dropped after the test."""
    name = _unique("kp_pool")
    url = create_database(pg_server_url, name)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


def _cli(*args: str, database_url: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEAP_API_KEY": API_KEY, "KEAP_PIPELINE_DATABASE_URL": database_url}
    env.pop("KEAP_BASE_URL", None)
    return subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "keap_pipeline.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def _contents(url: str) -> dict[str, Any]:
    """What a sync leaves: each entity's (keap_id, content fingerprint, link columns), and the side tables' counts."""
    out: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        for entity in ENTITIES.values():
            schema, _, table = entity.target_table.partition(".")
            columns = [sql.Identifier("keap_id"), sql.Identifier("keap_hash")]
            for link in entity.links:
                for target, parent in link.columns:
                    # a link to a local id (uuids differ between databases): whether it resolved
                    shown = "({} is not null)" if parent == "id" else "{}"
                    columns.append(sql.SQL(shown).format(sql.Identifier(target)))
            rows = conn.execute(
                sql.SQL("select {} from {} order by keap_id").format(
                    sql.SQL(", ").join(columns), sql.Identifier(schema, table)
                )
            ).fetchall()
            out[entity.name] = rows
        for table in ("sync_audit_log", "sync_status", "sync_queue", "sync_conflicts"):
            out[table] = conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier("public", table))
            ).fetchone()
        out["dead_letters"] = conn.execute("select count(*) from keap_pipeline.dead_letters").fetchone()
    return out


def _held_advisory_locks(database_url: str) -> int:
    """Advisory locks held in this database (tests of other databases, on other workers, hold their own)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from pg_catalog.pg_locks where locktype = 'advisory'"
            " and database = (select oid from pg_catalog.pg_database where datname = current_database())"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_migrate_through_the_pooler_twice_at_once_applies_each_file_once_and_leaves_no_lock(
    pooler: Pooler, empty_database: str, pg_server_url: str
) -> None:
    pooled = pooler.url(empty_database)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _cli("migrate", database_url=pooled), range(2)))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    with psycopg.connect(empty_database) as conn:
        versions = [row[0] for row in conn.execute("select version from keap_pipeline.schema_migrations")]
    assert len(versions) == len(set(versions)) and versions
    # A session advisory lock taken through a transaction pooler would stay on its pooled server
    # connection after the command ended (and block every later migrate): none may be left.
    assert _held_advisory_locks(empty_database) == 0
    status = _cli("migrations", database_url=pooled)
    assert status.returncode == 0, status.stderr
    statuses = {line.split()[1] for line in status.stdout.splitlines()[1:] if not line.startswith("repeatable")}
    assert statuses == {"applied"}, status.stdout
    again = _cli("migrate", database_url=empty_database, timeout=120)  # direct: must not wait on a leaked lock
    assert again.returncode == 0, again.stderr[-3000:]


def test_sync_all_through_the_pooler_matches_a_direct_sync(
    sandbox, pooler: Pooler, migrated_database: str, pg_server_url: str, template_database: str
) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=1200)
    assert handle.state is not None
    # one record that cannot load: it must become a dead letter on both paths, listed through the pooler
    handle.state.put_raw_record("contacts", '{"id": 990001, "update_time": "not a time"}', time_ms=1_600_000_000_000)
    second = _unique("kp_pool")
    direct_twin = create_database(pg_server_url, second, template=template_database)
    try:
        pooled = pooler.url(migrated_database)
        args = ("sync", "all", "--no-pacing", "--page-size", "200", "--base-url", handle.base_url)
        through_pooler = _cli(*args, database_url=pooled)
        assert through_pooler.returncode == 0, through_pooler.stderr[-3000:]
        direct = _cli(*args, database_url=direct_twin)
        assert direct.returncode == 0, direct.stderr[-3000:]

        loaded = _contents(migrated_database)
        assert loaded == _contents(direct_twin)
        assert all(loaded[name] for name in ENTITIES), {name: len(loaded[name]) for name in ENTITIES}

        # a re-sync through the pooler finds nothing new and writes nothing
        resync = _cli(*args, database_url=pooled)
        assert resync.returncode == 0, resync.stderr[-3000:]
        assert _contents(migrated_database) == loaded
        assert " 0 inserted" in resync.stdout and " 0 updated" in resync.stdout

        assert loaded["dead_letters"] == (1,)
        listing = _cli("dead-letters", "list", database_url=pooled)
        assert listing.returncode == 0, listing.stderr[-3000:]
        assert "990001" in listing.stdout, listing.stdout
        replay = _cli("dead-letters", "replay", "--entity", "contacts", database_url=pooled)
        # it fails again, through the pooler as directly: still open, with its reason, not lost
        assert replay.returncode == 1 and "still failing 1: update_time is not an ISO-8601" in replay.stdout, replay
        assert _contents(migrated_database)["dead_letters"] == (1,)
    finally:
        drop_database(pg_server_url, second)
    log = pooler.log().lower()
    for bad in ("prepared statement", "closing because: client unexpected eof"):
        assert bad not in log, pooler.log()[-3000:]
    assert _held_advisory_locks(migrated_database) == 0
