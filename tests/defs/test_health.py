"""The sync_health asset, its checks and the freshness checks it runs, on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    define_asset_job,
)

from keap_pipeline.db.connect import connect
from keap_pipeline.db.health import record_sync_success
from keap_pipeline.defs.entities import CURSOR_MAX_AGE, defs_for
from keap_pipeline.defs.entity_checks import syncs_a_window
from keap_pipeline.defs.health import (
    CONFLICTS_GROWING,
    DEAD_LETTERS_GROWING,
    HEALTH_ASSET,
    HEALTH_JOB,
    LAG,
)
from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import CONTACTS, ENTITIES
from tests.dagster_contexts import run_asset_check


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def _synced_all(url: str, ago: timedelta = timedelta(0)) -> None:
    with connect(url) as conn, conn.transaction():
        for entity in ENTITIES.values():
            record_sync_success(conn, entity, conn.execute("select now() - %s", (ago,)).fetchone()[0])  # type: ignore[index]


def _observe(url: str, instance: DagsterInstance) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run sync_health_job once; the materialization's metadata and the check evaluations by name."""
    from keap_pipeline.definitions import defs

    job = defs.resolve_job_def(HEALTH_JOB)
    result = job.execute_in_process(instance=instance, resources={"postgres": PostgresResource(database_url=url)})
    assert result.success
    [mat] = result.asset_materializations_for_node(HEALTH_ASSET)
    checks = {ev.check_name: ev for ev in result.get_asset_check_evaluations()}
    return {k: v.value for k, v in mat.metadata.items()}, checks


def test_the_job_records_the_figures_and_warns_when_they_worsen(migrated_database: str, instance: DagsterInstance) -> None:
    # first observation: nothing to compare with; nothing has synced yet, so the lag warns
    meta, checks = _observe(migrated_database, instance)
    assert {DEAD_LETTERS_GROWING, CONFLICTS_GROWING, LAG} | {f"keap_{n}_cursor_fresh" for n in ENTITIES} == set(checks)
    assert checks[DEAD_LETTERS_GROWING].passed and checks[CONFLICTS_GROWING].passed
    assert not checks[LAG].passed and checks[LAG].severity == AssetCheckSeverity.WARN
    assert "no sync has completed yet" in (checks[LAG].description or "")
    # the freshness checks the same job runs: ERROR, an operator's alert
    fresh = checks["keap_contacts_cursor_fresh"]
    assert not fresh.passed and fresh.severity == AssetCheckSeverity.ERROR
    for name in ENTITIES:
        assert meta[f"{name}_dead_letters"] == 0 and meta[f"{name}_records"] == 0
        assert f"{name}_lag_minutes" not in meta  # no point to plot until a sync completed

    # synced 20 minutes ago: the lag passes the 15-minute interval (WARN), freshness is still within 45
    _synced_all(migrated_database, timedelta(minutes=20))
    meta, checks = _observe(migrated_database, instance)
    assert not checks[LAG].passed and checks[LAG].metadata["late_entities"].value == len(ENTITIES)
    assert 19.9 <= meta["contacts_lag_minutes"] <= 21
    assert checks["keap_contacts_cursor_fresh"].passed

    # now: fresh; then dead letters and a conflict appear
    _synced_all(migrated_database)
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            "insert into keap_pipeline.dead_letters (entity, keap_id, record_json, reason) values"
            " ('orders', '1', '{}', 'total_amount: not a number'), ('orders', '2', '{}', 'total_amount: not a number')"
        )
        conn.execute("set local role keap_pipeline_ingest")
        contact = conn.execute("insert into public.sync_contacts (keap_id) values ('1') returning id").fetchone()[0]  # type: ignore[index]
        conn.execute("reset role")
        conn.execute(
            "select public.detect_sync_conflict('sync_contacts', %s, '{\"email\": \"x\"}', '{\"email\": \"y\"}')", (contact,)
        )
    meta, checks = _observe(migrated_database, instance)
    assert checks[LAG].passed and meta["contacts_lag_minutes"] < 1
    assert not checks[DEAD_LETTERS_GROWING].passed and checks[DEAD_LETTERS_GROWING].severity == AssetCheckSeverity.WARN
    assert "orders: 0 -> 2" in (checks[DEAD_LETTERS_GROWING].description or "")
    assert not checks[CONFLICTS_GROWING].passed and "contacts: 0 -> 1" in (checks[CONFLICTS_GROWING].description or "")
    assert (meta["orders_dead_letters"], meta["contacts_open_conflicts"], meta["contacts_records"]) == (2, 1, 1)
    assert meta["dead_letters"] == 2 and meta["open_conflicts"] == 1

    # unchanged since: no warning; the counters were folded on the way
    meta, checks = _observe(migrated_database, instance)
    assert checks[DEAD_LETTERS_GROWING].passed and checks[CONFLICTS_GROWING].passed and checks[LAG].passed
    with psycopg.connect(migrated_database) as conn:
        assert conn.execute("select count(*) from public.sync_health_counters").fetchone()[0] == meta["counter_rows"]  # type: ignore[index]


