"""Conflicts (changed in Keap AND locally) under each strategy, and duplicates within one batch."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from keap_pipeline.db.connect import connect
from keap_pipeline.entities import CONTACTS
from keap_pipeline.pipeline.batch import load_batch
from tests.pipeline.conftest import scalar, snapshot, sync

ID = 7  # the contact changed on both sides


def _local_update(url: str, **values: str) -> None:
    """Change a contact as an app would: a plain UPDATE, no keap source."""
    with psycopg.connect(url) as conn:
        for column, value in values.items():
            conn.execute(
                psycopg.sql.SQL("update public.sync_contacts set {} = %s where keap_id = %s").format(
                    psycopg.sql.Identifier(column)
                ),
                (value, str(ID)),
            )


def _row(url: str) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute("select * from public.sync_contacts where keap_id = %s", (str(ID),)).fetchone()
    assert row is not None
    return row


def _conflicts(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "select c.* from public.sync_conflicts as c join public.sync_contacts as s on s.id = c.entity_id"
            " where s.keap_id = %s order by detected_at",
            (str(ID),),
        ).fetchall()


def _queue(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "select q.* from public.sync_queue as q join public.sync_contacts as s on s.id = q.entity_id"
            " where s.keap_id = %s order by created_at",
            (str(ID),),
        ).fetchall()


def _status(url: str) -> str:
    return scalar(
        url,
        "select st.last_sync_status from public.sync_status as st join public.sync_contacts as s"
        " on s.id = st.entity_id where s.keap_id = %s",
        (str(ID),),
    )


@pytest.fixture
def both_changed(sandbox, migrated_database: str):
    """A loaded sandbox; returns a function that changes contact ID locally and in Keap."""
    handle = sandbox(contacts=60)
    sync(handle, migrated_database, page_size=50)

    def change(local: dict[str, str], keap: dict[str, str]) -> Any:
        _local_update(migrated_database, **local)
        handle.state.update_contact(ID, keap)
        return handle

    return change


def test_keap_wins_overwrites_keeps_local_in_conflicts_and_cancels_the_outbound_item(
    both_changed, migrated_database: str
) -> None:
    handle = both_changed({"first_name": "Local"}, {"given_name": "Keap"})
    assert [q["status"] for q in _queue(migrated_database)] == ["pending"]
    report = sync(handle, migrated_database, strategy="keap_wins")
    assert (report.counts.conflicts, report.counts.conflicts_keap_wins) == (1, 1)
    row = _row(migrated_database)
    assert (row["first_name"], row["sync_status"]) == ("Keap", "completed")
    assert row["keap_updated_at"] == datetime.fromisoformat(handle.state.contact(ID)["update_time"])
    [conflict] = _conflicts(migrated_database)
    assert conflict["resolution_strategy"] == "keap_wins" and conflict["resolved_at"] is not None
    assert conflict["conflict_fields"] == ["first_name"]
    assert conflict["supabase_data"]["first_name"] == "Local" and conflict["keap_data"]["first_name"] == "Keap"
    assert [q["status"] for q in _queue(migrated_database)] == ["cancelled"]
    assert _status(migrated_database) == "completed"
    again = sync(handle, migrated_database, strategy="keap_wins")
    assert again.counts.conflicts == 0 and len(_conflicts(migrated_database)) == 1


def test_supabase_wins_keeps_local_and_queues_it(both_changed, migrated_database: str) -> None:
    handle = both_changed({"first_name": "Local"}, {"given_name": "Keap"})
    report = sync(handle, migrated_database, strategy="supabase_wins")
    assert (report.counts.conflicts, report.counts.conflicts_supabase_wins) == (1, 1)
    row = _row(migrated_database)
    assert (row["first_name"], row["sync_status"]) == ("Local", "pending")
    # Keap's update time is remembered: the same Keap version is not a new conflict next time
    assert row["keap_updated_at"] == datetime.fromisoformat(handle.state.contact(ID)["update_time"])
    [conflict] = _conflicts(migrated_database)
    assert conflict["resolution_strategy"] == "supabase_wins" and conflict["resolved_at"] is not None
    [item] = _queue(migrated_database)
    assert item["status"] == "pending" and item["payload"]["first_name"] == "Local"
    assert _status(migrated_database) == "pending"
    again = sync(handle, migrated_database, strategy="supabase_wins")
    assert again.counts.conflicts == 0 and len(_conflicts(migrated_database)) == 1
    assert len(_queue(migrated_database)) == 1
    assert _row(migrated_database)["first_name"] == "Local"


def test_manual_parks_without_overwriting_and_keeps_one_open_conflict(both_changed, migrated_database: str) -> None:
    handle = both_changed({"first_name": "Local"}, {"given_name": "Keap"})
    before = _row(migrated_database)
    report = sync(handle, migrated_database, strategy="manual")
    assert (report.counts.conflicts, report.counts.conflicts_parked) == (1, 1)
    row = _row(migrated_database)
    assert row["first_name"] == "Local" and row["sync_status"] == "conflict"
    assert row["keap_updated_at"] == before["keap_updated_at"]
    assert "first_name" in row["sync_error"]
    [conflict] = _conflicts(migrated_database)
    assert conflict["resolved_at"] is None and conflict["resolution_strategy"] == "manual"
    assert _status(migrated_database) == "conflict"

    sync(handle, migrated_database, strategy="manual")
    handle.state.update_contact(ID, {"given_name": "Keap again"})
    third = sync(handle, migrated_database, strategy="manual")
    assert third.counts.conflicts_parked == 1
    [conflict] = _conflicts(migrated_database)
    assert conflict["resolved_at"] is None and conflict["keap_data"]["first_name"] == "Keap again"
    assert _row(migrated_database)["first_name"] == "Local"


def test_manual_resync_of_the_same_keap_version_writes_nothing(both_changed, migrated_database: str) -> None:
    handle = both_changed({"first_name": "Local"}, {"given_name": "Keap"})
    sync(handle, migrated_database, strategy="manual")
    parked = snapshot(migrated_database)
    detected = _conflicts(migrated_database)[0]["detected_at"]
    # a full window re-read meets the parked record's unchanged Keap version again
    again = sync(handle, migrated_database, strategy="manual", since=None, scope="window:again")
    # the Keap version it was parked for is recognised (keap_hash): still parked, nothing re-parked
    assert again.counts.conflicts_parked == 0 and again.counts.unchanged >= 1
    assert len(_conflicts(migrated_database)) == 1
    assert _conflicts(migrated_database)[0]["detected_at"] == detected
    assert snapshot(migrated_database) == parked


def test_merge_takes_fields_changed_on_one_side_from_that_side(both_changed, migrated_database: str) -> None:
    handle = both_changed({"first_name": "Local"}, {"family_name": "Keapside"})
    report = sync(handle, migrated_database, strategy="merge", merge_rule="manual")
    assert (report.counts.conflicts, report.counts.conflicts_merged, report.counts.conflicts_parked) == (1, 1, 0)
    row = _row(migrated_database)
    assert (row["first_name"], row["last_name"]) == ("Local", "Keapside")
    # the merged record differs from Keap's: it goes out to Keap
    assert row["sync_status"] == "pending"
    [item] = _queue(migrated_database)
    assert item["status"] == "pending"
    assert (item["payload"]["first_name"], item["payload"]["last_name"]) == ("Local", "Keapside")
    [conflict] = _conflicts(migrated_database)
    assert conflict["resolution_strategy"] == "merge" and conflict["resolved_at"] is not None
    assert sorted(conflict["conflict_fields"]) == ["first_name", "last_name"]


def test_a_second_merge_uses_keaps_last_seen_version_as_its_base(both_changed, migrated_database: str) -> None:
    # round one: local first_name, Keap family_name -> merged, the local part waits to go out
    handle = both_changed({"first_name": "Local 1"}, {"family_name": "Keap 1"})
    first = sync(handle, migrated_database, strategy="merge", merge_rule="manual")
    assert (first.counts.conflicts_merged, first.counts.conflicts_parked) == (1, 0)
    # round two, the same fields again on the same sides: Keap's version of round one is the base
    # (its family_name reached the row through the merge, so locally it is unchanged since then)
    _local_update(migrated_database, first_name="Local 2")
    handle.state.update_contact(ID, {"family_name": "Keap 2"})
    second = sync(handle, migrated_database, strategy="merge", merge_rule="manual")
    assert (second.counts.conflicts, second.counts.conflicts_merged, second.counts.conflicts_parked) == (1, 1, 0)
    row = _row(migrated_database)
    assert (row["first_name"], row["last_name"], row["sync_status"]) == ("Local 2", "Keap 2", "pending")
    [item] = _queue(migrated_database)
    assert (item["payload"]["first_name"], item["payload"]["last_name"]) == ("Local 2", "Keap 2")


@pytest.mark.parametrize(
    ("rule", "first_name", "status", "queue"),
    [
        ("keap_wins", "Keap", "completed", ["cancelled"]),
        ("supabase_wins", "Local", "pending", ["pending"]),
        # parked: the app's outbound item is held, so the local value does not go out before someone decides
        ("manual", "Local", "conflict", ["held"]),
    ],
)
def test_merge_field_changed_on_both_sides_follows_the_rule(
    both_changed, migrated_database: str, rule: str, first_name: str, status: str, queue: list[str]
) -> None:
    handle = both_changed({"first_name": "Local"}, {"given_name": "Keap"})
    report = sync(handle, migrated_database, strategy="merge", merge_rule=rule)
    assert report.counts.conflicts == 1
    assert report.counts.conflicts_parked == (1 if rule == "manual" else 0)
    assert report.counts.conflicts_merged == (0 if rule == "manual" else 1)
    row = _row(migrated_database)
    assert (row["first_name"], row["sync_status"]) == (first_name, status)
    assert [q["status"] for q in _queue(migrated_database)] == queue
    [conflict] = _conflicts(migrated_database)
    assert (conflict["resolved_at"] is None) == (rule == "manual")
    sync(handle, migrated_database, strategy="merge", merge_rule=rule)
    assert len(_conflicts(migrated_database)) == 1


def _resolve(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "update public.sync_conflicts set resolved_at = now(), resolution_strategy = 'manual',"
            " resolution_notes = 'decided by a person' where resolved_at is null"
        )


def test_a_parked_records_outbound_item_is_held_until_the_conflict_is_resolved(
    both_changed, migrated_database: str
) -> None:
    handle = both_changed({"first_name": "Local"}, {"given_name": "Keap"})
    sync(handle, migrated_database, strategy="manual")
    [item] = _queue(migrated_database)
    assert item["status"] == "held" and "resolve" in item["error_message"]
    # still a local change waiting: a later Keap change is a conflict again, not an overwrite
    handle.state.update_contact(ID, {"given_name": "Keap again"})
    again = sync(handle, migrated_database, strategy="manual")
    assert again.counts.conflicts_parked == 1 and _row(migrated_database)["first_name"] == "Local"
    # resolved as it stands (the local side): the held item goes out after all
    _resolve(migrated_database)
    [item] = _queue(migrated_database)
    assert item["status"] == "pending" and item["error_message"] is None
    assert item["payload"]["first_name"] == "Local"


def test_resolving_by_editing_the_row_supersedes_the_held_item(both_changed, migrated_database: str) -> None:
    handle = both_changed({"first_name": "Local"}, {"given_name": "Keap"})
    sync(handle, migrated_database, strategy="manual")
    # the person takes Keap's value: that edit is queued, newer than the held one
    _local_update(migrated_database, first_name="Keap")
    _resolve(migrated_database)
    queue = sorted((q["status"], q["payload"]["first_name"]) for q in _queue(migrated_database))
    assert queue == [("cancelled", "Local"), ("pending", "Keap")]


def _contact(ident: str, updated: str, name: str) -> dict[str, Any]:
    return {"id": ident, "given_name": name, "update_time": updated, "create_time": "2020-01-01T00:00:00.000Z"}


def test_duplicates_in_a_batch_latest_keap_update_wins(migrated_database: str) -> None:
    records = [
        _contact("1", "2024-05-01T00:00:00.000Z", "newest"),
        _contact("1", "2024-04-01T00:00:00.000Z", "older"),
        _contact("2", "2024-04-01T00:00:00.000Z", "older"),
        _contact("2", "2024-05-01T00:00:00.000Z", "newest"),
        # the same update time twice: the one later in Keap's order wins, every time
        _contact("3", "2024-05-01T00:00:00.000Z", "first"),
        _contact("3", "2024-05-01T00:00:00.000Z", "second"),
    ]
    with connect(migrated_database) as conn:
        outcome = load_batch(conn, CONTACTS, records, scope="test", run_id="dup", strategy="keap_wins",
                             merge_rule="manual", fetched_at=datetime.now(UTC))
    assert (outcome.counts.seen, outcome.counts.duplicates, outcome.counts.inserted) == (6, 3, 3)
    with psycopg.connect(migrated_database) as conn:
        names = dict(conn.execute("select keap_id, first_name from public.sync_contacts").fetchall())
    assert names == {"1": "newest", "2": "newest", "3": "second"}
    # an older duplicate arriving in a later batch changes nothing (stale)
    with connect(migrated_database) as conn:
        later = load_batch(conn, CONTACTS, [_contact("1", "2024-04-01T00:00:00.000Z", "older")], scope="test",
                           run_id="dup", strategy="keap_wins", merge_rule="manual")
    assert later.counts.stale == 1
    assert scalar(migrated_database, "select first_name from public.sync_contacts where keap_id = '1'") == "newest"


def test_app_edit_committed_while_a_batch_writes_is_retried_as_a_conflict(
    sandbox, migrated_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="keap_pipeline.pipeline.batch")
    handle = sandbox(contacts=60)
    sync(handle, migrated_database, page_size=50)
    handle.state.update_contact(ID, {"given_name": "Keap"})
    with psycopg.connect(migrated_database) as app:
        # an app's transaction holds the row while the sync classifies it as a plain Keap update
        app.execute("update public.sync_contacts set first_name = 'App' where keap_id = %s", (str(ID),))
        outcome: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: outcome.setdefault("report", sync(handle, migrated_database, strategy="keap_wins"))
        )
        worker.start()
        deadline = time.monotonic() + 30
        while not scalar(
            migrated_database,
            "select count(*) from pg_catalog.pg_stat_activity"
            " where datname = current_database() and wait_event_type = 'Lock' and query ilike %s",
            ("%upsert_contacts%",),
        ):
            assert worker.is_alive() and time.monotonic() < deadline, "the sync never waited for the app's row"
            time.sleep(0.02)
        app.commit()
        worker.join(timeout=60)
    report = outcome["report"]
    assert "batch retried (1/" in caplog.text
    # retried: the app's edit is now seen, so it is a conflict, resolved by keap_wins
    assert (report.counts.updated, report.counts.conflicts, report.counts.conflicts_keap_wins) == (0, 1, 1)
    row = _row(migrated_database)
    assert (row["first_name"], row["sync_status"]) == ("Keap", "completed")
    [conflict] = _conflicts(migrated_database)
    assert conflict["supabase_data"]["first_name"] == "App"
    assert [q["status"] for q in _queue(migrated_database)] == ["cancelled"]
