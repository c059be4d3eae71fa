"""A reconcile pass of 1M contacts with 0.1% deleted in Keap (issue 13): requests, database seconds, RSS.

    .venv/bin/python -m bench.bench_reconcile --database-url postgresql://postgres@127.0.0.1:5442/postgres \\
        --contacts 1000000 --write

1. A fresh migrated database gets N sync_contacts rows with keap_ids 1..N, as a completed load leaves
   them (written directly, with the sync triggers off: the bench is about the pass, not the load).
2. The sandbox (its own process, no limits) serves the same N contacts; 0.1% of them are deleted
   through its deleteContact endpoint.
3. A child process runs the pass as `keap-pipeline reconcile contacts --no-pacing` does
   (pipeline.reconcile.reconcile_entity), so its peak RSS is the pipeline's own.
Reported: requests against the minimum (N / page size), the database side (COPY of every id, page by
page, plus the judgement: the anti-join, the soft deletes with their audit and sync_status rows),
wall time and peak RSS; and, per entity at a smaller size, requests and bytes per 1,000 records of
its listing (what a pass costs). Figures go to docs/benchmarks.md ("Reconcile pass (deletions in Keap)").
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

API_KEY = "bench-key"
PAGE_SIZE = 1000
DELETED_EVERY = 1000  # 0.1%
PER_ENTITY_RECORDS = 20_000


def _seed(url: str, n: int) -> None:
    """N contacts as a completed load leaves them: keap ids 1..N, loaded two days ago."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # triggers (audit, queue) off for the seed only: the pass's own writes keep them on
        conn.execute("set session_replication_role = replica")
        conn.execute(
            "insert into public.sync_contacts (keap_id, email, first_name, last_name, phone, company, tags, custom_fields,"
            " source_system, keap_updated_at, last_synced_at, sync_status, created_at, updated_at, keap_created_at, keap_hash)"
            " select g::text, 'contact' || g || '@example.com', 'Given' || (g %% 997), 'Family' || (g %% 1009),"
            " '+1 555 ' || lpad((g %% 10000)::text, 4, '0'), 'Company ' || (g %% 211), '[1, 2]'::jsonb,"
            " '{\"1\": \"x\"}'::jsonb, 'keap', now() - interval '3 days', now() - interval '2 days', 'completed',"
            " now() - interval '2 days', now() - interval '2 days', now() - interval '4 days', md5(g::text)::uuid"
            " from generate_series(1, %s) as g",
            (n,),
        )
        conn.execute("vacuum analyze public.sync_contacts")


