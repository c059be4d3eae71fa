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
from keap_pipeline.db.load import UpsertCounts, copy_frame, load_frame, relax_commit
from keap_pipeline.entities import CONTACTS
from keap_pipeline.normalize.contacts import normalize_contacts
from keap_pipeline.pipeline.batching import BatchSizer

REFERENCE_SQL = Path(__file__).with_name("reference_batch_upsert.sql")


def frames(records_batches: list[list[dict]]) -> list[pl.DataFrame]:
    now = datetime.now(UTC)
    out = []
    for records in records_batches:
        result = normalize_contacts(records, fetched_at=now)
        assert not result.rejected, result.rejected[:1]
        out.append(result.frame)
    return out


def load_ours(url: str, batches: list[pl.DataFrame]) -> tuple[float, UpsertCounts, int]:
    """Load as the pipeline does: pages grouped into transactions by its BatchSizer."""
    total = UpsertCounts()
    sizer = BatchSizer()
    transactions = 0
    with psycopg.connect(url, prepare_threshold=None) as conn:
        started = time.perf_counter()
        i = 0
        while i < len(batches):
            pages = batches[i : i + sizer.pages]
            i += len(pages)
            frame = pl.concat(pages).with_columns(pl.int_range(pl.len(), dtype=pl.Int32).alias("ordinal"))
            with conn.transaction():
                relax_commit(conn)
                counts = load_frame(conn, CONTACTS, frame, diff=sizer.diff)
                advance_cursor(conn, "contacts", INCREMENTAL, frame["keap_updated_at"].max(), frame.height, "bench")  # type: ignore[arg-type]
            sizer.observe(counts, frame.height, len(pages))
            total.add(counts)
            transactions += 1
        return time.perf_counter() - started, total, transactions


def load_plain_copy(url: str, batches: list[pl.DataFrame]) -> float:
    with psycopg.connect(url) as conn:
        conn.execute(
            "create table copy_target (batch_id uuid, ordinal integer, keap_id varchar(255), email varchar(255),"
            " first_name varchar(255), last_name varchar(255), phone varchar(50), company varchar(255),"
            " tags jsonb, custom_fields jsonb, keap_created_at timestamptz, keap_updated_at timestamptz,"
            " content_hash uuid)"
        )
        conn.commit()
        target = CONTACTS.__class__(**{**CONTACTS.__dict__, "staging_table": "public.copy_target"})
        started = time.perf_counter()
        for frame in batches:
            with conn.transaction():
                copy_frame(conn, target, frame, uuid.uuid4())
        return time.perf_counter() - started


def load_reference(url: str, batches: list[pl.DataFrame]) -> float:
    with psycopg.connect(url) as conn:
        conn.execute(REFERENCE_SQL.read_text().encode())
        conn.commit()
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
        started = time.perf_counter()
        for array in arrays:
            with conn.transaction():
                conn.execute("select * from bench_reference.batch_upsert_contacts(%s::jsonb[])", (array,))
        return time.perf_counter() - started


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
    parser.add_argument("--write", action="store_true", help="write the figures into docs/benchmarks.md")
    args = parser.parse_args(argv)

    records = list(contact_records(args.contacts, batch=args.batch))
    first = frames(records)
    n = args.contacts
    print(f"{n:,} contacts in {len(first)} batches of {args.batch}; {server_version(args.database_url)}")

    copy_url = fresh_database(args.database_url, "bench_copy", migrated=False)
    t_copy = load_plain_copy(copy_url, first)
    print(f"plain COPY, unindexed table:      {t_copy:8.2f} s  {n / t_copy:>10,.0f} rows/s")

    ours_url = fresh_database(args.database_url, "bench_ours")
    t_ours, counts, tx_first = load_ours(ours_url, first)
    assert counts.inserted == n, counts
    print(f"ours, first load (COPY+upsert+audit): {t_ours:8.2f} s  {n / t_ours:>10,.0f} rows/s  ({tx_first} transactions)")

    changed = change_one_percent(records)
    second = frames(records)
    with psycopg.connect(ours_url, autocommit=True) as conn:
        conn.execute("vacuum analyze")
        conn.execute("select pg_stat_force_next_flush()") if conn.info.server_version >= 150000 else None
    time.sleep(1)
    before = table_writes(ours_url)
    t_resync, recounts, tx_resync = load_ours(ours_url, second)
    time.sleep(1)
    after = table_writes(ours_url)
    assert recounts.updated == changed and recounts.unchanged == n - changed, recounts
    writes = after[0] - before[0]
    audits = after[1] - before[1]
    print(f"ours, re-sync with 1% changed:    {t_resync:8.2f} s  {n / t_resync:>10,.0f} rows/s"
          f"  ({changed:,} updated, {writes:,} tuple writes, {audits:,} audit rows, {tx_resync} transactions)")

    t_ref = None
    if not args.skip_reference:
        ref_url = fresh_database(args.database_url, "bench_reference")
        t_ref = load_reference(ref_url, first)
        print(f"reference (request's row-by-row): {t_ref:8.2f} s  {n / t_ref:>10,.0f} rows/s")

    if args.write:
        lines = [
            f"Measured {machine()}; {server_version(args.database_url)}; commit {git_revision()}.",
            f"Rerun: `.venv/bin/python -m bench.bench_db_stage --database-url URL --contacts {n} --write`.",
            f"{n:,} sandbox contacts (the pipeline's fields), normalized before timing, in pages of {args.batch:,};"
            f" ours groups pages into transactions as the pipeline does (BatchSizer: one page while rows change,"
            f" up to ten while they do not): {tx_first} transactions for the first load, {tx_resync} for the"
            f" re-sync. The plain COPY and the reference commit every page.",
            "",
            "| what | seconds | rows/s | vs. plain COPY | vs. reference |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| plain COPY into an unindexed table | {t_copy:.2f} | {n / t_copy:,.0f} | 1.00 | |",
            f"| ours, first load: COPY + set-based upsert + audit + sync_status | {t_ours:.2f} | {n / t_ours:,.0f} |"
            f" {t_copy / t_ours:.2f} | {(t_ref / t_ours) if t_ref else float('nan'):.1f}x |",
            f"| ours, re-sync, 1% changed | {t_resync:.2f} | {n / t_resync:,.0f} | | |",
        ]
        if t_ref:
            lines.append(f"| reference: the request's row-by-row batch_upsert_contacts | {t_ref:.2f} | {n / t_ref:,.0f} | {t_copy / t_ref:.2f} | 1.0x |")
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
