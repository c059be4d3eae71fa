"""`make demo`'s Dagster runs (keap_pipeline.demo._materialize): runs of the user's jobs, one line per entity, through the sandbox."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, RunsFilter
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    REPOSITORY_LABEL_TAG,
)

from keap_pipeline.defs.partitions import PARTITIONS
from keap_pipeline.demo import _materialize
from keap_pipeline.entities import lineage_order
from keap_pipeline.local_stack import SANDBOX_API_KEY, SANDBOX_STATE_FILE, repo_root
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox
from keap_pipeline.sandbox.runner import SandboxHandle


@pytest.fixture
def demo_sandbox() -> Iterator[SandboxHandle]:
    """A sandbox with the demo's made-up key (the demo's runs use it)."""
    config = SandboxConfig(port=0, contacts=250, limits=RateLimits.off(), api_key=SANDBOX_API_KEY)
    with running_sandbox(config) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))


def test_contacts_line_then_an_incremental_run_that_reads_nothing_new(demo_sandbox: SandboxHandle, migrated_database: str) -> None:
    handle = demo_sandbox
    [first] = _materialize(handle.base_url, migrated_database, lineage_order(("contacts",)), strategy="keap_wins").values()
    assert re.fullmatch(
        r"contacts +250 records, 250 inserted, 0 updated, 0 unchanged, 0 dead letters, \d+\.\d s", first.line()
    ), first.line()
    [again] = _materialize(handle.base_url, migrated_database, lineage_order(("contacts",)), strategy="keap_wins").values()
    assert again.metadata is not None and again.metadata["inserted"] == 0 and again.metadata["updated"] == 0

    # runs of the job a user launches, recorded with the code location's origin: the UI lists them
    # under keap_contacts_job and can re-execute them (tests/defs/test_webserver.py does)
    instance = DagsterInstance.get()
    second, first_run = instance.get_runs()
    for run in (first_run, second):
        assert run.job_name == "keap_contacts_job" and run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == "keap_pipeline.definitions"
        assert run.tags["keap_pipeline/mode"] == "incremental"
    # the query of the job's page in the UI
    label = {REPOSITORY_LABEL_TAG: "__repository__@keap_pipeline.definitions"}
    assert len(instance.get_runs(filters=RunsFilter(job_name="keap_contacts_job", tags=label))) == 2
    # the first (a full load) covered every partition, the second the current month only
    keys = PARTITIONS.get_partition_keys()
    assert (first_run.tags[ASSET_PARTITION_RANGE_START_TAG], first_run.tags[ASSET_PARTITION_RANGE_END_TAG]) == (keys[0], keys[-1])
    assert (second.tags[ASSET_PARTITION_RANGE_START_TAG], second.tags[ASSET_PARTITION_RANGE_END_TAG]) == (keys[-1], keys[-1])
    assert instance.get_materialized_partitions(AssetKey("keap_contacts")) == set(keys)


def test_every_entity_gets_its_line(demo_sandbox: SandboxHandle, migrated_database: str) -> None:
    handle = demo_sandbox
    runs = _materialize(handle.base_url, migrated_database, lineage_order(), strategy="merge", schema=True)
    # sync_schema as the UI's Materialize button runs it, then keap_sync_all_job
    assert [(r.job_name, r.asset_selection) for r in reversed(DagsterInstance.get().get_runs())] == [
        ("__ASSET_JOB", frozenset({AssetKey("sync_schema")})), ("keap_sync_all_job", None),
    ]
    assert list(runs) == ["tags", "products", "contacts", "orders", "subscriptions"]
    for run in runs.values():
        assert run.metadata is not None, run.line()
        assert run.metadata["inserted"] > 0 and run.metadata["dead_lettered"] == 0
        assert "quota_left" not in run.metadata  # the sandbox's limits are off: no quota to report, no made-up one
    again = _materialize(handle.base_url, migrated_database, lineage_order(), strategy="merge")
    # nothing changed: the incremental runs read (nearly) nothing, the full passes re-read and write nothing
    assert all(r.metadata is not None and r.metadata["inserted"] == r.metadata["updated"] == 0 for r in again.values())


NOISE = (
    "setup plugin alembic",  # alembic's INFO lines while Dagster creates its storage
    "Context impl PostgresqlImpl",
    "RuntimeWarning",  # runpy, starting the sandbox subprocess
    "BetaWarning",  # backfill_policy
    "will not be used",  # dagster.yaml in the current folder
    "Traceback",
)


def _demo(home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "KEAP_PIPELINE_DATABASE_URL")}
    env.update(KEAP_PIPELINE_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"))
    proc = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "keap_pipeline.demo", "--contacts", "300"], cwd=repo_root(), env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


@pytest.mark.slow
def test_make_demo_twice_from_a_fresh_home_is_quiet_and_keeps_the_sandbox(scratch_home: Path) -> None:
    home = scratch_home
    first, second = _demo(home), _demo(home)
    for output in (first, second):
        for noise in NOISE:
            assert noise not in output, f"{noise!r} in:\n{output}"
        # progress says what is committed: no run repeats a line ("run id - step - message"; rates aside)
        progress = [re.sub(r", [\d,]+/s,", ",", line.split(" - ", 4)[-1]) for line in output.splitlines()
                    if " pages committed (" in line]
        assert progress and len(progress) == len(set(progress)), "\n".join(progress)
        assert "accepting API key 'sandbox-demo-key'" in output
    assert "(first run: everything up to now)" in first
    assert "first run" not in second and "(incremental from the cursors an earlier `make demo` stored)" in second
    # the demo's Keap-side edits were saved for `make ui` (and the next demo): 20 edited, 1 created each time
    state = json.loads((home / SANDBOX_STATE_FILE).read_text())
    assert state["dataset"]["contacts"] == 300
    assert len(state["state"]["overlays"]["contacts"]) == 22 and "changed record(s) restored" in second
