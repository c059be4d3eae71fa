"""sync_health (sql/28): what reading the view costs at 1M rows, and what its counters cost the load path.

    .venv/bin/python -m bench.bench_sync_health --database-url postgresql://postgres@127.0.0.1:5441/postgres \
        --contacts 200000 --view-rows 1000000 --write

Two parts, each measured side by side in one run:

* **The view**: a database with --view-rows contacts (and a tenth as many orders) generated in SQL
  as the ingestion writes them (the counters are kept by the triggers). Timed in alternating
  rounds: 17's view (live counts, installed beside it as bench_health.sync_health_17), today's
  view on compacted counters, on counters with 10,000 and 100,000 uncompacted delta rows, and
  as an app user whose own 100 rows it counts; each the median of --rounds.
* **The load path**: the same batches of sandbox contacts (normalized before the clock starts)
  load into two databases built by this tree's migrations, one with the counting triggers
  disabled ("off"), one as migrated ("on"), alternating batch by batch (who goes first swaps every
  batch) so the machine's drift hits both alike; per side the sum of wall time and of the loading
  backend's CPU time (/proc/<pid>/stat: the server must run on this machine). Phases: first load,
  a re-sync where every record changed (1,000 updates a statement, the triggers' worst case),
  one with 1% changed, and single-row app writes (an admin's updates, one transaction each).
  Then a first load with 2 loaders (the pipeline's LoaderPool) into fresh databases, on / off
  alternating, --pairs pairs: whether the counters make two loaders wait for each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import psycopg

from bench.bench_db_stage import change_one_percent, frames, load_ours
from bench.common import (
    contact_records,
    fresh_database,
    git_revision,
    machine,
    server_version,
    write_section,
)
from keap_pipeline.db.cursors import INCREMENTAL, advance_cursor
from keap_pipeline.db.load import begin_load, load_frame
from keap_pipeline.entities import CONTACTS
from keap_pipeline.pipeline.retries import DEFAULT_LOCK_TIMEOUT_SECONDS

TICK = os.sysconf("SC_CLK_TCK")
COUNT_TRIGGERS = ("sync_contacts_count_insert", "sync_contacts_count_update", "sync_contacts_count_delete")
ADMIN = "00000000-0000-4000-8000-0000000ad111"


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a local PostgreSQL backend has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Side:
    """One database and its loading connection, with the time and backend CPU spent on it."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.conn = psycopg.connect(url, prepare_threshold=None)
        row = self.conn.execute("select pg_backend_pid()").fetchone()
        assert row is not None
        self.pid = int(row[0])
        self.conn.rollback()
        self.wall = 0.0
        self.cpu = 0.0

    def timed(self, work: Callable[[psycopg.Connection], None]) -> None:
        cpu, wall = backend_cpu(self.pid), time.perf_counter()
        work(self.conn)
        self.wall += time.perf_counter() - wall
        self.cpu += backend_cpu(self.pid) - cpu

    def reset(self) -> None:
        self.wall = self.cpu = 0.0


def load_batch_into(frame: pl.DataFrame, diff: bool) -> Callable[[psycopg.Connection], None]:
    def work(conn: psycopg.Connection) -> None:
        with conn.transaction():
            begin_load(conn, lock_timeout_seconds=DEFAULT_LOCK_TIMEOUT_SECONDS, relaxed_commit=True)
            load_frame(conn, CONTACTS, frame, diff=diff)
            advance_cursor(conn, CONTACTS.name, INCREMENTAL, frame["keap_updated_at"].max(), frame.height, "bench")  # type: ignore[arg-type]
    return work


