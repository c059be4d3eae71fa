"""load_tag_categories through the sandbox over a real socket into a migrated PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import psycopg
import pytest

from keap_pipeline.pipeline.tag_categories import load_tag_categories
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.hostile import check_reason_private
from tests.pipeline.conftest import client_for

pytestmark = pytest.mark.db


def _rows(url: str) -> dict[str, tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select keap_id, name, description, keap_updated_at, xmin::text from keap_pipeline.tag_categories"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _letters(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select keap_id, field, reason, record_bytes, status from keap_pipeline.dead_letters"
            " where entity = 'tag_categories' order by keap_id nulls first, id"
        ).fetchall()


def test_loads_every_category_and_rewrites_none(sandbox: Callable[..., SandboxHandle], migrated_database: str) -> None:
    handle = sandbox(contacts=50)
    served = [handle.state.data.record("tag_categories", i) for i in range(1, 9)]
    with client_for(handle) as client:
        assert load_tag_categories(client, migrated_database) == 8
    rows = _rows(migrated_database)
    assert set(rows) == {c["id"] for c in served}
    for category in served:
        name, description, updated, _ = rows[category["id"]]
        assert (name, description) == (category["name"], category.get("description"))
        assert updated == datetime.fromisoformat(category["update_time"])
    # a second run reads them again and writes nothing
    with client_for(handle) as client:
        assert load_tag_categories(client, migrated_database) == 8
    assert _rows(migrated_database) == rows
    assert _letters(migrated_database) == []


def test_a_changed_category_is_updated(sandbox: Callable[..., SandboxHandle], migrated_database: str) -> None:
    handle = sandbox(contacts=50)
    with client_for(handle) as client:
        load_tag_categories(client, migrated_database)
    before = _rows(migrated_database)
    handle.state.put_raw_record(
        "tag_categories",
        '{"id":"2","name":"Renamed","description":"Now with a description","update_time":"2030-01-01T00:00:00.000Z"}',
        ident=2,
    )
    with client_for(handle) as client:
        load_tag_categories(client, migrated_database)
    after = _rows(migrated_database)
    assert after["2"][:2] == ("Renamed", "Now with a description")
    assert {k: v for k, v in after.items() if k != "2"} == {k: v for k, v in before.items() if k != "2"}


def test_categories_that_cannot_be_stored_are_dead_letters(
    sandbox: Callable[..., SandboxHandle], migrated_database: str
) -> None:
    handle = sandbox(contacts=50)
    bad = {
        1: b'{"id":"1","name":"' + b"n" * 256 + b'","update_time":"2024-01-01T00:00:00.000Z"}',
        2: b'{"name":"no id here","update_time":"2024-01-01T00:00:00.000Z"}',
        3: b'{"id":"3","name":"Nul\\u0000Name secret-value","update_time":"2024-01-01T00:00:00.000Z"}',
        4: b'{"id":"4","name":"Jo\\ud83dhn secret-value","update_time":"2024-01-01T00:00:00.000Z"}',
        5: b'{"id":"5","name":"broken \\q escape secret-value"}',
        6: b'{"id":"6","update_time":"2024-01-01T00:00:00.000Z"}',
        7: b'{"id":"7","name":"Late","update_time":"yesterday, roughly"}',
    }
    for ident, raw in bad.items():
        handle.state.put_raw_record("tag_categories", raw, ident=ident)
    with client_for(handle) as client:
        assert load_tag_categories(client, migrated_database) == 1  # only category 8 is storable
    assert set(_rows(migrated_database)) == {"8"}
    letters = _letters(migrated_database)
    got = {(keap_id, field) for keap_id, field, _, _, _ in letters}
    assert got == {("1", "name"), (None, "id"), ("3", "name"), ("4", "name"), (None, None), ("6", "name"), ("7", "update_time")}
    for _keap_id, _field, reason, record_bytes, status in letters:
        assert status == "open" and bytes(record_bytes) in bad.values(), "the letter keeps Keap's exact bytes"
        assert "secret-value" not in reason
        check_reason_private(reason, bytes(record_bytes))
    reasons = {keap_id: reason for keap_id, _, reason, _, _ in letters}
    assert "varchar(255)" in reasons["1"] and "NUL" in reasons["3"] and "lone surrogate" in reasons["4"]
    # seen again: the same letters, refreshed, not duplicated
    with client_for(handle) as client:
        load_tag_categories(client, migrated_database)
    assert len(_letters(migrated_database)) == len(letters)


def test_duplicate_ids_in_the_listing_keep_the_later(sandbox: Callable[..., SandboxHandle], migrated_database: str) -> None:
    handle = sandbox(contacts=50)
    handle.state.put_raw_record("tag_categories", '{"id":"5","name":"first","update_time":"2024-01-01T00:00:00.000Z"}', ident=1)
    with client_for(handle) as client:
        assert load_tag_categories(client, migrated_database) == 7
    assert _rows(migrated_database)["5"][0] == handle.state.data.record("tag_categories", 5)["name"]
