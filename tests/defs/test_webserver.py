"""A real dagster-webserver on the repo's workspace: its GraphQL API shows the lineage, the checks, the pools and the schedules."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keap_pipeline.local_stack import repo_root

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
    "keap_outbound": {"sync_schema"},  # the outbound push, beside the lineage
}
STARTUP_SECONDS = 180  # the code server imports the definitions in its own process; the machine may be busy


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def webserver(tmp_path: Path) -> Iterator[str]:
    """dagster-webserver on 127.0.0.1 with workspace.yaml and an empty instance; its GraphQL URL."""
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    log = (tmp_path / "webserver.log").open("w")
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "dagster_webserver", "-w", str(repo_root() / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=repo_root(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        # the webserver and the code server it started: the session this test created
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


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


def test_the_ui_shows_the_lineage_checks_pools_and_schedules(webserver: str) -> None:
    data = _ask(webserver)
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert {name: {"/".join(d["path"]) for d in n["dependencyKeys"]} for name, n in nodes.items()} == LINEAGE
    assert {n["groupName"] for n in nodes.values()} == {"keap"}
    assert {name for name, n in nodes.items() if n["isPartitioned"]} == {"keap_tags", "keap_contacts", "keap_orders"}
    for name, node in nodes.items():
        assert node["pools"] == ([] if name == "sync_schema" else ["keap_api"]), name
        checks = {c["name"] for c in node["assetChecksOrError"]["checks"]}
        if name == "keap_outbound":
            assert checks == {"keap_outbound_queue"}
        elif name != "sync_schema":
            assert {f"{name}_dead_letters", f"{name}_cursor_fresh"} <= checks
            assert (f"{name}_unresolved_links" in checks) == (name in {"keap_orders", "keap_subscriptions"})

    [repo] = data["repositoriesOrError"]["nodes"]
    schedules = {s["name"]: (s["pipelineName"], s["cronSchedule"], s["scheduleState"]["status"]) for s in repo["schedules"]}
    assert schedules["keap_sync_all_schedule"] == ("keap_sync_all_job", "*/15 * * * *", "STOPPED")
    assert schedules["keap_contacts_incremental_schedule"] == ("keap_contacts_job", "*/15 * * * *", "STOPPED")
    for entity in ("tags", "products", "orders", "subscriptions"):
        assert schedules[f"keap_{entity}_incremental_schedule"] == (f"keap_{entity}_job", "*/15 * * * *", "STOPPED")
    assert schedules["audit_partitions_schedule"] == ("audit_partitions_job", "0 0 1 * *", "RUNNING")
    assert schedules["vacuum_analyze_schedule"] == ("vacuum_analyze_job", "0 2 * * *", "RUNNING")
