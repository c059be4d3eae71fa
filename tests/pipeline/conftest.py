"""Fixtures of the pipeline's end-to-end tests: the sandbox over a real socket, a migrated PostgreSQL, and ways to compare them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from keap_pipeline.entities import CONTACTS
from keap_pipeline.keap import ApiKeyAuth, KeapClient
from keap_pipeline.normalize.contacts import normalize_contacts
from keap_pipeline.pipeline.report import SyncReport
from keap_pipeline.pipeline.sync import sync_entity
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox
from keap_pipeline.sandbox.runner import SandboxHandle

API_KEY = "pipeline-test-key"
# The columns the pipeline owns, compared between the table and the sandbox.
COLUMNS = (
    "keap_id", "email", "first_name", "last_name", "phone", "company",
    "tags", "custom_fields", "keap_created_at", "keap_updated_at",
)


@pytest.fixture
def sandbox() -> Iterator[Callable[..., SandboxHandle]]:
    """Start in-process sandboxes (rate limits off, port 0) that stop after the test."""
    with ExitStack() as stack:

        def start(contacts: int = 500, **kwargs: Any) -> SandboxHandle:
            kwargs.setdefault("limits", RateLimits.off())
            config = SandboxConfig(port=0, contacts=contacts, api_key=API_KEY, **kwargs)
            return stack.enter_context(running_sandbox(config))

        yield start


def client_for(handle: SandboxHandle) -> KeapClient:
    """A real, unpaced Keap client of the sandbox."""
    return KeapClient(handle.base_url, ApiKeyAuth(API_KEY), pacing=False, timeout=10.0)


def sync(handle: SandboxHandle, url: str, **kwargs: Any) -> SyncReport:
    """sync_entity for contacts with a fresh client."""
    with client_for(handle) as client:
        return sync_entity(client, url, CONTACTS, **kwargs)


def sandbox_records(handle: SandboxHandle) -> dict[str, dict[str, Any]]:
    """Every live contact of an in-process sandbox, raw, by id."""
    state = handle.state
    assert state is not None
    out = {}
    for ident in range(1, state.max_contact_id() + 1):
        record = state.contact(ident)
        if record is not None:
            out[record["id"]] = record
    return out


def expected_rows(records: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """The table rows the records must become, computed by the normalizer (all must be loadable)."""
    result = normalize_contacts(list(records.values()), fetched_at=datetime.now(UTC))
    assert not result.rejected, result.rejected[:3]
    out = {}
    for row in result.frame.iter_rows(named=True):
        values = tuple(
            json.loads(row[c]) if c in ("tags", "custom_fields") else row[c] for c in COLUMNS
        )
        out[row["keap_id"]] = values
    return out


def table_rows(url: str) -> dict[str, tuple[Any, ...]]:
    """The pipeline's columns of every sync_contacts row, by keap_id."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select keap_id, email, first_name, last_name, phone, company, tags, custom_fields,"
            " keap_created_at, keap_updated_at from public.sync_contacts"
        ).fetchall()
    out: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        assert row[0] not in out, f"keap_id {row[0]} twice"
        out[row[0]] = tuple(row)
    return out


def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row of a query."""
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def snapshot(url: str) -> dict[str, Any]:
    """Everything a no-op sync must leave alone: each row's xmin and version, audit, queue and status rows."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("select keap_id, xmin::text, version from public.sync_contacts").fetchall()
        counts = conn.execute(
            "select (select count(*) from public.sync_audit_log),"
            " (select count(*) from public.sync_queue),"
            " (select count(*) from public.sync_conflicts),"
            " (select count(*) from public.sync_status),"
            " (select count(*) from keap_pipeline.stage_contacts),"
            " (select md5(string_agg(id::text || xmin::text, ',' order by id)) from public.sync_status)"
        ).fetchone()
    return {"rows": {r[0]: (r[1], r[2]) for r in rows}, "counts": counts}
