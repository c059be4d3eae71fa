"""The code location generated from the entity table: the asset graph is the lineage; checks, jobs, schedules, partitions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import (
    AssetKey,
    BackfillPolicy,
    DefaultScheduleStatus,
    build_schedule_context,
    validate_run_config,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from keap_pipeline.defs.entities import (
    KEAP_POOL,
    PARTITIONS,
    SCHEDULE_CRON,
    SYNC_ALL_JOB,
    SYNC_ALL_SCHEDULE,
    defs_for,
)
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import ENTITIES, CursorKind, lineage_order

# the lineage as the issue states it: sync_schema -> tags, products -> contacts -> orders, subscriptions
LINEAGE = {
    "sync_schema": set(),
    "keap_tags": {"sync_schema"},
    "keap_products": {"sync_schema"},
    "keap_contacts": {"sync_schema", "keap_tags", "keap_products"},
    "keap_orders": {"sync_schema", "keap_contacts"},
    "keap_subscriptions": {"sync_schema", "keap_contacts", "keap_products"},
    # health at a glance (defs/health.py) summarises what every entity's asset wrote
    "sync_health": {"keap_tags", "keap_products", "keap_contacts", "keap_orders", "keap_subscriptions"},
    # the reconcile passes (deletions in Keap, issue 13): each downstream of its entity's sync
    **{f"keap_{n}_deletions": {f"keap_{n}"} for n in ("tags", "products", "contacts", "orders", "subscriptions")},
    # the outbound push (defs/outbound.py): not an entity of the table, beside the lineage
    "keap_outbound": {"sync_schema"},
}
TIMED = {"tags", "contacts", "orders"}
CHECKS = {
    "keap_tags": {"keap_tags_dead_letters", "keap_tags_cursor_fresh"},
    "keap_products": {"keap_products_dead_letters", "keap_products_cursor_fresh"},
    "keap_contacts": {"keap_contacts_dead_letters", "keap_contacts_cursor_fresh"},
    "keap_orders": {"keap_orders_dead_letters", "keap_orders_cursor_fresh", "keap_orders_unresolved_links"},
    "keap_subscriptions": {
        "keap_subscriptions_dead_letters", "keap_subscriptions_cursor_fresh", "keap_subscriptions_unresolved_links",
    },
    "sync_health": {"sync_health_dead_letters_growing", "sync_health_conflicts_growing", "sync_health_lag"},
    **{f"keap_{n}_deletions": {f"keap_{n}_deletions_safety"} for n in ("tags", "products", "contacts", "orders", "subscriptions")},
    "keap_outbound": {"keap_outbound_queue"},
}


@pytest.fixture
def keap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Keap resource's EnvVars, which validating a run config resolves (values made up)."""
    monkeypatch.setenv("KEAP_BASE_URL", "http://127.0.0.1:9/crm/rest/v2")
    monkeypatch.setenv("KEAP_API_KEY", "not-a-real-key")


@pytest.fixture(scope="module")
def defs():  # type: ignore[no-untyped-def]
    from keap_pipeline.definitions import defs

    return defs


def test_the_asset_graph_is_the_lineage(defs) -> None:  # type: ignore[no-untyped-def]
    graph = defs.get_repository_def().asset_graph
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(LINEAGE)
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()}
    assert parents == LINEAGE
    # and it is the table's: each entity's asset depends on sync_schema and on what the entity depends on
    for entity in ENTITIES.values():
        assert parents[f"keap_{entity.name}"] == {"sync_schema", *(f"keap_{d}" for d in entity.depends_on)}
        assert parents[f"keap_{entity.name}_deletions"] == {f"keap_{entity.name}"}
    assert [e.name for e in lineage_order()] == ["tags", "products", "contacts", "orders", "subscriptions"]


def test_assets_partitions_pools_and_groups(defs) -> None:  # type: ignore[no-untyped-def]
    assert {n for n, e in ENTITIES.items() if e.cursor is CursorKind.TIME} == TIMED
    for name, entity in ENTITIES.items():
        asset = defs.resolve_assets_def(f"keap_{name}")
        assert asset.op.pool == KEAP_POOL, name  # every Keap-calling op in the shared pool
        assert set(asset.group_names_by_key.values()) == {"keap"}
        if name in TIMED:
            assert asset.partitions_def == PARTITIONS and asset.backfill_policy == BackfillPolicy.single_run()
        else:
            assert asset.partitions_def is None and asset.backfill_policy is None
            assert "Not time-partitioned" in (asset.descriptions_by_key[asset.key] or "")
            assert "full pass" in (asset.descriptions_by_key[asset.key] or "")
        assert entity.target_table in (asset.descriptions_by_key[asset.key] or "")


def test_checks_per_entity(defs) -> None:  # type: ignore[no-untyped-def]
    graph = defs.get_repository_def().asset_graph
    by_asset: dict[str, set[str]] = {}
    for key in graph.asset_check_keys:
        by_asset.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    assert by_asset == CHECKS


def test_config_classes(defs) -> None:  # type: ignore[no-untyped-def]
    from keap_pipeline.defs.contacts import ContactsSyncConfig, keap_contacts
    from keap_pipeline.entities import CONTACTS

    # the contacts names are the factory's objects, not copies
    assert keap_contacts is defs_for(CONTACTS).asset and ContactsSyncConfig is defs_for(CONTACTS).config
    assert ContactsSyncConfig.__name__ == "ContactsSyncConfig"
    assert {
        "mode", "strategy", "merge_rule", "pages_per_batch", "page_size", "loaders",
        "lock_wait_seconds", "lock_timeout_seconds", "stall_seconds",
    } == set(ContactsSyncConfig.model_fields)
    assert "another contacts run" in (ContactsSyncConfig.model_fields["lock_wait_seconds"].description or "")
    for name, entity in ENTITIES.items():
        config = defs_for(entity).config
        assert config.__name__ == f"{name.capitalize()}SyncConfig"
        assert ("mode" in config.model_fields) == (name in TIMED)


