"""Test harness: a real PostgreSQL (embedded by default, KEAP_PIPELINE_TEST_DATABASE_URL otherwise) built by the real migrations."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from keap_pipeline.db.migrate import migrate

TEST_URL_ENV = "KEAP_PIPELINE_TEST_DATABASE_URL"
# The sandbox's records start in 2019-01, as the local stack's partitions do (local_stack.py); read
# when the definitions are first imported, so set before any test module imports them.
os.environ.setdefault("KEAP_PIPELINE_PARTITIONS_START", "2019-01")


def database_url(server_url: str, dbname: str) -> str:
    """The conninfo of another database on the same server."""
    return make_conninfo(server_url, dbname=dbname)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """Create a database (optionally from a template) and return its conninfo."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        query = sql.SQL("create database {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn.execute(query)
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop a database, closing whatever is still connected to it."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a maintenance database on the server the suite runs on."""
    external = os.environ.get(TEST_URL_ENV)
    if external:
        yield external
        return
    from keap_pipeline.db import embedded

    # Not under pytest's basetemp: pytest prunes old basetemps, and a concurrent pytest run
    # would delete this server's data directory under it.
    home = Path(tempfile.mkdtemp(prefix="keap-pipeline-test-"))
    # Any free port, not the default one: pytest-xdist workers start their servers at the same
    # moment, and the default port would be free to each of them when probed.
    (home / "pg.port").write_text("0")
    server = embedded.start(home)
    try:
        yield server.url
    finally:
        embedded.destroy(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def scratch_home() -> Iterator[Path]:
    """A fresh KEAP_PIPELINE_HOME for a test that runs `make demo` / `make ui` for real; its server is removed after.

    Not under pytest's basetemp, as pg_server_url says; besides, a pytest starting elsewhere makes
    /tmp/pytest-of-<user> mode 0700 again, which the server's own OS user (under root) cannot traverse.
    """
    from keap_pipeline.db import embedded

    home = Path(tempfile.mkdtemp(prefix="keap-pipeline-home-"))
    try:
        yield home
    finally:
        embedded.destroy(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """Name of a database built once per session by every migration, cloned by the fixtures below."""
    name = _unique("kp_tpl")
    url = create_database(pg_server_url, name)
    try:
        migrate(url)
        yield name
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def fresh_database(pg_server_url: str) -> Iterator[str]:
    """Conninfo of an empty throwaway database, dropped after the test."""
    name = _unique("kp_fresh")
    url = create_database(pg_server_url, name)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def migrated_database(pg_server_url: str, template_database: str) -> Iterator[str]:
    """Conninfo of a throwaway database built by all migrations, for tests that commit."""
    name = _unique("kp_t")
    url = create_database(pg_server_url, name, template=template_database)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture(scope="session")
def shared_database(pg_server_url: str, template_database: str) -> Iterator[str]:
    """Conninfo of one migrated database that tests use only inside rolled-back transactions."""
    name = _unique("kp_shared")
    url = create_database(pg_server_url, name, template=template_database)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def db(shared_database: str) -> Iterator[psycopg.Connection]:
    """A superuser connection to a migrated database inside a transaction rolled back after the test."""
    with psycopg.connect(shared_database, autocommit=False) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def _uses_dagster(module: object) -> bool:
    """Whether a test module holds anything of dagster's (imported from it, or dagster itself)."""
    return any(
        str(getattr(value, "__module__", None) or getattr(value, "__name__", "")).startswith("dagster")
        for value in vars(module).values()
    )


@pytest.fixture(autouse=True)
def _no_dagster_state_storage_from_earlier_tests(request: pytest.FixtureRequest) -> None:
    """Start every test with no current Dagster defs-state storage (a ContextVar of dagster's).

    A `build_asset_check_context()` (and the other build_*_context helpers) used outside a `with`
    enters an ephemeral DagsterInstance that is exited only when the garbage collector takes it; its
    exit resets that ContextVar to what it held before, in the middle of whichever test runs then.
    What it held could be the storage of an instance already collected, and the next Definitions
    resolution (a materialize) fails with "Attempted to resolve undefined DagsterInstance weakref"
    (seen once in three xdist runs, order-dependent). Reset here, what such a late exit restores is
    None, which Dagster takes as "no stored state". The suite's own checks run through
    tests/dagster_contexts.run_asset_check and its schedule contexts in a `with`; this stays for any
    context that is not.
    """
    if "dagster" in sys.modules:
        from dagster._core.storage.defs_state.base import _current_storage

        if _uses_dagster(request.module):
            # what earlier tests left for the collector (contexts in reference cycles) exits here, at the
            # boundary, and not in the middle of this test: a late exit restores the storage of an instance
            # long gone, and this test's next materialize fails on it (test_dagster_deletions[products] did
            # once on CI, 2026-12-08, after the build_*_context call sites were all wrapped). About 50 ms,
            # so only for the modules that use dagster
            gc.collect()
        _current_storage.set(None)


_DB_FIXTURES = {"pg_server_url", "template_database", "fresh_database", "migrated_database", "shared_database", "db"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that touches PostgreSQL `db`, so CI can rerun exactly those on PostgreSQL 15."""
    for item in items:
        if _DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)
