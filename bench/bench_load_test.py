"""The request's load test and per-record figures on a fresh PostgreSQL 15 (issue 16, part 4).

1. `pgbench -f bench/load_test.sql -c 10 -j 4 -t 1000`: 10,000 contacts created through the app path
   (a signed-in user through RLS; triggers, audit, outbound queue), as the app's login role: tps,
   latency percentiles, and a check that the 10,000 rows, audit rows and queue items are there.
2. Conflict detection: a single call of public.detect_sync_conflict (p50/p95 over --calls calls),
   and its amortised cost per record in the load path: the same 10,000-record Keap batch loaded
   over rows the app had not touched (plain updates) and over rows the app had edited (every record
   a conflict, parked under strategy manual), side by side, --repeat times, each on a fresh copy.
3. Audit writes do not block: app writers' commit latency (single-row edits as signed-in users,
   each audited and queued) idle, then while a 10,000-row ingestion batch, an audit-partition run
   (24 months ahead) and a VACUUM (ANALYZE) of the sync tables run at the same moment.

    .venv/bin/python -m bench.bench_load_test [--write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.bench_db_stage import change_one_percent, frames
from bench.common import contact_records, fresh_database, git_revision, machine, write_section
from bench.pg15 import pg15, settings_line
from bench.pgbench_run import APP_LOGIN, BENCH, fmt, run_pgbench, seed_app_users, user_id
from keap_pipeline.db.load import begin_load, load_frame
from keap_pipeline.db.maintenance import audit_partitions, vacuum_analyze
from keap_pipeline.entities import CONTACTS

BATCH = 10_000


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _load(url: str, frame: pl.DataFrame, *, strategy: str = "keap_wins") -> tuple[float, dict[str, int]]:
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        begin_load(conn, lock_timeout_seconds=30, relaxed_commit=True)
        counts = load_frame(conn, CONTACTS, frame, strategy=strategy)
        conn.commit()
        return time.perf_counter() - started, {k: v for k, v in vars(counts).items() if v}


def _count(url: str, table: str, where: str = "true") -> int:
    with psycopg.connect(url) as conn:
        query = sql.SQL("select count(*) from {} where {}").format(sql.Identifier(*table.split(".")), sql.SQL(where))  # type: ignore[arg-type]
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def load_test(server: str, *, baseline_sql: str | None = None, name: str = "keap_load_test") -> tuple[str, dict[str, object]]:
    url = fresh_database(server, name)
    if baseline_sql:  # the trigger functions of another revision, for a side-by-side run
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(baseline_sql)  # type: ignore[arg-type]
    seed_app_users(url, users=100, per_user=0)
    before = {t: _count(url, t) for t in ("public.sync_audit_log", "public.sync_queue")}
    result = run_pgbench(make_conninfo(url, user=APP_LOGIN), BENCH / "load_test.sql", clients=10, threads=4,
                         transactions=1000, variables={"users": 100})
    rows = _count(url, "public.sync_contacts", "email like 'lt-%'")
    audit = _count(url, "public.sync_audit_log") - before["public.sync_audit_log"]
    queued = _count(url, "public.sync_queue") - before["public.sync_queue"]
    figures = {"tps": result.tps, "p50": result.percentile(50), "p95": result.percentile(95),
               "p99": result.percentile(99), "failed": result.failed, "rows": rows, "audit": audit, "queued": queued,
               "exit": result.exit_code, "error": result.error}
    line = (f"| {fmt(result.tps, 0)} | {fmt(result.mean_ms, 2)} | {fmt(result.percentile(50), 2)} | "
            f"{fmt(result.percentile(95), 2)} | {fmt(result.percentile(99), 2)} | {result.failed} | "
            f"{rows:,} | {audit:,} | {queued:,} |")
    return line, figures


def reference_run(server: str) -> str:
    """The same pgbench, same role and claims, into a bare table (no triggers, RLS, indexes): the machine's ceiling now."""
    url = fresh_database(server, "keap_load_reference")
    seed_app_users(url, users=100, per_user=0)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create table public.load_test_reference (id uuid default gen_random_uuid(), email text, first_name text,"
            " last_name text, phone text, company text, tags jsonb, custom_fields jsonb)"
        )
        conn.execute("grant insert on public.load_test_reference to authenticated")
    script = Path(tempfile.mkdtemp(prefix="keap-load-ref-")) / "load_test_reference.sql"
    script.write_text((BENCH / "load_test.sql").read_text().replace("public.sync_contacts", "public.load_test_reference"))
    result = run_pgbench(make_conninfo(url, user=APP_LOGIN), script, clients=10, threads=4, transactions=1000,
                         variables={"users": 100})
    return (f"| bare table (reference) | {fmt(result.tps, 0)} | {fmt(result.mean_ms, 2)} | {fmt(result.percentile(50), 2)} | "
            f"{fmt(result.percentile(95), 2)} | {fmt(result.percentile(99), 2)} | {result.failed} |")


