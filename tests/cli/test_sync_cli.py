"""`keap-pipeline sync ENTITY` and `sync all` against the sandbox, and the lineage rule of `sync all`."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from keap_pipeline.cli import main
from keap_pipeline.db.locks import run_lock
from keap_pipeline.entities import ENTITIES, lineage_order
from keap_pipeline.sync_cli import EXIT_RUN_LOCKED, run_in_lineage, worst
from tests.pipeline.conftest import API_KEY, client_for, expected_rows, sandbox_records, table_rows


def _sync(capsys: pytest.CaptureFixture[str], *args: str, url: str, base_url: str) -> tuple[int, list[str], str]:
    status = main(["sync", *args, "--base-url", base_url, "--no-pacing", "--database-url", url])
    out = capsys.readouterr()
    return status, out.out.splitlines(), out.err


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEAP_API_KEY", API_KEY)


def _listed(handle, name: str) -> int:  # type: ignore[no-untyped-def]
    with client_for(handle) as client:
        return sum(len(page.records) for page in client.iter_pages(name, page_size=1000))


def _count(url: str, name: str, where_null: str | None = None) -> int:
    schema, _, table = ENTITIES[name].target_table.partition(".")
    query = sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))
    if where_null:
        query = sql.SQL("{} where {} is null").format(query, sql.Identifier(where_null))
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_sync_contacts_loads_everything_and_prints_its_line(sandbox, migrated_database: str, capsys) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=300)
    status, lines, err = _sync(capsys, "contacts", "--page-size", "100", url=migrated_database, base_url=handle.base_url)
    assert status == 0, err
    summary = [line for line in lines if line.startswith("contacts [incremental]: ")]
    assert len(summary) == 1 and "300 seen" in summary[0] and "300 inserted" in summary[0]
    assert any(line.startswith("  contacts: ") and "pages" in line for line in lines)  # progress, named
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))


def test_progress_lines_say_what_is_committed_and_never_repeat(sandbox, migrated_database: str, capsys) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=1000)
    status, lines, err = _sync(capsys, "contacts", "--page-size", "100", "--loaders", "2",
                               url=migrated_database, base_url=handle.base_url)
    assert status == 0, err
    progress = [line.split(")")[0] + ")" for line in lines if line.startswith("  contacts: ")]  # without rate, cursor
    assert progress and len(progress) == len(set(progress)), progress
    assert progress[-1] == "  contacts: 1,000 records in 10 pages committed (10 fetched)"


def test_a_window_on_an_entity_without_a_time_filter_is_refused(sandbox, migrated_database: str, capsys) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=10)
    for name in ("products", "subscriptions"):
        status, _, err = _sync(capsys, name, "--since", "2024-01-01", url=migrated_database, base_url=handle.base_url)
        assert status == 2
        assert f"{name} has no time filter in Keap: every sync is a full pass; drop --since/--until" in err


def test_sync_all_entity_choices() -> None:
    with pytest.raises(SystemExit):
        main(["sync", "companies"])


def test_lineage_rule_skips_the_children_of_an_entity_that_did_not_complete() -> None:
    def run(statuses: dict[str, int]) -> tuple[int, list[str], list[str]]:
        ran: list[str] = []
        lines: list[str] = []

        def one(entity):  # type: ignore[no-untyped-def]
            ran.append(entity.name)
            return statuses.get(entity.name, 0)

        return run_in_lineage(lineage_order(), one, lines.append), ran, lines

    status, ran, lines = run({})
    assert (status, ran, lines) == (0, ["tags", "products", "contacts", "orders", "subscriptions"], [])

    # contacts fails: tags and products ran before it; orders and subscriptions are skipped, saying why
    status, ran, lines = run({"contacts": 2})
    assert status == 2 and ran == ["tags", "products", "contacts"]
    assert lines == [
        "orders: skipped, it is loaded after contacts (contacts exited 2); the next sync includes it",
        "subscriptions: skipped, it is loaded after contacts (contacts exited 2); the next sync includes it",
    ]

    # products' lock is held: contacts is skipped, and through it orders; subscriptions names both
    status, ran, lines = run({"products": EXIT_RUN_LOCKED})
    assert status == EXIT_RUN_LOCKED and ran == ["tags", "products"]
    assert lines[-1] == (
        "subscriptions: skipped, it is loaded after contacts, products (contacts was skipped, products exited 75);"
        " the next sync includes it"
    )

    # a failure elsewhere does not stop an entity that does not depend on it
    status, ran, lines = run({"orders": 2})
    assert status == 2 and ran == ["tags", "products", "contacts", "orders", "subscriptions"] and lines == []
    # stopped early (the quota): contacts waits for tags, products goes on
    status, ran, _ = run({"tags": 3})
    assert status == 3 and ran == ["tags", "products"]


def test_worst_status_order() -> None:
    assert worst([]) == 0
    assert worst([0, 3, 0]) == 3
    assert worst([3, EXIT_RUN_LOCKED]) == EXIT_RUN_LOCKED
    assert worst([EXIT_RUN_LOCKED, 2, 3]) == 2


def test_sync_all_loads_every_entity_in_lineage_order(sandbox, migrated_database: str, capsys) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=400)
    status, lines, err = _sync(capsys, "all", "--page-size", "100", url=migrated_database, base_url=handle.base_url)
    assert status == 0, err
    summaries = [line for line in lines if not line.startswith(" ") and not line.startswith("sync all")]
    assert [line.split(" ")[0] for line in summaries] == [e.name for e in lineage_order()]
    for name in ENTITIES:
        assert _count(migrated_database, name) == _listed(handle, name), name
    assert "a full pass" in next(line for line in summaries if line.startswith("products "))
    assert lines[-1] == "sync all: 5 entities in lineage order, exit status 0"
    # orders and subscriptions came after their contacts and products: every link resolved
    for name, column in (("orders", "contact_id"), ("subscriptions", "contact_id"), ("subscriptions", "product_id")):
        assert _count(migrated_database, name, where_null=column) == 0, (name, column)


def test_sync_all_with_a_window_says_the_full_passes_ignore_it(sandbox, migrated_database: str, capsys) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=200)
    since, until = "2024-01-01T00:00:00Z", datetime.now(UTC).isoformat()
    status, lines, err = _sync(capsys, "all", "--since", since, "--until", until, url=migrated_database, base_url=handle.base_url)
    assert status == 0, err
    for name in ("products", "subscriptions"):
        [line] = [line for line in lines if line.startswith(f"{name} ")]
        assert "a full pass" in line and "--since/--until apply to the others" in line
    [line] = [line for line in lines if line.startswith("contacts ")]
    assert "[window:2024-01-01T00:00:00+00:00/" in line


def test_sync_all_with_contacts_locked_skips_its_children_and_exits_75(sandbox, migrated_database: str, capsys) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=100)
    with run_lock(migrated_database, "contacts", wait_seconds=0, holder="keap-pipeline contacts other-run"):
        status, lines, err = _sync(capsys, "all", "--wait", "0", url=migrated_database, base_url=handle.base_url)
    assert status == EXIT_RUN_LOCKED
    assert "another contacts run is in progress: 'keap-pipeline contacts other-run'" in err
    assert any(line.startswith("contacts: not synced, another run holds its lock (exit 75)") for line in lines)
    assert any(line.startswith("orders: skipped, it is loaded after contacts (contacts exited 75)") for line in lines)
    assert any(line.startswith("subscriptions: skipped") for line in lines)
    for name in ("tags", "products"):
        assert _count(migrated_database, name) == _listed(handle, name)
    assert _count(migrated_database, "contacts") == 0 and _count(migrated_database, "orders") == 0
