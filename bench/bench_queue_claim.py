"""The outbound claim (issue 16, part 1: sync_queue's next batch): sql/36's schema against 30's, alternated.

    .venv/bin/python -m bench.bench_queue_claim --database-url postgresql://postgres@127.0.0.1:5470/postgres --reuse
    .venv/bin/python -m bench.bench_queue_claim            # builds 1M contacts on a PostgreSQL 15 it starts

The database is the one bench/bench_indexes.py builds (bench/index_data.py; --reuse measures one built
earlier). The claim is what `keap-pipeline push` sends: `keap_pipeline.claim_outbound(key, ['sync_contacts'],
100)` as the ingestion's role, with the pusher's lock held on a connection of its own (the data's in-flight
items are held by key 16, so this pusher recovers none and claims pending ones); beside it the single
UPDATE docs/operations.md gives a worker of its own (service_role). Each execution is a transaction of its
own, rolled back, as the pusher's claim is one transaction: so a row version the claim wrote is dead once
it ends and the next claim's page visit can prune it, which a savepoint inside a longer transaction (the
way bench_indexes times everything) never allows. That is why this bench exists: in bench_indexes only the
first claim after a schema change could be HOT.

A variant is a schema state of sync_queue, made for real (committed), then the table rewritten (so its
pages are laid out with the variant's fillfactor, as pages written after a migration are) and analyzed:
by default in the order the claim reads the items, so a claim takes every item of its pages at once, as
in a queue filled in time order (`--layout "as built"`: VACUUM FULL, the data's own order, where a
claim's items are spread about one a page). The variants alternate round by round (ABBA), and the state
found at the start is put back at the end (rewritten in the layout of the run). Per variant: p50/p95 of each statement, the share of its row updates that were HOT
(pg_stat_get_xact_tuples_hot_updated), and the app's writes that fill the queue (1,000 contacts edited by
an admin: the triggers coalesce them into pending items) per batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from bench.common import git_revision, machine, server_version, write_section
from bench.index_data import add_database_arguments, database
from bench.index_timing import Timings, act
from bench.index_writes import WORKLOADS, app_edit_ids, time_batch

log = logging.getLogger("bench_queue_claim")

SECTION = "The outbound claim (issue 16, part 1)"
PUSHER_LOCK_CLASS = 1802531688  # 0x6B707368, 'kpsh': keap_pipeline/db/outbound.py
KEY = 16  # the key bench/indexes_data.sql gives its in-flight items (the statements below name it)

STATEMENTS = {
    # what keap-pipeline push sends (keap_pipeline/db/outbound.py, claim)
    "claim_outbound": (
        "ingest",
        "select id, entity_type, entity_id, operation, status, attempts, max_attempts, recovered"
        " from keap_pipeline.claim_outbound(16, array['sync_contacts'], 100)",  # 16: KEY
    ),
    # a worker of its own (docs/operations.md, section 6): also sets status, so never HOT
    "claim_update": (
        "service_role",
        "update public.sync_queue as q set status = 'processing', started_at = now(), attempts = q.attempts + 1,"
        " claim_key = 16 where q.id in (select p.id from public.sync_queue as p where p.status = 'pending'"
        " and p.scheduled_at <= now() order by p.priority, p.scheduled_at limit 100 for update skip locked)"
        " returning q.id, q.operation, q.entity_type, q.entity_id, q.payload",
    ),
}


@dataclass(frozen=True)
class Variant:
    """A schema state of sync_queue: the in-flight index's columns and the table's fillfactor (None: default)."""

    name: str
    in_flight: str
    fillfactor: int | None


VARIANTS = {
    v.name: v
    for v in (
        Variant("30", "entity_type, started_at", None),  # before 36
        Variant("36", "entity_type", 50),  # sql/36-queue-claim-hot.sql
        Variant("36, fillfactor 100", "entity_type", None),  # the index alone
        Variant("36, fillfactor 80", "entity_type", 80),
        Variant("36, fillfactor 70", "entity_type", 70),
    )
}


@dataclass
class Result:
    """One variant's figures over all its rounds."""

    variant: str
    ms: dict[str, list[float]] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    hot: dict[str, int] = field(default_factory=dict)
    app_edits_ms: list[float] = field(default_factory=list)
    rewrite_s: list[float] = field(default_factory=list)
    table_mb: float = 0.0


def current_state(conn: psycopg.Connection) -> Variant:
    """The state the database is in (to put back at the end)."""
    row = conn.execute(
        "select pg_catalog.pg_get_indexdef('public.sync_queue_in_flight_idx'::regclass),"
        " (select x from pg_catalog.unnest(c.reloptions) as x where x like 'fillfactor=%%')"
        " from pg_catalog.pg_class as c where c.oid = 'public.sync_queue'::regclass"
    ).fetchone()
    assert row is not None
    columns = row[0].split(" (", 1)[1].split(")", 1)[0]
    return Variant("found", columns, int(row[1].split("=")[1]) if row[1] else None)