def detect_calls(url: str, calls: int) -> list[float]:
    """Milliseconds per call of detect_sync_conflict on distinct records, each call its own statement."""
    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("select id from public.sync_contacts limit %s", (calls,))]
        for i, ident in enumerate(ids):
            keap = {"email": f"k{i}@example.test", "first_name": "Keap", "last_name": "Side", "phone": "1"}
            local = {"email": f"k{i}@example.test", "first_name": "App", "last_name": "Side", "phone": "2"}
            started = time.perf_counter()
            conn.execute("select public.detect_sync_conflict('sync_contacts', %s, %s::jsonb, %s::jsonb)",
                         (ident, psycopg.types.json.Jsonb(keap), psycopg.types.json.Jsonb(local)))
            times.append((time.perf_counter() - started) * 1000)
    return times


def conflict_cost(server: str, repeat: int) -> tuple[str, dict[str, object]]:
    batches = list(contact_records(BATCH, batch=BATCH))
    first = frames(batches)[0]
    change_all = [dict(r) for r in batches[0]]
    for i, record in enumerate(change_all):
        record["family_name"] = f"{record.get('family_name') or ''} (Keap {i})"
        record["update_time"] = "2030-01-01T00:00:00.000Z"
    changed = frames([change_all])[0]
    template = fresh_database(server, "keap_conflict_tpl")
    _load(template, first)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = 'keap_conflict_tpl' and pid <> pg_backend_pid()")
    plain: list[float] = []
    conflicted: list[float] = []
    counts: dict[str, dict[str, int]] = {}
    for round_ in range(repeat):
        for kind in ("plain", "conflict") if round_ % 2 == 0 else ("conflict", "plain"):
            name = f"keap_conflict_{kind}"
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
                conn.execute(sql.SQL("create database {} template keap_conflict_tpl").format(sql.Identifier(name)))
            url = make_conninfo(server, dbname=name)
            if kind == "conflict":
                with psycopg.connect(url) as conn:  # the app edits every record (audited, queued), then Keap does
                    conn.execute("update public.sync_contacts set first_name = 'App ' || keap_id")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("vacuum analyze")
            seconds, counts[kind] = _load(url, changed, strategy="manual")
            (plain if kind == "plain" else conflicted).append(seconds)
    calls = detect_calls(make_conninfo(server, dbname="keap_conflict_plain"), 1000)
    per_record_ms = (statistics.median(conflicted) - statistics.median(plain)) / BATCH * 1000
    line = (
        f"| {statistics.median(plain):.2f} | {statistics.median(conflicted):.2f} | {per_record_ms:.3f} | "
        f"{fmt(_pct(calls, 50), 3)} | {fmt(_pct(calls, 95), 3)} | {fmt(max(calls), 3)} |"
    )
    return line, {"plain": plain, "conflicted": conflicted, "counts": counts, "calls": calls}


