"""The migration runner: order, idempotence, checksums, failures, rollback round trip, concurrency, the CLI."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from keap_pipeline.cli import main as cli_main
from keap_pipeline.db.errors import MigrationChecksumMismatch, MigrationError, MigrationFileError
from keap_pipeline.db.migrate import discover, migrate, rollback, sql_dir, status
from tests.db.catalog import diff, snapshot


def _applied_versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select version from keap_pipeline.schema_migrations order by 1")]


def _copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(sql_dir(), target)
    return target


def test_files_are_well_formed_and_ordered() -> None:
    migrations = discover()
    versions = [m.version for m in migrations]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert versions[0] == 1, "01-pipeline-schema.sql must come first: it creates the history table"
    for m in migrations:
        assert m.down_path.is_file()


def test_migrate_applies_all_then_is_a_no_op(fresh_database: str) -> None:
    applied = migrate(fresh_database)
    assert [m.version for m in applied] == [m.version for m in discover()]
    assert _applied_versions(fresh_database) == [m.version for m in discover()]
    assert migrate(fresh_database) == []
    assert all(s.status == "applied" for s in status(fresh_database))


def test_edited_applied_file_is_refused_by_name(fresh_database: str, tmp_path: Path) -> None:
    directory = _copy_sql(tmp_path)
    migrate(fresh_database, directory=directory)
    first = sorted(directory.glob("*.sql"))[-1]
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationChecksumMismatch, match=first.name):
        migrate(fresh_database, directory=directory)
    assert [s.status for s in status(fresh_database, directory=directory)][-1] == "changed"


def test_failing_file_names_file_line_and_message_and_keeps_previous_version(
    fresh_database: str, tmp_path: Path
) -> None:
    directory = _copy_sql(tmp_path)
    last = discover(directory)[-1]
    bad = directory / f"{last.version + 1}-broken.sql"
    bad.write_text(
        "create table public.half_done (id int);\n"
        "-- the next statement fails on line 3\n"
        "select * from public.no_such_table;\n"
    )
    (directory / "rollback" / bad.name).write_text("drop table if exists public.half_done;\n")
    with pytest.raises(MigrationError) as excinfo:
        migrate(fresh_database, directory=directory)
    message = str(excinfo.value)
    assert bad.name in message and "line 3" in message and "no_such_table" in message
    assert _applied_versions(fresh_database)[-1] == last.version
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("select to_regclass('public.half_done')").fetchone()
        assert row is not None and row[0] is None, "the failed file's transaction must be undone"


def test_missing_down_script_is_refused(tmp_path: Path) -> None:
    directory = _copy_sql(tmp_path)
    (directory / "99-no-down.sql").write_text("select 1;\n")
    with pytest.raises(MigrationFileError, match="99-no-down.sql"):
        discover(directory)


def test_rollback_to_zero_restores_the_catalog_object_for_object(fresh_database: str) -> None:
    before = snapshot(fresh_database)
    migrate(fresh_database)
    during = snapshot(fresh_database)
    assert diff(before, during), "the migrations must have created something"
    undone = rollback(fresh_database, 0)
    assert [m.version for m in undone] == sorted((m.version for m in discover()), reverse=True)
    assert diff(before, snapshot(fresh_database)) == []
    # and the database can be built again after it
    assert len(migrate(fresh_database)) == len(discover())
    assert diff(during, snapshot(fresh_database)) == []


def test_rollback_to_a_version_keeps_the_lower_ones(fresh_database: str) -> None:
    migrate(fresh_database)
    versions = [m.version for m in discover()]
    if len(versions) < 2:
        pytest.fail("needs at least two migrations")
    keep = versions[-2]
    rollback(fresh_database, keep)
    assert _applied_versions(fresh_database) == versions[:-1]
    migrate(fresh_database)
    assert _applied_versions(fresh_database) == versions


def test_concurrent_migrate_applies_each_file_once(fresh_database: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        try:
            barrier.wait()
            results.append([m.version for m in migrate(fresh_database)])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    all_versions = [m.version for m in discover()]
    assert sorted(v for r in results for v in r) == all_versions, "every file applied exactly once"
    assert sum(1 for r in results if r) == 1, "one run applied everything, the others waited and found nothing"
    assert _applied_versions(fresh_database) == all_versions


def test_cli_migrate_migrations_rollback(fresh_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["migrate", "--database-url", fresh_database]) == 0
    assert "applied" in capsys.readouterr().out
    assert cli_main(["migrate", "--database-url", fresh_database]) == 0
    assert "nothing to apply" in capsys.readouterr().out
    assert cli_main(["migrations", "--database-url", fresh_database]) == 0
    listing = capsys.readouterr().out
    for m in discover():
        assert m.name in listing and m.checksum[:12] in listing
    assert cli_main(["rollback", "--to", "0", "--database-url", fresh_database]) == 0
    assert cli_main(["migrations", "--database-url", fresh_database]) == 0
    assert "pending" in capsys.readouterr().out


def test_cli_reports_a_failing_migration_without_a_traceback(
    fresh_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _copy_sql(tmp_path)
    (directory / "98-bad.sql").write_text("selec 1;\n")
    (directory / "rollback" / "98-bad.sql").write_text("select 1;\n")
    monkeypatch.setattr("keap_pipeline.db.migrate.sql_dir", lambda: directory)
    assert cli_main(["migrate", "--database-url", fresh_database]) == 2
    err = capsys.readouterr().err
    assert "98-bad.sql" in err and "line 1" in err and "syntax error" in err


def test_rolling_back_20_keeps_queue_items_in_the_old_vocabulary(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        assert conn.execute(
            "select * from public.batch_upsert_contacts(array['{\"keap_id\":\"q1\"}'::jsonb, '{\"keap_id\":\"q2\"}'::jsonb])"
        ).fetchone() == (2, 0, 0)
        # app edits queue one pending item per contact; make them held and cancelled, as 20 would
        conn.execute("update public.sync_contacts set first_name = 'app' where keap_id in ('q1', 'q2')")
        conn.execute(
            "update public.sync_queue q set status = case c.keap_id when 'q1' then 'held' else 'cancelled' end"
            " from public.sync_contacts c where c.id = q.entity_id"
        )
    rollback(migrated_database, 17)
    with psycopg.connect(migrated_database) as conn:
        statuses = sorted(r[0] for r in conn.execute("select status from public.sync_queue"))
    assert statuses == ["completed", "pending"]
    migrate(migrated_database)
