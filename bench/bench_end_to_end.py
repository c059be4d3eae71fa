"""End to end: the sandbox (its own process, no limits) -> KeapClient (pacing off) -> normalize -> COPY ->
upsert, as `keap-pipeline sync contacts` runs it; records/s and the pipeline process's peak memory.

    .venv/bin/python -m bench.bench_end_to_end --database-url postgresql://postgres@127.0.0.1:55432/postgres \\
        --contacts 100000 1000000 --write

Each size runs in a fresh child process (so its peak RSS is its own) into a fresh migrated database.
Figures go to docs/benchmarks.md ("End to end").
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from bench.common import fresh_database, git_revision, machine, server_version, write_section


def _one(database_url: str, contacts: int, loaders: int) -> dict[str, float]:
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.keap import ApiKeyAuth, KeapClient
    from keap_pipeline.pipeline.sync import sync_entity
    from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

    config = SandboxConfig(port=0, contacts=contacts, limits=RateLimits.off(), api_key="bench-key")
    with running_sandbox(config, subprocess_mode=True) as sandbox:
        with KeapClient(sandbox.base_url, ApiKeyAuth("bench-key"), pacing=False) as client:
            started = time.perf_counter()
            report = sync_entity(client, database_url, CONTACTS, run_id="bench", loaders=loaders)
            seconds = time.perf_counter() - started
    assert report.counts.inserted == contacts, report.summary()
    return {
        "seconds": seconds,
        "records_per_second": contacts / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "batches": report.batches,
        "requests": report.requests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--contacts", type=int, nargs="+", default=[100_000])
    parser.add_argument("--loaders", type=int, nargs="+", default=[1, 2], help="parallel loaders to compare")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-loaders", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_one(args.database_url, args.child, args.child_loaders)))
        return 0
    rows = []
    for n in args.contacts:
        for loaders in args.loaders:
            url = fresh_database(args.database_url, "bench_e2e")
            out = subprocess.run(  # noqa: S603 - this module, fixed arguments
                [sys.executable, "-m", "bench.bench_end_to_end", "--database-url", url, "--child", str(n),
                 "--child-loaders", str(loaders)],
                capture_output=True, text=True, check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((n, loaders, result))
            print(f"{n:>9,} contacts, {loaders} loader(s): {result['seconds']:7.1f} s"
                  f"  {result['records_per_second']:>9,.0f} records/s  peak RSS {result['peak_rss_mb']:.0f} MB"
                  f"  ({result['batches']} transactions)")
    if args.write:
        lines = [
            f"Measured {machine()}; {server_version(args.database_url)}; commit {git_revision()}.",
            "Rerun: `.venv/bin/python -m bench.bench_end_to_end --database-url URL --contacts "
            + " ".join(dict.fromkeys(str(n) for n, _, _ in rows)) + " --loaders "
            + " ".join(dict.fromkeys(str(k) for _, k, _ in rows)) + " --write`.",
            "The sandbox runs in its own process (no rate limits); one pipeline process pages it with the"
            " pipeline's fields (pacing off), normalizes, COPYs and upserts into a fresh migrated database:"
            " a first load. Loaders = batches loading at once, each on its own connection (`--loaders`,"
            " default 2). Peak RSS is the pipeline process's own (ru_maxrss).",
            "",
            "| contacts | loaders | seconds | records/s | pipeline peak RSS MB | transactions |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {n:,} | {k} | {r['seconds']:.1f} | {r['records_per_second']:,.0f} | {r['peak_rss_mb']:.0f}"
            f" | {r['batches']:,} |"
            for n, k, r in rows
        ]
        write_section("End to end", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
