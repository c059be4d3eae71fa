"""The migration runner: order, idempotence, checksums, failures, rollback round trip, concurrency, the CLI."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from keap_pipeline.cli import main as cli_main
from keap_pipeline.db.errors import MigrationChecksumMismatch, MigrationError, MigrationFileError
from keap_pipeline.db.migrate import (
    discover,
    discover_repeatable,
    migrate,
    rollback,
    sql_dir,
    status,
)
from tests.db.catalog import definitions, diff, snapshot

# sha256 of every versioned file and down script up to 25 as applied by databases in the field (the
# tree issue 11 started from). They are never edited: a database that applied one checks its checksum,
# and its down script restores the exact state of its time. Functions change in sql/functions/.
APPLIED_FILES = {
    "01-pipeline-schema.sql": "4da9c6bb0e36f41eeea5a918f4c46d95702cfc7da9b705300edc8b55d747efdc",
    "02-supabase-standins.sql": "38d1067eec0a9c0f31e616f269ea27da10e3d3eb290b241c886786357cc53b0e",
    "10-sync-tables.sql": "ec1f6343670003087ea588fe2ccee1676c25d1d2b677ed1baae4ad75fea8c35f",
    "11-sync-functions.sql": "e7c6cc928c8a171ed6f2c4a1506e80e7a92a0dc00bf1b766a7717ce7e5f5a3cb",
    "12-sync-triggers.sql": "ed7db5cbf8902be9f12a2cf79502f974e52ee86f3218a88e6d287435074cc14e",
    "13-sync-indexes.sql": "c8e22f2896a3a645b1481cb895d10029da323ec130e711390395d94f42b778e0",
    "14-realtime.sql": "0a82d8d66d4712efd439a191820bbc0a6f8ad49c5f7ba2e2991a0fa054faad45",
    "15-partitioning.sql": "7b9283ea38e81af64d74164d906e3511a4c1aa2c13172889bd78ed1107b41a80",
    "16-security.sql": "6fe597ba384c5ee9a82f8fb6de1a3292590e44507c287548a5217dd4e4782c19",
    "17-monitoring.sql": "3b52edac06edee20e9ecb9efb8a6444d51a33c826023d45a566ab2e41997990c",
    "20-contacts-pipeline.sql": "93a302601de81a361eb101813ad316046bb2951cc6e06bf109a1d46e25b1eccb",
    "21-parallel-loaders.sql": "ef0b64b6bb88c17054b01f2a5c788e2c6e912414b1c22e198be9a66e25e54de0",
    "22-lean-indexes.sql": "53414fe844f593c20da45a763605b16a3a43fc03e152abcd1ac976718b2d0c0b",
    "23-cheaper-writes.sql": "6198c6cd08e311d1a65d5f5d30c6e8a9b1b6ca3bf14fd4022f31c0f89dbbaa2b",
    "24-security-hardening.sql": "14e61518d907867937f4e8d2c79ac2dbdf68747236195b56e1d8bb0296dbe558",
    "25-dead-letter-bytes.sql": "79d8f21d964004772feda715687747825be170319782425f9377cce9c4f9f771",
    "rollback/01-pipeline-schema.sql": "52303d545522ff4107e4758484a6fd0fead03c347d9457abce45c6eff8dace8d",
    "rollback/02-supabase-standins.sql": "d271c7c75815b773939b6ce06228d9c58e685354dcd169d649dc4faa27919949",
    "rollback/10-sync-tables.sql": "7619901a15b74e0a2fdb383065aa2d99711fd22c4769761abcf235e4367ffaaf",
    "rollback/11-sync-functions.sql": "35901330697c61a31ceb350ae83806be9b1ab24e1ddacbfb94a8f4f99ca87716",
    "rollback/12-sync-triggers.sql": "db04870aecc940cd3039a50e090c38da577f6a6172c56a5ddda366919baee351",
    "rollback/13-sync-indexes.sql": "b9aa547de760e83624dfced394bc3114c300640b0022afa109309cbdf2fdcf5f",
    "rollback/14-realtime.sql": "9ccb71356aa067af917b39dbe048308e1f3c6b9282ef27d4eab3e00bde0dfc69",
    "rollback/15-partitioning.sql": "7a3cd27b7827148d946d66c8777d2f3872b4543e8417c4bde459a2d69a09bb4f",
    "rollback/16-security.sql": "c907a699a660a6a91e03687d39418c062a4cc7d874b9df1bf8027a1b62223e6a",
    "rollback/17-monitoring.sql": "8e4902e21d71aabb30ec6fcd14871523b787f88fe64c24bdfa7005d2959e6a4b",
    "rollback/20-contacts-pipeline.sql": "6989c653fe8438e118f357cbe59d8c6e01e9819c5668522ea6ffd4b58ccaa0c0",
    "rollback/21-parallel-loaders.sql": "24301aab9ad009fb4d45468f5100632b60be3895c0705a455710276e609ea8fb",
    "rollback/22-lean-indexes.sql": "41d90314f659db10ef07cdf4d584839f2adcf79b53329e22d6688adb8f77c21b",
    "rollback/23-cheaper-writes.sql": "1244ca3bc25113aa6d042d335956ec63677329fb8469803f9e5bdbff5b247074",
    "rollback/24-security-hardening.sql": "51df3e97277129f581f49fae24d8f96c60e1cf9d961885c80a49ccb1d0f9257f",
    "rollback/25-dead-letter-bytes.sql": "cc4179a754e3103afb4e02c440e167566d70c0de1abf78246c3406fd6120b0ce",
}


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


def test_applied_migrations_and_their_down_scripts_are_never_edited() -> None:
    directory = sql_dir()
    edited = [
        name for name, checksum in APPLIED_FILES.items()
        if hashlib.sha256((directory / name).read_bytes()).hexdigest() != checksum
    ]
    assert edited == [], "restore these files; change a function in its sql/functions/ file instead"


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
    defined = definitions(fresh_database)
    assert diff(before, during), "the migrations must have created something"
    undone = rollback(fresh_database, 0)
    assert [m.version for m in undone] == sorted((m.version for m in discover()), reverse=True)
    assert diff(before, snapshot(fresh_database)) == []
    # and the database can be built again after it, repeatable files included
    assert len(migrate(fresh_database)) == len(discover())
    assert diff(during, snapshot(fresh_database)) == []
    assert diff(defined, definitions(fresh_database)) == []


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
    for r in discover_repeatable():
        assert f"functions/{r.name}" in listing and r.checksum[:12] in listing
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