def _child(url: str, base_url: str) -> dict[str, object]:
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.keap import ApiKeyAuth, KeapClient
    from keap_pipeline.pipeline.reconcile import ReconcileSettings, reconcile_entity

    with KeapClient(base_url, ApiKeyAuth(API_KEY), pacing=False) as client:
        started = time.perf_counter()
        # a limit above 0.1% (the default 2% is; the count limit is raised for a million rows)
        report = reconcile_entity(client, url, CONTACTS, ReconcileSettings(page_size=PAGE_SIZE, max_count=100_000))
        seconds = time.perf_counter() - started
    data = report.as_dict()
    data["wall_seconds"] = seconds
    data["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return data


def _listing_cost(base_url: str) -> dict[str, tuple[float, float]]:
    """Per entity: requests and KB per 1,000 records of a reconcile listing (as the entity row asks for it)."""
    from keap_pipeline.entities import ENTITIES
    from keap_pipeline.keap import ApiKeyAuth, KeapClient

    out = {}
    with KeapClient(base_url, ApiKeyAuth(API_KEY), pacing=False) as client:
        for entity in ENTITIES.values():
            before = client.stats.requests
            records = size = 0
            for page in client.iter_pages(
                entity.endpoint, fields=entity.id_fields or None, order_by=entity.id_order_by or None, page_size=PAGE_SIZE
            ):
                records += len(page.records)
                size += len(page.raw or b"")
            requests = client.stats.requests - before
            out[entity.name] = (requests * 1000 / records, size / records)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a maintenance database of the server to use")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--write", action="store_true", help="write the figures to docs/benchmarks.md")
    parser.add_argument("--child", nargs=2, metavar=("URL", "BASE_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0

    import httpx

    from bench.common import fresh_database, git_revision, machine, server_version, write_section
    from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

    n = args.contacts
    url = fresh_database(args.database_url, "bench_reconcile")
    moment = time.perf_counter()
    _seed(url, n)
    print(f"seeded {n:,} contacts in {time.perf_counter() - moment:.1f} s", flush=True)
    deleted = list(range(DELETED_EVERY // 2, n + 1, DELETED_EVERY))
    config = SandboxConfig(port=0, contacts=n, limits=RateLimits.off(), api_key=API_KEY)
    with running_sandbox(config, subprocess_mode=True) as sandbox:
        with httpx.Client(base_url=sandbox.base_url, headers={"X-Keap-API-Key": API_KEY}, timeout=30) as http:
            for ident in deleted:
                assert http.delete(f"/contacts/{ident}").status_code == 204
        out = subprocess.run(  # noqa: S603 - our own module
            [sys.executable, "-m", "bench.bench_reconcile", "--database-url", args.database_url,
             "--child", url, sandbox.base_url],
            capture_output=True, text=True, check=False,
        )
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"the child failed (exit {out.returncode})")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["status"] == "completed" and r["deleted"] == len(deleted), r
    minimum = math.ceil(n / PAGE_SIZE)
    over = (r["requests"] - minimum) / minimum
    print(
        f"{n:,} contacts, {len(deleted):,} deleted in Keap: {r['requests']:,} requests (minimum {minimum:,}, "
        f"{over:+.2%}); database {r['database_seconds']:.2f} s (COPY of the ids {r['copy_seconds']:.2f} s, "
        f"judgement {r['apply_seconds']:.2f} s); pass {r['wall_seconds']:.1f} s; peak RSS {r['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    small = SandboxConfig(port=0, contacts=PER_ENTITY_RECORDS, tags=PER_ENTITY_RECORDS, products=PER_ENTITY_RECORDS,
                          orders=PER_ENTITY_RECORDS, subscriptions=PER_ENTITY_RECORDS, limits=RateLimits.off(),
                          api_key=API_KEY)
    with running_sandbox(small, subprocess_mode=True) as sandbox:
        costs = _listing_cost(sandbox.base_url)
    for name, (requests, size) in costs.items():
        print(f"{name:>13}: {requests:.3f} requests and {size / 1024 * 1000:,.0f} KB per 1,000 records", flush=True)
    if args.write:
        lines = [
            f"Measured {machine()}; {server_version(args.database_url)} (default configuration); commit "
            f"{git_revision()}; pacing off, the sandbox in its own process, the pass in a child process.",
            f"Rerun: `.venv/bin/python -m bench.bench_reconcile --database-url URL --contacts {n} --write`.",
            "The database starts with the contacts a completed load leaves (seeded directly); 0.1% of them are deleted"
            " in the sandbox through deleteContact, and one pass (`keap-pipeline reconcile contacts`) finds and"
            " soft-deletes them. The database side is the COPY of every listed id (50,000 ids a transaction, with the"
            " pass's progress) plus the judgement: reconcile_contacts_from_stage (restore check,"
            " one anti-join scan recording the missing rows, the live count, the soft deletes with their audit,"
            " sync_status and keap_deleted_rows rows) and the truncate of the ids. Peak RSS is the pass's process"
            " (ru_maxrss).",
            "",
            "| contacts | deleted in Keap | requests | minimum (N / 1000) | over the minimum | database s | COPY ids s |"
            " judgement s | pass s | peak RSS MB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {n:,} | {len(deleted):,} | {r['requests']:,} | {minimum:,} | {over:.2%} | {r['database_seconds']:.2f} |"
            f" {r['copy_seconds']:.2f} | {r['apply_seconds']:.2f} | {r['wall_seconds']:.1f} | {r['peak_rss_mb']:.0f} |",
            "",
            f"What a pass costs per entity: requests and bytes per 1,000 records of its listing ({PER_ENTITY_RECORDS:,}"
            " sandbox records each, page size 1000, the fields and order of the entity row). Contacts ask for"
            " `fields=id`; the other endpoints take no `fields` and send whole records. Products add one get per id"
            " missing from the listing (confirm_missing).",
            "",
            "| entity | requests per 1,000 records | KB per 1,000 records |",
            "| --- | ---: | ---: |",
            *(f"| {name} | {req:.3f} | {size / 1024 * 1000:,.0f} |" for name, (req, size) in costs.items()),
        ]
        write_section("Reconcile pass (deletions in Keap)", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