def test_jobs(defs) -> None:  # type: ignore[no-untyped-def]
    repo = defs.get_repository_def()
    names = {j.name for j in repo.get_all_jobs()}
    assert {f"keap_{n}_job" for n in ENTITIES} | {SYNC_ALL_JOB, "audit_partitions_job", "vacuum_analyze_job"} <= names
    for name in ENTITIES:
        job = defs.resolve_job_def(f"keap_{name}_job")
        assert job.asset_layer.selected_asset_keys == {AssetKey(f"keap_{name}")}
        assert job.partitions_def == (PARTITIONS if name in TIMED else None)
    every = defs.resolve_job_def(SYNC_ALL_JOB)
    assert every.asset_layer.selected_asset_keys == {AssetKey(f"keap_{n}") for n in ENTITIES}
    assert every.partitions_def == PARTITIONS  # the unpartitioned entities run unpartitioned in it
    # steps in an order where each entity comes after what it depends on
    steps = [n.name for n in every.graph.nodes_in_topological_order if n.name in {f"keap_{e}" for e in ENTITIES}]
    for entity in ENTITIES.values():
        for dep in entity.depends_on:
            assert steps.index(f"keap_{dep}") < steps.index(f"keap_{entity.name}")


def test_schedules(defs) -> None:  # type: ignore[no-untyped-def]
    schedules = {s.name: s for s in defs.get_repository_def().schedule_defs}
    expected = {f"keap_{n}_incremental_schedule": f"keap_{n}_job" for n in ENTITIES} | {SYNC_ALL_SCHEDULE: SYNC_ALL_JOB}
    for name, job_name in expected.items():
        s = schedules[name]
        assert (s.job_name, s.cron_schedule, s.execution_timezone) == (job_name, SCHEDULE_CRON, "UTC")
        # sync-all keeps every entity fresh and is on; the per-entity ones are its alternatives, off
        # (both on would sync an entity twice a tick)
        assert s.default_status == (DefaultScheduleStatus.RUNNING if name == SYNC_ALL_SCHEDULE else DefaultScheduleStatus.STOPPED)


# a database nobody listens on: the schedule cannot read the cursors (the tests with a database
# check the ranges it computes from them: tests/pipeline/test_dagster_*.py)
NO_DATABASE = {"postgres": PostgresResource(database_url="postgresql://keap@127.0.0.1:9/none?connect_timeout=2")}


def test_the_sync_all_schedule_asks_for_every_entity_incrementally(defs, keap_env) -> None:  # type: ignore[no-untyped-def]
    tick = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
    repo = defs.get_repository_def()
    with build_schedule_context(scheduled_execution_time=tick, repository_def=repo, resources=NO_DATABASE) as context:
        result = defs.resolve_schedule_def(SYNC_ALL_SCHEDULE).evaluate_tick(context)
    [request] = result.run_requests
    assert request.run_key == f"incremental-{tick.isoformat()}" and request.partition_key is None
    # without the cursors the run claims the current month only (and fails on the database, visibly)
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == ("2026-11", "2026-11")
    assert request.tags["keap_pipeline/mode"] == "incremental"
    # no narrower selection: the run is the job's, i.e. every entity
    assert request.asset_selection is None
    job = defs.resolve_job_def(SYNC_ALL_JOB)
    assert job.asset_layer.selected_asset_keys == {AssetKey(f"keap_{n}") for n in ENTITIES}
    assert request.run_config == {"ops": {f"keap_{n}": {"config": {"mode": "incremental"}} for n in ("tags", "contacts", "orders")}}
    assert validate_run_config(job, request.run_config)


def test_full_pass_schedules_ask_for_an_unpartitioned_run(defs, keap_env) -> None:  # type: ignore[no-untyped-def]
    repo = defs.get_repository_def()
    tick = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
    for name in ("products", "subscriptions"):
        # no database needed: nothing to read a cursor of
        with build_schedule_context(scheduled_execution_time=tick, repository_def=repo) as context:
            result = defs.resolve_schedule_def(f"keap_{name}_incremental_schedule").evaluate_tick(context)
        [request] = result.run_requests
        assert request.partition_key is None and request.run_config == {}
        assert ASSET_PARTITION_RANGE_START_TAG not in request.tags
        assert validate_run_config(defs.resolve_job_def(f"keap_{name}_job"), request.run_config) is not None


def test_a_schedule_evaluated_without_a_tick_uses_now(defs) -> None:  # type: ignore[no-untyped-def]
    # scheduled_execution_time raises when the context has none: the schedules fall back to now
    from keap_pipeline.defs.contacts import keap_contacts_incremental_schedule

    before = datetime.now(UTC)
    with build_schedule_context(resources=NO_DATABASE) as context:
        request = keap_contacts_incremental_schedule(context)
    after = datetime.now(UTC)
    assert request.tags[ASSET_PARTITION_RANGE_END_TAG] in {before.strftime("%Y-%m"), after.strftime("%Y-%m")}
    stamp = datetime.fromisoformat(request.run_key.removeprefix("incremental-"))
    assert before <= stamp <= after
