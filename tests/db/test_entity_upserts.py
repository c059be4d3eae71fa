"""Every action x strategy of the generated upsert, for every entity: one table of cases, run per entity.

The rows are staged as the pipeline stages them (db.load.load_frame: COPY keys, diff, COPY rows,
upsert, as the ingestion's role) on a database built by the real migrations; local changes are
plain UPDATEs as an app makes them (they queue an outbound item). Nothing here depends on a
normalizer: the values are written per column type, so a new entity is covered by adding its row
to SAMPLES.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from keap_pipeline.db.links import resolve_links
from keap_pipeline.db.load import UpsertCounts, begin_load, load_frame
from keap_pipeline.entities import ENTITIES, Entity

pytestmark = pytest.mark.db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Sample:
    """One entity's staged values and the fields the cases change.

    keap_field: changed in Keap; local_field: changed locally (a different field, for merges);
    each maps to (value in Keap's new version, value set locally).
    """

    values: dict[str, Any]
    keap_field: str
    local_field: str
    new: dict[str, Any] = field(default_factory=dict)


SAMPLES: dict[str, Sample] = {
    "contacts": Sample(
        {"email": "a@example.org", "first_name": "Ada", "last_name": "Byron", "phone": "+1 555 0100",
         "company": "Engines", "tags": "[]", "custom_fields": "{}", "keap_created_at": T0.isoformat()},
        keap_field="last_name", local_field="first_name",
        new={"last_name": "Lovelace", "first_name": "Augusta"},
    ),
    "tags": Sample(
        {"name": "VIP", "description": "best", "keap_category_id": "3"},
        keap_field="name", local_field="description",
        new={"name": "VIP+", "description": "the best"},
    ),
    "products": Sample(
        {"name": "Widget", "sku": "W-1", "description": "a widget", "price": "12.5000", "currency": "JPY",
         "active": "true"},
        keap_field="name", local_field="sku",
        new={"name": "Widget 2", "sku": "W-2"},
    ),
    "orders": Sample(
        {"keap_contact_id": "41", "order_number": None, "order_date": T0.isoformat(), "total_amount": "10.005",
         "currency": "BHD", "status": "DRAFT", "line_items": '[{"id": "1", "quantity": 2}]',
         "shipping_address": '{"line1": "1 Main St"}', "billing_address": None},
        keap_field="status", local_field="total_amount",
        new={"status": "PAID", "total_amount": "11.0000"},
    ),
    "subscriptions": Sample(
        {"keap_contact_id": "41", "keap_product_id": "42", "keap_subscription_plan_id": "421", "status": "active",
         "start_date": "2026-01-01", "end_date": None, "next_bill_date": "2026-02-01", "billing_cycle": "MONTH",
         "billing_frequency": "1", "amount": "9.9900"},
        keap_field="status", local_field="billing_cycle",
        new={"status": "inactive", "billing_cycle": "YEAR"},
    ),
}

_counter = iter(range(10_000, 10_000_000))


def test_every_entity_has_a_sample() -> None:
    assert set(SAMPLES) == set(ENTITIES)
    for name, sample in SAMPLES.items():
        assert set(sample.values) == set(ENTITIES[name].hashed_columns), name
        assert {sample.keap_field, sample.local_field} <= set(ENTITIES[name].content_columns), name


def _frame(entity: Entity, rows: list[dict[str, Any]]) -> pl.DataFrame:
    data: dict[str, list[Any]] = {c: [] for c in entity.staging_column_names}
    for ordinal, row in enumerate(rows):
        for c in entity.staging_column_names:
            data[c].append(ordinal if c == "ordinal" else row.get(c))
    schema = {c: (pl.Int32 if c == "ordinal" else pl.Utf8) for c in entity.staging_column_names}
    return pl.DataFrame(data, schema=schema)


def _hash(values: dict[str, Any]) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, json.dumps(values, sort_keys=True)))


class Case:
    """One record of one entity, with the helpers a case needs."""

    def __init__(self, url: str, entity: Entity) -> None:
        self.url = url
        self.entity = entity
        self.sample = SAMPLES[entity.name]
        self.keap_id = str(next(_counter))
        self.values = dict(self.sample.values)
        self.updated = T0

    def load(self, values: dict[str, Any] | None = None, *, at: datetime | None = None, strategy: str = "keap_wins",
             merge_rule: str = "manual", content_hash: str | None | bool = True) -> UpsertCounts:
        values = dict(self.values if values is None else values)
        at = at or self.updated
        digest = _hash(values) if content_hash is True else (content_hash or None)
        row = {**values, "keap_id": self.keap_id, "keap_updated_at": at.isoformat(), "content_hash": digest}
        with psycopg.connect(self.url) as conn, conn.transaction():
            begin_load(conn, lock_timeout_seconds=5, relaxed_commit=False)
            return load_frame(conn, self.entity, _frame(self.entity, [row]), strategy=strategy, merge_rule=merge_rule)

    def keap_changes(self, **new: Any) -> dict[str, Any]:
        self.updated += timedelta(minutes=5)
        self.values.update(new)
        return self.values

    def local_change(self, column: str, value: Any) -> None:
        schema, _, table = self.entity.target_table.partition(".")
        with psycopg.connect(self.url) as conn:
            conn.execute(
                sql.SQL("update {} set {} = %s where keap_id = %s").format(
                    sql.Identifier(schema, table), sql.Identifier(column)
                ),
                (value, self.keap_id),
            )

    def row(self) -> dict[str, Any]:
        schema, _, table = self.entity.target_table.partition(".")
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            found = conn.execute(
                sql.SQL("select *, xmin::text as xmin_ from {} where keap_id = %s").format(sql.Identifier(schema, table)),
                (self.keap_id,),
            ).fetchone()
        assert found is not None
        return found

    def text(self, column: str) -> str | None:
        schema, _, table = self.entity.target_table.partition(".")
        with psycopg.connect(self.url) as conn:
            found = conn.execute(
                sql.SQL("select {}::text from {} where keap_id = %s").format(
                    sql.Identifier(column), sql.Identifier(schema, table)
                ),
                (self.keap_id,),
            ).fetchone()
        assert found is not None
        return found[0]

    def side(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                sql.SQL("select {} from {} where entity_type = %s and entity_id = %s order by {}").format(
                    sql.SQL(columns), sql.Identifier("public", table),
                    sql.Identifier("detected_at" if table == "sync_conflicts" else "created_at"),
                ),
                (self.entity.table_name, self.row()["id"]),
            ).fetchall()

    def status(self) -> tuple[str, str]:
        (last,) = self.side("sync_status", "last_sync_status")[0]
        return self.row()["sync_status"], last


def _same(stored: str | None, staged: Any, column: str, entity: Entity) -> bool:
    if staged is None or stored is None:
        return stored is None and staged is None
    pg_type = next(c.pg_type for c in entity.staging_columns if c.name == column)
    if pg_type == "jsonb":
        return json.loads(stored) == json.loads(staged)
    if pg_type.startswith("numeric"):
        return float(stored) == float(staged)
    if pg_type == "timestamptz":
        return datetime.fromisoformat(stored) == datetime.fromisoformat(staged)
    if pg_type == "boolean":
        return stored == ("true" if staged == "true" else "false")
    return stored == staged


@pytest.fixture(params=list(ENTITIES))
def case(request: pytest.FixtureRequest, migrated_database: str) -> Iterator[Case]:
    yield Case(migrated_database, ENTITIES[request.param])


def test_insert_writes_every_staged_column(case: Case) -> None:
    counts = case.load()
    assert (counts.inserted, counts.seen) == (1, 1)
    for column, value in case.values.items():
        assert _same(case.text(column), value, column, case.entity), column
    row = case.row()
    assert (row["version"], row["sync_status"], row["created_by"]) == (1, "completed", None)
    assert case.status() == ("completed", "completed")


def test_unchanged_costs_no_write(case: Case) -> None:
    case.load()
    before = case.row()["xmin_"]
    counts = case.load()
    assert counts.unchanged == 1 and counts.inserted == counts.updated == 0
    assert case.row()["xmin_"] == before
    # the same content without a hash (the request's front stages none) is recognised by its values
    counts = case.load(content_hash=False)
    assert counts.unchanged == 1 and case.row()["xmin_"] == before


def test_stale_version_is_ignored(case: Case) -> None:
    case.load()
    old = dict(case.values) | {case.sample.keap_field: case.sample.new[case.sample.keap_field]}
    counts = case.load(old, at=T0 - timedelta(days=1))
    assert counts.stale == 1
    assert _same(case.text(case.sample.keap_field), case.sample.values[case.sample.keap_field], case.sample.keap_field, case.entity)


def test_changed_in_keap_only_is_overwritten(case: Case) -> None:
    case.load()
    f = case.sample.keap_field
    counts = case.load(case.keap_changes(**{f: case.sample.new[f]}))
    assert counts.updated == 1
    assert _same(case.text(f), case.sample.new[f], f, case.entity)
    assert case.row()["version"] == 2 and case.status() == ("completed", "completed")


def test_changed_locally_only_is_left_for_the_outbound_sync(case: Case) -> None:
    case.load()
    f = case.sample.local_field
    case.local_change(f, case.sample.new[f])
    counts = case.load(content_hash=False)  # the same Keap version again, nothing new in Keap
    assert counts.local_pending == 1
    assert _same(case.text(f), case.sample.new[f], f, case.entity)
    assert case.side("sync_queue", "status") == [("pending",)]


def _both_changed(case: Case, *, same_field: bool) -> dict[str, Any]:
    case.load()
    local = case.sample.keap_field if same_field else case.sample.local_field
    local_value = case.sample.new[local] if not same_field else case.sample.new[case.sample.local_field]
    if same_field:
        # the same field changed on both sides to different values
        local_value = {"contacts": "Local", "tags": "Local", "products": "Local", "orders": "SENT",
                       "subscriptions": "paused"}[case.entity.name]
    case.local_change(local, local_value)
    f = case.sample.keap_field
    return case.keap_changes(**{f: case.sample.new[f]}) | {"_local": (local, local_value)}


@pytest.mark.parametrize("strategy", ["keap_wins", "supabase_wins", "manual", "merge"])
def test_conflict_under_each_strategy(case: Case, strategy: str) -> None:
    incoming = _both_changed(case, same_field=False)
    local_field, local_value = incoming.pop("_local")
    f = case.sample.keap_field
    counts = case.load(incoming, strategy=strategy)
    assert counts.conflicts == 1
    conflicts = case.side("sync_conflicts", "resolution_strategy, resolved_at is not null, conflict_fields")
    queue = [s for (s,) in case.side("sync_queue", "status")]
    keap_now = lambda: _same(case.text(f), case.sample.new[f], f, case.entity)  # noqa: E731
    local_kept = lambda: _same(case.text(local_field), local_value, local_field, case.entity)  # noqa: E731
    assert len(conflicts) == 1 and conflicts[0][0] == strategy
    assert sorted(conflicts[0][2]) == sorted([f, local_field])
    if strategy == "keap_wins":
        assert counts.conflicts_keap_wins == 1 and keap_now() and not local_kept()
        assert conflicts[0][1] and queue == ["cancelled"] and case.status() == ("completed", "completed")
    elif strategy == "supabase_wins":
        assert counts.conflicts_supabase_wins == 1 and local_kept() and not keap_now()
        assert conflicts[0][1] and queue == ["pending"] and case.status() == ("pending", "pending")
    elif strategy == "manual":
        assert counts.conflicts_parked == 1 and local_kept() and not keap_now()
        assert not conflicts[0][1] and queue == ["held"] and case.status() == ("conflict", "conflict")
        assert case.row()["sync_error"].startswith("changed in Keap and locally")
    else:
        # disjoint fields: both changes kept, the merged row queued back to Keap
        assert counts.conflicts_merged == 1 and keap_now() and local_kept()
        assert conflicts[0][1] and queue == ["pending"] and case.status() == ("pending", "pending")


@pytest.mark.parametrize("rule", ["keap_wins", "supabase_wins", "manual"])
def test_merge_rule_for_a_field_changed_on_both_sides(case: Case, rule: str) -> None:
    incoming = _both_changed(case, same_field=True)
    local_field, local_value = incoming.pop("_local")
    counts = case.load(incoming, strategy="merge", merge_rule=rule)
    assert counts.conflicts == 1
    keap_now = _same(case.text(local_field), case.sample.new[local_field], local_field, case.entity)
    if rule == "keap_wins":
        assert keap_now and counts.conflicts_merged == 1
    elif rule == "supabase_wins":
        assert _same(case.text(local_field), local_value, local_field, case.entity) and counts.conflicts_merged == 1
    else:
        assert counts.conflicts_parked == 1 and case.status()[0] == "conflict"


def test_a_parked_record_changed_again_refreshes_its_one_open_conflict(case: Case) -> None:
    incoming = _both_changed(case, same_field=False)
    incoming.pop("_local")
    case.load(incoming, strategy="manual")
    f = case.sample.local_field
    case.load(case.keap_changes(**{f: case.sample.values[f]}), strategy="manual")
    open_ = [c for c in case.side("sync_conflicts", "resolved_at is null") if c[0]]
    assert len(open_) == 1


def test_the_generated_functions_agree_with_the_entity_table(migrated_database: str) -> None:
    """What define_sync_entity was told (71-entities.sql) is what keap_pipeline.entities says."""
    with psycopg.connect(migrated_database) as conn:
        for entity in ENTITIES.values():
            for fn in (entity.upsert_function, entity.diff_function, entity.link_function):
                assert conn.execute("select to_regproc(%s)", (fn,)).fetchone() != (None,), fn
            body = conn.execute(
                "select pg_get_functiondef(%s::regprocedure)", (f"{entity.upsert_function}(uuid, text, text)",)
            ).fetchone()
            assert body is not None
            # the merge fields are exactly the keys of the conflict's incoming side
            incoming = body[0].split("jsonb_build_object(", 1)[1].split(")", 1)[0]
            keys = [part.strip().strip("'") for part in incoming.split(",")[::2]]
            assert keys == list(entity.content_columns), entity.name
            for link in entity.links:
                for target, _ in link.columns:
                    assert f"link__{target}" in body[0], (entity.name, target)


@pytest.mark.parametrize("name", [n for n, e in ENTITIES.items() if e.links])
def test_a_record_whose_parent_arrives_later_is_linked(migrated_database: str, name: str) -> None:
    entity = ENTITIES[name]
    child = Case(migrated_database, entity)
    parents: dict[str, str] = {}
    values = dict(child.values)
    for link in entity.links:
        parents[link.keap_column] = str(next(_counter))
        values[link.keap_column] = parents[link.keap_column]
    assert child.load(values).inserted == 1
    for link in entity.links:
        assert child.row()[link.columns[0][0]] is None  # loaded, Keap id kept, link empty: no FK violation
        assert child.row()[link.keap_column] == parents[link.keap_column]
    with psycopg.connect(migrated_database) as conn:
        for link in entity.links:
            if link.parent:
                parent = Case(migrated_database, ENTITIES[link.parent])
                parent.keap_id = parents[link.keap_column]
                parent.load()
            else:  # a lookup table (tag categories)
                with conn.transaction():
                    begin_load(conn, lock_timeout_seconds=5, relaxed_commit=False)
                    conn.execute(
                        "insert into keap_pipeline.tag_categories (keap_id, name) values (%s, 'Customers')",
                        (parents[link.keap_column],),
                    )
        assert resolve_links(conn, entity, lock_timeout_seconds=5) == len(entity.links)  # one per link
        assert resolve_links(conn, entity, lock_timeout_seconds=5) == 0
    row = child.row()
    for link in entity.links:
        assert all(row[target] is not None for target, _ in link.columns), (name, link)
    if name == "subscriptions":
        assert (row["product_name"], row["currency"]) == ("Widget", "JPY")
    if name == "tags":
        assert row["category"] == "Customers"


def test_only_the_ingestion_may_run_them(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        for entity in ENTITIES.values():
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(sql.SQL("select * from {}(%s)").format(sql.SQL(entity.upsert_function)), (uuid.uuid4(),))
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(sql.SQL("select {}()").format(sql.SQL(entity.link_function)))
