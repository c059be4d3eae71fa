"""Indexes, query by query (issue 16, part 1): each index of the schema, the queries it serves, with and without it.

    .venv/bin/python -m bench.bench_indexes                 # starts its own PostgreSQL 15 on 127.0.0.1:5451
    .venv/bin/python -m bench.bench_indexes --database-url postgresql://postgres@127.0.0.1:5432/postgres

1. Builds a database by the real migrations and fills it (bench/indexes_data.sql: 1M contacts, 1M orders,
   their sync_status rows, audit history, queue, conflicts; the skew is described there).
2. Runs every query of bench/dashboard_queries.py as its identity (through RLS for app users) on the
   schema as migrated: p50/p95, and which indexes the planner uses for it (EXPLAIN of several samples).
3. For each index of the schema (read from the catalog): its queries with the index and without it
   (dropped inside a transaction that is rolled back; real timings), in alternating rounds; the write
   cost: batches through keap_pipeline.upsert_*_from_stage (and app edits through the triggers) with and
   without it, in alternating pairs.
4. For each index migration 31 removed, and each form the schema does not have (bench/index_candidates.py):
   the same comparison with the index created inside the rolled-back transaction.
5. Writes the section "Indexes, query by query" of docs/benchmarks.md and docs/img/bench_indexes.png
   (matplotlib: `uv sync --group bench`).

An index is kept when it makes one of its queries' p95 at least 1.5x faster ("speeds its query by more
than 50%"); the tables show both ratios, so the stricter reading (time halved) can be checked too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench.common import git_revision, machine, server_version, write_section
from bench.dashboard_queries import QUERIES, Query
from bench.index_candidates import CANDIDATES, Candidate
from bench.index_data import Build, Index, add_database_arguments, database, schema_indexes
from bench.index_timing import Timings, drop_statement, plan_indexes, time_statements
from bench.index_writes import Workload, app_edit_ids, time_batch, workloads_for

log = logging.getLogger("bench_indexes")

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "img" / "bench_indexes.png"
SECTION = "Indexes, query by query (issue 16, part 1)"
KEEP_RATIO = 1.5
PUSHER_LOCK_CLASS = 0x6B70_7368  # keap_pipeline/db/outbound.py ('kpsh')

# statements whose index use EXPLAIN cannot show (inside functions, foreign-key actions)
DECLARED: dict[str, tuple[str, ...]] = {
    **{
        name: ("contact_lookup_pkey", "sync_contacts_pkey")
        for name in ("contacts_with_tag_fn", "contacts_with_tag_fn_own", "contacts_by_custom_field_fn",
                     "contacts_by_custom_field_fn_own")
    },
    # public.recent_contacts (sql/functions/80): an owner's page on 38's index, an admin's on idx_active_contacts
    "recent_active_contacts_fn_own": ("idx_sync_contacts_own_recent",),
    "recent_active_contacts_fn": ("idx_active_contacts",),
    "resolve_links": (
        "idx_sync_orders_unlinked_contact", "idx_sync_subscriptions_unlinked_contact",
        "idx_sync_subscriptions_unlinked_product", "idx_sync_tags_unlinked_category",
    ),
    # the pusher's claim (sql/functions/81-outbound.sql): in-flight items of dead pushers, then pending ones
    # by priority, each record's other live claims, the update by id
    "queue_claim": ("sync_queue_in_flight_idx", "idx_sync_queue_priority", "sync_queue_pkey", "sync_queue_unsent_entity_idx"),
    "delete_user": tuple(
        f"idx_sync_{t}_{c}_by" for t in ("contacts", "orders", "tags", "subscriptions", "products")
        for c in ("created", "updated", "deleted")
    ) + ("idx_sync_conflicts_resolved_by",),
}


@dataclass
class Comparison:
    """One statement with the index (or form) and without it."""

    query: str
    with_ms: list[float]
    without_ms: list[float]

    @property
    def ratio(self) -> float:
        """p95 without / p95 with (> 1: the index makes it faster)."""
        w = Timings(self.with_ms).p95
        return Timings(self.without_ms).p95 / w if w > 0 else float("nan")


@dataclass
class WriteCost:
    """Batches of one workload with the index and without it, in pairs: (staging ms, statement ms)."""

    workload: str
    rows: int
    with_ms: list[tuple[float, float]] = field(default_factory=list)
    without_ms: list[tuple[float, float]] = field(default_factory=list)

    @property
    def us_per_row(self) -> float:
        """Median over the pairs of the difference, in microseconds per row (> 0: the index costs)."""
        diffs = [sum(a) - sum(b) for a, b in zip(self.with_ms, self.without_ms, strict=True)]
        return statistics.median(diffs) * 1000 / self.rows if diffs else float("nan")

    @property
    def share(self) -> float:
        """That difference as a share of the batch without the index."""
        base = statistics.median(sum(b) for b in self.without_ms) if self.without_ms else float("nan")
        return self.us_per_row * self.rows / 1000 / base if base else float("nan")


@dataclass
class IndexResult:
    """Everything measured about one index."""

    name: str
    table: str
    definition: str
    rule: str  # "primary key" / "unique" / "" (none)
    size_mb: float
    queries: list[str]
    reads: list[Comparison] = field(default_factory=list)
    writes: list[WriteCost] = field(default_factory=list)
    kind: str = "schema"  # schema | retired | candidate

    def best(self) -> Comparison | None:
        """The query it speeds most."""
        return max(self.reads, key=lambda c: c.ratio) if self.reads else None

    def verdict(self) -> str:
        """Kept or not, and why, by the measurement."""
        best = self.best()
        if self.kind == "retired":
            return "removed by 31" + (f" (best: {best.ratio:.1f}x, `{best.query}`)" if best else "")
        if self.kind == "candidate":
            return "not in the schema" + (f" (best: {best.ratio:.1f}x, `{best.query}`)" if best else "")
        if self.rule:
            return f"kept: {self.rule}"
        if best is None:
            return "no measured query uses it"
        return "kept" if best.ratio >= KEEP_RATIO else "below 1.5x"


# ------------------------------------------------------------------------------------------------
# sampling and plans
# ------------------------------------------------------------------------------------------------


def draw_samples(conn: psycopg.Connection, queries: Sequence[Query], n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """n parameter rows per query, drawn once (the same for every condition)."""
    out: dict[str, list[dict[str, Any]]] = {}
    rng = random.Random(seed)
    with conn.cursor(row_factory=dict_row) as cur:
        for q in queries:
            rows = cur.execute(q.params).fetchall()  # type: ignore[arg-type]  # our own statement text
            if not rows:
                raise RuntimeError(f"{q.name}: its parameter query found nothing in the data")
            rows = [{k: (str(v) if k == "owner" else v) for k, v in r.items()} for r in rows]
            out[q.name] = rng.sample(rows, n) if len(rows) >= n else [rows[i % len(rows)] for i in range(n)]
    return out


def runs_here(conn: psycopg.Connection, query: Query) -> bool:
    """Whether the schema has what the query names (a database migrated before 31 has no lookup functions)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(query.params)  # type: ignore[arg-type]  # our own statement text
            names = [n for n in ("contacts_with_tag", "contacts_by_custom_field") if f"public.{n}(" in query.sql]
            for name in names:
                if conn.execute("select to_regproc(%s)", (f"public.{name}",)).fetchone() == (None,):
                    log.info("query %s skipped: the schema has no public.%s", query.name, name)
                    return False
    except psycopg.errors.UndefinedObject:
        return False
    return True