def app_update(ident: str) -> Callable[[psycopg.Connection], None]:
    def work(conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute(
                "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
                (json.dumps({"sub": ADMIN, "role": "authenticated", "app_metadata": {"role": "admin"}}),),
            )
            conn.execute("update public.sync_contacts set first_name = first_name || '.' where keap_id = %s", (ident,))
    return work


def interleave(on: Side, off: Side, works: list[Callable[[psycopg.Connection], None]]) -> None:
    """Run each piece of work on both sides, alternating who goes first."""
    for i, work in enumerate(works):
        pair = (on, off) if i % 2 == 0 else (off, on)
        for side in pair:
            side.timed(work)


def with_ordinals(batches: list[pl.DataFrame]) -> list[pl.DataFrame]:
    return [f.with_columns(pl.int_range(pl.len(), dtype=pl.Int32).alias("ordinal")) for f in batches]


def change_all(records_batches: list[list[dict]]) -> None:
    """Every record changed in Keap: a new given name, its update time two days on."""
    for records in records_batches:
        for record in records:
            record["given_name"] = f"{record.get('given_name') or ''}*"
            updated = datetime.fromisoformat(record["update_time"].replace("Z", "+00:00")) + timedelta(days=2)
            record["update_time"] = updated.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def disable_counting(url: str) -> None:
    with psycopg.connect(url) as conn:
        for trigger in COUNT_TRIGGERS:
            conn.execute(f"alter table public.sync_contacts disable trigger {trigger}")


def create_admin(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("insert into auth.users (id, email, raw_app_meta_data) values (%s, 'admin@example.com', '{\"role\": \"admin\"}')", (ADMIN,))


def write_cost(server: str, contacts: int, pairs: int) -> tuple[list[str], dict[str, float]]:
    records = list(contact_records(contacts, batch=1000))
    first = with_ordinals(frames(records))
    on_url = fresh_database(server, "bench_health_on")
    off_url = fresh_database(server, "bench_health_off")
    disable_counting(off_url)
    for url in (on_url, off_url):
        create_admin(url)
    on, off = Side("on", on_url), Side("off", off_url)
    lines: list[str] = []
    figures: dict[str, float] = {}

    def phase(label: str, works: list[Callable[[psycopg.Connection], None]], unit: str, n: int) -> None:
        on.reset()
        off.reset()
        interleave(on, off, works)
        figures[f"{label}_on_cpu"], figures[f"{label}_off_cpu"] = on.cpu, off.cpu
        lines.append(
            f"| {label} | {n:,} {unit} | {off.wall:.2f} / {on.wall:.2f} | {on.wall / off.wall:.3f} |"
            f" {off.cpu:.2f} / {on.cpu:.2f} | {on.cpu / off.cpu:.3f} | {(on.cpu - off.cpu) / n * 1e6:+.1f} us |"
        )
        print(lines[-1], flush=True)

    phase("first load (inserts)", [load_batch_into(f, diff=False) for f in first], "contacts", contacts)
    change_all(records)
    phase("re-sync, every record changed (updates)", [load_batch_into(f, diff=True) for f in with_ordinals(frames(records))], "contacts", contacts)
    changed = change_one_percent(records)
    phase("re-sync, 1% changed", [load_batch_into(f, diff=True) for f in with_ordinals(frames(records))], "contacts", contacts)
    app = [app_update(str(i)) for i in range(1, min(contacts, 2000) + 1)]
    phase("app writes, one row per transaction", app, "transactions", len(app))
    for side in (on, off):
        side.conn.close()
    with psycopg.connect(on_url) as conn:
        from tests.db.health_truth import assert_true

        assert_true(conn)  # the counters kept up
    print(f"({changed:,} changed in the 1% pass)")

    two: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(pairs):
        for label in (("on", "off") if i % 2 == 0 else ("off", "on")):
            url = fresh_database(server, f"bench_health_2_{label}")
            if label == "off":
                disable_counting(url)
            seconds, counts, _ = load_ours(url, first, loaders=2)
            assert counts.inserted == contacts
            two[label].append(contacts / seconds)
            print(f"2 loaders, counters {label}: {contacts / seconds:,.0f} rows/s", flush=True)
    figures["two_on"], figures["two_off"] = statistics.median(two["on"]), statistics.median(two["off"])
    lines.append(
        f"| first load, 2 loaders (LoaderPool), rows/s, {pairs} pairs | {contacts:,} contacts |"
        f" {' '.join(f'{v:,.0f}' for v in two['off'])} / {' '.join(f'{v:,.0f}' for v in two['on'])} |"
        f" {figures['two_off'] / figures['two_on']:.3f} (median time) | | | |"
    )
    return lines, figures


VIEW_17 = (Path(__file__).resolve().parents[1] / "sql" / "17-monitoring.sql").read_text()


def view_cost(server: str, rows: int, rounds: int) -> list[str]:
    url = fresh_database(server, "bench_health_view")
    with psycopg.connect(url) as conn:
        conn.execute("insert into auth.users (id, email) values ('00000000-0000-4000-8000-00000000a11c', 'alice@example.com')")
        conn.execute("select set_config('role', 'keap_pipeline_ingest', true)")
        step = 100_000
        for start in range(0, rows, step):
            conn.execute(
                "insert into public.sync_contacts (keap_id, email, sync_status, last_synced_at)"
                " select g::text, 'c' || g || '@example.com',"
                " (array['completed', 'completed', 'completed', 'error', 'pending', 'conflict'])[1 + g %% 6],"
                " now() - (g %% 1000) * interval '1 minute'"
                " from generate_series(%s::integer, %s::integer) as g",
                (start + 1, min(start + step, rows)),
            )
        conn.execute(
            "insert into public.sync_orders (keap_id, keap_contact_id, order_date, total_amount, status)"
            " select 'o' || g, (g * 7)::text, now(), 1, 'PAID' from generate_series(1, %s::integer) as g",
            (rows // 10,),
        )
        conn.execute("reset role")
        conn.execute(
            "select set_config('role', 'authenticated', true),"
            " set_config('request.jwt.claims', '{\"sub\": \"00000000-0000-4000-8000-00000000a11c\", \"role\": \"authenticated\"}', true)"
        )
        conn.execute("insert into public.sync_contacts (email) select 'alice' || g || '@app.example' from generate_series(1, 100) as g")
        conn.commit()
        conn.execute("create schema bench_health")
        start = VIEW_17.index("create view public.sync_health")
        end = VIEW_17.index("-- Outbound queue depth")
        conn.execute(VIEW_17[start:end].replace("public.sync_health", "bench_health.sync_health_17", 1))
        conn.execute("select * from keap_pipeline.compact_sync_health_counters()")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze")
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(2):  # warm the cache
            conn.execute("select count(*) from public.sync_contacts").fetchall()
    alice = "select set_config('role', 'authenticated', false), set_config('request.jwt.claims', '{\"sub\": \"00000000-0000-4000-8000-00000000a11c\", \"role\": \"authenticated\"}', false)"

    def timer(query: str, setup: str | None = None) -> Callable[[], float]:
        def run() -> float:
            with psycopg.connect(url, autocommit=True) as conn:
                if setup:
                    conn.execute(setup)
                conn.execute(query).fetchall()  # planned and cached once, as a dashboard's session would
                started = time.perf_counter()
                conn.execute(query).fetchall()
                return time.perf_counter() - started
        return run

    def add_deltas(n: int) -> None:
        with psycopg.connect(url) as conn:
            conn.execute(
                "insert into public.sync_health_counters (entity_type, metric, n)"
                " select 'sync_contacts', (array['records', 'status:completed', 'sync_micros', 'timed'])[1 + g %% 4], 1 - 2 * (g %% 2)"
                " from generate_series(1, %s::integer) as g",
                (n,),
            )

    cases: list[tuple[str, Callable[[], float], Callable[[], None] | None]] = [
        ("17's view: live counts of the sync tables", timer("select * from bench_health.sync_health_17"), None),
        ("counting contacts by status alone", timer(
            "select sync_status, count(*) from public.sync_contacts where deleted_at is null group by 1"), None),
        ("sync_health (28), compacted counters", timer("select * from public.sync_health"), None),
    ]
    lines = []
    results: dict[str, list[float]] = {c[0]: [] for c in cases}
    for r in range(rounds):
        for name, run, _ in (cases if r % 2 == 0 else list(reversed(cases))):
            results[name].append(run())
    for name, _, _ in cases:
        lines.append(f"| {name} | {statistics.median(results[name]) * 1000:.1f} | {min(results[name]) * 1000:.1f} |")
        print(lines[-1], flush=True)
    alice_run = timer("select * from public.sync_health", alice)
    alice_times = [alice_run() for _ in range(rounds)]
    lines.append(f"| sync_health (28) as an app user with 100 own rows (counts them live) | {statistics.median(alice_times) * 1000:.1f} | {min(alice_times) * 1000:.1f} |")
    print(lines[-1], flush=True)
    for deltas in (10_000, 100_000):
        add_deltas(deltas - (0 if deltas == 10_000 else 10_000))
        run = timer("select * from public.sync_health")
        times = [run() for _ in range(rounds)]
        lines.append(f"| sync_health (28), {deltas:,} uncompacted delta rows | {statistics.median(times) * 1000:.1f} | {min(times) * 1000:.1f} |")
        print(lines[-1], flush=True)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        before, after = conn.execute("select * from keap_pipeline.compact_sync_health_counters()").fetchone()  # type: ignore[misc]
        conn.commit()
        lines.append(f"| compaction of {before:,} delta rows into {after:,} | {(time.perf_counter() - started) * 1000:.1f} | |")
        print(lines[-1], flush=True)
        started = time.perf_counter()
        conn.execute("select keap_pipeline.recount_sync_health()")
        conn.commit()
        lines.append(f"| recount from the rows (what 28 does when it is applied) | {(time.perf_counter() - started) * 1000:.1f} | |")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a maintenance database of a server on this machine")
    parser.add_argument("--contacts", type=int, default=100_000, help="contacts loaded in the write-cost part")
    parser.add_argument("--view-rows", type=int, default=1_000_000, help="contacts in the view-cost part")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=2, help="on/off pairs of the 2-loader first load")
    parser.add_argument("--write", action="store_true", help="write the figures into docs/benchmarks.md")
    args = parser.parse_args(argv)
    version = server_version(args.database_url)
    print(version, flush=True)
    view_lines = view_cost(args.database_url, args.view_rows, args.rounds)
    write_lines, _ = write_cost(args.database_url, args.contacts, args.pairs)
    if args.write:
        body = "\n".join([
            f"Measured {machine()}; {version}; commit {git_revision()}.",
            f"Rerun: `.venv/bin/python -m bench.bench_sync_health --database-url URL --contacts {args.contacts}"
            f" --view-rows {args.view_rows} --rounds {args.rounds} --pairs {args.pairs} --write` (what each part does:"
            " the script's docstring).",
            "",
            f"**Reading the view**, {args.view_rows:,} contacts and {args.view_rows // 10:,} orders; milliseconds,"
            f" median and best of {args.rounds} (the cases alternate; each read in a fresh session, after one read that"
            " plans it):",
            "",
            "| read | median ms | best ms |",
            "| --- | ---: | ---: |",
            *view_lines,
            "",
            f"**The load path**, {args.contacts:,} sandbox contacts in batches of 1,000, counters off / on in"
            " alternating batches on one server (wall seconds, the loading backend's CPU seconds):",
            "",
            "| phase | work | wall off / on (s) | on / off | CPU off / on (s) | on / off | CPU added per contact / transaction |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            *write_lines,
        ])
        write_section("sync_health: the view and its counters (issue 12)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
