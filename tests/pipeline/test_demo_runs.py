"""`make demo`'s Dagster runs (keap_pipeline.demo._materialize): one line per entity, through the sandbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from keap_pipeline.demo import _materialize
from keap_pipeline.entities import lineage_order
from keap_pipeline.local_stack import SANDBOX_API_KEY
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


def test_every_entity_gets_its_line(demo_sandbox: SandboxHandle, migrated_database: str) -> None:
    handle = demo_sandbox
    runs = _materialize(handle.base_url, migrated_database, lineage_order(), strategy="merge")
    assert list(runs) == ["tags", "products", "contacts", "orders", "subscriptions"]
    for run in runs.values():
        assert run.metadata is not None, run.line()
        assert run.metadata["inserted"] > 0 and run.metadata["dead_lettered"] == 0
    again = _materialize(handle.base_url, migrated_database, lineage_order(), strategy="merge")
    # nothing changed: the incremental runs read (nearly) nothing, the full passes re-read and write nothing
    assert all(r.metadata is not None and r.metadata["inserted"] == r.metadata["updated"] == 0 for r in again.values())
