"""Repeatable files (sql/functions/): applied after the versioned files, re-applied when one changes, dropped by rollback."""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from keap_pipeline.cli import main as cli_main
from keap_pipeline.db.errors import MigrationChecksumMismatch, MigrationError, MigrationFileError
from keap_pipeline.db.migrate import (
    discover,
    discover_repeatable,
    migrate,
    migrate_report,
    repeatable_status,
    rollback_report,
    sql_dir,
)
from tests.db.catalog import definitions, diff, snapshot

LATEST = discover()[-1].version


def _headed(*lines: str) -> str:
    """A repeatable file's text: the requires header, then the lines."""
    return "\n".join([f"-- requires: {LATEST}", *lines])


# 90 defines a generator; 91 calls it at apply time (so 91 must run after 90, in the same run).
# The probe's body reads a table of the latest versioned file: SQL bodies are checked when created,
# so it could not be created before every versioned file is applied.
PROBE = _headed("-- a test file", """create or replace function public.probe_value()
returns integer
language sql
stable
set search_path = ''
as $$ select 1 + 0 * (select pg_catalog.count(*) from keap_pipeline.repeatable_migrations)::integer $$;

create or replace function public.probe_make_view(p_name text)
returns void
language plpgsql
set search_path = ''
as $fn$
begin
    execute pg_catalog.format('create or replace view public.%I as select public.probe_value() as v', p_name);
end
$fn$;
""")
PROBE_DROP = """drop function if exists public.probe_make_view(text);
drop function if exists public.probe_value();
"""
USER = _headed("select public.probe_make_view('probe_view');\n")
USER_DROP = "drop view if exists public.probe_view;\n"


