"""Realtime latency: how long an app's write takes from its commit to a subscriber of supabase_realtime, while the pipeline loads.

    .venv/bin/python -m bench.bench_realtime [--contacts 1000000] [--variant NAME ...] [--write]
    .venv/bin/python -m bench.bench_realtime --database-url postgresql://postgres@127.0.0.1:5452/postgres ...

Its own requirements (bench only, never the package's): bench/requirements-realtime.txt, installed with
`.tools/bin/uv pip install --python .venv/bin/python -r bench/requirements-realtime.txt` (matplotlib
for the plot; psycopg2, whose LogicalReplicationConnection speaks the streaming replication
protocol that psycopg 3 does not).

Without --database-url it starts its own fresh Debian PostgreSQL 15 with bench/pg15.py (as `python -m
bench` does for the others: initdb's configuration plus wal_level = logical, loopback, a free port
unless --port, as the postgres OS user) and removes it afterwards; with --database-url it measures the
server given (which must have wal_level = logical; the pg_waldump columns are then left empty). For each variant (a code tree, schema changes after its migrations, sync arguments), on a
fresh database built by that code's migrations:

- a subscriber (this process, a thread) holds a temporary logical slot with the pgoutput plugin on the
  publication supabase_realtime (protocol 1, as a Supabase/pgoutput consumer reads it) and notes, per
  transaction, its commit time (from the Begin message) and when its first change of each table
  arrived;
- an app writer (a thread, psycopg 3) commits single-row writes at --rate per second as an
  authenticated user (SET LOCAL role + JWT claims, as PostgREST does), alternately inserting a contact
  and updating the one it inserted before; each write changes sync_contacts, and its triggers the
  record's sync_status row (and the audit log and queue, which are not published);
- phases, each the real pipeline (sync_entity in a child process, the sandbox in its own process,
  over a real socket, no pacing): `idle` (nothing but the app), `first load` of --contacts,
  `re-sync` (a backfill window over all of them with 1% changed in Keap, the changed records last in
  update-time order, as changed records are), `incremental` (the normal run after another 1% changed).

Latency = arrival of the app transaction's change at the subscriber - its commit time, per table, for
the app writes that committed during the phase; p50/p95/p99/max. Per phase also the pipeline's
records/s, its transactions and the most changes one of them streamed, and WAL bytes per written
record (pg_current_wal_lsn before and after, less the app's own WAL rate measured while idle).
Figures go to docs/benchmarks.md ("Realtime latency") and the plot to docs/img/realtime-latency.png
with --write.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
PLOT = HERE / "docs" / "img" / "realtime-latency.png"
KEY = "bench-key"
DATABASE = "bench_realtime"
SLOT = "bench_realtime"
# PostgreSQL's epoch (2000-01-01 UTC) in Unix seconds: pgoutput's timestamps count from it
PG_EPOCH = 946_684_800
APP_USER = uuid.UUID("00000000-0000-4000-8000-0000000ab0a7")
PHASES = ("idle", "first load", "re-sync", "incremental")
# once the app writer has stopped: another incremental run (1% more changed), whose WAL is the pipeline's alone
QUIET = "incremental, app stopped"


@dataclass(frozen=True)
class Variant:
    """What one side of the comparison runs: a code tree, schema changes after its migrations, sync arguments."""

    name: str
    code: str  # "this" (this tree), "base" (git merge-base main HEAD) or a git revision, exported with git archive
    schema: tuple[str, ...] = ()
    sync: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    # a bench-side change in the loading child, for a choice the pipeline has no argument for:
    # "synchronous batches" = every batch commits with the session's synchronous_commit (on) instead of off
    child: str = ""


VARIANTS = {
    v.name: v
    for v in (
        Variant("before", "base", note="main where this branch starts (git merge-base main HEAD): ~1,000 written records (2,000 changes) per transaction, re-sync batches uncapped, sync_status FULL"),
        Variant(
            "budget 1000, status FULL", "this", ("alter table public.sync_status replica identity full",),
            {"max_changes": 1000}, note="a budget of 1,000 changes (500 records), sync_status FULL as 14 had it",
        ),
        Variant("budget 1000", "this", sync={"max_changes": 1000}, note="a budget of 1,000 changes, 32 (sync_status DEFAULT)"),
        Variant("after", "this", note="the default budget, 500 changes (250 records), and 32"),
        Variant("budget 500", "this", sync={"max_changes": 500}, note="a budget of 500 changes, and 32 (what `after` runs)"),
        Variant("budget 250", "this", sync={"max_changes": 250}, note="a budget of 250 changes, and 32"),
        Variant(
            "after, synchronous batches", "this", child="synchronous batches",
            note="as `after`, but each batch commits with synchronous_commit on (the bench patches begin_load's"
            " relaxed_commit to False): its WAL is flushed by its own commit, not by the app's next one",
        ),
        Variant(
            "budget 1000, status unpublished", "this",
            ("alter publication supabase_realtime drop table public.sync_status",), {"max_changes": 1000},
            note="sync_status out of the publication: 1 change per record, so 1,000 records per transaction",
        ),
        Variant(
            "budget 1000, contacts DEFAULT", "this", ("alter table public.sync_contacts replica identity default",),
            {"max_changes": 1000},
            note="sync_contacts REPLICA IDENTITY DEFAULT too (for its WAL; its UPDATE events would lose the old record)",
        ),
    )
}


def lsn(text: str) -> int:
    """An LSN 'X/Y' as a byte position."""
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- the server ----------------------------------------------------------------------------------


@contextmanager
def postgres15(port: int | None) -> Iterator[tuple[str, Path | None]]:
    """A fresh PostgreSQL 15 from bench/pg15.py (Debian's configuration plus wal_level = logical); its URL and WAL dir."""
    import psycopg

    from bench.pg15 import pg15

    with pg15(port=port, settings={"wal_level": "logical"}) as url:
        with psycopg.connect(url) as conn:
            data = conn.execute("show data_directory").fetchone()
        yield url, Path(data[0]) / "pg_wal" if data else None


# --- the subscriber and the app ------------------------------------------------------------------


@dataclass
class Txn:
    """One decoded transaction: commit time, when its first change of each table arrived, how many changes."""

    xid: int
    committed: float
    first: dict[str, float] = field(default_factory=dict)
    changes: int = 0
    done: float = 0.0  # when its Commit message arrived (its last change had been sent)


class Subscriber(threading.Thread):
    """A pgoutput consumer of supabase_realtime on a temporary slot (psycopg2's LogicalReplicationConnection)."""

    def __init__(self, url: str) -> None:
        super().__init__(name="subscriber", daemon=True)
        self.url = url
        self.txns: list[Txn] = []
        self.halt = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            self.error = err
            self.ready.set()

    def _run(self) -> None:
        import psycopg2
        import psycopg2.extras

        conn = psycopg2.connect(self.url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        try:
            cur = conn.cursor()
            cur.execute(f"CREATE_REPLICATION_SLOT {SLOT} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT")
            cur.start_replication(
                slot_name=SLOT, decode=False,
                options={"proto_version": "1", "publication_names": "supabase_realtime"},
            )
            self.ready.set()
            relations: dict[int, str] = {}
            txn: Txn | None = None
            last_feedback = time.monotonic()
            while not self.halt.is_set():
                msg = cur.read_message()
                if msg is None:
                    select.select([cur], [], [], 0.1)
                    continue
                now = time.time()
                data: bytes = msg.payload
                kind = data[:1]
                if kind in (b"I", b"U", b"D") and txn is not None:
                    txn.changes += 1
                    name = relations.get(struct.unpack_from("!I", data, 1)[0], "?")
                    txn.first.setdefault(name, now)
                elif kind == b"B":
                    _final, commit_us, xid = struct.unpack_from("!QqI", data, 1)
                    txn = Txn(xid=xid, committed=PG_EPOCH + commit_us / 1e6)
                elif kind == b"C" and txn is not None:
                    txn.done = now
                    self.txns.append(txn)
                    txn = None
                elif kind == b"R":
                    relid = struct.unpack_from("!I", data, 1)[0]
                    namespace_end = data.index(b"\0", 5)
                    name_end = data.index(b"\0", namespace_end + 1)
                    relations[relid] = data[namespace_end + 1:name_end].decode()
                if time.monotonic() - last_feedback > 1.0:
                    cur.send_feedback(flush_lsn=msg.data_start)
                    last_feedback = time.monotonic()
        finally:
            conn.close()


class AppWriter(threading.Thread):
    """Single-row writes as an authenticated user at a steady rate; remembers each one's xid."""

    def __init__(self, url: str, rate: float) -> None:
        super().__init__(name="app-writer", daemon=True)
        self.url = url
        self.rate = rate
        self.xids: dict[int, str] = {}
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            self.error = err

    def _run(self) -> None:
        import psycopg

        claims = json.dumps({"sub": str(APP_USER), "role": "authenticated", "app_metadata": {"provider": "email"}})
        interval = 1.0 / self.rate
        n = 0
        last: object = None
        with psycopg.connect(self.url) as conn:
            due = time.monotonic()
            while not self.halt.is_set():
                due += interval
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                elif pause < -interval:
                    due = time.monotonic()  # fell behind (a slow commit): keep the rate, do not burst
                with conn.transaction():
                    conn.execute(
                        "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
                        (claims,),
                    )
                    if last is None or n % 2 == 0:
                        row = conn.execute(
                            "insert into public.sync_contacts (email, first_name, last_name) values (%s, 'App', %s)"
                            " returning id, pg_catalog.pg_current_xact_id()::text",
                            (f"app-{n}@example.com", f"Writer {n}"),
                        ).fetchone()
                        kind = "insert"
                    else:
                        row = conn.execute(
                            "update public.sync_contacts set first_name = %s where id = %s"
                            " returning id, pg_catalog.pg_current_xact_id()::text",
                            (f"App {n}", last),
                        ).fetchone()
                        kind = "update"
                assert row is not None
                last = row[0]
                self.xids[int(row[1]) % 2**32] = kind
                n += 1


class LoadSampler(threading.Thread):
    """The 1-minute load average every 5 s (the machine is shared: how busy it was)."""

    def __init__(self) -> None:
        super().__init__(name="load-sampler", daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(5.0):
            self.samples.append((time.time(), os.getloadavg()[0]))


def _pg15_bin() -> Path:
    from bench.pg15 import PG15_BIN

    return PG15_BIN


def wal_stats(wal_dir: Path, start: str, end: str) -> dict[str, tuple[int, int]]:
    """pg_waldump --stats over [start, end): per resource manager (and Total), record bytes and full-page-image bytes."""
    out = subprocess.run(  # noqa: S603 - fixed arguments
        [str(_pg15_bin() / "pg_waldump"), "--stats", "-p", str(wal_dir), "-s", start, "-e", end],
        capture_output=True, text=True, check=False,
    )
    stats: dict[str, tuple[int, int]] = {}
    for line in out.stdout.splitlines():
        # "Heap  2000 ( 10.00)  123456 ( 20.00)  8192 ( 1.00)  131648 ( 5.00)", "Total  N  R [99.3%]  F [0.7%]  C [100%]"
        parts = line.split()
        numbers = [int(t) for t in parts[1:] if t.isdigit()]
        if parts and len(numbers) == 4:
            stats[parts[0]] = (numbers[1], numbers[2])
    if "Total" not in stats:
        raise SystemExit(f"pg_waldump gave no statistics for {start}..{end}: {out.stderr[-500:]}")
    return stats


# --- the children: migrations and loads with the variant's code ----------------------------------


def _child_migrate(url: str) -> None:
    from keap_pipeline.db.migrate import migrate

    migrate(url)


def _child_load(spec: dict[str, Any]) -> dict[str, Any]:
    import psycopg

    from keap_pipeline.db.cursors import window_scope
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.keap import ApiKeyAuth, KeapClient
    from keap_pipeline.pipeline.sync import sync_entity
    from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

    if spec.get("child") == "synchronous batches":
        import keap_pipeline.pipeline.batch as batch_module

        relaxed = batch_module.begin_load

        def synchronous(conn: Any, *, lock_timeout_seconds: float, relaxed_commit: bool) -> None:
            relaxed(conn, lock_timeout_seconds=lock_timeout_seconds, relaxed_commit=False)

        batch_module.begin_load = synchronous  # type: ignore[assignment]
    raw: tuple[bytes, ...] = ()
    if spec["overlay"]:
        raw = tuple(Path(spec["overlay"]).read_bytes().splitlines())
    config = SandboxConfig(port=0, contacts=spec["contacts"], limits=RateLimits.off(), api_key=KEY, raw_contacts=raw)
    window: dict[str, Any] = {}
    if spec["window"]:
        since = datetime(2000, 1, 1, tzinfo=UTC)
        until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        window = {"since": since, "until": until, "scope": window_scope(since, until)}
    with running_sandbox(config, subprocess_mode=True, startup_timeout=120) as sandbox:
        with KeapClient(sandbox.base_url, ApiKeyAuth(KEY), pacing=False) as client, psycopg.connect(
            spec["url"], autocommit=True
        ) as conn:
            wal_start = conn.execute("select pg_catalog.pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
            start = time.time()
            report = sync_entity(client, spec["url"], CONTACTS, run_id=f"bench-{spec['phase']}", **window, **spec["sync"])
            end = time.time()
            wal_end = conn.execute("select pg_catalog.pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
    c = report.counts
    return {
        "start": start, "end": end, "wal": lsn(wal_end) - lsn(wal_start), "wal_from": wal_start, "wal_to": wal_end,
        "seen": report.records_seen,
        "written": c.inserted + c.updated + c.conflicts, "inserted": c.inserted, "updated": c.updated,
        "batches": report.batches, "dead_lettered": report.dead_lettered,
    }


def _run_child(args: list[str], src: str | None) -> dict[str, Any]:
    # run as a script (not -m, which puts the working directory first): SRC's keap_pipeline wins
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([p for p in (src, str(HERE)) if p])}
    # in SRC (when given): the sandbox subprocess runs `python -c`, which puts the working directory first
    out = subprocess.run(  # noqa: S603 - this module, fixed arguments
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False, env=env, cwd=src,
    )
    if out.returncode:
        raise SystemExit(f"the child {args[:1]} failed:\n{out.stderr[-4000:]}")
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


# --- one variant ---------------------------------------------------------------------------------


def _changed(contacts: int, offset: int, base: datetime, path: Path) -> int:
    """1% of the contacts (ids = offset mod 100), a content field changed, update times after every other record's."""
    from keap_pipeline.sandbox import SandboxConfig
    from keap_pipeline.sandbox.dataset import Dataset

    dataset = Dataset(SandboxConfig(contacts=contacts))
    lines = []
    for ident in range(offset or 100, contacts + 1, 100):
        record = dataset.record("contacts", ident)
        record["given_name"] = f"{record.get('given_name') or ''} II"[:200]
        stamp = base + timedelta(milliseconds=ident)
        record["update_time"] = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def _fresh(server_url: str) -> str:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    return make_conninfo(server_url, dbname=DATABASE)


def run_variant(
    variant: Variant, src: str | None, server_url: str, contacts: int, rate: float, idle_seconds: float,
    overlays: dict[str, Path], wal_dir: Path | None = None,
) -> dict[str, Any]:
    """Every phase of one variant on a fresh database; the phases' figures."""
    import psycopg

    url = _fresh(server_url)
    _run_child(["--child-migrate", url], src)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in variant.schema:
            conn.execute(statement)  # the variant's own schema changes: fixed text of this file
        conn.execute("insert into auth.users (id, email) values (%s, 'app@example.com')", (APP_USER,))
        identities = dict(conn.execute(
            "select c.relname, c.relreplident::text from pg_catalog.pg_class as c"
            " where c.relname in ('sync_contacts', 'sync_status')"
        ).fetchall())
        published = {r[0] for r in conn.execute(
            "select tablename from pg_catalog.pg_publication_tables where pubname = 'supabase_realtime'"
        ).fetchall()}
    subscriber = Subscriber(url)
    subscriber.start()
    subscriber.ready.wait(60)
    if subscriber.error:
        raise SystemExit(f"subscriber: {subscriber.error}")
    writer = AppWriter(url, rate)
    sampler = LoadSampler()
    sampler.start()
    writer.start()
    windows: dict[str, dict[str, Any]] = {}
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            wal0 = lsn(conn.execute("select pg_catalog.pg_current_wal_lsn()::text").fetchone()[0])  # type: ignore[index]
            start = time.time()
            time.sleep(idle_seconds)
            wal1 = lsn(conn.execute("select pg_catalog.pg_current_wal_lsn()::text").fetchone()[0])  # type: ignore[index]
            windows["idle"] = {"start": start, "end": time.time(), "wal": wal1 - wal0, "written": 0, "seen": 0}
        for phase, overlay, window in (
            ("first load", None, False),
            ("re-sync", overlays["re-sync"], True),
            ("incremental", overlays["incremental"], False),
        ):
            spec = {"url": url, "phase": phase.replace(" ", "-"), "contacts": contacts,
                    "overlay": str(overlay) if overlay else None, "window": window, "sync": variant.sync,
                    "child": variant.child}
            if wal_dir is not None:
                # a physical slot keeps the phase's WAL until pg_waldump has read it (checkpoints recycle it)
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("select pg_catalog.pg_create_physical_replication_slot('bench_hold', true)")
            try:
                windows[phase] = _run_child(["--child-load", json.dumps(spec)], src)
                if wal_dir is not None:
                    w = windows[phase]
                    windows[phase]["wal_stats"] = wal_stats(wal_dir, w["wal_from"], w["wal_to"])
            finally:
                if wal_dir is not None:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("select pg_catalog.pg_drop_replication_slot('bench_hold')")
            if writer.error or subscriber.error:
                break
        time.sleep(3.0)  # the last app writes arrive
        writer.halt.set()
        writer.join()
        spec = {"url": url, "phase": "quiet", "contacts": contacts, "overlay": str(overlays["quiet"]),
                "window": False, "sync": variant.sync, "child": variant.child}
        windows[QUIET] = _run_child(["--child-load", json.dumps(spec)], src)
        time.sleep(1.0)
    finally:
        writer.halt.set()
        writer.join()
        time.sleep(1.0)
        subscriber.halt.set()
        subscriber.join(timeout=30)
        sampler.halt.set()
    if writer.error or subscriber.error:
        raise SystemExit(f"app writer: {writer.error!r}; subscriber: {subscriber.error!r}")
    idle = windows["idle"]
    app_wal_rate = idle["wal"] / (idle["end"] - idle["start"])
    out: dict[str, Any] = {"identities": identities, "published": sorted(published)}
    # an app write that committed while the pipeline transaction decoded just before it was still being
    # sent (its commit before that one's Commit message arrived) waited behind that batch
    behind: set[int] = set()
    previous: Txn | None = None
    for t in subscriber.txns:
        if t.xid in writer.xids:
            if previous is not None and t.committed < previous.done:
                behind.add(t.xid)
        elif t.changes:
            previous = t
    for phase, w in windows.items():
        inside = [t for t in subscriber.txns if w["start"] <= t.committed <= w["end"]]
        app = [t for t in inside if t.xid in writer.xids]
        pipeline = [t for t in inside if t.xid not in writer.xids and t.changes]
        lat = {
            table: [1000 * (t.first[table] - t.committed) for t in app if table in t.first]
            for table in ("sync_contacts", "sync_status")
        }
        seconds = w["end"] - w["start"]
        loads = [v for ts, v in sampler.samples if w["start"] <= ts <= w["end"]]
        pipeline_wal = max(0.0, w["wal"] - app_wal_rate * seconds) if phase not in ("idle", QUIET) else float(w["wal"])
        out[phase] = {
            "seconds": seconds,
            "records_per_second": w["seen"] / seconds if phase != "idle" else 0.0,
            "written": w["written"], "seen": w["seen"], "batches": w.get("batches", 0),
            "transactions": len(pipeline),
            "max_changes": max((t.changes for t in pipeline), default=0),
            "wal_per_written": pipeline_wal / w["written"] if w["written"] else 0.0,
            # from pg_waldump (phase's whole WAL, the app's writes and autovacuum included): bytes per written
            # record of WAL records without full-page images, of Heap records (inserts, updates: where
            # REPLICA IDENTITY FULL puts the old row), and of full-page images
            "wal_records_per_written": _per(w, "Total", 0), "wal_heap_per_written": _per(w, "Heap", 0),
            "wal_fpi_per_written": _per(w, "Total", 1),
            "app_writes": len(app),
            "behind_batch": sum(1 for t in app if t.xid in behind),
            "latency": lat,
            "load": sum(loads) / len(loads) if loads else os.getloadavg()[0],
            "load_max": max(loads, default=os.getloadavg()[0]),
        }
    return out


def _per(window: dict[str, Any], rmgr: str, column: int) -> float | None:
    stats = window.get("wal_stats")
    if not stats or not window["written"]:
        return None
    return stats.get(rmgr, (0, 0))[column] / window["written"]


# --- the report ----------------------------------------------------------------------------------


def _fmt(values: list[float]) -> str:
    if not values:
        return "- | - | - | -"
    return " | ".join(f"{percentile(values, p):.1f}" for p in (50, 95, 99)) + f" | {max(values):.1f}"


def merged(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The passes' latency samples together, per variant and phase (for the plot)."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        for name, result in run.items():
            into = out.setdefault(name, {p: {"latency": {"sync_contacts": [], "sync_status": []}} for p in PHASES})
            for phase in PHASES:
                for table, values in result[phase]["latency"].items():
                    into[phase]["latency"][table].extend(values)
    return out


def write_plot(results: dict[str, dict[str, Any]]) -> None:
    """Latency distribution (sync_contacts changes) per phase, one line per variant, into docs/img."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PHASES), figsize=(4.2 * len(PHASES), 4.0), sharey=True)
    for ax, phase in zip(axes, PHASES, strict=True):
        for name, result in results.items():
            values = sorted(result[phase]["latency"]["sync_contacts"])
            if not values:
                continue
            share = [100 * (i + 1) / len(values) for i in range(len(values))]
            ax.plot(values, share, label=name, linewidth=1.4)
        ax.set_xscale("log")
        ax.axvline(20, color="grey", linestyle=":", linewidth=1)
        ax.axvline(100, color="grey", linestyle="--", linewidth=1)
        ax.set_ylim(50, 100.5)
        ax.set_title(phase)
        ax.set_xlabel("commit -> received (ms, log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("% of app writes received within")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle("App writes on sync_contacts, seen by a pgoutput subscriber of supabase_realtime (dotted 20 ms, dashed 100 ms)")
    fig.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    fig.savefig(PLOT, dpi=110)


def report(runs: list[dict[str, dict[str, Any]]], metas: list[dict[str, Any]], args: argparse.Namespace, server: str) -> str:
    """The docs/benchmarks.md section: every pass's rows, variant by variant."""
    names = list(dict.fromkeys(n for run in runs for n in run))
    rows = [(name, i + 1, run[name]) for name in names for i, run in enumerate(runs) if name in run]
    lines = [
        f"{server} ({args.server_note}); {args.contacts:,} contacts, app writes at {args.rate:g}/s, idle phase"
        f" {args.idle_seconds:g} s; {len(runs)} pass(es), the variants one after another in each (column `#`):",
        "",
        *(f"- pass {i}: {m.get('started', '?')}; commit {m.get('commit', '?')}{m.get('note', '')}"
          for i, m in enumerate(metas, 1)),
        "",
        f"Rerun: `.venv/bin/python -m bench.bench_realtime --contacts {args.contacts}"
        + "".join(f" --variant '{v}'" for v in names) + " --write` (after installing bench/requirements-realtime.txt).",
        "",
        "Variants:",
        "",
    ]
    for name in names:
        v = VARIANTS[name]
        lines.append(f"- **{name}**: {v.note}.")
    lines += [
        "",
        "Latency of the app's change to sync_contacts (commit time from the Begin message -> received by the"
        " subscriber), ms; the sync_status change of the same transaction arrives with it. `behind a batch`: the"
        " share of the app's writes that committed while the pipeline transaction decoded just before them was"
        " still being sent (its Commit message not yet received), so they waited behind it.",
        "",
        "| variant | # | phase | app writes (/s) | behind a batch | p50 | p95 | p99 | max | sync_status p99 / max | load avg (max) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, n, result in rows:
        for phase in PHASES:
            r = result[phase]
            status = r["latency"]["sync_status"]
            st = f"{percentile(status, 99):.1f} / {max(status):.1f}" if status else "not published"
            share = f"{100 * r['behind_batch'] / r['app_writes']:.0f}%" if "behind_batch" in r and r["app_writes"] else "-"
            lines.append(
                f"| {name} | {n} | {phase} | {r['app_writes']} ({r['app_writes'] / r['seconds']:.0f}) | {share}"
                f" | {_fmt(r['latency']['sync_contacts'])} | {st}"
                f" | {r['load']:.1f} ({r['load_max']:.1f}) |"
            )
    lines += [
        "",
        "What the pipeline did meanwhile: records read per second, records written, its transactions and the most"
        " changes one of them streamed (counted by the subscriber), and WAL bytes per written record:"
        " pg_current_wal_lsn difference less the app's WAL rate measured while idle, then from pg_waldump over the"
        " phase (the app's writes and autovacuum included): WAL records without full-page images, of them the Heap"
        " records (row inserts and updates: where REPLICA IDENTITY FULL adds the old row), and full-page images."
        f" `{QUIET}`: a last incremental run with nothing else writing, so its WAL is the pipeline's alone"
        " (1% of the records changed, 3% read); its full-page images depend on when the last checkpoint was, the"
        " records without them do not.",
        "",
        "| variant | # | phase | records/s | written | transactions | most changes in one | WAL/written | records only"
        " | Heap | full-page images | load avg |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, n, result in rows:
        for phase in (*PHASES[1:], QUIET):
            if phase not in result:
                continue  # (passes before it was measured)
            r = result[phase]
            dumped = [r.get(k) for k in ("wal_records_per_written", "wal_heap_per_written", "wal_fpi_per_written")]
            cells = " | ".join("-" if v is None else f"{v:,.0f}" for v in dumped)
            lines.append(
                f"| {name} | {n} | {phase} | {r['records_per_second']:,.0f} | {r['written']:,} | {r['transactions']:,}"
                f" | {r['max_changes']:,} | {r['wal_per_written']:,.0f} | {cells} | {r['load']:.1f} |"
            )
    lines += ["", "The plot (passes of the last pass's commit): the share of app writes received within a latency, per phase.",
              "", "![latency distribution per phase](img/realtime-latency.png)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="a maintenance database of a server with wal_level = logical"
                        " (default: start a PostgreSQL 15 of its own)")
    parser.add_argument("--port", type=int, help="loopback port of the server it starts (default: a free one)")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=50.0, help="app writes per second")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="default: all, in their order")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md and the plot")
    parser.add_argument("--json", help="also dump every sample there (with the run's settings)")
    parser.add_argument("--report-from", metavar="JSON", action="append",
                        help="only write the report and plot of runs dumped with --json (repeat: passes side by side)")
    parser.add_argument("--child-migrate", help=argparse.SUPPRESS)
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_migrate:
        _child_migrate(args.child_migrate)
        return 0
    if args.child_load:
        print(json.dumps(_child_load(json.loads(args.child_load))))
        return 0

    from bench.common import git_revision, machine, server_version, write_section

    if args.report_from:
        passes = [json.loads(Path(f).read_text()) for f in args.report_from]
        metas = [d.get("meta") or {} for d in passes]
        meta = next((m for m in metas if m), {})
        for key in ("contacts", "rate", "idle_seconds", "server_note"):
            setattr(args, key, meta.get(key, getattr(args, key, None)))
        runs = [d.get("results", d) for d in passes]
        # the plot shows the code of the last pass (earlier passes may have measured an earlier commit)
        last = metas[-1].get("commit")
        write_plot(merged([r for r, m in zip(runs, metas, strict=True) if m.get("commit") == last]))
        write_section("Realtime latency", report(runs, metas, args, meta.get("server", "PostgreSQL 15")))
        return 0
    started = machine()
    names = args.variant or list(VARIANTS)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="keap-bench-realtime-") as tmp:
        trees: dict[str, str | None] = {}
        for rev in {VARIANTS[n].code for n in names} - {"this"}:
            tree = Path(tmp) / f"tree-{rev}"
            tree.mkdir()
            commit = rev
            if rev == "base":
                commit = subprocess.run(  # noqa: S603, S607
                    ["git", "-C", str(HERE), "merge-base", "main", "HEAD"], capture_output=True, text=True, check=True,
                ).stdout.strip()
            print(f"code of {rev}: {commit[:12]}", flush=True)
            archive = subprocess.run(["git", "-C", str(HERE), "archive", commit], capture_output=True, check=True)  # noqa: S603, S607
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)  # noqa: S603, S607
            trees[rev] = str(tree)
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        overlays = {"re-sync": Path(tmp) / "resync.jsonl", "incremental": Path(tmp) / "incremental.jsonl",
                    "quiet": Path(tmp) / "quiet.jsonl"}
        first = _changed(args.contacts, 0, base, overlays["re-sync"])
        # the incremental run's Keap holds the re-sync's changes (loaded by then) and another 1%, later still
        second = _changed(args.contacts, 50, base + timedelta(hours=1), Path(tmp) / "second.jsonl")
        overlays["incremental"].write_text(overlays["re-sync"].read_text() + (Path(tmp) / "second.jsonl").read_text())
        _changed(args.contacts, 25, base + timedelta(hours=2), Path(tmp) / "third.jsonl")
        overlays["quiet"].write_text(overlays["incremental"].read_text() + (Path(tmp) / "third.jsonl").read_text())
        print(f"{first:,} records changed for the re-sync, {second:,} more for each incremental run", flush=True)
        server = contextlib_null(args.database_url) if args.database_url else postgres15(args.port)
        args.server_note = (
            "the server given" if args.database_url else "initdb's configuration, wal_level = logical"
        )
        with server as (server_url, wal_dir):
            version = server_version(server_url)
            for name in names:
                variant = VARIANTS[name]
                src = None if variant.code == "this" else trees[variant.code]
                print(f"== {name}", flush=True)
                result = run_variant(
                    variant, src, server_url, args.contacts, args.rate, args.idle_seconds, overlays, wal_dir
                )
                results[name] = result
                for phase in (*PHASES, QUIET):
                    r = result[phase]
                    print(
                        f"{name:>20} {phase:>12}: n={r['app_writes']:>5} p50/p95/p99/max {_fmt(r['latency']['sync_contacts'])}"
                        f" ms; behind a batch {r.get('behind_batch', 0)}; status p99 {_fmt(r['latency']['sync_status']).split(' | ')[2]};"
                        f" {r['records_per_second']:,.0f}"
                        f" records/s, {r['written']:,} written in {r['transactions']:,} transactions (most changes"
                        f" {r['max_changes']:,}), WAL {r['wal_per_written']:,.0f} B/written, load {r['load']:.1f}",
                        flush=True,
                    )
    if args.json:
        meta = {"started": started, "server": version, "contacts": args.contacts, "rate": args.rate,
                "idle_seconds": args.idle_seconds, "server_note": args.server_note, "commit": git_revision()}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}))
    if args.write:
        write_plot(results)
        write_section("Realtime latency", report([results], [{"started": started, "commit": git_revision()}], args, version))
    return 0


@contextmanager
def contextlib_null(value: str) -> Iterator[tuple[str, Path | None]]:
    """The server given on the command line (nothing to start or stop; its WAL is not ours to read)."""
    yield value, None


if __name__ == "__main__":
    raise SystemExit(main())