def switch(conn: psycopg.Connection, variant: Variant, layout: str = "as built") -> float:
    """Make the variant's schema (committed), rewrite and analyze the table; seconds of the rewrite.

    layout "as built": the rows in the order the data has them (the claim's 100 items by priority and
    schedule are spread over the table, about one a page). "claim order": the table rewritten in the
    order the claim reads the items (CLUSTER by status, priority, schedule), so a claim takes every item
    of its pages at once, as a queue filled by app edits in time order has them: the fillfactor's room
    then holds only some of the new versions.
    """
    with conn.transaction():
        conn.execute("drop index public.sync_queue_in_flight_idx")
        conn.execute(
            f"create index sync_queue_in_flight_idx on public.sync_queue ({variant.in_flight})"  # our own text
            " where status = 'processing'"
        )
        if variant.fillfactor is None:
            conn.execute("alter table public.sync_queue reset (fillfactor)")
        else:
            conn.execute(f"alter table public.sync_queue set (fillfactor = {int(variant.fillfactor)})")
    t = time.perf_counter()
    if layout == "claim order":
        conn.execute("create index bench_claim_order on public.sync_queue (status, priority, scheduled_at)")
        conn.execute("cluster public.sync_queue using bench_claim_order")
        conn.execute("drop index public.bench_claim_order")
        conn.execute("analyze public.sync_queue")
    else:
        conn.execute("vacuum (full, analyze) public.sync_queue")
    return time.perf_counter() - t


def one(conn: psycopg.Connection, identity: str, statement: str) -> tuple[float, int, int]:
    """One execution in a transaction of its own, rolled back: (ms, rows updated, of them HOT)."""
    # the xact counters also hold what earlier transactions have not yet reported: take the difference
    counters = (
        "select pg_catalog.pg_stat_get_xact_tuples_updated('public.sync_queue'::regclass),"
        " pg_catalog.pg_stat_get_xact_tuples_hot_updated('public.sync_queue'::regclass)"
    )
    with conn.transaction(force_rollback=True):
        before = conn.execute(counters).fetchone()
        act(conn, identity, None)
        t = time.perf_counter()
        conn.execute(statement).fetchall()  # type: ignore[arg-type]  # our own statement text
        ms = (time.perf_counter() - t) * 1000
        conn.execute("reset role")
        after = conn.execute(counters).fetchone()
    assert before is not None and after is not None
    return ms, int(after[0] - before[0]), int(after[1] - before[1])


