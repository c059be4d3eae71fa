"""sql/rollback/24-security-hardening.sql takes the database back to the catalog of 23, object for object."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from keap_pipeline.db.migrate import discover, discover_repeatable, migrate, rollback, sql_dir
from tests.db.catalog import definitions, diff, snapshot

VERSION = 24


def _with_default_acls(url: str, snap: dict[str, set[tuple[object, ...]]]) -> dict[str, set[tuple[object, ...]]]:
    """NULL table ACLs written out: 24's down leaves the owner's privileges explicit on the internal
    tables the ingestion used (no SQL command resets an ACL to NULL); both mean the same."""
    with psycopg.connect(url) as conn:
        row = conn.execute("select pg_catalog.acldefault('r', (select oid from pg_catalog.pg_roles where rolname = current_user))::text").fetchone()
    assert row is not None
    default = row[0]
    snap = dict(snap)
    snap["relations"] = {
        r[:6] + (default if r[6] == "" and r[2] in ("r", "p") else r[6],) + r[7:] for r in snap["relations"]
    }
    return snap


def test_rolling_back_24_restores_the_catalog_of_23(fresh_database: str) -> None:
    migrate(fresh_database, target=VERSION - 1)
    before = _with_default_acls(fresh_database, snapshot(fresh_database))
    migrate(fresh_database, target=VERSION)
    with psycopg.connect(fresh_database) as conn:
        # data in the tables the down touches: defaults and privileges change under it, rows stay
        conn.execute("select * from public.batch_upsert_contacts(array['{\"keap_id\": \"r1\"}'::jsonb])")
    assert [m.version for m in rollback(fresh_database, VERSION - 1)] == [VERSION]
    assert diff(before, _with_default_acls(fresh_database, snapshot(fresh_database))) == []
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("select count(*) from public.sync_contacts where keap_id = 'r1'").fetchone() == (1,)
    assert [m.version for m in migrate(fresh_database, target=VERSION)] == [VERSION]


def test_rolling_back_34_restores_the_policies_of_33(fresh_database: str, tmp_path: Path) -> None:
    # 34 rewrote users_read / users_update and added keap_rls; its down gives back 24's policy text.
    # The schema of 33: the tree without 34 (and whatever comes after it), repeatable files included.
    before_34 = tmp_path / "sql"
    shutil.copytree(sql_dir(), before_34)
    repeatables = discover_repeatable(before_34)  # read before their requirement is gone
    for m in discover(before_34):
        if m.version >= 34:
            m.path.unlink()
            m.down_path.unlink()
    for r in repeatables:
        if r.requires >= 34:  # a later migration's functions (35's raw record keys): not part of 33's schema
            r.path.unlink()
            r.drop_path.unlink()
    migrate(fresh_database, directory=before_34)
    before, defined_before = snapshot(fresh_database), definitions(fresh_database)
    migrate(fresh_database, target=34)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("select count(*) from pg_catalog.pg_namespace where nspname = 'keap_rls'").fetchone() == (1,)
    assert [m.version for m in rollback(fresh_database, 33)] == [34]
    assert diff(before, snapshot(fresh_database)) == []
    assert diff(defined_before, definitions(fresh_database)) == []
    with psycopg.connect(fresh_database) as conn:
        qual = conn.execute(
            "select pg_catalog.pg_get_expr(polqual, polrelid) from pg_catalog.pg_policy"
            " where polname = 'users_read' and polrelid = 'public.sync_contacts'::regclass"
        ).fetchone()
    assert qual is not None and "keap_rls" not in qual[0] and "SELECT auth.jwt()" in qual[0]
    assert [m.version for m in migrate(fresh_database, target=34)] == [34]
