"""Every entity end to end through the sandbox over a real socket: full load field by field, re-run,
incremental change, conflicts under each strategy, dead letters and replay, links arriving out of order.

One test body per behaviour, run for every entity of the table (nothing here is written per entity
except the few values a case changes, in CHANGES).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from keap_pipeline.db.dead_letters import list_dead_letters
from keap_pipeline.entities import ENTITIES, Entity, lineage_order
from keap_pipeline.normalize.money import minor_units
from keap_pipeline.pipeline.replay import replay_dead_letters
from keap_pipeline.pipeline.report import SyncReport
from keap_pipeline.pipeline.sync import sync_entity
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.pipeline.conftest import client_for

pytestmark = pytest.mark.db

SIZES = {"contacts": 40, "tags": 30, "products": 30, "orders": 60, "subscriptions": 40}
NAMES = list(ENTITIES)

# per entity: a Keap-side change of one content field (Keap's record shape) and the column it lands in,
# and a local change of another content column (for conflicts)
CHANGES: dict[str, tuple[dict[str, Any], str, str, Any]] = {
    "contacts": ({"family_name": "Changed-In-Keap"}, "last_name", "first_name", "Local"),
    "tags": ({"name": "Changed In Keap"}, "name", "description", "local description"),
    "products": ({"name": "Changed In Keap"}, "name", "sku", "LOCAL-SKU"),
    "orders": ({"status": "PARTIALLY_PAID"}, "status", "order_number", "LOCAL-1"),
    "subscriptions": ({"active": False}, "status", "billing_cycle", "LOCAL"),
}
IDENT = 3  # the record the cases change (every entity has one with this id)


def _run(handle: SandboxHandle, url: str, entity: Entity, **kwargs: Any) -> SyncReport:
    with client_for(handle) as client:
        return sync_entity(client, url, entity, page_size=kwargs.pop("page_size", 25), **kwargs)


def _all(handle: SandboxHandle, url: str, **kwargs: Any) -> dict[str, SyncReport]:
    return {e.name: _run(handle, url, e, **kwargs) for e in lineage_order()}


def _records(handle: SandboxHandle, entity: Entity) -> list[dict[str, Any]]:
    state = handle.state
    assert state is not None
    out = []
    for ident in range(1, state.max_id(entity.name) + 1):
        record = state.record(entity.name, ident)
        if record is not None:
            out.append(record)
    return out


def _rows(url: str, entity: Entity) -> dict[str, dict[str, Any]]:
    schema, _, table = entity.target_table.partition(".")
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(
            sql.SQL("select *, xmin::text as xmin_ from {}").format(sql.Identifier(schema, table))
        ).fetchall()
    return {r["keap_id"]: r for r in rows}


@pytest.fixture
def loaded(sandbox: Callable[..., SandboxHandle], migrated_database: str) -> tuple[SandboxHandle, str]:
    handle = sandbox(**SIZES)
    reports = _all(handle, migrated_database)
    for name, report in reports.items():
        assert report.dead_lettered == 0, name
    return handle, migrated_database


@pytest.mark.parametrize("name", NAMES)
def test_full_load_equals_the_sandbox_field_by_field(loaded: tuple[SandboxHandle, str], name: str) -> None:
    handle, url = loaded
    entity = ENTITIES[name]
    records = _records(handle, entity)
    expected = entity.resolve_normalizer()(records, fetched_at=datetime.now(UTC))
    assert not expected.rejected, expected.rejected[:2]
    rows = _rows(url, entity)
    assert set(rows) == {r["id"] for r in records}
    for staged in expected.frame.iter_rows(named=True):
        row = rows[staged["keap_id"]]
        for column in entity.hashed_columns:
            want, got = staged[column], row[column]
            column_type = next(c.pg_type for c in entity.staging_columns if c.name == column)
            if column_type == "jsonb" and want is not None:
                want = json.loads(want)
            if column_type.startswith("numeric") and want is not None:
                want, got = Decimal(str(want)), Decimal(str(got))
            assert got == want, (name, staged["keap_id"], column)
        assert row["keap_updated_at"] == staged["keap_updated_at"]
        # every link resolved: the parents were loaded first (lineage order)
        for link in entity.links:
            if row[link.keap_column] is not None:
                assert row[link.columns[0][0]] is not None, (name, link.keap_column)


def test_money_is_exact_to_the_minor_unit(loaded: tuple[SandboxHandle, str]) -> None:
    handle, url = loaded
    orders = _rows(url, ENTITIES["orders"])
    for record in _records(handle, ENTITIES["orders"]):
        total = record["total"]
        want = Decimal(total["amount"]).scaleb(-minor_units(total["currency_code"]))
        row = orders[record["id"]]
        assert (row["total_amount"], row["currency"]) == (want, total["currency_code"])
    products = _rows(url, ENTITIES["products"])
    subscriptions = _rows(url, ENTITIES["subscriptions"])
    for record in _records(handle, ENTITIES["subscriptions"]):
        row = subscriptions[record["id"]]
        assert row["amount"] == Decimal(repr(record["billing_amount"]))
        if record.get("product_id"):
            product = products[record["product_id"]]
            assert (row["product_name"], row["currency"]) == (product["name"], product["currency"])


@pytest.mark.parametrize("name", NAMES)
def test_a_second_run_writes_nothing(loaded: tuple[SandboxHandle, str], name: str) -> None:
    handle, url = loaded
    entity = ENTITIES[name]
    before = {k: r["xmin_"] for k, r in _rows(url, entity).items()}
    report = _run(handle, url, entity)
    assert report.counts.inserted == report.counts.updated == 0
    assert {k: r["xmin_"] for k, r in _rows(url, entity).items()} == before


@pytest.mark.parametrize("name", NAMES)
def test_a_change_in_keap_reaches_the_row(loaded: tuple[SandboxHandle, str], name: str) -> None:
    handle, url = loaded
    entity = ENTITIES[name]
    _, column, _, _ = CHANGES[name]
    assert handle.state is not None
    handle.state.update_record(name, IDENT, _keap_change(handle, name))
    report = _run(handle, url, entity)
    assert report.counts.updated == 1, report.summary()
    row = _rows(url, entity)[str(IDENT)]
    expected = entity.resolve_normalizer()([handle.state.record(name, IDENT)], fetched_at=datetime.now(UTC))
    assert row[column] == next(expected.frame.iter_rows(named=True))[column]
    assert row["version"] == 2


def _keap_change(handle: SandboxHandle, name: str) -> dict[str, Any]:
    change = dict(CHANGES[name][0])
    if name == "subscriptions":  # flip it, whatever the record holds
        assert handle.state is not None
        record = handle.state.record(name, IDENT)
        assert record is not None
        change["active"] = not record["active"]
    return change


def _local(url: str, entity: Entity, column: str, value: Any) -> None:
    schema, _, table = entity.target_table.partition(".")
    with psycopg.connect(url) as conn:
        conn.execute(
            sql.SQL("update {} set {} = %s where keap_id = %s").format(sql.Identifier(schema, table), sql.Identifier(column)),
            (value, str(IDENT)),
        )


@pytest.mark.parametrize("strategy", ["keap_wins", "supabase_wins", "manual", "merge"])
@pytest.mark.parametrize("name", NAMES)
def test_conflicts_under_each_strategy(loaded: tuple[SandboxHandle, str], name: str, strategy: str) -> None:
    handle, url = loaded
    entity = ENTITIES[name]
    _, keap_column, local_column, local_value = CHANGES[name]
    _local(url, entity, local_column, local_value)
    assert handle.state is not None
    handle.state.update_record(name, IDENT, _keap_change(handle, name))
    before = _rows(url, entity)[str(IDENT)]
    report = _run(handle, url, entity, strategy=strategy)
    assert report.counts.conflicts == 1, report.summary()
    row = _rows(url, entity)[str(IDENT)]
    keap_now = row[keap_column] != before[keap_column]
    local_kept = row[local_column] == local_value
    expected = {
        "keap_wins": (True, False, "completed"),
        "supabase_wins": (False, True, "pending"),
        "manual": (False, True, "conflict"),
        "merge": (True, True, "pending"),
    }[strategy]
    assert (keap_now, local_kept, row["sync_status"]) == expected


@pytest.mark.parametrize("name", NAMES)
def test_a_record_that_cannot_load_is_a_dead_letter_and_replays(
    sandbox: Callable[..., SandboxHandle], migrated_database: str, name: str
) -> None:
    handle = sandbox(**SIZES)
    entity = ENTITIES[name]
    for parent in lineage_order(entity.depends_on):
        _run(handle, migrated_database, parent)
    assert handle.state is not None
    good = handle.state.record(name, IDENT)
    assert good is not None
    bad = {**good, "id": str(IDENT)}
    bad_field = {"contacts": "given_name", "tags": "name", "products": "name", "orders": "status",
                 "subscriptions": "billing_cycle"}[name]
    bad[bad_field] = "x" * 300  # longer than its column
    handle.state.put_raw_record(name, json.dumps(bad), ident=IDENT)
    report = _run(handle, migrated_database, entity)
    assert report.dead_lettered == 1, report.summary()
    assert str(IDENT) not in _rows(migrated_database, entity)
    with psycopg.connect(migrated_database) as conn:
        (letter,) = list_dead_letters(conn, name, status="open")
    assert letter.keap_id == str(IDENT) and "x" * 20 not in letter.reason  # the reason names rules, not values
    # still failing as it is; fixed in Keap, the next run loads it and closes the letter
    assert replay_dead_letters(migrated_database, name).still_failing
    handle.state.put_raw_record(name, json.dumps(good), ident=IDENT)
    report = _run(handle, migrated_database, entity)
    assert str(IDENT) in _rows(migrated_database, entity)
    with psycopg.connect(migrated_database) as conn:
        assert list_dead_letters(conn, name, status="open") == []


@pytest.mark.parametrize("name", [n for n, e in ENTITIES.items() if any(link.parent for link in e.links)])
def test_children_loaded_before_their_parents_are_linked_when_the_parents_arrive(
    sandbox: Callable[..., SandboxHandle], migrated_database: str, name: str
) -> None:
    handle = sandbox(**SIZES)
    entity = ENTITIES[name]
    report = _run(handle, migrated_database, entity)
    assert report.dead_lettered == 0 and report.counts.inserted == SIZES[name]
    rows = _rows(migrated_database, entity)
    for link in entity.links:
        if link.parent:
            assert all(r[link.columns[0][0]] is None for r in rows.values())
            assert all(r[link.keap_column] is not None for r in rows.values() if r[link.keap_column])
    parents = {link.parent for link in entity.links if link.parent}
    for parent in lineage_order(tuple(parents)):
        _run(handle, migrated_database, parent)
    rows = _rows(migrated_database, entity)
    for link in entity.links:
        if link.parent:
            unlinked = [k for k, r in rows.items() if r[link.keap_column] and r[link.columns[0][0]] is None]
            assert unlinked == [], (name, link.keap_column)