class LockWaitSampler:
    """Samples pg_stat_activity every 10 ms: how often an app writer was waiting on a lock, and on what."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.samples = 0
        self.waits: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    "select wait_event_type || ':' || wait_event from pg_catalog.pg_stat_activity"
                    " where usename = %s and state = 'active' and wait_event_type = 'Lock'",
                    (APP_LOGIN,),
                ).fetchall()
                self.samples += 1
                for (what,) in rows:
                    self.waits[what] = self.waits.get(what, 0) + 1
                time.sleep(0.01)

    def __enter__(self) -> LockWaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join()


class AppWriters:
    """Threads of signed-in users editing their own contacts, one audited + queued row per commit; commit latencies."""

    def __init__(self, url: str, *, threads: int, users: int, per_user: int, rate_per_thread: float) -> None:
        self.url, self.users, self.per_user, self.rate = url, users, per_user, rate_per_thread
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (when, ms)
        self.errors = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, n: int) -> None:
        with psycopg.connect(make_conninfo(self.url, user=APP_LOGIN)) as conn:
            i = 0
            while not self.stop.is_set():
                i += 1
                u = (n * 7919 + i) % self.users + 1
                k = i % self.per_user + 1
                claims = f'{{"sub": "{user_id(u)}", "role": "authenticated"}}'
                started = time.perf_counter()
                try:
                    conn.execute("select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)", (claims,))
                    conn.execute("update public.sync_contacts set phone = %s where email = %s", (str(i), f"u{u}-{k}@example.test"))
                    conn.commit()
                except psycopg.Error:
                    conn.rollback()
                    with self._lock:
                        self.errors += 1
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                with self._lock:
                    self.latencies.append((time.monotonic(), elapsed))
                time.sleep(max(0.0, 1 / self.rate - elapsed / 1000))

    def __enter__(self) -> AppWriters:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()

    def between(self, start: float, end: float) -> list[float]:
        with self._lock:
            return [ms for when, ms in self.latencies if start <= when <= end]


def audit_non_blocking(server: str, idle_seconds: float) -> tuple[str, dict[str, object]]:
    url = fresh_database(server, "keap_audit_blocking")
    seed_app_users(url, users=50, per_user=20)
    batches = list(contact_records(BATCH, batch=BATCH))
    _load(url, frames(batches)[0])
    change_one_percent(batches)
    for record in batches[0]:  # every record changed: the batch writes 10,000 rows, audit rows and status rows
        record["given_name"] = f"{record.get('given_name') or ''}."
        record["update_time"] = "2030-01-01T00:00:00.000Z"
    changed = frames(batches)[0]
    timings: dict[str, float] = {}

    def timed(name: str, work) -> None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        work()
        timings[name] = time.perf_counter() - started

    def partitions() -> None:
        with psycopg.connect(url) as conn:
            report = audit_partitions(conn, months_ahead=24)
            timings["partitions_created"] = float(len(report.created))

    def vacuum() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            vacuum_analyze(conn)

    with AppWriters(url, threads=4, users=50, per_user=20, rate_per_thread=25) as writers:
        time.sleep(1.0)
        idle_start = time.monotonic()
        time.sleep(idle_seconds)
        idle_end = busy_start = time.monotonic()
        work = [threading.Thread(target=timed, args=(n, w)) for n, w in
                (("batch", lambda: _load(url, changed)), ("partitions", partitions), ("vacuum", vacuum))]
        with LockWaitSampler(url) as sampler:
            for t in work:
                t.start()
            for t in work:
                t.join()
        busy_end = time.monotonic()
        time.sleep(0.5)
    idle = writers.between(idle_start, idle_end)
    busy = writers.between(busy_start, busy_end)
    rows = []
    for label, values in (("idle", idle), ("during batch + partitions + VACUUM", busy)):
        rows.append(f"| {label} | {len(values)} | {fmt(_pct(values, 50), 2)} | {fmt(_pct(values, 95), 2)} | "
                    f"{fmt(_pct(values, 99), 2)} | {fmt(max(values) if values else None, 2)} |")
    return "\n".join(rows), {"timings": timings, "errors": writers.errors, "busy_seconds": busy_end - busy_start,
                              "lock_samples": sampler.samples, "lock_waits": sampler.waits}


def _comparison(baseline: str | None, lines: list[str]) -> str:
    if not baseline:
        return ""
    return (f"\nSide by side with the trigger functions of {baseline} (sql/functions/20-sync-triggers.sql of that "
            "revision applied over this schema), interleaved rounds, each on a fresh database:\n\n"
            "| round | trigger | tps | mean ms | p50 ms | p95 ms | p99 ms | failed | rows | audit rows | queued |\n"
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(lines) + "\n")


def _lock_words(audit: dict[str, object]) -> str:
    waits = audit["lock_waits"]
    assert isinstance(waits, dict)
    seen = sum(waits.values())
    where = f"pg_stat_activity sampled every 10 ms while the three ran ({audit['lock_samples']} samples)"
    if not seen:
        return (f"No app writer was ever waiting on a lock ({where}): the tail during the run is CPU and I/O shared "
                "with the batch on 2 cores, not blocking.")
    return f"App writers were seen waiting on locks {seen} times ({where}): {waits}."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="conflict-cost rounds (default 3)")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--baseline", metavar="REV", help="also run the load test with sql/functions/20-sync-triggers.sql of REV, interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="load-test rounds with --baseline (default 3)")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args(argv)
    baseline_sql = None
    if args.baseline:
        baseline_sql = subprocess.run(["git", "show", f"{args.baseline}:sql/functions/20-sync-triggers.sql"],
                                      capture_output=True, text=True, check=True).stdout
    with pg15() as server:
        settings = settings_line(server)
        load_line, load = load_test(server)
        print(load_line, load, flush=True)
        reference_line = reference_run(server)
        print(reference_line, flush=True)
        compare_lines = []
        if baseline_sql:
            for round_ in range(args.rounds):
                order = [("this commit", None), (f"baseline {args.baseline}", baseline_sql)]
                for label, text in order if round_ % 2 else reversed(order):
                    line, _ = load_test(server, baseline_sql=text, name="keap_load_cmp")
                    compare_lines.append(f"| {round_ + 1} | {label} {line}")
                    print(compare_lines[-1], flush=True)
        conflict_line, conflict = conflict_cost(server, args.repeat)
        print(conflict_line, {k: v for k, v in conflict.items() if k != "calls"}, flush=True)
        audit_lines, audit = audit_non_blocking(server, args.idle_seconds)
        print(audit_lines, audit, flush=True)
    timings = audit["timings"]
    assert isinstance(timings, dict)
    body = f"""Measured {machine()}, commit {git_revision()}; {settings}; load average at the end
{os.getloadavg()[0]:.1f} (other work shares the machine). Rerun: `.venv/bin/python -m bench.bench_load_test --write`
(starts its own PostgreSQL 15).