def _sql_with_probes(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(sql_dir(), target)
    functions = target / "functions"
    shutil.rmtree(functions, ignore_errors=True)
    (functions / "rollback").mkdir(parents=True)
    for name, text, drop in (("90-probe.sql", PROBE, PROBE_DROP), ("91-probe-user.sql", USER, USER_DROP)):
        (functions / name).write_text(text)
        (functions / "rollback" / name).write_text(drop)
    return target


def _probe(url: str) -> int | None:
    with psycopg.connect(url) as conn:
        if conn.execute("select to_regprocedure('public.probe_value()')").fetchone() == (None,):
            return None
        row = conn.execute("select v from public.probe_view").fetchone()
        assert row is not None
        return int(row[0])


def _recorded(url: str) -> dict[str, tuple[str, object]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select name, checksum, applied_at from keap_pipeline.repeatable_migrations").fetchall()
    return {name: (checksum, at) for name, checksum, at in rows}


def _names(report_items: list) -> list[str]:  # type: ignore[type-arg]
    return [r.name for r in report_items]


def test_repeatables_apply_after_every_versioned_file_in_nn_order(fresh_database: str, tmp_path: Path) -> None:
    directory = _sql_with_probes(tmp_path)
    report = migrate_report(fresh_database, directory=directory)
    assert [m.version for m in report.versioned] == [m.version for m in discover(directory)]
    assert _names(report.repeatable) == ["90-probe", "91-probe-user"]
    assert _probe(fresh_database) == 1
    recorded = _recorded(fresh_database)
    assert {n: c for n, (c, _at) in recorded.items()} == {r.name: r.checksum for r in discover_repeatable(directory)}
    assert all(s.status == "applied" for s in repeatable_status(fresh_database, directory=directory))


def test_a_changed_repeatable_is_reapplied_with_all_the_others_and_only_then(
    fresh_database: str, tmp_path: Path
) -> None:
    directory = _sql_with_probes(tmp_path)
    migrate(fresh_database, directory=directory)
    first = _recorded(fresh_database)
    # unchanged: nothing runs, nothing is rewritten
    assert migrate_report(fresh_database, directory=directory).repeatable == []
    assert _recorded(fresh_database) == first

    probe = directory / "functions" / "90-probe.sql"
    probe.write_text(probe.read_text().replace("select 1 + 0", "select 2 + 0"))
    assert [s.status for s in repeatable_status(fresh_database, directory=directory)] == ["changed", "applied"]
    report = migrate_report(fresh_database, directory=directory)
    assert report.versioned == []
    assert _names(report.repeatable) == ["90-probe", "91-probe-user"], "all of them, in NN order"
    assert _probe(fresh_database) == 2
    again = _recorded(fresh_database)
    assert again["90-probe"][0] != first["90-probe"][0]
    assert again["91-probe-user"][1] > first["91-probe-user"][1], "re-applied, so applied_at moves"
    assert migrate_report(fresh_database, directory=directory).repeatable == []


def test_a_new_versioned_file_reapplies_the_repeatables(fresh_database: str, tmp_path: Path) -> None:
    directory = _sql_with_probes(tmp_path)
    migrate(fresh_database, directory=directory)
    # a versioned change that has to drop a view built by a repeatable file (to change a column under it)
    version = LATEST + 1
    (directory / f"{version}-rework.sql").write_text("drop view public.probe_view;\n")
    (directory / "rollback" / f"{version}-rework.sql").write_text("select 1;\n")
    report = migrate_report(fresh_database, directory=directory)
    assert [m.version for m in report.versioned] == [version]
    assert _names(report.repeatable) == ["90-probe", "91-probe-user"]
    assert _probe(fresh_database) == 1, "the view is back"


def test_an_edited_versioned_file_is_still_refused(fresh_database: str, tmp_path: Path) -> None:
    directory = _sql_with_probes(tmp_path)
    migrate(fresh_database, directory=directory)
    versioned = directory / "24-security-hardening.sql"
    versioned.write_text(versioned.read_text() + "\n-- an edit\n")
    probe = directory / "functions" / "90-probe.sql"
    probe.write_text(probe.read_text().replace("select 1 + 0", "select 3 + 0"))
    with pytest.raises(MigrationChecksumMismatch, match="24-security-hardening.sql"):
        migrate(fresh_database, directory=directory)
    assert _probe(fresh_database) == 1, "nothing runs after a refused history"


def test_a_failing_repeatable_names_file_and_line_and_keeps_the_previous_text(
    fresh_database: str, tmp_path: Path
) -> None:
    directory = _sql_with_probes(tmp_path)
    migrate(fresh_database, directory=directory)
    before = _recorded(fresh_database)
    probe = directory / "functions" / "90-probe.sql"
    probe.write_text(probe.read_text().replace("select 1 + 0", "select 5 + 0"))
    user = directory / "functions" / "91-probe-user.sql"
    user.write_text(user.read_text() + "-- the next statement fails on line 4\nselect * from public.no_such_table;\n")
    with pytest.raises(MigrationError) as excinfo:
        migrate(fresh_database, directory=directory)
    message = str(excinfo.value)
    assert "functions/91-probe-user.sql, line 4" in message and "no_such_table" in message
    # one transaction: 90's new text (applied before 91 failed) is undone too
    assert _probe(fresh_database) == 1
    assert _recorded(fresh_database) == before
    assert [s.status for s in repeatable_status(fresh_database, directory=directory)] == ["changed", "changed"]


def test_cli_reports_a_failing_repeatable_without_a_traceback(
    fresh_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _sql_with_probes(tmp_path)
    (directory / "functions" / "92-bad.sql").write_text(f"-- requires: {LATEST}\n\nselec 1;\n")
    (directory / "functions" / "rollback" / "92-bad.sql").write_text("select 1;\n")
    monkeypatch.setattr("keap_pipeline.db.migrate.sql_dir", lambda: directory)
    assert cli_main(["migrate", "--database-url", fresh_database]) == 2
    err = capsys.readouterr().err
    assert "functions/92-bad.sql, line 3" in err and "syntax error" in err


def test_rollback_below_a_requirement_runs_the_drop_script_and_forgets_the_file(
    fresh_database: str, tmp_path: Path
) -> None:
    directory = _sql_with_probes(tmp_path)
    (directory / "functions" / "10-early.sql").write_text(
        "-- requires: 11\ncreate or replace function public.probe_early() returns int language sql as 'select 1';\n"
    )
    (directory / "functions" / "rollback" / "10-early.sql").write_text(
        "drop function if exists public.probe_early();\n"
    )
    migrate(fresh_database, directory=directory)

    # at or above every requirement: nothing is dropped
    report = rollback_report(fresh_database, LATEST, directory=directory)
    assert report.versioned == [] and report.repeatable == []

    report = rollback_report(fresh_database, LATEST - 1, directory=directory)
    assert _names(report.repeatable) == ["91-probe-user", "90-probe"], "newest first"
    assert [m.version for m in report.versioned] == [LATEST]
    assert _probe(fresh_database) is None, "dropped, and rollback never re-applies"
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("select to_regprocedure('public.probe_early()') is not null").fetchone() == (True,)
        assert conn.execute("select to_regclass('public.probe_view')").fetchone() == (None,)

    # a later rollback below 10-early's requirement drops it; 90 and 91 are not dropped twice
    report = rollback_report(fresh_database, 10, directory=directory)
    assert _names(report.repeatable) == ["10-early"]
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("select to_regprocedure('public.probe_early()')").fetchone() == (None,)

    # the next migrate applies them all again
    report = migrate_report(fresh_database, directory=directory)
    assert _names(report.repeatable) == ["10-early", "90-probe", "91-probe-user"]
    assert _probe(fresh_database) == 1


def test_a_removed_repeatable_is_forgotten(fresh_database: str, tmp_path: Path) -> None:
    directory = _sql_with_probes(tmp_path)
    migrate(fresh_database, directory=directory)
    (directory / "functions" / "91-probe-user.sql").unlink()
    (directory / "functions" / "rollback" / "91-probe-user.sql").unlink()
    assert [(s.name, s.status) for s in repeatable_status(fresh_database, directory=directory)] == [
        ("90-probe", "applied"),
        ("91-probe-user", "removed"),
    ]
    assert _names(migrate_report(fresh_database, directory=directory).repeatable) == ["90-probe"]
    assert set(_recorded(fresh_database)) == {"90-probe"}
    assert _probe(fresh_database) == 1, "its objects stay until a file drops them"


def test_concurrent_migrate_applies_the_repeatables_once(fresh_database: str, tmp_path: Path) -> None:
    directory = _sql_with_probes(tmp_path)
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        try:
            barrier.wait()
            results.append(_names(migrate_report(fresh_database, directory=directory).repeatable))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert sorted(results) == [[], [], ["90-probe", "91-probe-user"]]


@pytest.mark.parametrize(
    ("name", "text", "drop", "message"),
    [
        ("93-x.sql", "select 1;\n", "select 1;\n", "no `-- requires: NN` line"),
        ("93-x.sql", "-- requires: 3\nselect 1;\n", "select 1;\n", "requires migration 3"),
        ("93-x.sql", f"-- requires: {LATEST}\nselect 1;\n", None, "has no drop script"),
        ("90-again.sql", f"-- requires: {LATEST}\nselect 1;\n", "select 1;\n", "share number 90"),
        ("Bad.sql", f"-- requires: {LATEST}\nselect 1;\n", "select 1;\n", "are named NN-some-name.sql"),
        ("93-x.sql", f"select 1;\n-- requires: {LATEST}\n", "select 1;\n", "no `-- requires: NN` line"),
    ],
)
def test_malformed_repeatable_files_are_refused_by_name(
    tmp_path: Path, name: str, text: str, drop: str | None, message: str
) -> None:
    directory = _sql_with_probes(tmp_path)
    (directory / "functions" / name).write_text(text)
    if drop is not None:
        (directory / "functions" / "rollback" / name).write_text(drop)
    with pytest.raises(MigrationFileError, match=re.escape(message)) as excinfo:
        discover_repeatable(directory)
    assert name in str(excinfo.value)


_VERSIONED_LINE = re.compile(r"^ *(\d+)  (applied|pending|changed) +([0-9a-f]{12})  (\S+) +(\S+)$")


def test_cli_migrations_lists_both_kinds(
    fresh_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _sql_with_probes(tmp_path)
    monkeypatch.setattr("keap_pipeline.db.migrate.sql_dir", lambda: directory)
    versions = [m.version for m in discover(directory)]

    assert cli_main(["migrations", "--database-url", fresh_database]) == 0
    lines = capsys.readouterr().out.splitlines()
    versioned = [m for m in map(_VERSIONED_LINE.match, lines) if m]
    assert [int(m[1]) for m in versioned] == versions and {m[2] for m in versioned} == {"pending"}
    repeat = [line for line in lines if line.lstrip().startswith("repeat ")]
    assert len(repeat) == 2 and all(" pending " in line for line in repeat)
    assert "functions/90-probe" in repeat[0] and "functions/91-probe-user" in repeat[1]
    assert lines.index(repeat[0]) > max(lines.index(m[0]) for m in versioned), "after the versioned lines"

    assert cli_main(["migrate", "--database-url", fresh_database]) == 0
    out = capsys.readouterr().out
    assert "applied  functions/90-probe" in out and "and 2 repeatable file(s) applied" in out
    assert cli_main(["migrate", "--database-url", fresh_database]) == 0
    assert "nothing to apply" in capsys.readouterr().out

    probe = directory / "functions" / "90-probe.sql"
    probe.write_text(probe.read_text() + "-- edited\n")
    assert cli_main(["migrations", "--database-url", fresh_database]) == 0, "a changed repeatable is no error"
    lines = capsys.readouterr().out.splitlines()
    assert {m[2] for m in map(_VERSIONED_LINE.match, lines) if m} == {"applied"}
    repeat = [line for line in lines if line.lstrip().startswith("repeat ")]
    assert " changed " in repeat[0] and " applied " in repeat[1]
    assert any("the next migrate re-applies all 2" in line for line in lines)

    assert cli_main(["rollback", "--to", str(versions[-2]), "--database-url", fresh_database]) == 0
    out = capsys.readouterr().out
    assert "dropped  functions/91-probe-user" in out and "dropped  functions/90-probe" in out


# The files of the move out of the versioned files (issue 11) with their checksums at the move. While
# one is unchanged, its objects must be exactly what the versioned files built; edited on purpose
# later, its objects are its own (and the test below compares the others).
MOVED = {
    "10-helpers": "3f15a19d2759d85b9ac5d8dc0cdabf79927f7edf8d8f046434c0f7f681978636",
    "20-sync-triggers": "430d4fe2aeb4d76a72343a7f5368f8868e074dd8002d7f724a148381c9553bb7",
    "30-conflicts": "e91a12a284342c8c195c51f337ad6c7a30af2634a64148a43ca33b55031e8761",
    "40-partitions": "3cf14acddd5c93da223d16f2e77ffec7b11372c6e8f90a46adf5fc98ce0606f2",
    "50-batch-upsert": "c31d66ad9512bee3446c7627df6c5b29bfa99dd8442dccc4cc7d1907ecf1e7e8",
    "60-monitoring": "e1c0e6e2679f8cbf0b6a7d131298145029af98a223180ca9619089878ba4abb8",
}
_DEFINES = re.compile(r"create or replace (?:function|view) ([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)", re.IGNORECASE)


def _objects(text: str) -> set[str]:
    """Qualified names of the functions and views a file (re)defines."""
    return set(_DEFINES.findall(text))


def _of(rows: set[tuple[object, ...]], names: set[str], column: int) -> set[tuple[object, ...]]:
    """The rows whose object (at `column`, an identity such as public.f(integer)) is one of `names`."""
    return {row for row in rows if str(row[column]).split("(", 1)[0] in names}


def test_the_moved_functions_and_views_are_exactly_what_the_versioned_files_built(
    pg_server_url: str, fresh_database: str, tmp_path: Path
) -> None:
    from tests.conftest import create_database, drop_database

    # the tree as it was before the move: every file but the moved ones
    unmoved = tmp_path / "sql"
    shutil.copytree(sql_dir(), unmoved)
    for name in MOVED:
        (unmoved / "functions" / f"{name}.sql").unlink()
        (unmoved / "functions" / "rollback" / f"{name}.sql").unlink()
    name = f"kp_unmoved_{uuid.uuid4().hex[:12]}"
    before = create_database(pg_server_url, name)
    try:
        migrate(before, directory=unmoved)
        report = migrate_report(fresh_database)
        assert [r.name for r in report.repeatable] == [r.name for r in discover_repeatable()]
        current = {r.name: r for r in discover_repeatable()}
        unchanged = [current[n] for n, checksum in MOVED.items() if n in current and current[n].checksum == checksum]
        old, new = definitions(before), definitions(fresh_database)
        if len(unchanged) == len(MOVED):
            # no moved file edited since: the whole catalog is the same, object for object
            assert diff(snapshot(before), snapshot(fresh_database)) == []
            assert diff(old, new) == []
        # each moved file left unchanged defines its objects exactly as the versioned files did
        names = set().union(*(_objects(r.text()) for r in unchanged))
        for kind in ("function_definitions", "view_definitions", "owners", "comments"):
            column = 1 if kind == "comments" else 0
            assert _of(old[kind], names, column) == _of(new[kind], names, column), kind
    finally:
        drop_database(pg_server_url, name)


_DDL = re.compile(
    r"^(create (or replace )?(function|view)|alter (function|view)|comment on (function|view)|grant|revoke"
    r"|drop (function|view))\b",
    re.IGNORECASE,
)


def _statements(text: str) -> list[str]:
    """The file's statements, roughly: comment lines out, split at semicolons (bodies split too)."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


def test_requirements_cover_every_versioned_file_that_defines_their_objects() -> None:
    """A rollback below such a file runs its down script, which gives these objects older text back:
    the repeatable file must be forgotten then (requires >= that version) so the next migrate restores it."""
    too_low = []
    for r in discover_repeatable():
        names = _objects(r.text())
        for m in discover():
            for statement in _statements(m.text()):
                if _DDL.match(statement) and any(re.search(rf"\b{re.escape(n)}\b", statement) for n in names):
                    if m.version > r.requires:
                        too_low.append(f"{r.label} requires {r.requires} but {m.path.name} defines or grants {names}")
    assert too_low == []


@pytest.mark.parametrize("version", [23, 16])
def test_rolling_back_below_the_moved_files_gives_the_older_texts_back(
    pg_server_url: str, fresh_database: str, version: int
) -> None:
    """The drop scripts of 10-60 drop nothing and the versioned down scripts do the rest: a database
    rolled back to N defines the moved objects exactly as one migrated only to N."""
    from tests.conftest import create_database, drop_database

    name = f"kp_to_{version}_{uuid.uuid4().hex[:12]}"
    only_to = create_database(pg_server_url, name)
    try:
        migrate(only_to, target=version)
        migrate(fresh_database)
        report = rollback_report(fresh_database, version)
        assert {r.name for r in report.repeatable} == {r.name for r in discover_repeatable() if r.requires > version}
        names = set().union(*(_objects(r.text()) for r in discover_repeatable() if r.name in MOVED))
        old, new = definitions(only_to), definitions(fresh_database)
        for kind in ("function_definitions", "view_definitions", "owners", "comments"):
            column = 1 if kind == "comments" else 0
            assert _of(old[kind], names, column) == _of(new[kind], names, column), kind
    finally:
        drop_database(pg_server_url, name)
