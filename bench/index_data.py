"""The data of bench/bench_indexes.py: a database built by the real migrations, then filled by bench/indexes_data.sql.

The fill is SQL (generate_series) with the schema's secondary indexes dropped and rebuilt afterwards from
their own definitions (read from the catalog first, compared after): loading 1M rows into 60 indexes one
row at a time takes several times longer than building them, and the bench measures queries, not the load.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.common import fresh_database
from bench.pg15 import running_pg15

log = logging.getLogger(__name__)

DATA_SQL = Path(__file__).with_name("indexes_data.sql")

# every index of the schema's tables (partitions are covered by their parent's), with whether a constraint owns it
INDEXES = """
select i.relname, t.relname, n.nspname, pg_catalog.pg_get_indexdef(i.oid), c.contype
from pg_catalog.pg_index as x
join pg_catalog.pg_class as i on i.oid = x.indexrelid
join pg_catalog.pg_class as t on t.oid = x.indrelid
join pg_catalog.pg_namespace as n on n.oid = t.relnamespace
left join pg_catalog.pg_constraint as c on c.conindid = i.oid and c.contype in ('p', 'u', 'x')
where n.nspname in ('public', 'keap_pipeline')
  and not t.relispartition
order by n.nspname, t.relname, i.relname
"""

COUNTS = (
    "public.sync_contacts", "public.sync_orders", "public.sync_subscriptions", "public.sync_status",
    "public.sync_audit_log", "public.sync_queue", "public.sync_conflicts", "public.sync_tags",
    "public.sync_products", "auth.users",
)


@dataclass(frozen=True)
class Index:
    """One index of the schema as the catalog has it."""

    name: str
    table: str
    schema: str
    definition: str
    constraint: str | None  # 'p' primary key, 'u' unique constraint, None for a plain (or unique) index

    @property
    def qualified_table(self) -> str:
        """schema.table"""
        return f"{self.schema}.{self.table}"

    @property
    def create(self) -> str:
        """The statement that builds it again (on a partitioned table: on every partition too)."""
        return self.definition.replace(" ON ONLY ", " ON ", 1)


@dataclass
class Build:
    """What the fill did: seconds per step, rows per table, sizes."""

    contacts: int
    seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    megabytes: dict[str, float] = field(default_factory=dict)
    now: datetime | None = None


def schema_indexes(conn: psycopg.Connection) -> list[Index]:
    """Every index of the public and keap_pipeline tables (partitions' indexes excluded: their parent's stands for them)."""
    return [Index(*row) for row in conn.execute(INDEXES).fetchall()]


def _shape(index: Index) -> tuple[str, str, str, str | None]:
    # a rebuilt `x in ('a', 'b')` predicate deparses with its casts placed differently: compare without casts
    bare = re.sub(r"::(character varying|text)(\[\])?|[()\s]", "", index.definition)
    return index.name, index.qualified_table, bare, index.constraint


def _steps(text: str) -> list[tuple[str, str]]:
    parts = re.split(r"^-- step: (.+)$", text, flags=re.M)
    head, rest = parts[0], parts[1:]
    steps = [(rest[i].strip(), rest[i + 1]) for i in range(0, len(rest), 2)]
    if head.strip() and steps:
        steps[0] = (steps[0][0], head + steps[0][1])
    return steps


def build(server_url: str, name: str, contacts: int, seed: float = 0.16) -> tuple[str, Build]:
    """Create database `name` by the real migrations and fill it; return its URL and what was done.

    Args:
        server_url: a maintenance database of the server.
        name: the database to (re)create.
        contacts: contacts (and orders) to make.
        seed: random() seed of the one session that fills it (so two builds hold the same data).

    Returns:
        (the database's URL, the build report).

    Raises:
        RuntimeError: the rebuilt indexes differ from what the migrations made.
    """
    report = Build(contacts=contacts)
    started = time.perf_counter()
    url = fresh_database(server_url, name)
    report.seconds["migrate"] = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        before = schema_indexes(conn)
        secondary = [i for i in before if i.constraint is None and i.schema == "public"]
        conn.execute(
            "select setseed(%s), set_config('bench.contacts', %s, false), set_config('bench.now', now()::text, false),"
            " set_config('max_parallel_workers_per_gather', '0', false),"
            " set_config('session_replication_role', 'replica', false), set_config('maintenance_work_mem', '256MB', false)",
            (seed, str(contacts)),
        )
        row = conn.execute("select current_setting('bench.now')::timestamptz").fetchone()
        report.now = row[0] if row else None
        with conn.transaction():
            for index in secondary:
                conn.execute(sql.SQL("drop index {}").format(sql.Identifier(index.schema, index.name)))
            for step, text in _steps(DATA_SQL.read_text()):
                t = time.perf_counter()
                conn.execute(text)  # type: ignore[arg-type]  # a file of ours, no parameters
                report.seconds[step] = time.perf_counter() - t
                log.info("data: %s %.1f s", step, report.seconds[step])
            t = time.perf_counter()
            for index in secondary:
                conn.execute(index.create)  # type: ignore[arg-type]  # the catalog's own definition
            report.seconds["secondary indexes"] = time.perf_counter() - t
        after = schema_indexes(conn)
        if sorted(map(_shape, before)) != sorted(map(_shape, after)):
            raise RuntimeError("the rebuilt indexes differ from the migrations' (compare schema_indexes before/after)")
        conn.execute("set session_replication_role = origin")
        t = time.perf_counter()
        conn.execute("vacuum (analyze)")
        report.seconds["vacuum analyze"] = time.perf_counter() - t
        for table in COUNTS:
            schema, _, rel = table.partition(".")
            got = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, rel))).fetchone()
            size = conn.execute("select pg_total_relation_size(%s::regclass) / 1048576.0", (table,)).fetchone()
            report.rows[table] = int(got[0]) if got else 0
            report.megabytes[table] = float(size[0]) if size and size[0] is not None else 0.0
        audit = conn.execute(
            "select coalesce(sum(pg_total_relation_size(inhrelid)), 0) / 1048576.0 from pg_inherits"
            " where inhparent = 'public.sync_audit_log'::regclass"
        ).fetchone()
        report.megabytes["public.sync_audit_log"] = float(audit[0]) if audit else 0.0
    report.seconds["total"] = time.perf_counter() - started
    return url, report


def add_database_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    """The options of a bench on this data: the server (given or started here), the database, its size, reuse."""
    parser.add_argument("--database-url", help="a server's maintenance URL (default: start PostgreSQL 15 here)")
    parser.add_argument("--port", type=int, default=port, help="loopback port of the server started here")
    parser.add_argument("--contacts", type=int, default=1_000_000, help="contacts (and orders)")
    parser.add_argument("--database", default="bench_indexes", help="the database to build (dropped first)")
    parser.add_argument("--reuse", action="store_true", help="measure the database as it is (built earlier)")


@contextmanager
def database(args: argparse.Namespace) -> Iterator[tuple[str, Build | None]]:
    """The data's URL and its build report (None with --reuse), on the given server or a PostgreSQL 15 started here."""
    with ExitStack() as stack:
        server_url = args.database_url or stack.enter_context(running_pg15(args.port))
        if args.reuse:
            yield make_conninfo(server_url, dbname=args.database), None
            return
        url, report = build(server_url, args.database, args.contacts)
        log.info("built in %.0f s: %s", report.seconds["total"], report.rows)
        yield url, report