**The request's load test**: `pgbench -n -M simple -f bench/load_test.sql -c 10 -j 4 -t 1000` as the app's login
role (not a superuser): 10,000 contacts created by signed-in users through RLS, each insert audited and queued for
Keap by the triggers. The request asks for > 1,000 records/s; one record per transaction, so tps = records/s.

| tps (= records/s) | mean ms | p50 ms | p95 ms | p99 ms | failed | rows | audit rows | queued |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{load_line}

The same script in the same run into a bare table (no triggers, no RLS policies, no indexes), which is what
this machine could do at that moment without the sync schema's work:

| target | tps | mean ms | p50 ms | p95 ms | p99 ms | failed |
|---|---:|---:|---:|---:|---:|---:|
{reference_line}
{_comparison(args.baseline, compare_lines)}
**Conflict detection** (the request: < 50 ms per record). Set-based in the load path: one 10,000-record Keap batch
(strategy manual) over rows the app had not touched (plain updates) and over rows the app had edited first (every
record a conflict: detected, a sync_conflicts row each, parked), medians of {args.repeat} interleaved rounds on
fresh copies; and 1,000 single calls of `public.detect_sync_conflict` (each its own statement and commit).

| batch, plain updates (s) | batch, all conflicts (s) | conflict cost per record (ms) | single call p50 ms | p95 ms | max ms |
|---:|---:|---:|---:|---:|---:|
{conflict_line}

**Audit writes do not block**: 4 app writers (signed-in users editing their own contacts at 25 commits/s each, every
edit audited and queued) while a 10,000-row ingestion batch ({timings.get('batch', 0):.1f} s), an audit-partition
run ({int(timings.get('partitions_created', 0))} partitions created, {timings.get('partitions', 0):.1f} s) and a
VACUUM (ANALYZE) of the sync tables ({timings.get('vacuum', 0):.1f} s) ran at the same moment; app writer errors:
{audit['errors']}. {_lock_words(audit)}

| app commits | n | p50 ms | p95 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|---:|
{audit_lines}
"""
    print(body)
    if args.write:
        write_section("The request's load test, conflict detection and non-blocking audit writes (issue 16)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
