"""Timing statements of bench/bench_indexes.py as their identity, with an index present or dropped in a rolled-back transaction."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from bench.dashboard_queries import Query
from bench.index_data import Index

ADMIN = "00000000-0000-4000-8000-000000000001"


@dataclass
class Timings:
    """Milliseconds of one statement under one condition."""

    ms: list[float]

    def pct(self, q: float) -> float:
        """The q-th percentile (0-100), linear between closest ranks."""
        data = sorted(self.ms)
        if not data:
            return float("nan")
        k = (len(data) - 1) * q / 100
        lo, hi = int(k), min(int(k) + 1, len(data) - 1)
        return data[lo] + (data[hi] - data[lo]) * (k - lo)

    @property
    def p50(self) -> float:
        """Median."""
        return statistics.median(self.ms) if self.ms else float("nan")

    @property
    def p95(self) -> float:
        """95th percentile."""
        return self.pct(95)


def claims(identity: str, owner: str | None) -> tuple[str, str]:
    """The role and JWT claims a statement of `identity` runs with (PostgREST's way: SET LOCAL role + claims)."""
    if identity == "admin":
        body = {"sub": ADMIN, "role": "authenticated", "app_metadata": {"provider": "email", "role": "admin"},
                "user_metadata": {}}
        return "authenticated", json.dumps(body)
    if identity == "owner":
        if owner is None:
            raise ValueError("an owner query's parameters must carry its user as 'owner'")
        body = {"sub": owner, "role": "authenticated", "app_metadata": {"provider": "email"}, "user_metadata": {}}
        return "authenticated", json.dumps(body)
    if identity == "service_role":
        return "service_role", json.dumps({"role": "service_role"})
    if identity == "ingest":
        return "keap_pipeline_ingest", ""
    if identity == "owner_role":
        return "none", ""
    raise ValueError(f"unknown identity {identity!r}")


def act(conn: psycopg.Connection, identity: str, owner: str | None) -> None:
    """Switch the current (sub)transaction to the identity; undone when it rolls back."""
    role, body = claims(identity, owner)
    conn.execute(
        "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)", (role, body)
    )


def statement_params(params: dict[str, Any]) -> dict[str, Any]:
    """The statement's own parameters (the owner is the identity's, not the statement's)."""
    return {k: v for k, v in params.items() if k != "owner"}


def drop_statement(index: Index) -> sql.Composed:
    """DROP of an index, or of the constraint that owns it (with what depends on it: foreign keys)."""
    if index.constraint:
        return sql.SQL("alter table {} drop constraint {} cascade").format(
            sql.Identifier(index.schema, index.table), sql.Identifier(index.name)
        )
    return sql.SQL("drop index {}").format(sql.Identifier(index.schema, index.name))


def plan_indexes(conn: psycopg.Connection, query: Query, samples: Sequence[dict[str, Any]], parents: dict[str, str]) -> set[str]:
    """The indexes (parents for partitions' indexes) the planner uses for the statement with these samples."""
    used: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        name = node.get("Index Name")
        if name:
            used.add(parents.get(name, name))
        for child in node.get("Plans", ()):
            walk(child)

    for params in samples:
        with conn.transaction(force_rollback=True):
            act(conn, query.identity, params.get("owner"))
            row = conn.execute(
                "explain (format json) " + query.sql,  # type: ignore[operator]  # our own statement text
                statement_params(params),
            ).fetchone()
        assert row is not None
        walk(row[0][0]["Plan"])
    return used


def time_statements(
    conn: psycopg.Connection,
    queries: Iterable[Query],
    samples: dict[str, list[dict[str, Any]]],
    *,
    setup: Sequence[sql.Composable | str] = (),
    budget_seconds: float = 8.0,
    own_transactions: bool | None = None,
) -> dict[str, Timings]:
    """Run each query once per sample inside one rolled-back transaction, after `setup` (e.g. a DROP INDEX).

    Every execution is rolled back (a claim or a delete changes nothing for the next), runs as the
    query's identity, and is planned with its values (no server-side prepare). Only the statement and
    fetching its rows are timed. A query stops early once it has used `budget_seconds` (at least 5 runs):
    a sequential scan of a million rows does not need a hundred repetitions.

    Without a setup every execution is a transaction of its own, as the app's statements are (unless
    own_transactions is False: the comparisons time both conditions alike); with one, a savepoint inside
    the transaction that holds the setup. There a writing statement's row versions
    stay unprunable until the whole run ends (the transaction is still open), so from its second
    execution on an update cannot stay on its page (no HOT update): the queue's claim, timed in the
    comparisons of its indexes, is timed in that state (bench/bench_queue_claim.py times it as the
    pusher runs it, with its variants).

    Returns:
        Timings per query name.
    """
    out: dict[str, Timings] = {}
    if own_transactions is None:
        own_transactions = not setup
    if own_transactions and setup:
        raise ValueError("a setup needs the transaction that holds it: own_transactions=False")
    with nullcontext() if own_transactions else conn.transaction(force_rollback=True):
        for statement in setup:
            conn.execute(statement)  # type: ignore[arg-type]
        for query in queries:
            ms: list[float] = []
            spent = 0.0
            for params in samples[query.name]:
                with conn.transaction(force_rollback=True):
                    act(conn, query.identity, params.get("owner"))
                    with conn.cursor() as cur:
                        t = time.perf_counter()
                        cur.execute(query.sql, statement_params(params))  # type: ignore[arg-type]
                        if cur.description is not None:
                            cur.fetchall()
                        elapsed = time.perf_counter() - t
                ms.append(elapsed * 1000)
                spent += elapsed
                if spent > budget_seconds and len(ms) >= 5:
                    break
            out[query.name] = Timings(ms)
    return out