def _cursor_fresh(url: str) -> Any:
    [check] = [c for c in defs_for(CONTACTS).checks if c.check_key.name == "keap_contacts_cursor_fresh"]
    return run_asset_check(check, postgres=PostgresResource(database_url=url))


def test_cursor_fresh_errs_only_when_nothing_keeps_the_entity_fresh(migrated_database: str) -> None:
    result = _cursor_fresh(migrated_database)
    assert not result.passed and result.severity == AssetCheckSeverity.ERROR
    assert result.description.startswith("no sync has completed yet")
    # a run is committing batches (a long first load, holding the run lock): WARN, not an alert
    with psycopg.connect(migrated_database) as conn:
        conn.execute(
            "insert into keap_pipeline.sync_cursors (entity, scope, cursor_value) values ('contacts', 'window:x', now())"
        )
    result = _cursor_fresh(migrated_database)
    assert not result.passed and result.severity == AssetCheckSeverity.WARN and "a run is loading it" in result.description
    # a complete sync an hour ago, nothing since: stale
    with psycopg.connect(migrated_database) as conn:
        conn.execute("update keap_pipeline.sync_cursors set updated_at = now() - interval '1 hour'")
    _synced_all(migrated_database, timedelta(hours=1))
    result = _cursor_fresh(migrated_database)
    assert not result.passed and result.severity == AssetCheckSeverity.ERROR
    assert 59 <= result.metadata["age_minutes"].value <= 61
    # a quiet account: the schedule's run found nothing new, but it completed
    _synced_all(migrated_database)
    result = _cursor_fresh(migrated_database)
    assert result.passed and result.metadata["age_minutes"].value < 1
    assert result.metadata["max_age_minutes"].value == CURSOR_MAX_AGE.total_seconds() / 60


def _context(tags: dict[str, str], config: dict[str, Any] | None) -> Any:
    run_config = {"ops": {"keap_contacts": {"config": config}}} if config is not None else {}
    return SimpleNamespace(run=SimpleNamespace(tags=tags, run_config=run_config))


@pytest.mark.parametrize(
    ("tags", "config", "window"),
    [
        ({"dagster/partition": "2026-11-25"}, {"mode": "incremental"}, False),  # the schedule's run
        ({"dagster/partition": "2026-11-25"}, {}, True),  # a partition launched from the UI
        ({"dagster/asset_partition_range_start": "2024-01-01"}, None, True),  # a single-run backfill
        ({}, None, False),  # sync_health_job, or a run of the check alone
    ],
    ids=["schedule", "partition", "backfill", "checks-only"],
)
def test_a_window_run_is_told_from_the_schedules_and_the_health_jobs(tags: dict[str, str], config: dict[str, Any] | None, window: bool) -> None:
    assert syncs_a_window(_context(tags, config), "keap_contacts") is window


def test_stale_inside_a_backfill_is_a_warning(migrated_database: str, instance: DagsterInstance) -> None:
    # the check as it runs in a single-run backfill (the range's tags), without the asset's step
    _synced_all(migrated_database, timedelta(hours=2))
    [check] = [c for c in defs_for(CONTACTS).checks if c.check_key.name == "keap_contacts_cursor_fresh"]
    defs = Definitions(
        assets=[defs_for(CONTACTS).asset],
        asset_checks=[check],
        jobs=[define_asset_job("fresh_only", selection=AssetSelection.checks(check.check_key))],
        resources={
            "postgres": PostgresResource(database_url=migrated_database),
            "keap": KeapResource(base_url="http://127.0.0.1:9", api_key="unused"),
        },
    )
    result = defs.resolve_job_def("fresh_only").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-31"},
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert "window of the past" in (evaluation.description or "")


def test_the_job_runs_the_asset_and_every_freshness_check_and_nothing_that_syncs() -> None:
    from keap_pipeline.definitions import defs

    job = defs.resolve_job_def(HEALTH_JOB)
    assert job.asset_layer.selected_asset_keys == {AssetKey(HEALTH_ASSET)}
    # one step for the asset (its three checks are its own outputs), one per entity's freshness check
    assert {n.name for n in job.graph.nodes} == {HEALTH_ASSET, *(f"keap_{n}_keap_{n}_cursor_fresh" for n in ENTITIES)}
