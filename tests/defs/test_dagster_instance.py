"""The production instance of docs/dagster.production.yaml: Dagster's storage in a schema of its own, nothing in public."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, asset, materialize
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from keap_pipeline.local_stack import repo_root
from tests.conftest import create_database, drop_database

EXAMPLE = repo_root() / "docs" / "dagster.production.yaml"


@asset
def probe() -> int:
    """A trivial asset: its run writes run, event and asset rows."""
    return 1


def test_the_documented_instance_keeps_dagster_out_of_public(
    pg_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    role, database = f"kp_dagster_{uuid.uuid4().hex[:10]}", f"kp_app_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server_url, database)
    try:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create role {} login password 'not-a-secret'").format(sql.Identifier(role)))
        with psycopg.connect(url, autocommit=True) as conn:
            # as an operator would: the schema belongs to Dagster's role, public takes nothing new
            conn.execute(sql.SQL("create schema dagster authorization {}").format(sql.Identifier(role)))
            conn.execute("revoke create on schema public from public")
        # the example verbatim, but for TLS, which the test server does not offer
        text = EXAMPLE.read_text()
        assert text.count("sslmode: require") == 1
        (tmp_path / "dagster.yaml").write_text(text.replace("sslmode: require", "sslmode: prefer"))
        server = conninfo_to_dict(pg_server_url)
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
        for name, value in {
            "DAGSTER_PG_HOST": server.get("host") or "127.0.0.1", "DAGSTER_PG_PORT": str(server.get("port") or 5432),
            "DAGSTER_PG_USER": role, "DAGSTER_PG_PASSWORD": "not-a-secret", "DAGSTER_PG_DB": database,
        }.items():
            monkeypatch.setenv(name, value)

        with DagsterInstance.get() as instance:
            assert materialize([probe], instance=instance).success
            assert instance.get_latest_materialization_event(probe.key) is not None

        with psycopg.connect(make_conninfo(url)) as conn:
            tables = dict(conn.execute(
                "select table_schema, count(*) from information_schema.tables"
                " where table_schema not in ('pg_catalog', 'information_schema') group by 1"
            ).fetchall())
            names = {r[0] for r in conn.execute("select table_name from information_schema.tables where table_schema = 'dagster'")}
        assert set(tables) == {"dagster"}, tables  # nothing in public
        assert {"runs", "event_logs", "alembic_version", "asset_keys", "jobs"} <= names
    finally:
        drop_database(pg_server_url, database)
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))
