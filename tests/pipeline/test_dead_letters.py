"""Dead letters: records that cannot load are kept whole with reason and run, listed, replayed, and surfaced by the asset check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg

from keap_pipeline.defs.contacts import keap_contacts_dead_letters
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import CONTACTS
from tests.dagster_contexts import run_asset_check
from tests.pipeline.conftest import expected_rows, sandbox_records, scalar, sync, table_rows

LONG_EMAIL = "x" * 300 + "@example.com"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KEAP_API_KEY", "KEAP_PIPELINE_DATABASE_URL")}
    return subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "keap_pipeline.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _letters(url: str) -> dict[str, dict]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        rows = conn.execute("select * from keap_pipeline.dead_letters order by id").fetchall()
    return {r["keap_id"]: r for r in rows}


def _check(url: str):
    """Evaluate the keap_contacts_dead_letters asset check directly."""
    return run_asset_check(keap_contacts_dead_letters, postgres=PostgresResource(database_url=url))


def test_bad_records_are_dead_lettered_listed_replayed_and_checked(sandbox, migrated_database: str) -> None:
    handle = sandbox(contacts=300)
    state = handle.state
    # the normalizer refuses these (over-long email, NUL character): never truncated or stripped
    state.update_contact(10, {"email_addresses": [{"email": LONG_EMAIL, "field": "EMAIL1"}]})
    state.update_contact(20, {"given_name": "Nul\x00Byte"})
    # PostgreSQL refuses these through a constraint the normalizer does not know (an operator's rule)
    for ident in (30, 31):
        state.update_contact(ident, {"company": {"company_name": "Refused Ltd"}})
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            "alter table public.sync_contacts add constraint test_refused_company"
            " check (company is distinct from 'Refused Ltd')"
        )
    good = {k: r for k, r in sandbox_records(handle).items() if k not in ("10", "20", "30", "31")}

    report = sync(handle, migrated_database, page_size=100, run_id="run-dl")
    assert report.records_seen == 300 and report.dead_lettered == 4
    assert report.counts.inserted == 296
    # the batch's other records all loaded, exactly
    assert table_rows(migrated_database) == expected_rows(good)

    letters = _letters(migrated_database)
    assert set(letters) == {"10", "20", "30", "31"}
    for keap_id, letter in letters.items():
        assert letter["status"] == "open" and letter["run_id"] == "run-dl" and letter["attempts"] == 1
        served = {k: v for k, v in state.contact(int(keap_id)).items() if k in CONTACTS.fields}
        assert json.loads(letter["record_json"]) == served, "the raw record as Keap served it, whole"
    assert letters["10"]["field"] == "email_addresses[0].email" and "255" in letters["10"]["reason"]
    assert "NUL" in letters["20"]["reason"]
    assert "23514" in letters["30"]["reason"] and "test_refused_company" in letters["30"]["reason"]

    listing = _cli("dead-letters", "list", "--database-url", migrated_database)
    assert listing.returncode == 0, listing.stderr
    assert "4 dead letter(s)" in listing.stdout
    for keap_id in letters:
        assert any(line.split()[2] == keap_id for line in listing.stdout.splitlines()[1:-1])

    check = _check(migrated_database)
    assert check.passed is False
    assert check.metadata["open_dead_letters"].value == 4
    assert "test_refused_company" in check.metadata["reasons"].value

    # a re-sync meets the same bad records again: still one open letter each, attempts counted
    sync(handle, migrated_database, page_size=100, since=None, scope="window:again", run_id="run-dl-2")
    assert scalar(migrated_database, "select count(*) from keap_pipeline.dead_letters") == 4
    assert scalar(migrated_database, "select min(attempts) from keap_pipeline.dead_letters") == 2

    # the operator fixes the rule; replay loads what PostgreSQL refused, the rest still fails
    with psycopg.connect(migrated_database) as conn:
        conn.execute("alter table public.sync_contacts drop constraint test_refused_company")
    replay = _cli("dead-letters", "replay", "--database-url", migrated_database)
    assert replay.returncode == 1, replay.stderr  # some still fail
    [line] = [x for x in replay.stdout.splitlines() if x.startswith("replayed ")]
    assert line.startswith("replayed 2: ")
    assert sorted(json.loads(line.removeprefix("replayed 2: "))) == sorted([letters["30"]["id"], letters["31"]["id"]])
    assert replay.stdout.count("still failing") == 2
    after = _letters(migrated_database)
    assert {k: v["status"] for k, v in after.items()} == {"10": "open", "20": "open", "30": "replayed", "31": "replayed"}
    assert after["30"]["replayed_at"] is not None
    assert after["10"]["attempts"] == 3
    rows = table_rows(migrated_database)
    assert rows["30"][5] == rows["31"][5] == "Refused Ltd"
    assert rows == expected_rows({k: r for k, r in sandbox_records(handle).items() if k not in ("10", "20")})
    assert scalar(migrated_database, "select count(*) from public.sync_audit_log where sync_source <> 'keap'") == 0

    check = _check(migrated_database)
    assert check.metadata["open_dead_letters"].value == 2


def test_a_dead_letter_closes_when_keap_sends_a_version_that_loads(sandbox, migrated_database: str) -> None:
    handle = sandbox(contacts=50)
    handle.state.update_contact(7, {"email_addresses": [{"email": LONG_EMAIL, "field": "EMAIL1"}]})
    first = sync(handle, migrated_database, run_id="run-bad")
    assert first.dead_lettered == 1
    assert _letters(migrated_database)["7"]["status"] == "open"
    # fixed in Keap: the next incremental sync loads it, and its dead letter is no longer open
    handle.state.update_contact(7, {"email_addresses": [{"email": "fixed@example.com", "field": "EMAIL1"}]})
    second = sync(handle, migrated_database, run_id="run-fixed")
    assert second.dead_lettered == 0
    letter = _letters(migrated_database)["7"]
    assert letter["status"] == "replayed" and letter["replayed_at"] is not None
    assert scalar(migrated_database, "select email from public.sync_contacts where keap_id = '7'") == "fixed@example.com"
    assert _check(migrated_database).passed


def test_a_replay_racing_a_loader_on_the_same_contact_is_retried_not_failed(sandbox, migrated_database: str, caplog) -> None:
    """No lock between loaders and replays (sql/21): a replay that meets a contact a loader inserted
    meanwhile rolls back and runs again, and then finds the row instead of failing on its key."""
    import logging
    import threading

    from keap_pipeline.db.dead_letters import NewDeadLetter, record_dead_letters
    from keap_pipeline.pipeline.replay import replay_dead_letters

    handle = sandbox(contacts=5)
    record = {k: v for k, v in handle.state.contact(3).items() if k in CONTACTS.fields}
    with psycopg.connect(migrated_database) as conn:
        record_dead_letters(conn, "contacts", [NewDeadLetter(keap_id="3", record=record, reason="test")], "run-x")
    caplog.set_level(logging.INFO, logger="keap_pipeline.pipeline.replay")

    loader = psycopg.connect(migrated_database)
    try:
        # a loader inserts contact 3 and has not committed yet: the replay's insert waits on its key
        loader.execute(
            "select * from public.batch_upsert_contacts(array[%s::jsonb])",
            (json.dumps({"keap_id": "3", "email": "loader@example.com"}),),
        )
        result: dict[str, object] = {}

        def run_replay() -> None:
            try:
                result["r"] = replay_dead_letters(migrated_database, "contacts")
            except Exception as err:  # noqa: BLE001 - asserted below
                result["error"] = err

        replay = threading.Thread(target=run_replay)
        replay.start()
        replay.join(timeout=1.0)
        assert replay.is_alive(), "the replay waits for the loader's uncommitted row"
        loader.commit()
        replay.join(timeout=30)
    finally:
        loader.close()
    assert "error" not in result, result.get("error")
    report = result["r"]
    assert report.replayed == [_letters(migrated_database)["3"]["id"]] and report.still_failing == []  # type: ignore[attr-defined]
    assert any("replay retried" in r.getMessage() for r in caplog.records)
    assert scalar(migrated_database, "select count(*) from public.sync_contacts where keap_id = '3'") == 1


def test_a_replay_of_named_ids_finds_them_past_the_listing_limit(migrated_database: str) -> None:
    # the ids were picked out of the newest `limit` open letters, so an older one named by --id was passed
    # over as if it were not open; now the query picks them, and what it cannot find is reported
    from keap_pipeline.db.dead_letters import list_dead_letters
    from keap_pipeline.pipeline.replay import replay_dead_letters

    with psycopg.connect(migrated_database, autocommit=True) as conn:
        ids = [
            conn.execute(
                "insert into keap_pipeline.dead_letters (entity, keap_id, record_json, reason, last_seen_at)"
                " values ('contacts', %s, '{\"id\": \"x\"}', 'id: not digits', now() - make_interval(mins => %s))"
                " returning id", (f"k{i}", 10 - i),
            ).fetchone()[0]  # type: ignore[index]
            for i in range(3)
        ]
        oldest = ids[0]
        assert [d.id for d in list_dead_letters(conn, "contacts", limit=1)] == [ids[-1]]
        assert [d.id for d in list_dead_letters(conn, "contacts", limit=1, ids=[oldest])] == [oldest]
    report = replay_dead_letters(migrated_database, "contacts", ids=[oldest, 999_999], limit=1)
    assert [ident for ident, _ in report.still_failing] == [oldest]  # tried again (its record still has no id)
    assert report.not_open == [999_999]
