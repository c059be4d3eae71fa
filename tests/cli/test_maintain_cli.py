"""`keap-pipeline maintain partitions|vacuum|queue` on a real PostgreSQL, and database errors as one line with exit 2."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from keap_pipeline.cli import database_error_line, main
from tests.db.queue_history import add_finished


def test_partitions_dry_run_then_for_real(migrated_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(migrated_database) as conn:
        before = conn.execute("select count(*) from pg_catalog.pg_inherits where inhparent = 'public.sync_audit_log'::regclass").fetchone()
    assert main(["maintain", "partitions", "--months-ahead", "8", "--dry-run", "--database-url", migrated_database]) == 0
    dry = capsys.readouterr().out
    assert "partitions created: 5" in dry and "dry run: nothing was changed" in dry
    assert main(["maintain", "partitions", "--months-ahead", "8", "--database-url", migrated_database]) == 0
    out = capsys.readouterr().out
    assert "partitions created: 5" in out and "rows left in DEFAULT: 0" in out and "dry run" not in out
    with psycopg.connect(migrated_database) as conn:
        after = conn.execute("select count(*) from pg_catalog.pg_inherits where inhparent = 'public.sync_audit_log'::regclass").fetchone()
    assert before is not None and after is not None and after[0] == before[0] + 5


def test_vacuum_tables(migrated_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["maintain", "vacuum", "--table", "sync_contacts", "--table", "sync_queue", "--database-url", migrated_database]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("sync_contacts: VACUUM (ANALYZE) in ")
    assert out[1].startswith("sync_queue: VACUUM (ANALYZE) in ")
    assert out[2] == "2 table(s) processed, 0 skipped"
    assert main(["maintain", "vacuum", "--analyze-only", "--database-url", migrated_database]) == 0
    assert "8 table(s) processed" in capsys.readouterr().out


def test_queue_dry_run_then_for_real(migrated_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(migrated_database) as conn:
        for days in (3, 8, 60):
            add_finished(conn, "completed", days)
    assert main(["maintain", "queue", "--keep-days", "7", "--dry-run", "--database-url", migrated_database]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert dry == [
        "queue items would be purged (completed or cancelled more than 7 days ago): 2",
        "queue items left by status: completed 1",
        "dry run: nothing was changed",
    ]
    assert main(["maintain", "queue", "--keep-days", "7", "--database-url", migrated_database]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "queue items purged (completed or cancelled more than 7 days ago): 2 in 1 transaction(s)",
        "queue items left by status: completed 1",
    ]
    with pytest.raises(SystemExit) as info:
        main(["maintain", "queue", "--keep-days", "0", "--database-url", migrated_database])
    assert info.value.code == 2


def test_unknown_table_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["maintain", "vacuum", "--table", "pg_authid"])
    assert exit_.value.code == 2


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://someone:hunter2secret@127.0.0.1:1/nowhere",  # closed port
        "postgresql://someone:hunter2secret@127.0.0.1:1/nowhere?nosuchoption=1",  # libpq refuses the URL
        "host=127.0.0.1 port=1 user=someone password=hunter2secret dbname=nowhere",
    ],
)
def test_database_errors_are_one_line_exit_2_and_no_secret(url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "keap_pipeline.cli", "maintain", "vacuum", "--database-url", url],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keap-pipeline maintain vacuum: database error: "), proc.stderr
    assert "hunter2secret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_wrong_password_is_one_line(pg_server_url: str, migrated_database: str) -> None:
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute("drop role if exists kp_cli_pw")
        conn.execute("create role kp_cli_pw login password 'right-one'")
    try:
        info = psycopg.conninfo.conninfo_to_dict(migrated_database)
        info.update(user="kp_cli_pw", password="wrong-hunter2")
        url = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
        proc = subprocess.run(
            [sys.executable, "-m", "keap_pipeline.cli", "maintain", "partitions", "--dry-run", "--database-url", url],
            capture_output=True, text=True, timeout=60, check=False,
        )
        # trust authentication (the embedded server) lets the wrong password in, then the role lacks rights;
        # either way: one line, exit 2, no password
        assert proc.returncode == 2, proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "wrong-hunter2" not in proc.stderr
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute("drop owned by kp_cli_pw")
            conn.execute("drop role kp_cli_pw")


def test_masking_of_passwords_in_messages() -> None:
    assert "pw" not in database_error_line(Exception('missing "=" after "postgresql://u:pw@h/db" in connection info string'))
    assert database_error_line(Exception("bad password='a b' here")) == "bad password=*** here"
