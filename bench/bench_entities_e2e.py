"""End to end for orders and subscriptions: the sandbox (its own process, no limits) -> KeapClient (pacing
off) -> normalize -> COPY -> upsert, as `keap-pipeline sync orders|subscriptions --no-pacing` runs it.

    .venv/bin/python -m bench.bench_entities_e2e --database-url postgresql://postgres@127.0.0.1:5439/postgres \\
        --entity orders subscriptions --records 100000 1000000 --write

Per entity and size, in a fresh child process (so its peak RSS is its own) on a fresh migrated database:
1. first load of N records;
2. a re-sync that reads all N again with 1% changed in Keap (a second sandbox process serving the same
   records, 1% of them changed with a later update time): orders as a backfill window over all of
   time (every record re-read), subscriptions as their normal run (a full pass by id). Unchanged
   records must cost no writes: the sync table's tuple writes are counted;
3. the same re-sync again with another 1% changed ("again"): an orders window's first re-read (2.)
   normalizes every record once more and stores its raw record keys, which the first load, an
   incremental run, does not; this one skips every record whose bytes were read before, as a later
   backfill or re-sync does. Subscriptions (a full pass each run) store them from the first load on.
Each phase's CPU is read from /proc: the pipeline process's, the sandbox's and the PostgreSQL server's.
Figures go to docs/benchmarks.md ("Orders and subscriptions: end to end").

`--variant NAME=SRC` (with `--pairs`) also runs the code in SRC (first on PYTHONPATH, say a `git archive`
of an older commit), alternating with this tree pair after pair; the figures then go to "Orders and
subscriptions: re-sync side by side". Each child migrates its database with its own code, so a variant
runs on SRC's SQL too (until session 8 the parent migrated every database with this tree's SQL, and a
variant differed in its Python only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import fresh_database, git_revision, machine, server_version, write_section

HERE = str(Path(__file__).resolve().parents[1])

CONTACTS_PER_RECORD = 2  # the sandbox's orders point at existing contacts: some fewer contacts than orders
# what each child times, in order: the first load, a re-sync of every record with 1% changed in Keap (an
# orders window's first re-read: every record normalized once more, its raw record keys stored), and the
# same again with another 1% changed (every unchanged record's bytes known)
PHASES = (("first", "first load"), ("resync", "re-sync"), ("again", "re-sync again"))


def _changed(entity: str, n: int, contacts: int, first: int = 1) -> tuple[bytes, ...]:
    """1% of the records (ids first, first + 100, ...), changed in a content field, with an update time a day later."""
    from keap_pipeline.sandbox import SandboxConfig
    from keap_pipeline.sandbox.dataset import Dataset

    dataset = Dataset(SandboxConfig(contacts=contacts, orders=n if entity == "orders" else None,
                                    subscriptions=n if entity == "subscriptions" else None))
    out = []
    field = "modification_time"
    for ident in range(first, n + 1, 100):
        record = dataset.record(entity, ident)
        if entity == "orders":
            record["status"] = "PARTIALLY_PAID" if record["status"] != "PARTIALLY_PAID" else "PAID"
        else:
            record["active"] = not record["active"]
        t = datetime.fromisoformat(record[field].replace("Z", "+00:00")) + timedelta(days=1)
        record[field] = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        out.append(json.dumps(record).encode())
    return tuple(out)


def _writes(url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if conn.info.server_version >= 150000:
            conn.execute("select pg_stat_force_next_flush()")
        row = conn.execute(
            "select n_tup_ins + n_tup_upd + n_tup_del from pg_stat_user_tables where relname = %s", (table,)
        ).fetchone()
    return int(row[0]) if row else 0


def _one(database_url: str, entity_name: str, n: int, loaders: int, changed_path: str, again_path: str) -> dict[str, float]:
    from keap_pipeline.db.cursors import window_scope
    from keap_pipeline.entities import ENTITIES, CursorKind
    from keap_pipeline.keap import ApiKeyAuth, KeapClient
    from keap_pipeline.pipeline.sync import sync_entity
    from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

    entity = ENTITIES[entity_name]
    contacts = max(10, n // CONTACTS_PER_RECORD)
    counts = {entity_name: n}
    config = SandboxConfig(port=0, contacts=contacts, limits=RateLimits.off(), api_key="bench-key", **counts)  # type: ignore[arg-type]
    cpu: dict[str, float] = {}

    def phase(name: str, config: Any, **window: Any) -> tuple[Any, float]:
        """One timed sync_entity against a fresh sandbox process of `config`; its CPU goes into `cpu`."""
        with running_sandbox(config, subprocess_mode=True) as sandbox:
            with KeapClient(sandbox.base_url, ApiKeyAuth("bench-key"), pacing=False) as client:
                readings = _cpu_readings(database_url, sandbox.pid)
                started = time.perf_counter()
                report = sync_entity(client, database_url, entity, run_id=f"bench-{name}", loaders=loaders, **window)
                seconds = time.perf_counter() - started
                cpu.update(_cpu_spent(name, readings, _cpu_readings(database_url, sandbox.pid)))
        return report, seconds

    first, t_first = phase("first", config)
    assert first.counts.inserted == n, first.summary()
    rss_first = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # made by the parent process (generating them here would count the generator's memory as ours)
    with open(changed_path, "rb") as f:
        changed = tuple(line.rstrip(b"\n") for line in f)
    config = config.with_(raw_records=((entity_name, changed),))
    before = _writes(database_url, entity.table_name)
    window: dict[str, object] = {}
    if entity.cursor is CursorKind.TIME:
        start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=400)
        window = {"since": start, "until": end, "scope": window_scope(start, end)}
    second, t_second = phase("resync", config, **window)
    writes = _writes(database_url, entity.table_name) - before
    assert second.counts.updated == len(changed), second.summary()
    assert second.records_seen >= n, second.summary()
    # 3. the same read again with another 1% changed: now every unchanged record's bytes were read before
    # (an orders window's first re-read normalized them all and stored their raw record keys)
    with open(again_path, "rb") as f:
        again = tuple(line.rstrip(b"\n") for line in f)
    config = config.with_(raw_records=((entity_name, changed + again),))
    before = _writes(database_url, entity.table_name)
    third, t_third = phase("again", config, **window)
    again_writes = _writes(database_url, entity.table_name) - before
    assert third.counts.updated == len(again), third.summary()
    assert third.records_seen >= n, third.summary()
    return {
        "first_seconds": t_first,
        "first_per_second": n / t_first,
        "resync_seconds": t_second,
        "resync_per_second": second.records_seen / t_second,
        "resync_seen": second.records_seen,
        "changed": len(changed),
        "resync_writes": writes,
        "again_seconds": t_third,
        "again_per_second": third.records_seen / t_third,
        "again_changed": len(again),
        "again_writes": again_writes,
        "peak_rss_mb": max(rss_first, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_after_first_mb": rss_first,
        **cpu,
    }


def _cpu_line(result: dict[str, float], n: int) -> str:
    """The phases' CPU per record, pipeline / sandbox / PostgreSQL (what could be read)."""
    parts = []
    for phase, label in PHASES:
        got = [f"{who} {result[f'{phase}_cpu_{who}'] / n * 1e6:.0f}"
               for who in ("pipeline", "sandbox", "postgres") if f"{phase}_cpu_{who}" in result]
        parts.append(f"{label} {', '.join(got)}")
    return "; ".join(parts)