def index_parents(conn: psycopg.Connection) -> dict[str, str]:
    """Partitions' index names -> their parent's (the index of the partitioned table)."""
    rows = conn.execute(
        "select c.relname, p.relname from pg_inherits as i join pg_class as c on c.oid = i.inhrelid"
        " join pg_class as p on p.oid = i.inhparent where c.relkind = 'i'"
    ).fetchall()
    return dict(rows)


def index_sizes(conn: psycopg.Connection) -> dict[str, float]:
    """MB per index (a partitioned index: the sum of its partitions')."""
    rows = conn.execute(
        "select coalesce(p.relname, c.relname), sum(pg_relation_size(c.oid)) / 1048576.0"
        " from pg_class as c left join pg_inherits as i on i.inhrelid = c.oid"
        " left join pg_class as p on p.oid = i.inhparent"
        " where c.relkind in ('i', 'I') group by 1"
    ).fetchall()
    return {name: float(mb) for name, mb in rows}


# ------------------------------------------------------------------------------------------------
# the comparisons
# ------------------------------------------------------------------------------------------------


def compare_reads(
    conn: psycopg.Connection,
    queries: Sequence[Query],
    samples: dict[str, list[dict[str, Any]]],
    present: Sequence[sql.Composable | str],
    absent: Sequence[sql.Composable | str],
    rounds: int,
    budget: float,
) -> list[Comparison]:
    """Alternating rounds (ABBA...) of the queries under two setups: `present` (with) and `absent` (without)."""
    acc = {q.name: Comparison(q.name, [], []) for q in queries}
    for r in range(rounds):
        order = [("with", present), ("without", absent)]
        if r % 2:
            order.reverse()
        for label, setup in order:
            # both conditions as savepoints of a transaction, the one with its setup and the one without
            got = time_statements(conn, queries, samples, setup=setup, budget_seconds=budget, own_transactions=False)
            for name, t in got.items():
                (acc[name].with_ms if label == "with" else acc[name].without_ms).extend(t.ms)
    return list(acc.values())


