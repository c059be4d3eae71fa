"""The generated Dagster shell of the reconcile passes through the sandbox: materialization metadata, the
safety check failing with the figure, a confirmation through config, a skip for want of quota."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from dagster import AssetCheckSeverity, AssetKey, DagsterEventType, DagsterInstance, materialize

from keap_pipeline.defs.deletions import deletions_name
from keap_pipeline.defs.entities import defs_for
from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import ENTITIES, lineage_order
from keap_pipeline.pipeline.sync import sync_entity
from keap_pipeline.sandbox import RateLimits
from tests.pipeline.conftest import API_KEY, client_for


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def _resources(handle, url: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "keap": KeapResource(base_url=handle.base_url, api_key=API_KEY, pacing=False),
        "postgres": PostgresResource(database_url=url),
    }


def _run(name: str, handle, url: str, instance: DagsterInstance, **config: object):  # type: ignore[no-untyped-def]
    made = defs_for(ENTITIES[name]).deletions
    return materialize(
        [made.asset, made.check],
        resources=_resources(handle, url),
        instance=instance,
        run_config={"ops": {deletions_name(ENTITIES[name]): {"config": {"page_size": 10, **config}}}},
        raise_on_error=False,
    )


def _meta(result, name: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    [mat] = result.asset_materializations_for_node(deletions_name(ENTITIES[name]))
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


@pytest.mark.parametrize("name", list(ENTITIES))
def test_a_pass_materializes_with_its_cost_and_the_safety_check_guards_it(
    name: str, sandbox, migrated_database: str, instance: DagsterInstance  # type: ignore[no-untyped-def]
) -> None:
    handle = sandbox(contacts=40, tags=30, products=30, orders=60, subscriptions=40)
    with client_for(handle) as client:
        for entity in lineage_order():
            sync_entity(client, migrated_database, entity, page_size=50)
    state = handle.state
    assert state is not None

    state.delete_record(name, 5)
    result = _run(name, handle, migrated_database, instance, max_share=0.2)
    assert result.success
    meta = _meta(result, name)
    assert (meta["status"], meta["deleted"], meta["would_delete"]) == ("completed", 1, 0)
    assert meta["requests"] >= meta["pages"] >= 3
    # the test sandbox runs with limits off, so it reports no quota: no share is made up
    assert "quota_share" not in meta and "quota_left" not in meta
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.check_name == f"{deletions_name(ENTITIES[name])}_safety"

    # a listing that silently returns fewer records: stopped, nothing deleted, the check fails with the figure
    state.set_hide_share(0.3)
    result = _run(name, handle, migrated_database, instance)
    meta = _meta(result, name)
    assert meta["status"] == "stopped" and meta["deleted"] == 0 and meta["would_delete"] == meta["missing"] > 0
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["would_delete"].value == meta["missing"]
    assert f"would delete {meta['missing']} of" in (check.description or "")
    assert f"confirm_pass: {meta['pass_id']}" in (check.description or "")

    # a person looked and said yes (here: to a wrong listing, to show the confirmation applies what was recorded)
    state.show_in_listings()
    confirmed = _run(name, handle, migrated_database, instance, confirm_pass=meta["pass_id"])
    assert confirmed.success and _meta(confirmed, name)["deleted"] == meta["missing"]
    [check] = confirmed.get_asset_check_evaluations()
    assert check.passed and "confirmed" in (check.description or "")


def test_a_pass_the_quota_would_not_cover_is_skipped_with_its_reason(
    sandbox, migrated_database: str, instance: DagsterInstance  # type: ignore[no-untyped-def]
) -> None:
    handle = sandbox(contacts=60)
    with client_for(handle) as client:
        sync_entity(client, migrated_database, ENTITIES["contacts"], page_size=50)
    assert handle.state is not None
    handle.state.quota.reset()
    handle.state.quota.limits = RateLimits(per_second=None, per_minute=None, per_day=4)
    result = _run("contacts", handle, migrated_database, instance)
    assert result.success, "a skip is not a failure"
    assert result.asset_materializations_for_node("keap_contacts_deletions") == []
    observations = [
        e.event_specific_data.asset_observation  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_OBSERVATION
    ]
    [observed] = [o for o in observations if o.asset_key == AssetKey("keap_contacts_deletions")]
    metadata = observed.metadata
    assert metadata["status"].value == "skipped" and "would not cover the pass" in metadata["reason"].value
    # a sandbox with a day's limit reports its quota: the share of the day the pass spent (1 of 4)
    assert (metadata["quota_share"].value, metadata["requests"].value) == (0.25, 1)
    with psycopg.connect(migrated_database) as conn:
        assert conn.execute("select status from keap_pipeline.reconcile_passes").fetchall() == [("skipped",)]


def test_an_interrupted_pass_fails_the_run_and_deletes_nothing(
    sandbox, migrated_database: str, instance: DagsterInstance  # type: ignore[no-untyped-def]
) -> None:
    handle = sandbox(contacts=60)
    with client_for(handle) as client:
        sync_entity(client, migrated_database, ENTITIES["contacts"], page_size=50)
    httpx.delete(f"{handle.base_url}/contacts/7", headers={"X-Keap-API-Key": API_KEY})
    assert handle.state is not None
    handle.state.put_raw_record("contacts", b'{"given_name": "no id"}')
    result = _run("contacts", handle, migrated_database, instance, max_share=0.2)
    assert not result.success
    with psycopg.connect(migrated_database) as conn:
        assert conn.execute("select count(*) from public.sync_contacts where deleted_at is not null").fetchone() == (0,)
