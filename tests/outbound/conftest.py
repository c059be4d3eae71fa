"""Fixtures of the outbound tests: a migrated PostgreSQL with users and synced contacts, the sandbox over a real socket."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from keap_pipeline.entities import CONTACTS, TAGS
from keap_pipeline.keap import ApiKeyAuth, KeapClient, RetryPolicy
from keap_pipeline.outbound.push import PushReport, PushSettings, push
from keap_pipeline.pipeline.sync import sync_entity
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.db.identities import ADMIN, ALICE, BOB, MALLORY, claims_for, create_users

API_KEY = "outbound-test-key"
__all__ = ["ADMIN", "ALICE", "BOB", "MALLORY", "API_KEY", "app", "client_for", "execute", "one", "push_now", "rows", "sync_now"]


def client_for(handle: SandboxHandle, **kwargs: Any) -> KeapClient:
    """A real, unpaced Keap client of the sandbox that retries little (the queue retries)."""
    kwargs.setdefault("retry", RetryPolicy(max_retries=1, base_delay=0.01, max_wait=1.0))
    kwargs.setdefault("timeout", 10.0)
    return KeapClient(handle.base_url, ApiKeyAuth(API_KEY), pacing=False, **kwargs)


def push_now(handle: SandboxHandle, url: str, **settings: Any) -> PushReport:
    """One push run with a fresh client (settings as PushSettings; entities=, retry_failed= as push())."""
    entities = settings.pop("entities", None)
    retry_failed = settings.pop("retry_failed", False)
    settings.setdefault("retry_base_seconds", 0.0)
    with client_for(handle) as client:
        return push(client, url, entities=entities, retry_failed=retry_failed, settings=PushSettings(**settings))


def sync_now(handle: SandboxHandle, url: str, entity: str = "contacts", strategy: str = "keap_wins") -> Any:
    """An incremental sync of one entity, as `keap-pipeline sync` runs it."""
    with client_for(handle) as client:
        return sync_entity(client, url, CONTACTS if entity == "contacts" else TAGS, strategy=strategy, loaders=1)


@contextmanager
def app(url: str, user: uuid.UUID | None = ADMIN, role: str = "authenticated") -> Iterator[psycopg.Connection]:
    """One Data API request of `user` (PostgREST's transaction: the role and the JWT claims), committed."""
    with psycopg.connect(url, row_factory=dict_row) as conn:  # type: ignore[arg-type]
        conn.execute(psycopg.sql.SQL("set local role {}").format(psycopg.sql.Identifier(role)))
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims_for(user, role)),))
        yield conn  # type: ignore[misc]


def rows(url: str, query: str, params: Any = ()) -> list[dict[str, Any]]:
    """Rows of a query as the connecting user."""
    with psycopg.connect(url, row_factory=dict_row) as conn:  # type: ignore[arg-type]
        return conn.execute(query, params or None).fetchall()  # type: ignore[return-value]


def execute(url: str, statement: str, params: Any = (), *, as_ingestion: bool = False) -> None:
    """Run one statement as the connecting user (the operator), or as the ingestion's role; committed."""
    with psycopg.connect(url) as conn:
        if as_ingestion:
            conn.execute("set local role keap_pipeline_ingest")
        conn.execute(statement, params or None)


def one(url: str, query: str, params: Any = ()) -> Any:
    """The single value of a query as the connecting user."""
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params or None).fetchone()
    return None if row is None else row[0]


@pytest.fixture
def sandbox() -> Iterator[Callable[..., SandboxHandle]]:
    """Start in-process sandboxes (limits off unless given, port 0) that stop after the test.

    They run strict: every request and answer is checked against the contract derived from Keap's
    spec, and the test fails if the pusher (or the sync) sent anything the spec does not allow.
    """
    started: list[SandboxHandle] = []
    with ExitStack() as stack:

        def start(contacts: int = 50, **kwargs: Any) -> SandboxHandle:
            kwargs.setdefault("limits", RateLimits.off())
            kwargs.setdefault("strict", True)
            config = SandboxConfig(port=0, contacts=contacts, api_key=API_KEY, **kwargs)
            handle = stack.enter_context(running_sandbox(config))
            started.append(handle)
            return handle

        yield start
        for handle in started:
            assert handle.state is not None
            assert handle.state.violations == [], handle.state.violations[:5]


@pytest.fixture
def synced(migrated_database: str, sandbox: Callable[..., SandboxHandle]) -> tuple[SandboxHandle, str]:
    """A sandbox of 50 contacts, all synced into a migrated database that has the test users."""
    handle = sandbox(contacts=50)
    with psycopg.connect(migrated_database) as conn:
        create_users(conn)
    sync_now(handle, migrated_database)
    return handle, migrated_database