def compare_writes(
    conn: psycopg.Connection,
    workloads: Sequence[Workload],
    ids: list[Any],
    present: Sequence[sql.Composable],
    absent: Sequence[sql.Composable],
    pairs: int,
) -> list[WriteCost]:
    """Alternating pairs of batches with and without (AB BA ...), each rolled back."""
    out = []
    for w in workloads:
        cost = WriteCost(w.name, w.rows)
        time_batch(conn, w, ids, present)  # warm-up, not counted
        for p in range(pairs):
            first, second = (present, absent) if p % 2 == 0 else (absent, present)
            a = time_batch(conn, w, ids, first)
            b = time_batch(conn, w, ids, second)
            with_ms, without_ms = (a, b) if p % 2 == 0 else (b, a)
            cost.with_ms.append(with_ms)
            cost.without_ms.append(without_ms)
        out.append(cost)
    return out


# indexes a statement cannot run without (then kept whatever they measure; --rules times them anyway)
REQUIRED = {
    # claim_outbound's candidate filter takes a per-record advisory lock (sql/functions/81-outbound.sql):
    # read in this index's order it stops after its batch; without the index every pending item is
    # filtered, so locked, before the sort: at 16k pending items "out of shared memory" (measured)
    "idx_sync_queue_priority": "the pusher's claim needs it (without it: a record lock per pending item)",
}


def rule_of(index: Index, unique: bool) -> str:
    """What rule an index carries besides speed (then it stays whatever it measures)."""
    if index.name in REQUIRED:
        return REQUIRED[index.name]
    if index.constraint == "p":
        return "primary key"
    if index.constraint == "u" or unique:
        return "unique (a rule, or the arbiter of an ON CONFLICT)"
    return ""


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """All figures of one run (also written as JSON beside the plot)."""

    machine: str
    server: str
    settings: dict[str, str]
    revision: str
    build: dict[str, Any]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes: list[IndexResult] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False  # every index measured (a run stopped early documents what it has)


def server_settings(conn: psycopg.Connection) -> dict[str, str]:
    """Settings not at their built-in default (what the figures ran with)."""
    rows = conn.execute(
        "select name, setting || coalesce(unit, '') from pg_settings"
        " where source not in ('default', 'override', 'client', 'session') order by name"
    ).fetchall()
    keep = {r[0]: r[1] for r in rows}
    for name in ("shared_buffers", "work_mem", "effective_cache_size", "random_page_cost", "jit", "max_parallel_workers_per_gather"):
        row = conn.execute("select setting || coalesce(unit, '') from pg_settings where name = %s", (name,)).fetchone()
        keep.setdefault(name, row[0] if row else "?")
    return keep


