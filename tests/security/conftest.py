"""The attacker's and the honest actors' sessions, as PostgREST and the pipeline open them, on a migrated database.

Every actor is its own connection and every step its own committed transaction, as over the Data
API: a PostgREST request is one transaction that starts with `set local role <role>` and the JWT's
claims in `request.jwt.claims`; the pipeline's load transactions start with
`set local role keap_pipeline_ingest` (keap_pipeline.db.roles.as_ingestion, called by load_batch).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from keap_pipeline.db.connect import connect
from keap_pipeline.db.load import UpsertCounts
from keap_pipeline.entities import CONTACTS
from keap_pipeline.pipeline.batch import load_batch
from tests.db.identities import ADMIN, ALICE, BOB, MALLORY, claims_for, create_users

__all__ = ["ADMIN", "ALICE", "BOB", "MALLORY", "api", "ingest", "keap_contact", "owner", "rows", "scalar"]


@contextmanager
def api(url: str, user: uuid.UUID | None, role: str = "authenticated") -> Iterator[psycopg.Connection]:
    """One Data API request of `user`: a transaction as PostgREST runs it, committed when the block ends."""
    with psycopg.connect(url) as conn:
        conn.execute(psycopg.sql.SQL("set local role {}").format(psycopg.sql.Identifier(role)))
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims_for(user, role)),))
        yield conn


@contextmanager
def owner(url: str) -> Iterator[psycopg.Connection]:
    """The connecting user (postgres: the SQL editor's and the migration's user), no JWT; committed at the end."""
    with psycopg.connect(url, row_factory=dict_row) as conn:  # type: ignore[arg-type]
        yield conn  # type: ignore[misc]


def rows(url: str, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Rows of a query as the connecting user (sees everything)."""
    with owner(url) as conn:
        return conn.execute(query, params or None).fetchall()  # type: ignore[return-value]


def scalar(url: str, query: str, params: Sequence[Any] = ()) -> Any:
    """The single value of a query as the connecting user."""
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params or None).fetchone()
    return None if row is None else row[0]


def keap_contact(ident: int, updated: str = "2026-01-01T00:00:00.000Z", **fields: Any) -> dict[str, Any]:
    """A Keap REST v2 contact record as the API returns it (the fields the pipeline reads)."""
    record: dict[str, Any] = {
        "id": ident,
        "given_name": f"Keap{ident}",
        "family_name": "Customer",
        "email_addresses": [{"email": f"customer{ident}@keap.example", "field": "EMAIL1"}],
        "create_time": "2025-01-01T00:00:00.000Z",
        "update_time": updated,
    }
    record.update(fields)
    return record


def ingest(url: str, records: list[dict[str, Any]], strategy: str = "keap_wins") -> UpsertCounts:
    """Load Keap records exactly as a sync run does: one batch through load_batch (its own transaction)."""
    with connect(url) as conn:
        outcome = load_batch(
            conn, CONTACTS, records, scope="security-test", run_id="security-test",
            strategy=strategy, merge_rule="manual", fetched_at=datetime.now(UTC),
        )
    return outcome.counts


@pytest.fixture
def world(migrated_database: str) -> str:
    """A migrated database with the test users and Keap contacts 1-3 loaded by the ingestion."""
    with psycopg.connect(migrated_database) as conn:
        create_users(conn)
    ingest(migrated_database, [keap_contact(i) for i in (1, 2, 3)])
    return migrated_database
