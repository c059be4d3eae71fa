"""Kill -9 the sync command at several points, run it again: the table equals the sandbox exactly, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from keap_pipeline.sandbox import Faults, RateLimits, SandboxConfig, running_sandbox
from keap_pipeline.sandbox.state import SandboxState
from tests.pipeline.conftest import API_KEY, expected_rows, scalar, table_rows

CONTACTS = 3000
PAGE = 100


def _records(config: SandboxConfig) -> dict:
    """The subprocess sandbox's contacts, rebuilt here from the same (deterministic) config."""
    state = SandboxState(config)
    return {str(i): state.contact(i) for i in range(1, state.max_contact_id() + 1)}


def _start_sync(base_url: str, url: str, extra: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    env = {**os.environ, "KEAP_API_KEY": API_KEY}
    env.pop("KEAP_PIPELINE_DATABASE_URL", None)
    return subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "keap_pipeline.cli", "sync", "contacts", "--base-url", base_url,
         "--database-url", url, "--no-pacing", "--page-size", str(PAGE),
         # one page per transaction, so that kill points fall between many small commits
         "--max-pages-per-batch", "1", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _loaded(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select coalesce(sum(records_total), 0) from keap_pipeline.sync_cursors where entity = 'contacts'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize(
    "extra",
    [
        (),
        # a budget of 60 changes: every page of 100 new contacts commits in 4 parts of at most 30,
        # so kill points fall between the parts of a batch too (pipeline.batch)
        ("--max-changes", "60"),
    ],
    ids=["batches", "batches-in-parts"],
)
def test_killed_syncs_resume_to_exactly_the_sandbox(migrated_database: str, extra: tuple[str, ...]) -> None:
    # latency keeps the run long enough to be killed part-way (pages, not the whole load, in flight)
    config = SandboxConfig(port=0, contacts=CONTACTS, limits=RateLimits.off(), api_key=API_KEY,
                           faults=Faults(latency_ms=40))
    expected = expected_rows(_records(config))
    progress_at_kill = []
    with running_sandbox(config, subprocess_mode=True) as handle:
        for threshold in (300, 1500, 2700):
            proc = _start_sync(handle.base_url, migrated_database, extra)
            deadline = time.monotonic() + 120
            while _loaded(migrated_database) < threshold:
                assert proc.poll() is None, f"finished before the kill point: {proc.communicate()}"
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL
            rows = scalar(migrated_database, "select count(*) from public.sync_contacts")
            progress_at_kill.append(rows)
            assert rows < CONTACTS
        final = _start_sync(handle.base_url, migrated_database, extra)
        out, err = final.communicate(timeout=300)
        assert final.returncode == 0, err[-2000:]

    assert progress_at_kill == sorted(progress_at_kill) and progress_at_kill[0] >= 300
    assert table_rows(migrated_database) == expected
    # every contact inserted (and audited) exactly once; the boundary re-reads wrote nothing
    audit = scalar(
        migrated_database,
        "select jsonb_build_object('rows', count(*), 'entities', count(distinct entity_id),"
        " 'non_insert', count(*) filter (where operation <> 'INSERT' or sync_source <> 'keap'))"
        " from public.sync_audit_log where entity_type = 'sync_contacts'",
    )
    assert audit == {"rows": CONTACTS, "entities": CONTACTS, "non_insert": 0}
    assert scalar(migrated_database, "select max(version) from public.sync_contacts") == 1
    assert scalar(migrated_database, "select count(*) from public.sync_queue") == 0
    assert scalar(migrated_database, "select count(*) from keap_pipeline.stage_contacts") == 0
    assert scalar(migrated_database, "select count(*) from keap_pipeline.dead_letters") == 0
