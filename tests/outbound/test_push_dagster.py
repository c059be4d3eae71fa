"""The Dagster shell of the push: keap_outbound materializes over the sandbox, its check counts, the sensor decides."""

from __future__ import annotations

from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_sensor_context,
    materialize,
)

from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.outbound import keap_outbound, keap_outbound_queue, keap_push_sensor
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.dagster_contexts import run_asset_check
from tests.outbound.conftest import ADMIN, API_KEY, app


def _resources(handle: SandboxHandle, url: str) -> dict[str, object]:
    return {
        "keap": KeapResource(base_url=handle.base_url, api_key=API_KEY, pacing=False),
        "postgres": PostgresResource(database_url=url),
    }


def _sensor(url: str, instance: DagsterInstance) -> RunRequest | SkipReason:
    with build_sensor_context(instance=instance, resources={"postgres": PostgresResource(database_url=url)}) as context:
        return keap_push_sensor(context)  # type: ignore[return-value]


def test_definitions_list_the_push() -> None:
    from keap_pipeline.definitions import defs

    repo = defs.get_repository_def()
    assert "keap_push_job" in {j.name for j in repo.get_all_jobs()}
    [push_sensor] = [s for s in repo.sensor_defs if s.name == "keap_push_sensor"]
    assert push_sensor.job_name == "keap_push_job" and push_sensor.minimum_interval_seconds == 30
    assert AssetCheckKey(AssetKey("keap_outbound"), "keap_outbound_queue") in repo.asset_graph.asset_check_keys
    node = repo.asset_graph.get(AssetKey("keap_outbound"))
    assert node.pools == {"keap_api"}


def test_the_sensor_starts_a_push_only_when_items_are_due(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    instance = DagsterInstance.ephemeral()
    assert isinstance(_sensor(url, instance), SkipReason)
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Sensed' where keap_id = '1'")
    request = _sensor(url, instance)
    assert isinstance(request, RunRequest) and request.tags["keap_pipeline/due"] == "1"


def test_keap_outbound_pushes_and_its_check_counts_failed_and_unsupported(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'From Dagster' where keap_id = '1'")
        conn.execute("update public.sync_contacts set email = 'broken' where keap_id = '2'")
    with app(url, ADMIN) as conn:
        conn.execute("insert into public.sync_products (name) values ('Not pushed')")
    result = materialize([keap_outbound], resources=_resources(handle, url))
    assert result.success
    metadata = result.asset_materializations_for_node("keap_outbound")[0].metadata
    assert metadata["updated"].value == 1 and metadata["failed"].value == 1 and metadata["unsupported"].value == 1
    assert handle.state is not None and handle.state.contact(1)["given_name"] == "From Dagster"  # type: ignore[index]
    check = run_asset_check(keap_outbound_queue, resources={"postgres": PostgresResource(database_url=url)})
    assert not check.passed
    assert check.metadata["failed"].value == 1 and check.metadata["unsupported"].value == 1
    assert "must be an email address" in check.metadata["reasons"].value
    assert "broken" not in check.metadata["reasons"].value
