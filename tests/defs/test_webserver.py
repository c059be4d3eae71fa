"""A real dagster-webserver and dagster-daemon on the repo's workspace.yaml and dagster.yaml, driven through GraphQL.

The instance is the repo's dagster.yaml (run and event storage in a PostgreSQL database of the test
server, the keap_api pool); the runs load the sandbox (over a real socket) into a migrated database.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

from keap_pipeline.defs.partitions import PARTITIONS
from keap_pipeline.entities import lineage_order
from keap_pipeline.keap import ApiKeyAuth, KeapClient
from keap_pipeline.local_stack import SANDBOX_API_KEY, repo_root
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox
from tests.conftest import create_database, drop_database

QUERY = """
{
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    groupName
    isPartitioned
    pools
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name schedules { name cronSchedule pipelineName scheduleState { status } } }
    }
  }
}
"""
LINEAGE = {
    "sync_schema": set(),
    "keap_tags": {"sync_schema"},
    "keap_products": {"sync_schema"},
    "keap_contacts": {"sync_schema", "keap_tags", "keap_products"},
    "keap_orders": {"sync_schema", "keap_contacts"},
    "keap_subscriptions": {"sync_schema", "keap_contacts", "keap_products"},
    "sync_health": {"keap_tags", "keap_products", "keap_contacts", "keap_orders", "keap_subscriptions"},
    # the reconcile passes (deletions in Keap, issue 13): each downstream of its entity's sync
    **{f"keap_{n}_deletions": {f"keap_{n}"} for n in ("tags", "products", "contacts", "orders", "subscriptions")},
    "keap_outbound": {"sync_schema"},  # the outbound push, beside the lineage
}
LOCATION = "keap_pipeline.definitions"  # workspace.yaml's python_module
REPOSITORY = "__repository__"
STARTUP_SECONDS = 180  # the code servers import the definitions in their own processes; the machine may be busy
RUN_SECONDS = 240  # a run (or the backfill daemon's next pass, every 30 s) on a busy machine
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
CONTACTS = 600


@dataclass(frozen=True)
class Stack:
    """The running webserver (its GraphQL URL), the sandbox, the sync database and the processes' environment."""

    graphql: str
    keap_base_url: str
    database_url: str
    environment: dict[str, str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sqlalchemy_url(conninfo: str, dbname: str) -> str:
    # Dagster's storage takes a SQLAlchemy URL (psycopg2, as local_stack.py explains), not a conninfo
    params = conninfo_to_dict(conninfo)
    return URL.create(
        "postgresql+psycopg2", username=params.get("user"), password=params.get("password"),
        host=params.get("host"), port=int(params["port"]) if params.get("port") else None, database=dbname,
    ).render_as_string(hide_password=False)


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, cwd=repo_root(), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # the process and the code server it started: the session this test created
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server_url: str, template_database: str) -> Iterator[Stack]:
    """dagster-webserver (127.0.0.1, a free port) and dagster-daemon on one instance; the sandbox; a sync database."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copyfile(repo_root() / "dagster.yaml", home / "dagster.yaml")
    storage, sync = f"kp_dagster_{uuid.uuid4().hex[:12]}", f"kp_sync_{uuid.uuid4().hex[:12]}"
    create_database(pg_server_url, storage)
    database_url = create_database(pg_server_url, sync, template=template_database)
    config = SandboxConfig(port=0, contacts=CONTACTS, limits=RateLimits.off(), api_key=SANDBOX_API_KEY)
    port = _free_port()
    try:
        with running_sandbox(config) as sandbox:
            env = {
                **os.environ,
                "DAGSTER_HOME": str(home),
                "KEAP_PIPELINE_DAGSTER_STORAGE_URL": _sqlalchemy_url(pg_server_url, storage),
                "KEAP_PIPELINE_DATABASE_URL": database_url,
                "KEAP_BASE_URL": sandbox.base_url,
                "KEAP_API_KEY": SANDBOX_API_KEY,
            }
            workspace = str(repo_root() / "workspace.yaml")
            webserver = _start(
                [sys.executable, "-m", "dagster_webserver", "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
                home / "webserver.log", env,
            )
            # the backfill daemon submits a backfill's runs, the run queue daemon launches queued runs
            daemon = _start([sys.executable, "-m", "dagster._daemon", "run", "-w", workspace], home / "daemon.log", env)
            try:
                yield Stack(f"http://127.0.0.1:{port}/graphql", sandbox.base_url, database_url, env)
            finally:
                _stop(daemon)
                _stop(webserver)
    finally:
        drop_database(pg_server_url, sync)
        drop_database(pg_server_url, storage)


def _graphql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(url, json={"query": query, "variables": variables}, timeout=60)
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return dict(body["data"])


def _ask(url: str) -> dict[str, Any]:
    deadline = time.monotonic() + STARTUP_SECONDS
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.post(url, json={"query": QUERY}, timeout=30)
            data = response.json().get("data") or {}
            if data.get("assetNodes"):  # empty while the code location is still loading
                return data
            last = response.text[:500]
        except (httpx.HTTPError, ValueError) as err:
            last = err
        time.sleep(1)
    raise AssertionError(f"the webserver did not serve the code location within {STARTUP_SECONDS} s: {last}")


def _wait(what: str, probe: Callable[[], Any], seconds: float = RUN_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what}: not within {seconds:g} s")


RUN = """
query($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { runId jobName status parentRunId tags { key value } }
  }
}
"""
LOGS = """
query($id: ID!) {
  logsForRun(runId: $id) {
    ... on EventConnection {
      events {
        __typename
        ... on MaterializationEvent {
          partition
          assetKey { path }
          metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
        }
        ... on ExecutionStepOutputEvent {
          metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
        }
        ... on ExecutionStepFailureEvent { error { message } }
      }
    }
  }
}
"""


def _finished(url: str, run_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        run = _graphql(url, RUN, id=run_id)["runOrError"]
        return run if run.get("status") in TERMINAL else None

    run = _wait(f"run {run_id}", probe)
    if run["status"] != "SUCCESS":  # say why, from the run's own events
        failures = [e["error"]["message"] for e in _events(url, run_id) if e["__typename"] == "ExecutionStepFailureEvent"]
        raise AssertionError(f"run {run_id} of {run['jobName']} ended {run['status']}: {failures}")
    return dict(run)


def _events(url: str, run_id: str) -> list[dict[str, Any]]:
    return list(_graphql(url, LOGS, id=run_id)["logsForRun"]["events"])


def _entries(event: dict[str, Any]) -> dict[str, Any]:
    return {m["label"]: m.get("intValue", m.get("text")) for m in event["metadataEntries"]}


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def test_the_ui_shows_the_lineage_checks_pools_and_schedules(stack: Stack) -> None:
    data = _ask(stack.graphql)
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert {name: {"/".join(d["path"]) for d in n["dependencyKeys"]} for name, n in nodes.items()} == LINEAGE
    assert {n["groupName"] for n in nodes.values()} == {"keap"}
    assert {name for name, n in nodes.items() if n["isPartitioned"]} == {"keap_tags", "keap_contacts", "keap_orders"}
    for name, node in nodes.items():
        assert node["pools"] == ([] if name in ("sync_schema", "sync_health") else ["keap_api"]), name
        checks = {c["name"] for c in node["assetChecksOrError"]["checks"]}
        if name == "sync_health":
            assert checks == {"sync_health_dead_letters_growing", "sync_health_conflicts_growing", "sync_health_lag"}
        elif name.endswith("_deletions"):
            assert checks == {f"{name}_safety"}
        elif name == "keap_outbound":
            assert checks == {"keap_outbound_queue"}
        elif name != "sync_schema":
            assert {f"{name}_dead_letters", f"{name}_cursor_fresh"} <= checks
            assert (f"{name}_unresolved_links" in checks) == (name in {"keap_orders", "keap_subscriptions"})

    [repo] = data["repositoriesOrError"]["nodes"]
    schedules = {s["name"]: (s["pipelineName"], s["cronSchedule"], s["scheduleState"]["status"]) for s in repo["schedules"]}
    assert schedules["keap_sync_all_schedule"] == ("keap_sync_all_job", "*/15 * * * *", "RUNNING")
    assert schedules["sync_health_schedule"] == ("sync_health_job", "7,22,37,52 * * * *", "RUNNING")
    assert schedules["keap_contacts_incremental_schedule"] == ("keap_contacts_job", "*/15 * * * *", "STOPPED")
    for entity in ("tags", "products", "orders", "subscriptions"):
        assert schedules[f"keap_{entity}_incremental_schedule"] == (f"keap_{entity}_job", "*/15 * * * *", "STOPPED")
    for entity in ("tags", "products", "contacts", "orders", "subscriptions"):
        assert schedules[f"keap_{entity}_deletions_schedule"] == (f"keap_{entity}_deletions_job", "5 3 * * *", "STOPPED")
    assert schedules["audit_partitions_schedule"] == ("audit_partitions_job", "0 0 1 * *", "RUNNING")
    assert schedules["vacuum_analyze_schedule"] == ("vacuum_analyze_job", "0 2 * * *", "RUNNING")
    assert schedules["queue_retention_schedule"] == ("queue_retention_job", "30 3 * * *", "RUNNING")


BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
BACKFILL_STATUS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }
"""
BACKFILL_RUNS = """
query($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""
LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
  }
}
"""
REEXECUTE = """
mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
JOB_RUNS = """
query($selector: PipelineSelector!) { pipelineOrError(params: $selector) { ... on Pipeline { runs { runId } } } }
"""


def _in_window(base_url: str, since: datetime, until: datetime) -> int:
    with KeapClient(base_url, ApiKeyAuth(SANDBOX_API_KEY), pacing=False) as client:
        return sum(len(p.records) for p in client.iter_pages("contacts", since=since, until=until, page_size=1000))


def test_a_backfill_a_launch_and_a_reexecution_through_graphql(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    url = stack.graphql
    _ask(url)

    # a backfill of 30 partitions of keap_contacts, as the UI's "Materialize selected" sends it
    keys = PARTITIONS.get_partition_keys()[-40:-10]
    assert len(keys) == 30
    launched = _graphql(url, BACKFILL, params={"assetSelection": [{"path": ["keap_contacts"]}], "partitionNames": keys})
    backfill = launched["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
    backfill_id = backfill["backfillId"]

    # meanwhile: audit_partitions_job with config, from the Launchpad
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": "audit_partitions_job"}
    months_ahead = 5
    audit = _graphql(url, LAUNCH, params={
        "selector": selector,
        "runConfigData": {"ops": {"audit_partitions_op": {"config": {"months_ahead": months_ahead, "dry_run": False}}}},
    })["launchRun"]
    assert audit["__typename"] == "LaunchRunSuccess", audit

    # and a run launched as `make demo` launches it (in this process, in the same instance)
    from keap_pipeline.demo import _materialize

    monkeypatch.setenv("DAGSTER_HOME", stack.environment["DAGSTER_HOME"])
    monkeypatch.setenv("KEAP_PIPELINE_DAGSTER_STORAGE_URL", stack.environment["KEAP_PIPELINE_DAGSTER_STORAGE_URL"])
    [demo] = _materialize(stack.keap_base_url, stack.database_url, lineage_order(("contacts",)), strategy="keap_wins").values()
    assert demo.metadata is not None and demo.metadata["inserted"] > 0
    from dagster import DagsterInstance, RunsFilter

    with DagsterInstance.get() as instance:
        [demo_run] = instance.get_runs(filters=RunsFilter(tags={"keap_pipeline/demo": "incremental"}))
    # which the UI re-executes (a run of materialize() is ephemeral: launchRunReexecution fails on it)
    again = _graphql(url, REEXECUTE, params={"parentRunId": demo_run.run_id, "strategy": "ALL_STEPS"})
    again = again["launchRunReexecution"]
    assert again["__typename"] == "LaunchRunSuccess", again

    # the audit run: succeeded with its config
    _finished(url, audit["run"]["runId"])
    [output] = [e for e in _events(url, audit["run"]["runId"]) if e["__typename"] == "ExecutionStepOutputEvent"]
    figures = _entries(output)
    today = datetime.now(UTC)
    month = today.month - 1 + months_ahead
    assert figures["newest_month"] == f"{today.year + month // 12}-{month % 12 + 1:02d}"  # as far ahead as asked
    assert figures["partitions_created"] >= 0 and figures["rows_left_in_default"] == 0

    # the re-execution: a run of keap_contacts_job, child of the demo's, succeeded; both on the job's page
    reexecuted = _finished(url, again["run"]["runId"])
    assert (reexecuted["jobName"], reexecuted["parentRunId"]) == ("keap_contacts_job", demo_run.run_id)
    job_runs = _graphql(url, JOB_RUNS, selector={**selector, "pipelineName": "keap_contacts_job"})["pipelineOrError"]["runs"]
    assert {demo_run.run_id, reexecuted["runId"]} <= {r["runId"] for r in job_runs}

    # the backfill: ONE run over the range, which succeeded and materialized exactly those partitions
    def backfill_done() -> str | None:
        status = _graphql(url, BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]["status"]
        return status if status not in {"REQUESTED", "CANCELING"} else None

    assert _wait(f"backfill {backfill_id}", backfill_done) in {"COMPLETED", "COMPLETED_SUCCESS"}
    [run] = _graphql(url, BACKFILL_RUNS, id=backfill_id)["runsOrError"]["results"]
    assert run["status"] == "SUCCESS"
    tags = _tags(run)
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (keys[0], keys[-1])
    materialized = [e for e in _events(url, run["runId"]) if e["__typename"] == "MaterializationEvent"]
    assert [e["partition"] for e in materialized] == keys
    window = PARTITIONS.time_window_for_partition_key(keys[0]).start, PARTITIONS.time_window_for_partition_key(keys[-1]).end
    meta = _entries(materialized[0])
    assert meta["range_records_seen"] == _in_window(stack.keap_base_url, *window) > 0
    assert meta["range"].startswith(f"{keys[0]} .. {keys[-1]} (30 monthly partitions)")
    assert meta["partition_window"] != _entries(materialized[1])["partition_window"]
