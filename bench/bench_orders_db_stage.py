"""Database stage of the orders load (the generated upsert) against the request's row-by-row pattern written
for orders (bench/reference_batch_upsert_orders.sql); then a re-sync with 1% changed.

    .venv/bin/python -m bench.bench_orders_db_stage --database-url postgresql://postgres@127.0.0.1:5439/postgres --orders 200000

Records are the sandbox's orders, normalized by the pipeline's normalizer before the clock starts: only
the database stage is timed (COPY keys -> diff -> COPY rows -> upsert, audit, sync_status, through the
pipeline's LoaderPool). Each page of --batch records is grouped into transactions by the BatchSizer, as
in a sync; the reference commits every page. Figures go to docs/benchmarks.md ("Orders: database stage").
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg

from bench.bench_db_stage import load_ours, time_reference
from bench.common import fresh_database, git_revision, machine, server_version, write_section
from keap_pipeline.entities import ORDERS
from keap_pipeline.normalize.orders import normalize_orders
from keap_pipeline.sandbox import SandboxConfig
from keap_pipeline.sandbox.dataset import Dataset

REFERENCE_SQL = Path(__file__).with_name("reference_batch_upsert_orders.sql")


def order_records(n: int, batch: int) -> list[list[dict]]:
    dataset = Dataset(SandboxConfig(contacts=max(10, n // 2), orders=n))
    return [[dataset.record("orders", i) for i in range(s, min(s + batch, n + 1))] for s in range(1, n + 1, batch)]


def frames(batches: list[list[dict]]) -> list[pl.DataFrame]:
    now = datetime.now(UTC)
    out = []
    for records in batches:
        result = normalize_orders(records, fetched_at=now)
        assert not result.rejected, result.rejected[:1]
        out.append(result.frame)
    return out


def load_reference(url: str, batches: list[pl.DataFrame]) -> float:
    arrays = [
        [
            json.dumps(
                {
                    **{k: v for k, v in r.items() if k not in ("ordinal", "content_hash")},
                    "order_date": r["order_date"].isoformat(),
                    "keap_updated_at": r["keap_updated_at"].isoformat(),
                    "total_amount": str(r["total_amount"]) if isinstance(r["total_amount"], Decimal) else r["total_amount"],
                    "line_items": json.loads(r["line_items"]),
                    "shipping_address": json.loads(r["shipping_address"]) if r["shipping_address"] else None,
                    "billing_address": json.loads(r["billing_address"]) if r["billing_address"] else None,
                },
                ensure_ascii=False,
                default=str,
            )
            for r in frame.iter_rows(named=True)
        ]
        for frame in batches
    ]
    return time_reference(url, REFERENCE_SQL, "select * from bench_reference.batch_upsert_orders(%s::jsonb[])", arrays)


def change_one_percent(batches: list[list[dict]]) -> int:
    changed = 0
    for records in batches:
        for i, record in enumerate(records):
            if i % 100 == 0:
                record["status"] = "PARTIALLY_PAID" if record["status"] != "PARTIALLY_PAID" else "PAID"
                t = datetime.fromisoformat(record["modification_time"].replace("Z", "+00:00")) + timedelta(days=1)
                record["modification_time"] = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a maintenance database of the server to measure")
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of (reference, ours), alternating")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    n = args.orders
    records = order_records(n, args.batch)
    first = frames(records)
    print(f"{n:,} orders in {len(first)} pages; {server_version(args.database_url)}")
    ours: list[float] = []
    refs: list[float] = []
    for run in range(args.repeat):
        ref_url = fresh_database(args.database_url, "bench_orders_ref")
        refs.append(load_reference(ref_url, first))
        ours_url = fresh_database(args.database_url, "bench_orders_ours")
        t, counts, tx = load_ours(ours_url, first, loaders=args.loaders, entity=ORDERS)
        assert counts.inserted == n, counts
        ours.append(t)
        print(f"pair {run + 1}: reference {n / refs[-1]:,.0f} rows/s, ours {n / t:,.0f} rows/s"
              f" ({tx} transactions), {refs[-1] / t:.1f}x")
    changed = change_one_percent(records)
    second = frames(records)
    with psycopg.connect(ours_url, autocommit=True) as conn:
        conn.execute("vacuum analyze")
    t_resync, recounts, tx_resync = load_ours(ours_url, second, loaders=args.loaders, entity=ORDERS)
    assert recounts.updated == changed and recounts.unchanged == n - changed, recounts
    t_o, t_r = statistics.median(ours), statistics.median(refs)
    print(f"medians: reference {n / t_r:,.0f} rows/s, ours {n / t_o:,.0f} rows/s: {t_r / t_o:.1f}x;"
          f" re-sync 1% changed {n / t_resync:,.0f} rows/s ({changed:,} updated, {tx_resync} transactions)")
    if args.write:
        lines = [
            f"Measured {machine()}; {server_version(args.database_url)}; commit {git_revision()}.",
            f"Rerun: `.venv/bin/python -m bench.bench_orders_db_stage --database-url URL --orders {n}"
            f" --loaders {args.loaders} --repeat {args.repeat} --write`.",
            f"{n:,} sandbox orders normalized before timing; {args.repeat} alternating pairs on fresh databases"
            " (reference first, then ours). Per pair, reference / ours rows/s: "
            + "; ".join(f"{n / r:,.0f} / {n / o:,.0f} ({r / o:.1f}x)" for r, o in zip(refs, ours, strict=True)) + ".",
            "",
            "| what | seconds (median) | rows/s | vs. reference |",
            "| --- | ---: | ---: | ---: |",
            f"| reference: request-style row-by-row batch_upsert_orders, 1 connection | {t_r:.2f} | {n / t_r:,.0f} | 1.0x |",
            f"| ours, first load, {args.loaders} loaders | {t_o:.2f} | {n / t_o:,.0f} | {t_r / t_o:.1f}x |",
            f"| ours, re-sync with 1% changed, {args.loaders} loaders | {t_resync:.2f} | {n / t_resync:,.0f} | |",
        ]
        write_section("Orders: database stage", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
