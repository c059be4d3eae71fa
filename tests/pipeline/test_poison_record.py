"""Issue 9: one contact with a lone surrogate escape in given_name never stops a run, through the
real `keap-pipeline sync` / `dead-letters` commands (bench/poison_record.py at 50,000 contacts:
docs/operations.md gives the command and the figures)."""

from __future__ import annotations

import psycopg

from bench.poison_record import scenario
from keap_pipeline.db.dead_letters import list_dead_letters
from keap_pipeline.defs.contacts import keap_contacts_dead_letters
from keap_pipeline.defs.resources import PostgresResource
from tests.dagster_contexts import run_asset_check


def test_a_lone_surrogate_contact_is_one_dead_letter_and_the_run_exits_0(migrated_database: str) -> None:
    out = scenario(migrated_database, contacts=2500, poisoned=1234)
    assert out["first_sync"]["exit"] == 0, out["first_sync"]
    assert out["loaded_after_first"] == 2499
    [letter] = out["letters_after_first"]
    assert letter["keap_id"] == "1234" and letter["status"] == "open" and letter["field"] == "given_name"
    assert "lone surrogate" in letter["reason"] and letter["holds_the_exact_bytes"]
    assert any("1 dead-lettered" in line for line in out["first_sync"]["summary"])
    assert out["list"]["exit"] == 0 and "1 dead letter(s)" in out["list"]["lines"][-1]
    assert out["replay_before_fix"]["exit"] == 1 and any("still failing" in x for x in out["replay_before_fix"]["stdout"])

    assert out["second_sync"]["exit"] == 0, out["second_sync"]
    assert out["loaded_after_fix"] == 2500 and out["given_name_after_fix"] == "Fixed \U0001f600"
    assert out["letters_after_fix"] == [("1234", "replayed", True)]


def test_listing_replay_and_the_dagster_check_decode_the_stored_record_alike(migrated_database: str) -> None:
    from keap_pipeline.db.dead_letters import NewDeadLetter, record_dead_letters
    from keap_pipeline.pipeline.replay import replay_dead_letters

    raw = b'{"id":"7","given_name":"\\ud83d","update_time":"2024-01-01T00:00:00Z","note":"caf\xc3\xa9 \xff"}'
    with psycopg.connect(migrated_database) as conn:
        record_dead_letters(conn, "contacts", [NewDeadLetter(keap_id="7", record={}, reason="r", raw=raw)], "run")
        # one recorded before migration 25: text only, non-ASCII kept as it was
        conn.execute(
            "insert into keap_pipeline.dead_letters (entity, keap_id, record_json, reason)"
            " values ('contacts', '8', %s, 'old')",
            ('{"id":"8","given_name":"Zoë","update_time":"2024-01-01T00:00:00Z"}',),
        )
    with psycopg.connect(migrated_database) as conn:
        letters = {d.keap_id: d for d in list_dead_letters(conn, "contacts")}
        stored = conn.execute("select record_json from keap_pipeline.dead_letters where keap_id = '7'").fetchone()
    assert stored is not None and stored[0].isascii()
    assert bytes(letters["7"].record_bytes or b"") == raw
    assert letters["7"].record() == {"id": "7", "given_name": "\ud83d", "update_time": "2024-01-01T00:00:00Z", "note": "café \udcff"}
    assert letters["8"].record()["given_name"] == "Zoë"
    assert "ud83d" not in repr(letters["7"]) and "Zoë" not in repr(letters["8"])

    report = replay_dead_letters(migrated_database, "contacts")
    assert report.replayed == [letters["8"].id]
    assert report.still_failing == [(letters["7"].id, "given_name holds a lone surrogate (not valid Unicode, or bytes that are not UTF-8), which PostgreSQL cannot store")]
    check = run_asset_check(keap_contacts_dead_letters, postgres=PostgresResource(database_url=migrated_database))
    assert check.metadata["open_dead_letters"].value == 1
    assert "given_name holds a lone surrogate" in check.metadata["reasons"].value
