"""Kill -9 `keap-pipeline reconcile` part-way, for every entity: nothing deleted; the next pass completes and deletes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from keap_pipeline.entities import ENTITIES, lineage_order
from keap_pipeline.pipeline.sync import sync_entity
from keap_pipeline.sandbox import Faults
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.pipeline.conftest import API_KEY, client_for

pytestmark = pytest.mark.db

SIZE = 60
PAGE = 4  # 15 pages a pass, each slowed by the sandbox's latency: the kill lands part-way


def _reconcile(base_url: str, url: str, name: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KEAP_API_KEY": API_KEY}
    env.pop("KEAP_PIPELINE_DATABASE_URL", None)
    return subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "keap_pipeline.cli", "reconcile", name, "--base-url", base_url, "--database-url", url,
         "--no-pacing", "--page-size", str(PAGE), "--max-share", "0.1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _one(url: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


@pytest.mark.parametrize("name", list(ENTITIES))
def test_a_killed_pass_deletes_nothing_and_the_next_completes(
    name: str, sandbox: Callable[..., SandboxHandle], migrated_database: str
) -> None:
    handle = sandbox(contacts=SIZE, tags=SIZE, products=SIZE, orders=SIZE, subscriptions=SIZE,
                     faults=Faults(latency_ms=60))
    url = migrated_database
    with client_for(handle) as client:
        for entity in lineage_order():
            sync_entity(client, url, entity, page_size=100)
    assert handle.state is not None and handle.state.delete_record(name, 5)
    schema, _, table = ENTITIES[name].target_table.partition(".")
    deleted = sql.SQL("select count(*) from {} where deleted_at is not null").format(sql.Identifier(schema, table))

    state = handle.state
    assert state is not None
    served = state.requests
    proc = _reconcile(handle.base_url, url, name)
    deadline = time.monotonic() + 120
    while state.requests < served + 3:  # a few pages of the pass served
        assert proc.poll() is None, f"finished before the kill point: {proc.communicate()}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _one(url, "select status from keap_pipeline.reconcile_passes") == "running"
    assert _one(url, deleted.as_string()) == 0, "a killed pass deletes nothing"

    again = _reconcile(handle.base_url, url, name)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert "1 soft-deleted" in out
    assert _one(url, deleted.as_string()) == 1
    statuses = _one(url, "select string_agg(status, ',' order by started_at) from keap_pipeline.reconcile_passes")
    assert statuses == "interrupted,completed"
    reason = _one(url, "select reason from keap_pipeline.reconcile_passes where status = 'interrupted'")
    assert "process ended before the pass completed" in str(reason)
