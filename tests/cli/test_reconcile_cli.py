"""`keap-pipeline reconcile ENTITY|all` against the sandbox: exit statuses, the safety stop, --confirm and --list."""

from __future__ import annotations

import psycopg
import pytest

from keap_pipeline.cli import main
from keap_pipeline.db.locks import run_lock
from keap_pipeline.entities import ENTITIES, lineage_order
from keap_pipeline.pipeline.reconcile import reconcile_lock_name
from keap_pipeline.reconcile_cli import EXIT_SAFETY_STOP
from keap_pipeline.sync_cli import EXIT_RUN_LOCKED
from tests.pipeline.conftest import API_KEY


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEAP_API_KEY", API_KEY)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    status = main(["reconcile", *args])
    out = capsys.readouterr()
    return status, out.out.splitlines(), out.err


def _deleted(url: str, name: str) -> list[str]:
    schema, _, table = ENTITIES[name].target_table.partition(".")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            psycopg.sql.SQL("select keap_id from {} where deleted_at is not null order by keap_id::bigint").format(
                psycopg.sql.Identifier(schema, table)
            )
        ).fetchall()
    return [r[0] for r in rows]


def test_reconcile_all_the_safety_stop_and_a_confirmation(sandbox, migrated_database: str, capsys) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=200)
    url = migrated_database
    common = ("--base-url", handle.base_url, "--no-pacing", "--database-url", url, "--page-size", "50")
    assert main(["sync", "all", *common]) == 0
    capsys.readouterr()
    state = handle.state
    assert state is not None
    state.delete_record("contacts", 10)  # 1 of 200: within 2%
    for ident in (1, 2, 3):  # 3 of 100 orders: more than 2%
        state.delete_record("orders", ident)

    status, lines, err = _cli(capsys, "all", *common)
    assert status == EXIT_SAFETY_STOP, err
    summaries = {line.split(" ")[0]: line for line in lines if " reconcile [" in line}
    assert list(summaries) == [e.name for e in lineage_order()]
    assert "[completed]" in summaries["contacts"] and "1 soft-deleted" in summaries["contacts"]
    assert "[stopped]" in summaries["orders"] and "would delete 3 of 100 live orders (3.00%)" in summaries["orders"]
    assert lines[-1] == f"reconcile all: 5 entities, exit status {EXIT_SAFETY_STOP}"
    assert _deleted(url, "contacts") == ["10"] and _deleted(url, "orders") == []

    status, lines, _ = _cli(capsys, "orders", "--list", "--database-url", url)
    assert status == 0
    [stopped] = [line for line in lines if " stopped " in line]
    pass_id = stopped.split()[0]
    assert " 0/3 " in stopped

    status, lines, err = _cli(capsys, "all", "--confirm", pass_id, "--database-url", url)
    assert status == 2 and "name its entity, not all" in err
    status, lines, err = _cli(capsys, "orders", "--confirm", "not-a-uuid", "--database-url", url)
    assert status == 2 and "--confirm takes a pass id" in err
    status, lines, err = _cli(capsys, "orders", "--confirm", pass_id, "--database-url", url)
    assert status == 0, err
    assert lines == [f"orders: pass {pass_id} confirmed, 3 soft-deleted as Keap's deletions"]
    assert _deleted(url, "orders") == ["1", "2", "3"]

    # a looser limit on the command line applies at once; nothing is left to delete
    status, lines, _ = _cli(capsys, "orders", *common, "--max-share", "5%")
    assert status == 0 and "0 missing" in lines[-1]


def test_another_pass_in_progress_exits_75_and_missing_credentials_exit_2(
    sandbox, migrated_database: str, capsys, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    handle = sandbox(contacts=20)
    common = ("--base-url", handle.base_url, "--no-pacing", "--database-url", migrated_database)
    with run_lock(migrated_database, reconcile_lock_name(ENTITIES["tags"]), wait_seconds=0, holder="a test"):
        status, _, err = _cli(capsys, "tags", *common, "--wait", "0")
    assert status == EXIT_RUN_LOCKED and "a test" in err
    monkeypatch.delenv("KEAP_API_KEY")
    status, _, err = _cli(capsys, "tags", *common)
    assert status == 2 and "KEAP_API_KEY" in err
