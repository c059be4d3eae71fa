"""The Dagster shell of contacts: a single-run backfill over a partition range, metadata, checks, schedule, code location."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import (
    AssetKey,
    BackfillPolicy,
    DagsterInstance,
    PartitionKeyRange,
    build_schedule_context,
    materialize,
)
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._core.test_utils import create_run_for_test, instance_for_test

from keap_pipeline.db.connect import connect
from keap_pipeline.db.cursors import INCREMENTAL, advance_cursor, get_cursor, window_scope
from keap_pipeline.defs.contacts import (
    PARTITIONS,
    SCHEDULE_CRON,
    keap_contacts,
    keap_contacts_cursor_fresh,
    keap_contacts_incremental_schedule,
)
from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.sandbox import RateLimits
from tests.dagster_contexts import run_asset_check
from tests.pipeline.conftest import API_KEY, expected_rows, sandbox_records, scalar, table_rows

START, END = "2024-03", "2024-05"  # END is the last partition, inclusive


def _resources(handle, url: str) -> dict[str, object]:
    return {
        "keap": KeapResource(base_url=handle.base_url, api_key=API_KEY, pacing=False),
        "postgres": PostgresResource(database_url=url),
    }


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def test_backfill_range_is_one_run_loading_only_its_window(sandbox, migrated_database: str, instance) -> None:
    # the daily quota on (its headers feed quota_left), per-second and per-minute limits off
    handle = sandbox(contacts=3000, limits=RateLimits(per_second=None, per_minute=None, per_day=30_000))
    since, until = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)
    in_window = {
        k: r for k, r in sandbox_records(handle).items()
        if since <= datetime.fromisoformat(r["update_time"]) < until
    }
    assert 5 < len(in_window) < 3000

    assert keap_contacts.backfill_policy == BackfillPolicy.single_run()
    result = materialize(
        [keap_contacts],
        resources=_resources(handle, migrated_database),
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: START, ASSET_PARTITION_RANGE_END_TAG: END},
        run_config={"ops": {"keap_contacts": {"config": {"page_size": 7}}}},
    )
    assert result.success
    assert len(instance.get_runs()) == 1
    mats = result.asset_materializations_for_node("keap_contacts")
    assert [m.partition for m in mats] == ["2024-03", "2024-04", "2024-05"]
    assert PARTITIONS.get_partition_keys_in_range(PartitionKeyRange(START, END)) == ["2024-03", "2024-04", "2024-05"]

    assert table_rows(migrated_database) == expected_rows(in_window)
    with connect(migrated_database) as conn:
        cursor = get_cursor(conn, "contacts", window_scope(since, until))
        assert get_cursor(conn, "contacts", INCREMENTAL) is None
    # loaded to its end: the window's cursor says so (an interrupted window would resume from it)
    assert cursor is not None and cursor.value == until
    assert max(datetime.fromisoformat(r["update_time"]) for r in in_window.values()) < until

    # the run's figures are on every partition, named as the range's; each partition says what it holds
    metas = [{k: v.value for k, v in m.metadata.items()} for m in mats]
    assert [m["partition_window"] for m in metas] == [
        "updated 2024-03-01 .. 2024-04-01 (end exclusive)",
        "updated 2024-04-01 .. 2024-05-01 (end exclusive)",
        "updated 2024-05-01 .. 2024-06-01 (end exclusive)",
    ]
    shared = [{k: v for k, v in m.items() if k != "partition_window"} for m in metas]
    assert all(m == shared[0] for m in shared)
    meta = metas[0]
    assert meta["range"].startswith("2024-03 .. 2024-05 (3 monthly partitions): the range_* figures are this run's")
    assert not {"records_seen", "inserted", "updated"} & set(meta)  # no figure that reads as the partition's
    n = len(in_window)
    assert meta["range_records_seen"] == meta["range_inserted"] == n
    assert (meta["range_updated"], meta["range_unchanged"], meta["range_conflicts"], meta["range_dead_lettered"]) == (0, 0, 0, 0)
    assert meta["range_conflicts_by_strategy"] == {
        "strategy": "keap_wins", "keap_wins": 0, "supabase_wins": 0, "merged": 0, "parked": 0,
    }
    pages = meta["range_pages"]
    assert pages == -(-n // 7) or pages == -(-n // 7) + 1  # a last empty page, or not
    assert meta["range_requests"] >= pages
    assert 0 < meta["quota_left"] <= 30_000 - meta["range_requests"]
    assert meta["range_seconds"] > 0 and meta["range_records_per_second"] > 0
    assert meta["scope"] == window_scope(since, until)

    # the same range again (say after a fix): read in full, nothing written since nothing changed
    again = materialize(
        [keap_contacts],
        resources=_resources(handle, migrated_database),
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: START, ASSET_PARTITION_RANGE_END_TAG: END},
        run_config={"ops": {"keap_contacts": {"config": {"page_size": 7}}}},
    )
    second = {k: v.value for k, v in again.asset_materializations_for_node("keap_contacts")[0].metadata.items()}
    assert second["range_records_seen"] == second["range_unchanged"] == n
    assert (second["range_inserted"], second["range_updated"]) == (0, 0)


def test_incremental_mode_syncs_from_the_cursor_and_the_checks_report(sandbox, migrated_database: str, instance) -> None:
    handle = sandbox(contacts=400)
    fresh = run_asset_check(keap_contacts_cursor_fresh,
                                       postgres=PostgresResource(database_url=migrated_database))
    assert fresh.passed is False  # nothing committed yet

    def run() -> dict[str, object]:
        result = materialize(
            [keap_contacts], resources=_resources(handle, migrated_database), instance=instance,
            partition_key=datetime.now(UTC).strftime("%Y-%m"),
            run_config={"ops": {"keap_contacts": {"config": {"mode": "incremental", "page_size": 100}}}},
        )
        assert result.success
        [mat] = result.asset_materializations_for_node("keap_contacts")
        return {k: v.value for k, v in mat.metadata.items()}

    first = run()
    assert first["range_inserted"] == 400 and first["scope"] == INCREMENTAL
    handle.state.update_contact(5, {"given_name": "Updated"})
    second = run()
    assert second["range_updated"] == 1 and second["range_inserted"] == 0
    assert table_rows(migrated_database) == expected_rows(sandbox_records(handle))
    assert scalar(migrated_database, "select count(*) from keap_pipeline.sync_cursors") == 1

    fresh = run_asset_check(keap_contacts_cursor_fresh,
                                       postgres=PostgresResource(database_url=migrated_database))
    assert fresh.passed is True and fresh.metadata["age_minutes"].value < 1


def _range(request) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]


def test_the_schedule_asks_for_one_run_over_the_partitions_it_loads(migrated_database: str) -> None:
    with instance_for_test() as instance:  # persistent (the schedule's context reads runs through its ref)
        _the_schedule_covers_what_the_run_loads(migrated_database, instance)


def _the_schedule_covers_what_the_run_loads(migrated_database: str, instance: DagsterInstance) -> None:
    tick = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
    postgres = PostgresResource(database_url=migrated_database)

    def request_at(when: datetime):  # type: ignore[no-untyped-def]
        return keap_contacts_incremental_schedule(
            build_schedule_context(instance=instance, scheduled_execution_time=when, resources={"postgres": postgres})
        )

    # never synced: the run loads everything, so it covers every partition up to the current month
    request = request_at(tick)
    assert _range(request) == (PARTITIONS.get_first_partition_key(), "2026-11")
    assert request.partition_key is None and request.tags["keap_pipeline/mode"] == "incremental"
    assert request.run_config == {"ops": {"keap_contacts": {"config": {"mode": "incremental"}}}}
    assert request.run_key == f"incremental-{tick.isoformat()}"
    # the current month exists at the tick (end_offset=1), so the range is valid
    assert PARTITIONS.get_partition_keys(current_time=tick)[-1] == "2026-11"

    # a cursor in May 2024 (nothing changed since): from its month, while no incremental run read the months since
    with connect(migrated_database) as conn, conn.transaction():
        advance_cursor(conn, "contacts", INCREMENTAL, datetime(2024, 5, 3, tzinfo=UTC), 10, "run-1")
    assert _range(request_at(tick)) == ("2024-05", "2026-11")
    # once such a run succeeded, the months it read after they had ended are final: the next covers the current one
    create_run_for_test(
        instance, job_name="keap_contacts_job", status=DagsterRunStatus.SUCCESS,
        tags={"keap_pipeline/mode": "incremental", ASSET_PARTITION_RANGE_START_TAG: "2024-05", ASSET_PARTITION_RANGE_END_TAG: "2026-11"},
    )
    assert _range(request_at(tick)) == ("2026-11", "2026-11")
    # the first tick of a new month still covers the month that just ended (read after it ended now)
    assert _range(request_at(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))) == ("2026-11", "2026-12")
    # a failed run or another job's proves nothing
    create_run_for_test(
        instance, job_name="keap_sync_all_job", status=DagsterRunStatus.SUCCESS,
        tags={"keap_pipeline/mode": "incremental", ASSET_PARTITION_RANGE_START_TAG: "2026-12", ASSET_PARTITION_RANGE_END_TAG: "2026-12"},
    )
    create_run_for_test(
        instance, job_name="keap_contacts_job", status=DagsterRunStatus.FAILURE,
        tags={"keap_pipeline/mode": "incremental", ASSET_PARTITION_RANGE_START_TAG: "2026-12", ASSET_PARTITION_RANGE_END_TAG: "2026-12"},
    )
    assert _range(request_at(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))) == ("2026-11", "2026-12")


def test_code_location_loads_assets_job_schedule_and_checks() -> None:
    from keap_pipeline.definitions import defs

    repo = defs.get_repository_def()
    assert {AssetKey("sync_schema"), AssetKey("keap_contacts")} <= set(repo.asset_graph.get_all_asset_keys())
    # the lineage: sync_schema and the catalog (tags, products) before contacts
    assert repo.asset_graph.get(AssetKey("keap_contacts")).parent_keys == {
        AssetKey("sync_schema"), AssetKey("keap_tags"), AssetKey("keap_products"),
    }
    job = defs.resolve_job_def("keap_contacts_job")
    assert job.partitions_def == PARTITIONS
    schedule = defs.resolve_schedule_def("keap_contacts_incremental_schedule")
    assert schedule.cron_schedule == SCHEDULE_CRON == "*/15 * * * *"
    assert schedule.job_name == "keap_contacts_job"
    checks = {key.name for key in repo.asset_graph.asset_check_keys if key.asset_key == AssetKey("keap_contacts")}
    assert checks == {"keap_contacts_dead_letters", "keap_contacts_cursor_fresh"}


def test_an_unreachable_database_fails_the_run_with_a_message_and_no_password(sandbox, instance) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handle = sandbox(contacts=10)
    url = f"postgresql://keap:s3cret-pw@127.0.0.1:{port}/nowhere?connect_timeout=2"
    result = materialize(
        [keap_contacts],
        resources=_resources(handle, url),
        instance=instance,
        partition_key="2024-01",
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    text = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert "database is unreachable" in text and "KEAP_PIPELINE_DATABASE_URL" in text
    assert "s3cret-pw" not in text and "***" in text