def claim_at(conn: psycopg.Connection, revision: str) -> str:
    """claim_outbound as sql/functions/81-outbound.sql had it at `revision`, created beside today's (committed).

    Returns the new function's name (timed like today's claim, in the same rounds: a change of the
    function is measured side by side in one run, on the same table states; dropped at the end).
    """
    text = subprocess.run(  # noqa: S603 - git, our own arguments
        ["git", "show", f"{revision}:sql/functions/81-outbound.sql"],  # noqa: S607
        check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    start = text.index("create or replace function keap_pipeline.claim_outbound(")
    body = text[start:text.index("comment on function keap_pipeline.claim_outbound", start)]
    name = "claim_outbound_" + "".join(c for c in revision if c.isalnum())[:12]
    conn.execute(body.replace("keap_pipeline.claim_outbound(", f"keap_pipeline.{name}(", 1))  # type: ignore[arg-type]  # git's text of our own file
    conn.execute(f"grant execute on function keap_pipeline.{name}(integer, text[], integer) to keap_pipeline_ingest")  # type: ignore[arg-type]
    return name


def measure(url: str, args: argparse.Namespace) -> tuple[list[Result], dict[str, object]]:
    """Alternating rounds of the variants; the state found is put back afterwards."""
    results = {name: Result(name) for name in args.variant}
    statements = dict(STATEMENTS)
    app_edits = next(w for w in WORKLOADS if w.name == "app_edits")
    with psycopg.connect(url, autocommit=True) as lock, psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        # nothing but this bench writes: autovacuum of the rolled-back claims would only add noise
        conn.execute("alter table public.sync_queue set (autovacuum_enabled = off)")
        lock.execute("select pg_catalog.pg_advisory_lock(%s, %s)", (PUSHER_LOCK_CLASS, KEY))
        found = current_state(conn)
        ids = app_edit_ids(conn, app_edits.rows)
        earlier = {revision: claim_at(conn, revision) for revision in args.before}
        for revision, name in earlier.items():
            statements[f"claim_outbound at {revision}"] = (
                "ingest", f"select * from keap_pipeline.{name}(16, array['sync_contacts'], 100)",  # noqa: S608 - 16: KEY
            )
        meta: dict[str, object] = {
            "machine": machine(), "server": server_version(url), "revision": git_revision(),
            "load_before": os.getloadavg(), "found": asdict(found),
        }
        try:
            for r in range(args.rounds):
                order = list(args.variant) if r % 2 == 0 else list(reversed(args.variant))
                for name in order:
                    res = results[name]
                    res.rewrite_s.append(switch(conn, VARIANTS[name], args.layout))
                    size = conn.execute("select pg_catalog.pg_relation_size('public.sync_queue') / 1048576.0").fetchone()
                    res.table_mb = float(size[0]) if size else 0.0
                    # the statements take turns execution by execution: each leaves dead row versions
                    # (rolled back) that the next one meets, so a block of one after the other would not
                    # see the same table
                    labels = list(statements) if r % 2 == 0 else list(reversed(statements))
                    for i in range(args.warmup + args.runs):
                        for label in labels:
                            identity, statement = statements[label]
                            ms, upd, hot = one(conn, identity, statement)
                            if i < args.warmup:
                                continue
                            res.ms.setdefault(label, []).append(ms)
                            res.updated[label] = res.updated.get(label, 0) + upd
                            res.hot[label] = res.hot.get(label, 0) + hot
                    for _ in range(args.edits):
                        res.app_edits_ms.append(sum(time_batch(conn, app_edits, ids)))
                    log.info("round %d %s: %s", r, name, {k: f"p50 {Timings(v).p50:.2f} p95 {Timings(v).p95:.2f}"
                                                          for k, v in res.ms.items()})
        finally:
            for name in earlier.values():
                conn.execute(f"drop function if exists keap_pipeline.{name}(integer, text[], integer)")  # type: ignore[arg-type]
            switch(conn, found)
            conn.execute("alter table public.sync_queue reset (autovacuum_enabled)")
        meta["load_after"] = os.getloadavg()
    return list(results.values()), meta


def render(results: list[Result], meta: dict[str, object], args: argparse.Namespace) -> str:
    """The docs/benchmarks.md section."""
    lb, la = meta["load_before"], meta["load_after"]
    lines = [
        f"Measured {meta['machine']}; {meta['server']}, initdb defaults; commit {meta['revision']}. Load average "
        f"(1/5/15 min) before {lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f}, after {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}"  # type: ignore[index]
        " (2 shared cores: the variants alternate round by round).",
        "",
        "    " + " ".join(["python -m bench.bench_queue_claim", *args.argv]),
        "",
        f"Layout: {args.layout}. {args.rounds} rounds; per round and variant, after the rewrite, {args.warmup} unmeasured and {args.runs} measured "
        "executions of each statement, the statements taking turns execution by execution, each a transaction of its own (rolled back), then "
        f"{args.edits} batches of 1,000 app edits. HOT: the share of the statement's row updates that wrote no index entry.",
        "",
        "| variant | statement | p50 ms | p95 ms | runs | HOT | app edits, ms per 1,000 (median) | table MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for res in results:
        v = VARIANTS[res.variant]
        label = (f"{res.variant}: in-flight index ({v.in_flight}), fillfactor {v.fillfactor or 'default (100)'}")
        for i, (name, ms) in enumerate(res.ms.items()):
            t = Timings(ms)
            hot = res.hot[name] / res.updated[name] if res.updated.get(name) else float("nan")
            edits = Timings(res.app_edits_ms).p50 if res.app_edits_ms else float("nan")
            lines.append(
                f"| {label if i == 0 else ''} | `{name}` | {t.p50:.2f} | {t.p95:.2f} | {len(ms)} | {hot:.0%} |"
                f" {f'{edits:.0f}' if i == 0 else ''} | {f'{res.table_mb:.0f}' if i == 0 else ''} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_database_arguments(parser, port=5452)
    parser.add_argument("--variant", nargs="+", default=["30", "36"], choices=list(VARIANTS))
    parser.add_argument("--layout", choices=("as built", "claim order"), default="claim order",
                        help="the table's row order for every variant (see switch)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=40, help="measured executions per statement, round and variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--edits", type=int, default=2, help="batches of 1,000 app edits per round and variant")
    parser.add_argument("--before", nargs="*", default=[], metavar="REV",
                        help="also time claim_outbound as it was at these git revisions (created beside today's)")
    parser.add_argument("--write", action="store_true", help="write the docs/benchmarks.md section")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with database(args) as (url, _report):
        results, meta = measure(url, args)
    text = render(results, meta, args)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, default=str, indent=1))
    if args.write:
        write_section(SECTION, text)
    print(text)


if __name__ == "__main__":
    main()