def measure(url: str, args: argparse.Namespace, build_report: Build | None, progress: Callable[[Run], None] = lambda run: None) -> Run:
    """Steps 2-4 on a filled database."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as pusher, psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        # the pusher's lock of key 16 (the key of the data's in-flight items), held on a connection of its own
        # as `keap-pipeline push` holds it: queue_claim claims as that live pusher (keap_pipeline.claim_outbound)
        pusher.execute("select pg_catalog.pg_advisory_lock(%s, %s)", (PUSHER_LOCK_CLASS, 16))
        # nothing but this bench writes: autovacuum of the rolled-back batches would only add noise
        for table in ("sync_contacts", "sync_orders", "sync_subscriptions", "sync_status", "sync_queue"):
            conn.execute(sql.SQL("alter table {} set (autovacuum_enabled = off)").format(sql.Identifier("public", table)))
        run = Run(
            machine=machine(), server=server_version(url), settings=server_settings(conn), revision=git_revision(),
            build=asdict(build_report) if build_report else {"reused": True}, load_before=os.getloadavg(),
        )
        queries = [q for q in QUERIES if not args.only_queries or q.name in args.only_queries]
        queries = [q for q in queries if runs_here(conn, q)]
        samples = draw_samples(conn, queries, args.samples, args.seed)
        parents = index_parents(conn)
        sizes = index_sizes(conn)
        uniques = {r[0] for r in conn.execute("select c.relname from pg_index as x join pg_class as c on c.oid = x.indexrelid where x.indisunique")}

        # 2. the queries on the schema as it is
        uses: dict[str, set[str]] = {}
        for q in queries:
            used = plan_indexes(conn, q, samples[q.name][:: max(1, args.samples // 6)], parents)
            used |= set(DECLARED.get(q.name, ()))
            uses[q.name] = used
        timed = time_statements(conn, queries, samples, budget_seconds=args.budget)
        for q in queries:
            t = timed[q.name]
            run.queries[q.name] = {
                "title": q.title, "identity": q.identity, "dashboard": q.dashboard, "p50": t.p50, "p95": t.p95,
                "n": len(t.ms), "indexes": sorted(uses[q.name]), "ms": t.ms,
            }
            log.info("query %-32s p50 %8.2f  p95 %8.2f ms  %s", q.name, t.p50, t.p95, ",".join(sorted(uses[q.name])))

        ids = app_edit_ids(conn, 1000) if args.pairs else []
        progress(run)

        # 3. what the schema does not have: the indexes 31 removed or redefined (bench/index_candidates.py)
        for cand in CANDIDATES:
            if args.only and cand.name not in args.only:
                continue
            found = measure_candidate(conn, cand, queries, samples, ids, args)
            if found is not None:
                run.indexes.append(found)
                run.load_after = os.getloadavg()
                progress(run)

        # 4. every index of the schema, the big tables first (figures are written as they come)
        first = ("public.sync_contacts", "public.sync_orders", "public.sync_queue", "public.sync_conflicts",
                 "public.sync_status", "public.sync_audit_log")
        ordered = sorted(schema_indexes(conn), key=lambda i: first.index(i.qualified_table)
                         if i.qualified_table in first else len(first))
        for index in ordered:
            if args.only and index.name not in args.only:
                continue
            served = [q for q in queries if index.name in uses[q.name]]
            workloads = workloads_for(index.qualified_table) if args.pairs else []
            rule = rule_of(index, index.name in uniques)
            if index.schema == "keap_pipeline" and not workloads:
                continue  # the pipeline's own bookkeeping tables: see the section's notes
            result = IndexResult(
                index.name, index.qualified_table, index.definition, rule, sizes.get(index.name, 0.0),
                [q.name for q in served],
            )
            drop = [drop_statement(index)]
            if served and (not rule or args.rules):
                result.reads = compare_reads(conn, served, samples, (), drop, args.rounds, args.budget)
            if workloads and not rule:
                result.writes = compare_writes(conn, workloads, ids, (), drop, args.pairs)
            run.indexes.append(result)
            run.load_after = os.getloadavg()
            progress(run)
            log.info("index %-45s %s %s", index.name, [f"{c.query}:{c.ratio:.1f}x" for c in result.reads],
                     [f"{w.workload}:{w.us_per_row:+.1f}us" for w in result.writes])
        run.complete = True
    run.seconds = time.perf_counter() - started
    return run


def measure_candidate(
    conn: psycopg.Connection, cand: Candidate, queries: Sequence[Query], samples: dict[str, list[dict[str, Any]]],
    ids: list[Any], args: argparse.Namespace,
) -> IndexResult | None:
    """A form the schema does not have, set up inside the rolled-back transaction, against the schema as it is."""
    row = conn.execute(
        "select exists (select 1 from pg_catalog.pg_indexes where schemaname = 'public' and indexname = %s"
        " and strpos(indexdef, %s) > 0)", cand.present,
    ).fetchone()
    if row and row[0]:
        return None  # the schema has it (a database migrated before 31)
    served = [q for q in queries if q.name in cand.queries]
    result = IndexResult(cand.name, cand.table, "; ".join(cand.setup), "", 0.0, [q.name for q in served], kind=cand.kind)
    setup = [sql.SQL(s) for s in cand.setup]  # type: ignore[arg-type]  # our own DDL text
    if served:
        result.reads = compare_reads(conn, served, samples, setup, (), args.rounds, args.budget)
    with conn.transaction(force_rollback=True):
        for statement in setup:
            conn.execute(statement)
        got = conn.execute(
            "select coalesce(sum(pg_relation_size(c.oid)), 0) / 1048576.0 from pg_class as c where c.relname = any(%s)",
            (list(cand.sized),),
        ).fetchone()
        result.size_mb = float(got[0]) if got else 0.0
    if args.pairs and cand.table:
        result.writes = compare_writes(conn, workloads_for(cand.table), ids, setup, (), args.pairs)
    log.info("candidate %-40s %s %s", cand.name, [f"{c.query}:{c.ratio:.1f}x" for c in result.reads],
             [f"{w.workload}:{w.us_per_row:+.1f}us" for w in result.writes])
    return result


# ------------------------------------------------------------------------------------------------
# docs
# ------------------------------------------------------------------------------------------------


def _ms(x: float) -> str:
    if x != x:  # nan
        return "-"
    return f"{x:,.2f}" if x < 10 else f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def render(run: Run, args: argparse.Namespace) -> str:
    """The docs/benchmarks.md section."""
    b = run.build
    lines = [
        f"Measured {run.machine}; {run.server}; commit {run.revision}. Load average (1/5/15 min) before "
        f"{run.load_before[0]:.1f}/{run.load_before[1]:.1f}/{run.load_before[2]:.1f}, after "
        f"{run.load_after[0]:.1f}/{run.load_after[1]:.1f}/{run.load_after[2]:.1f} (the machine's 2 cores are shared "
        "with other work: figures are noisy; every comparison alternates its two conditions).",
        "",
        "    " + " ".join(["python -m bench.bench_indexes", *args.argv]),
        "",
        "Server settings not at their default: "
        + ", ".join(f"`{k}={v}`" for k, v in run.settings.items()) + ".",
        "",
    ]
    if "rows" in b:
        lines += [
            "The data (bench/indexes_data.sql, generate_series in SQL on a database built by the real migrations, "
            "secondary indexes rebuilt from their catalog definitions after the fill; the skew is described in the "
            f"file's header), built in {b['seconds'].get('total', 0):.0f} s:",
            "",
            "| table | rows | MB (with indexes) |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| `{t}` | {n:,} | {b['megabytes'].get(t, 0):,.0f} |" for t, n in b["rows"].items()]
        lines.append("")
    lines += [
        "Each query runs as its identity (`admin`, `owner`: signed-in app users through RLS, as PostgREST sends "
        "them; `service_role`; `ingest`: the Keap ingestion's role; `owner_role`: the tables' owner), planned "
        f"with its values (no prepared statement), {args.samples} parameter values drawn from the data; times are "
        "the statement and its rows at the client, over loopback.",
        "",
        "### The queries on the schema as migrated",
        "",
        "| query | as | p50 ms | p95 ms | runs | indexes the plans use |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name, q in run.queries.items():
        mark = "" if q["dashboard"] else " (other)"
        lines.append(
            f"| {q['title']}{mark} (`{name}`) | {q['identity']} | {_ms(q['p50'])} | {_ms(q['p95'])} | {q['n']} |"
            f" {', '.join(f'`{i}`' for i in q['indexes']) or '-'} |"
        )
    lines += [
        "",
        "### Each index: its queries with and without it, and what it costs the writes",
        "",
        "With / without: p95 (p50) in ms, the index dropped inside a transaction that is rolled back, "
        f"{args.rounds} alternating rounds. Write cost: batches through the real upsert (or the app's edits "
        f"through the triggers), {args.pairs} alternating pairs, median difference per row (negative: the batch "
        "is faster with it, which reads through it).",
        "",
        "| index | table | MB | query | with p95 (p50) | without p95 (p50) | speedup p95 | write cost per row | verdict |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in run.indexes:
        writes = "; ".join(f"{w.workload} {w.us_per_row:+.1f} us ({w.share:+.0%})" for w in r.writes) or "-"
        label = {"schema": "", "retired": " (removed by 31)", "candidate": " (candidate)"}[r.kind]
        reads = r.reads or [None]
        for i, c in enumerate(reads):
            first = i == 0
            if c is None:
                cells = "- | - | - | -"
            else:
                w, wo = Timings(c.with_ms), Timings(c.without_ms)
                cells = f"`{c.query}` | {_ms(w.p95)} ({_ms(w.p50)}) | {_ms(wo.p95)} ({_ms(wo.p50)}) | {c.ratio:.1f}x"
            lines.append(
                f"| {'`' + r.name + '`' + label if first else ''} | {r.table if first else ''} |"
                f" {f'{r.size_mb:,.1f}' if first else ''} | {cells} | {writes if first else ''} |"
                f" {r.verdict() if first else ''} |"
            )
    if not run.complete:
        lines += ["", f"**This run stopped after {len(run.indexes)} of the indexes** (the ones above); "
                  "the rest were not measured in it."]
    lines += ["", f"![per index: p95 with and without it](img/{PLOT.name})", ""]
    return "\n".join(lines)


def plot(run: Run, path: Path) -> None:
    """Two panels: every query's p50/p95 on the schema; per index, its best query's p95 with and without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(run.queries)
    rows = [r for r in run.indexes if r.reads]
    fig, (a, b) = plt.subplots(1, 2, figsize=(15, max(6, 0.28 * max(len(names), len(rows)))))
    y = range(len(names))
    a.barh([i + 0.2 for i in y], [run.queries[n]["p95"] for n in names], height=0.4, label="p95")
    a.barh([i - 0.2 for i in y], [run.queries[n]["p50"] for n in names], height=0.4, label="p50")
    a.set_yticks(list(y), names, fontsize=7)
    if names:
        a.set_xscale("log")
    a.axvline(5, color="red", linestyle="--", linewidth=1, label="5 ms")
    a.set_xlabel("ms (log)")
    a.set_title("queries on the schema")
    a.invert_yaxis()
    a.legend(fontsize=7)
    y2 = range(len(rows))
    best = [r.best() for r in rows]
    a_with = [Timings(c.with_ms).p95 if c else 0 for c in best]
    a_without = [Timings(c.without_ms).p95 if c else 0 for c in best]
    for i in y2:
        b.plot([a_with[i], a_without[i]], [i, i], color="grey", linewidth=1)
    b.scatter(a_with, list(y2), label="with (p95)", zorder=3, s=14)
    b.scatter(a_without, list(y2), label="without (p95)", zorder=3, s=14, marker="x")
    b.set_yticks(list(y2), [f"{r.name} ({c.query})" if c else r.name for r, c in zip(rows, best, strict=True)], fontsize=6)
    if rows:
        b.set_xscale("log")
    b.set_xlabel("ms (log)")
    b.set_title("each index, its best query: with / without")
    b.invert_yaxis()
    b.legend(fontsize=7)
    fig.suptitle(f"{run.server}, {run.machine.split(';')[0]}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def save_json(run: Run, path: Path) -> None:
    """The raw figures, for a later look."""
    def default(o: Any) -> Any:
        return str(o)
    path.write_text(json.dumps(asdict(run), default=default, indent=1))


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_database_arguments(parser, port=5451)
    parser.add_argument("--samples", type=int, default=40, help="parameter values per query and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating with/without rounds per index")
    parser.add_argument("--pairs", type=int, default=3, help="alternating write pairs per index (0: no write costs)")
    parser.add_argument("--budget", type=float, default=4.0, help="seconds a query may take per round and condition")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--rules", action="store_true",
                        help="also time the queries of primary keys and unique indexes without them (kept anyway)")
    parser.add_argument("--only", nargs="*", default=(), help="only these indexes / candidates")
    parser.add_argument("--only-queries", nargs="*", default=(), help="only these queries")
    parser.add_argument("--no-docs", action="store_true", help="print, do not write docs/benchmarks.md or the plot")
    parser.add_argument("--write", action="store_true",
                        help="write docs/benchmarks.md and the plot (the default unless --no-docs; `python -m bench` passes it)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with database(args) as (url, report):
        run = measure(url, args, report, progress=lambda r: publish(r, args))
    publish(run, args)
    if args.no_docs:
        print(render(run, args))


def publish(run: Run, args: argparse.Namespace) -> None:
    """Write what the run has so far: the JSON, the docs section and the plot (unless --no-docs)."""
    if args.json:
        save_json(run, args.json)
    if args.no_docs or not run.queries:
        return
    write_section(SECTION, render(run, args))
    try:
        plot(run, PLOT)
    except ImportError:  # matplotlib is in the bench dependency group
        log.warning("no plot: matplotlib is not installed (.tools/bin/uv sync --locked --group bench)")


if __name__ == "__main__":
    main()
