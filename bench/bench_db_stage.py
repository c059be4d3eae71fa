"""Database stage of the contacts load: COPY + set-based upsert + audit, against the request's row-by-row
batch_upsert_contacts and against a plain COPY into an unindexed table; then a re-sync with 1% changed.

    .venv/bin/python -m bench.bench_db_stage --database-url postgresql://postgres@127.0.0.1:55432/postgres --contacts 1000000

Records are the sandbox's contacts (the fields the pipeline asks for), normalized before the clock
starts: only the database stage is timed. Each batch of --batch records is one transaction, as in the
pipeline. Figures go to docs/benchmarks.md ("Database stage").
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import psycopg

from bench.common import (
    contact_records,
    fresh_database,
    git_revision,
    machine,
    server_version,
    write_section,
)
from keap_pipeline.db.cursors import INCREMENTAL, advance_cursor
from keap_pipeline.db.load import UpsertCounts, begin_load, copy_frame, load_frame
from keap_pipeline.entities import CONTACTS, Entity
from keap_pipeline.normalize.contacts import normalize_contacts
from keap_pipeline.pipeline.batching import BatchSizer
from keap_pipeline.pipeline.parallel import LoaderPool
from keap_pipeline.pipeline.retries import DEFAULT_LOCK_TIMEOUT_SECONDS

REFERENCE_SQL = Path(__file__).with_name("reference_batch_upsert.sql")


def frames(records_batches: list[list[dict]]) -> list[pl.DataFrame]:
    now = datetime.now(UTC)
    out = []
    for records in records_batches:
        result = normalize_contacts(records, fetched_at=now)
        assert not result.rejected, result.rejected[:1]
        out.append(result.frame)
    return out


def load_ours(
    url: str, batches: list[pl.DataFrame], loaders: int = 1, entity: Entity = CONTACTS
) -> tuple[float, UpsertCounts, int]:
    """Load as the pipeline does: pages grouped into transactions by its BatchSizer, on `loaders`
    connections through its LoaderPool (commits in page order, the cursor in each batch's transaction)."""
    total = UpsertCounts()
    sizer = BatchSizer()
    transactions = 0

    def load(conn: psycopg.Connection, batch: tuple[pl.DataFrame, int, bool], turn) -> UpsertCounts:  # type: ignore[no-untyped-def]
        frame, _, diff = batch
        with conn.transaction():
            turn.begin()
            begin_load(conn, lock_timeout_seconds=DEFAULT_LOCK_TIMEOUT_SECONDS, relaxed_commit=True)
            counts = load_frame(conn, entity, frame, diff=diff)
            turn()
            advance_cursor(conn, entity.name, INCREMENTAL, frame["keap_updated_at"].max(), frame.height, "bench")  # type: ignore[arg-type]
        return counts

    def committed(batch: tuple[pl.DataFrame, int, bool], counts: UpsertCounts) -> None:
        nonlocal transactions
        frame, pages, _ = batch
        sizer.observe(counts, frame.height, pages)
        total.add(counts)
        transactions += 1

    pool: LoaderPool[tuple[pl.DataFrame, int, bool], UpsertCounts] = LoaderPool(
        open_connection=lambda: psycopg.connect(url, prepare_threshold=None),
        size=loaders, load=load, committed=committed,
    )
    started = time.perf_counter()
    with pool:
        i = 0
        while i < len(batches):
            pages = batches[i : i + sizer.pages]
            i += len(pages)
            frame = pl.concat(pages).with_columns(pl.int_range(pl.len(), dtype=pl.Int32).alias("ordinal"))
            pool.submit((frame, len(pages), sizer.diff), frame["keap_id"].to_list())
    return time.perf_counter() - started, total, transactions


def load_plain_copy(url: str, batches: list[pl.DataFrame], connections: int = 1) -> float:
    """COPY every page into an unindexed table (a transaction per page), pages split over `connections`."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "create table if not exists copy_target (batch_id uuid, ordinal integer, keap_id varchar(255), email varchar(255),"
            " first_name varchar(255), last_name varchar(255), phone varchar(50), company varchar(255),"
            " tags jsonb, custom_fields jsonb, keap_created_at timestamptz, keap_updated_at timestamptz,"
            " content_hash uuid)"
        )
        conn.execute("truncate copy_target")
        conn.commit()
    target = CONTACTS.__class__(**{**CONTACTS.__dict__, "staging_table": "public.copy_target"})

    def work(part: list[pl.DataFrame]) -> None:
        with psycopg.connect(url) as conn:
            for frame in part:
                with conn.transaction():
                    copy_frame(conn, target, frame, uuid.uuid4())

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(batches[k::connections],)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def time_reference(url: str, reference_sql: Path, call: str, arrays: list[list[str]]) -> float:
    """Install a row-by-row reference function and time it over the batches (one transaction each)."""
    with psycopg.connect(url) as conn:
        conn.execute(reference_sql.read_text().encode())
        conn.commit()
        started = time.perf_counter()
        for array in arrays:
            with conn.transaction():
                conn.execute(call, (array,))
        return time.perf_counter() - started


def load_reference(url: str, batches: list[pl.DataFrame]) -> float:
    arrays = [
        [
            json.dumps(
                {
                    "keap_id": r["keap_id"], "email": r["email"], "first_name": r["first_name"],
                    "last_name": r["last_name"], "tags": json.loads(r["tags"]),
                    "custom_fields": json.loads(r["custom_fields"]),
                },
                ensure_ascii=False,
            )
            for r in frame.iter_rows(named=True)
        ]
        for frame in batches
    ]
    return time_reference(url, REFERENCE_SQL, "select * from bench_reference.batch_upsert_contacts(%s::jsonb[])", arrays)


def change_one_percent(records_batches: list[list[dict]]) -> int:
    changed = 0
    for records in records_batches:
        for i, record in enumerate(records):
            if i % 100 == 0:
                record["family_name"] = f"{record.get('family_name') or ''} (changed)"
                updated = datetime.fromisoformat(record["update_time"].replace("Z", "+00:00")) + timedelta(days=1)
                record["update_time"] = updated.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                changed += 1
    return changed


def table_writes(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select (select n_tup_ins + n_tup_upd + n_tup_del from pg_stat_user_tables where relname = 'sync_contacts'),"
            " (select count(*) from public.sync_audit_log),"
            " (select count(*) from public.sync_contacts where version > 1)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a maintenance database of the server to measure")
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--loaders", type=int, default=2, help="parallel loaders (and COPY connections) to compare with 1")
    parser.add_argument("--repeat", type=int, default=1, help="first-load runs (ours and the plain COPY, in pairs); medians are reported")
    parser.add_argument("--write", action="store_true", help="write the figures into docs/benchmarks.md")
    args = parser.parse_args(argv)

    records = list(contact_records(args.contacts, batch=args.batch))
    first = frames(records)
    n = args.contacts
    print(f"{n:,} contacts in {len(first)} batches of {args.batch}; {server_version(args.database_url)}")

    k = args.loaders
    # the first load with k loaders and the one-connection plain COPY, in pairs on fresh databases:
    # the machine's speed drifts by several percent between runs, so both are taken as medians
    copy_times: list[float] = []
    ours_times: list[float] = []
    for run in range(args.repeat):
        copy_url = fresh_database(args.database_url, "bench_copy", migrated=False)
        copy_times.append(load_plain_copy(copy_url, first))
        ours_url = fresh_database(args.database_url, "bench_ours")
        t_run, counts, tx_first = load_ours(ours_url, first, loaders=k)
        assert counts.inserted == n, counts
        ours_times.append(t_run)
        print(f"run {run + 1}/{args.repeat}: plain COPY, 1 connection {n / copy_times[-1]:>9,.0f} rows/s;"
              f" ours, first load, {k} loaders {n / t_run:>8,.0f} rows/s ({tx_first} transactions);"
              f" ratio {copy_times[-1] / t_run:.3f}")
    t_copy = statistics.median(copy_times)
    t_ours = statistics.median(ours_times)
    ratios = [c / o for c, o in zip(copy_times, ours_times, strict=True)]
    print(f"medians: plain COPY {n / t_copy:,.0f} rows/s, ours {n / t_ours:,.0f} rows/s;"
          f" ratio of medians {t_copy / t_ours:.3f}; per-run ratios {min(ratios):.3f}-{max(ratios):.3f}")

    copy_k_url = fresh_database(args.database_url, "bench_copy", migrated=False)
    t_copy_k = load_plain_copy(copy_k_url, first, connections=k)
    print(f"plain COPY, unindexed table, {k} connections:  {t_copy_k:8.2f} s  {n / t_copy_k:>10,.0f} rows/s")
    ours_1_url = fresh_database(args.database_url, "bench_ours_1")
    t_ours_1, counts, _ = load_ours(ours_1_url, first, loaders=1)
    assert counts.inserted == n, counts
    print(f"ours, first load, 1 loader:                  {t_ours_1:8.2f} s  {n / t_ours_1:>10,.0f} rows/s")

    changed = change_one_percent(records)
    second = frames(records)
    with psycopg.connect(ours_url, autocommit=True) as conn:
        conn.execute("vacuum analyze")
        conn.execute("select pg_stat_force_next_flush()") if conn.info.server_version >= 150000 else None
    time.sleep(1)
    before = table_writes(ours_url)
    t_resync, recounts, tx_resync = load_ours(ours_url, second, loaders=k)
    time.sleep(1)
    after = table_writes(ours_url)
    assert recounts.updated == changed and recounts.unchanged == n - changed, recounts
    writes = after[0] - before[0]
    audits = after[1] - before[1]
    print(f"ours, re-sync with 1% changed, {k} loaders:    {t_resync:8.2f} s  {n / t_resync:>10,.0f} rows/s"
          f"  ({changed:,} updated, {writes:,} tuple writes, {audits:,} audit rows, {tx_resync} transactions)")

    t_ref = None
    if not args.skip_reference:
        ref_url = fresh_database(args.database_url, "bench_reference")
        t_ref = load_reference(ref_url, first)
        print(f"reference (request's row-by-row): {t_ref:8.2f} s  {n / t_ref:>10,.0f} rows/s")

    if args.write:
        def ref(t: float) -> str:
            return f"{t_ref / t:.1f}x" if t_ref else ""

        lines = [
            f"Measured {machine()}; {server_version(args.database_url)}; commit {git_revision()}.",
            f"Rerun: `.venv/bin/python -m bench.bench_db_stage --database-url URL --contacts {n} --loaders {k}"
            f" --repeat {args.repeat} --write`.",
            f"{n:,} sandbox contacts (the pipeline's fields), normalized before timing, in pages of {args.batch:,};"
            f" ours groups pages into transactions as the pipeline does (BatchSizer: one page while rows change,"
            f" up to ten while they do not): {tx_first} transactions for the first load, {tx_resync} for the"
            f" re-sync, loaded through the pipeline's LoaderPool (batches on `loaders` connections at once,"
            f" committed in page order with the cursor). The plain COPY and the reference commit every page;"
            f" the plain COPY with {k} connections splits the pages between them."
            f" The one-connection plain COPY and ours with {k} loaders ran {args.repeat} time(s) in pairs on fresh"
            f" databases; their rows give the medians. Per run, plain COPY / ours / ratio: "
            + "; ".join(f"{n / c:,.0f} / {n / o:,.0f} / {c / o:.3f}" for c, o in zip(copy_times, ours_times, strict=True))
            + f" (ratio of the medians {t_copy / t_ours:.3f}).",
            "",
            "| what | connections | seconds | rows/s | vs. plain COPY, 1 connection | vs. plain COPY, same connections | vs. reference |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| plain COPY into an unindexed table | 1 | {t_copy:.2f} | {n / t_copy:,.0f} | 1.00 | 1.00 | |",
            f"| plain COPY into an unindexed table | {k} | {t_copy_k:.2f} | {n / t_copy_k:,.0f} | {t_copy / t_copy_k:.2f} | 1.00 | |",
            f"| ours, first load: COPY + set-based upsert + audit + sync_status | 1 | {t_ours_1:.2f} | {n / t_ours_1:,.0f} |"
            f" {t_copy / t_ours_1:.2f} | {t_copy / t_ours_1:.2f} | {ref(t_ours_1)} |",
            f"| ours, first load (the default: {k} loaders) | {k} | {t_ours:.2f} | {n / t_ours:,.0f} |"
            f" {t_copy / t_ours:.2f} | {t_copy_k / t_ours:.2f} | {ref(t_ours)} |",
            f"| ours, re-sync, 1% changed | {k} | {t_resync:.2f} | {n / t_resync:,.0f} | | | |",
        ]
        if t_ref:
            lines.append(f"| reference: the request's row-by-row batch_upsert_contacts | 1 | {t_ref:.2f} | {n / t_ref:,.0f} | {t_copy / t_ref:.2f} | | 1.0x |")
        lines += [
            "",
            f"Re-sync writes: {changed:,} contacts changed in Keap -> {recounts.updated:,} updated, "
            f"{recounts.unchanged:,} unchanged; sync_contacts tuple writes during the re-sync: {writes:,}; audit rows: {audits:,}"
            " (unchanged rows write nothing).",
        ]
        write_section("Database stage", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