def _cpu_readings(url: str, sandbox_pid: int | None) -> dict[str, float | None]:
    """CPU seconds so far of this process (the pipeline), the sandbox's and the PostgreSQL server's.

    Read through bench.common when the code on the path has its readers (a variant's older tree may not:
    then only the pipeline's own is read).
    """
    from bench import common

    process_cpu, server_cpu = getattr(common, "process_cpu", None), getattr(common, "server_cpu", None)
    return {
        "pipeline": time.process_time(),
        "sandbox": process_cpu(sandbox_pid) if process_cpu is not None and sandbox_pid is not None else None,
        "postgres": server_cpu(url) if server_cpu is not None else None,
    }


def _cpu_spent(phase: str, before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float]:
    """`{phase}_cpu_{who}`: CPU seconds each spent between two readings (who could not be read is left out)."""
    out = {}
    for who, start in before.items():
        end = after.get(who)
        if start is not None and end is not None:
            out[f"{phase}_cpu_{who}"] = end - start
    return out


def _child(database_url: str, name: str, n: int, loaders: int, src: str) -> dict[str, float]:
    """One entity's first load and re-sync in a fresh child process on a fresh database, with SRC's code first."""
    # migrated by the child, with SRC's migrations: a variant runs on its own schema and functions
    url = fresh_database(database_url, f"bench_{name}_e2e", migrated=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([p for p in (src, HERE) if p])}
    contacts = max(10, n // CONTACTS_PER_RECORD)
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as changed_file, \
            tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as again_file:
        changed_file.write(b"\n".join(_changed(name, n, contacts)) + b"\n")
        changed_file.flush()
        again_file.write(b"\n".join(_changed(name, n, contacts, first=51)) + b"\n")
        again_file.flush()
        # run as a script (not -m, which puts the working directory first): SRC's keap_pipeline wins
        out = subprocess.run(  # noqa: S603 - our own module
            [sys.executable, __file__, "--database-url", database_url,
             "--child", url, name, str(n), str(loaders), changed_file.name, again_file.name],
            capture_output=True, text=True, check=False, env=env,
        )
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"{name} {n}: the child failed (exit {out.returncode})")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--entity", nargs="+", default=["orders", "subscriptions"], choices=["orders", "subscriptions"])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000])
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--pairs", type=int, default=1, help="alternating runs of every variant")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=SRC",
                        help="also run the code in SRC (first on PYTHONPATH); this tree is 'this'")
    parser.add_argument("--child", nargs=6, metavar=("URL", "ENTITY", "N", "LOADERS", "CHANGED", "AGAIN"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, name, n, loaders, changed_path, again_path = args.child
        from keap_pipeline.db.migrate import migrate

        migrate(url)
        print(json.dumps(_one(url, name, int(n), int(loaders), changed_path, again_path)))
        return 0
    rows = []
    variants = [tuple(v.split("=", 1)) for v in args.variant] + [("this", "")]
    side_by_side = []
    runs = [
        (name, n, pair, variant, src)
        for name in args.entity
        for n in args.records
        for pair in range(args.pairs)
        for variant, src in (variants if pair % 2 == 0 else list(reversed(variants)))
    ]
    for name, n, pair, variant, src in runs:
        load = os.getloadavg()[0]
        result = _child(args.database_url, name, n, args.loaders, src)
        result["load"] = load
        if len(variants) == 1:
            rows.append((name, n, result))
        side_by_side.append((name, n, variant, pair + 1, result))
        print(f"{variant:>8} {name:>13} {n:>9,}: first load {result['first_per_second']:>8,.0f}/s;"
              f" re-sync 1% changed {result['resync_per_second']:>9,.0f}/s ({result['changed']:,} changed,"
              f" {result['resync_writes']:,} tuple writes); again {result['again_per_second']:>9,.0f}/s"
              f" ({result['again_writes']:,} tuple writes); peak RSS first load {result['rss_after_first_mb']:.0f} MB,"
              f" whole run {result['peak_rss_mb']:.0f} MB, load {load:.1f}", flush=True)
        print(f"{'':>8} {'':>13} {'':>9}  CPU us per record: {_cpu_line(result, n)}", flush=True)
    if args.write and len(variants) > 1:
        lines = [
            f"Measured {machine()}; {server_version(args.database_url)}; commit {git_revision()}; pacing off, "
            f"{args.loaders} loaders, the sandbox in its own process.",
            f"Rerun: `.venv/bin/python -m bench.bench_entities_e2e --database-url URL --entity {' '.join(args.entity)}"
            f" --records {' '.join(map(str, args.records))} --pairs {args.pairs}"
            + "".join(f" --variant {v}=SRC" for v, src in variants if src) + " --write`.",
            "",
            "| entity | records | variant | run | first load records/s | re-sync s | re-sync records/s | changed | tuple writes |"
            " peak RSS MB | load |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, n, variant, run, r in sorted(side_by_side, key=lambda x: (x[0], x[1], x[2], x[3])):
            lines.append(
                f"| {name} | {n:,} | {variant} | {run} | {r['first_per_second']:,.0f} | {r['resync_seconds']:.1f} |"
                f" {r['resync_per_second']:,.0f} | {r['changed']:,} | {r['resync_writes']:,} | {r['peak_rss_mb']:.0f} |"
                f" {r['load']:.1f} |"
            )
        write_section("Orders and subscriptions: re-sync side by side", "\n".join(lines))
    elif args.write:
        lines = [
            f"Measured {machine()}; {server_version(args.database_url)}; commit {git_revision()}; pacing off, "
            f"{args.loaders} loaders, the sandbox in its own process.",
            f"Rerun: `.venv/bin/python -m bench.bench_entities_e2e --database-url URL --entity {' '.join(args.entity)}"
            f" --records {' '.join(map(str, args.records))} --write`.",
            "The re-sync reads every record again (orders: a backfill window over all of time; subscriptions:"
            " their normal full pass by id) with 1% changed in Keap; tuple writes are the sync table's inserts +"
            " updates + deletes during it (pg_stat_user_tables): only the changed rows are written. Peak RSS is the"
            " pipeline process's ru_maxrss (88 MB of it is the interpreter with polars, psycopg and httpx"
            " imported); the whole run's includes the changed records it hands to the later sandboxes. \"again\""
            " is the same re-sync once more with another 1% changed: every unchanged record's bytes were read"
            " before (for orders, by the re-sync's first re-read of the window).",
            "",
            "| entity | records | first load s | first load records/s | re-sync s | re-sync records/s | changed | tuple writes |"
            " again s | again records/s | again tuple writes | peak RSS MB, first load | peak RSS MB, whole run |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, n, r in rows:
            lines.append(
                f"| {name} | {n:,} | {r['first_seconds']:.1f} | {r['first_per_second']:,.0f} | {r['resync_seconds']:.1f} |"
                f" {r['resync_per_second']:,.0f} | {r['changed']:,} | {r['resync_writes']:,} | {r['again_seconds']:.1f} |"
                f" {r['again_per_second']:,.0f} | {r['again_writes']:,} | {r['rss_after_first_mb']:.0f} |"
                f" {r['peak_rss_mb']:.0f} |"
            )
        lines += [
            "",
            "CPU per record (user + system, us): the pipeline process, the sandbox process, the PostgreSQL server"
            " (its postmaster, the children it reaped and its live ones, background work included); on 2 cores,"
            " 15,000 records/s leaves 133 us of CPU per record for all three, 150,000 records/s 13 us.",
            "",
            "| entity | records | phase | pipeline | sandbox | PostgreSQL | all three |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for name, n, r in rows:
            for phase, label in PHASES:
                us = [r.get(f"{phase}_cpu_{who}") for who in ("pipeline", "sandbox", "postgres")]
                cells = [f"{v / n * 1e6:.0f}" if v is not None else "?" for v in us]
                total = f"{sum(us) / n * 1e6:.0f}" if all(v is not None for v in us) else "?"  # type: ignore[misc]
                lines.append(f"| {name} | {n:,} | {label} | {' | '.join(cells)} | {total} |")
        write_section("Orders and subscriptions: end to end", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
