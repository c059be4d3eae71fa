"""The generated Dagster shell of every entity through the sandbox: materializations, the sync-all job, the checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from dagster import (
    AssetCheckSeverity,
    DagsterInstance,
    build_schedule_context,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from keap_pipeline.db.connect import connect
from keap_pipeline.db.cursors import get_cursor, window_scope
from keap_pipeline.db.dead_letters import NewDeadLetter, record_dead_letters
from keap_pipeline.db.roles import as_ingestion
from keap_pipeline.defs.entities import (
    SYNC_ALL_JOB,
    SYNC_ALL_SCHEDULE,
    asset_name,
    defs_for,
    run_figures,
)
from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.partitions import PARTITIONS
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import ENTITIES, CursorKind, Entity, lineage_order
from tests.dagster_contexts import run_asset_check
from tests.pipeline.conftest import API_KEY, client_for


def _resources(handle, url: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "keap": KeapResource(base_url=handle.base_url, api_key=API_KEY, pacing=False),
        "postgres": PostgresResource(database_url=url),
    }


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def _with_link_parents(name: str) -> tuple[Entity, ...]:
    # the entity and what its links point at (transitively), in lineage order: what it needs for
    # every link to resolve (contacts: itself; orders: contacts first)
    names: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current not in names:
            names.add(current)
            todo.extend(link.parent for link in ENTITIES[current].links if link.parent)
    return lineage_order(tuple(names))


def _listed(handle, name: str, since: datetime | None = None, until: datetime | None = None) -> int:  # type: ignore[no-untyped-def]
    with client_for(handle) as client:
        return sum(len(p.records) for p in client.iter_pages(name, since=since, until=until, page_size=1000))


def _rows(url: str, entity: Entity) -> int:
    schema, _, table = entity.target_table.partition(".")
    with psycopg.connect(url) as conn:
        row = conn.execute(psycopg.sql.SQL("select count(*) from {}").format(psycopg.sql.Identifier(schema, table))).fetchone()
    assert row is not None
    return int(row[0])


def _incremental_config(entities: tuple[Entity, ...], **extra: object) -> dict[str, object]:
    ops = {}
    for e in entities:
        config: dict[str, object] = dict(extra)
        if e.cursor is CursorKind.TIME:
            config["mode"] = "incremental"
        ops[asset_name(e)] = {"config": config}
    return {"ops": ops}


@pytest.mark.parametrize("name", list(ENTITIES))
def test_each_entity_materializes_after_its_link_parents_and_its_checks_pass(name: str, sandbox, migrated_database: str, instance) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=300)
    chain = _with_link_parents(name)
    made = defs_for(ENTITIES[name])
    timed = any(e.cursor is CursorKind.TIME for e in chain)
    result = materialize(
        [*(defs_for(e).asset for e in chain), *made.checks],
        resources=_resources(handle, migrated_database),
        instance=instance,
        partition_key=datetime.now(UTC).strftime("%Y-%m") if timed else None,
        run_config=_incremental_config(chain, page_size=100),
    )
    assert result.success
    for e in chain:
        [mat] = result.asset_materializations_for_node(asset_name(e))
        listed = _listed(handle, e.name)
        figures = run_figures({k: v.value for k, v in mat.metadata.items()})
        assert listed > 0 and figures["inserted"] == listed, e.name
        assert figures["dead_lettered"] == 0
        # a partitioned asset names its figures as the range's; the others as the run's
        assert ("range_inserted" in mat.metadata) == (e.cursor is CursorKind.TIME)
        assert _rows(migrated_database, e) == listed
    evaluations = {ev.check_name: ev for ev in result.get_asset_check_evaluations()}
    assert set(evaluations) == {spec.name for c in made.checks for spec in c.check_specs}
    assert all(ev.passed for ev in evaluations.values()), {k: v.description for k, v in evaluations.items()}


def test_sync_all_job_runs_every_entity_in_lineage_order_in_one_run(sandbox, migrated_database: str, instance) -> None:  # type: ignore[no-untyped-def]
    from keap_pipeline.definitions import defs

    handle = sandbox(contacts=300)
    tick = datetime.now(UTC)
    with build_schedule_context(
        scheduled_execution_time=tick, repository_def=defs.get_repository_def(),
        resources={"postgres": PostgresResource(database_url=migrated_database)},
    ) as context:
        [request] = defs.resolve_schedule_def(SYNC_ALL_SCHEDULE).evaluate_tick(context).run_requests
    # nothing synced yet: a full load, over every partition
    everything = PARTITIONS.get_partition_keys(current_time=tick)
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == (everything[0], everything[-1])
    job = defs.resolve_job_def(SYNC_ALL_JOB)
    result = job.execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=instance,
        resources=_resources(handle, migrated_database),
    )
    assert result.success and len(instance.get_runs()) == 1
    # the timed entities' partitions say what is loaded: all of them; the others are not partitioned
    for e in ENTITIES.values():
        partitions = {m.partition for m in result.asset_materializations_for_node(asset_name(e))}
        assert partitions == (set(everything) if e.cursor is CursorKind.TIME else {None}), e.name
    done = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS" and e.step_key in {asset_name(x) for x in ENTITIES.values()}]
    assert sorted(done) == sorted(asset_name(e) for e in ENTITIES.values())
    for entity in ENTITIES.values():
        for dep in entity.depends_on:
            assert done.index(asset_name(ENTITIES[dep])) < done.index(asset_name(entity))
        assert _rows(migrated_database, entity) == _listed(handle, entity.name)
    # every order and subscription found its contact and product: loaded after them
    evaluations = {ev.check_name: ev for ev in result.get_asset_check_evaluations()}
    for check in ("keap_orders_unresolved_links", "keap_subscriptions_unresolved_links"):
        assert evaluations[check].passed and evaluations[check].metadata["unresolved_links"].value == 0


@pytest.mark.parametrize("name", ["tags", "orders"])
def test_a_backfill_range_of_a_timed_entity_is_one_run_syncing_one_window(name: str, sandbox, migrated_database: str, instance) -> None:  # type: ignore[no-untyped-def]
    handle = sandbox(contacts=2000)
    entity = ENTITIES[name]
    since, until = datetime(2023, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    result = materialize(
        [defs_for(entity).asset], resources=_resources(handle, migrated_database), instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: "2023-01", ASSET_PARTITION_RANGE_END_TAG: "2024-12"},
    )
    assert result.success and len(instance.get_runs()) == 1
    in_window = _listed(handle, name, since, until)
    assert 0 < in_window < _listed(handle, name)
    assert _rows(migrated_database, entity) == in_window
    with connect(migrated_database) as conn:
        cursor = get_cursor(conn, name, window_scope(since, until))
    assert cursor is not None and cursor.value == until


def _check(name: str, suffix: str):  # type: ignore[no-untyped-def]
    """The generated check keap_<name>_<suffix>."""
    wanted = f"keap_{name}_{suffix}"
    return next(c for c in defs_for(ENTITIES[name]).checks if any(spec.name == wanted for spec in c.check_specs))


def _contact(conn: psycopg.Connection, keap_id: str) -> str:
    row = conn.execute(
        "insert into public.sync_contacts (keap_id, email, tags, custom_fields) values (%s, %s, '[]', '{}') returning id",
        (keap_id, f"c{keap_id}@example.com"),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_unresolved_links_warn_with_counts_and_ages_only(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as conn:
        as_ingestion(conn)  # Keap's rows: only the ingestion's role sets keap_id (sql/24)
        linked = _contact(conn, "kc-501")
        product = conn.execute(
            "insert into public.sync_products (keap_id, name) values ('kp-77', 'Plan') returning id"
        ).fetchone()[0]  # type: ignore[index]
        orders = (
            # (keap_id, keap_contact_id, contact_id, loaded hours ago, deleted)
            ("ko-9001", "kc-501", linked, 5, False),   # linked
            ("ko-9002", "kc-777001", None, 3, False),  # waits for its contact
            ("ko-9003", "kc-777002", None, 1, False),  # waits too, younger
            ("ko-9004", None, None, 9, False),      # no contact in Keap: nothing to wait for
            ("ko-9005", "kc-777003", None, 30, True),  # soft-deleted: not counted
        )
        for keap_id, keap_contact, contact_id, hours, deleted in orders:
            conn.execute(
                "insert into public.sync_orders (keap_id, keap_contact_id, contact_id, order_number, order_date,"
                " total_amount, status, created_at, deleted_at)"
                " values (%s, %s, %s, %s, now(), 10, 'paid', now() - make_interval(hours => %s),"
                " case when %s then now() end)",
                (keap_id, keap_contact, contact_id, f"ON-{keap_id}", hours, deleted),
            )
        conn.execute(
            "insert into public.sync_subscriptions (keap_id, keap_contact_id, contact_id, keap_product_id, product_id,"
            " status, created_at) values ('ks-61', 'kc-501', %s, 'kp-78', null, 'active', now() - interval '2 hours'),"
            " ('ks-62', 'kc-501', %s, 'kp-77', %s, 'active', now())",
            (linked, linked, product),
        )
    postgres = PostgresResource(database_url=migrated_database)

    orders_check = _check("orders", "unresolved_links")
    result = run_asset_check(orders_check, postgres=postgres)
    assert result.passed is False and result.severity == AssetCheckSeverity.WARN
    meta = {k: v.value if hasattr(v, "value") else v for k, v in result.metadata.items()}
    assert meta["unresolved_links"] == 2 and meta["contacts_unresolved"] == 2
    assert 175 <= meta["oldest_age_minutes"] <= 185 and meta["contacts_oldest_age_minutes"] == meta["oldest_age_minutes"]
    assert "2 without their contacts (contact_id)" in (result.description or "")
    # counts and ages only: no Keap id, order number or other value of a row
    text = repr(result.metadata) + (result.description or "")
    for value in ("kc-", "ko-", "ON-ko"):
        assert value not in text

    subs_check = _check("subscriptions", "unresolved_links")
    result = run_asset_check(subs_check, postgres=postgres)
    meta = {k: v.value if hasattr(v, "value") else v for k, v in result.metadata.items()}
    assert result.passed is False and result.severity == AssetCheckSeverity.WARN
    assert (meta["contacts_unresolved"], meta["products_unresolved"], meta["unresolved_links"]) == (0, 1, 1)
    assert 115 <= meta["products_oldest_age_minutes"] <= 125 and meta["contacts_oldest_age_minutes"] == 0

    with psycopg.connect(migrated_database) as conn:
        as_ingestion(conn)
        conn.execute("update public.sync_orders set contact_id = %s where contact_id is null", (linked,))
    result = run_asset_check(orders_check, postgres=postgres)
    assert result.passed is True and result.metadata["unresolved_links"].value == 0
    assert result.description == "every Keap parent id is linked"


def test_only_entities_with_parents_have_a_links_check() -> None:
    for entity in ENTITIES.values():
        names = {spec.name for c in defs_for(entity).checks for spec in c.check_specs}
        has = any(link.parent for link in entity.links)
        assert (f"keap_{entity.name}_unresolved_links" in names) == has, entity.name
    # tags link a lookup table (categories), not an entity: no check
    assert ENTITIES["tags"].links and not any(link.parent for link in ENTITIES["tags"].links)


@pytest.mark.parametrize("name", list(ENTITIES))
def test_the_dead_letter_check_of_every_entity(name: str, migrated_database: str) -> None:
    check = _check(name, "dead_letters")
    postgres = PostgresResource(database_url=migrated_database)
    assert run_asset_check(check, postgres=postgres).passed is True
    with psycopg.connect(migrated_database) as conn:
        record_dead_letters(
            conn, name, [NewDeadLetter("42", {"id": 42, "secret": "s3cr3t-value"}, "name: longer than 255 characters", "name")], "run-1",
        )
    result = run_asset_check(check, postgres=postgres)
    assert result.passed is False and result.severity == AssetCheckSeverity.WARN
    assert result.metadata["open_dead_letters"].value == 1
    assert f"--entity {name}" in (result.description or "")
    assert "s3cr3t-value" not in repr(result.metadata)
