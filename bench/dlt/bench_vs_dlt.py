"""keap-pipeline's first load against dlt's rest_api source: the same sandbox contacts, the same PostgreSQL.

    .venv/bin/python -m bench.dlt.bench_vs_dlt --database-url postgresql://postgres@127.0.0.1:5439/postgres \\
        --dlt-python /work/dltvenv/bin/python --contacts 200000 --pairs 3 [--write]

One sandbox subprocess (no rate limits) serves both for the whole run. Each pair runs both tools,
alternating which goes first (the machine is shared and drifts), each in its own process, each into
a fresh database of the same server: keap-pipeline into a migrated one (`sync_entity`, pacing off,
the default two loaders: COPY into staging, the set-based upsert, audit rows, sync_status), dlt into
an empty one (bench/dlt/load_contacts.py in dlt's own venv, see bench/dlt/requirements.txt; its
configuration is described there). Each is timed inside its process around the load call alone
(keap-pipeline: sync_entity; dlt: pipeline.run), so neither pays for interpreter start-up or imports.
Figures go to docs/benchmarks.md ("Against dlt") with --write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.common import fresh_database, git_revision, machine, server_version, write_section

HERE = Path(__file__).resolve().parent
KEY = "bench-key"


def _keap_child(base_url: str, database_url: str, contacts: int) -> dict[str, float]:
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.keap import ApiKeyAuth, KeapClient
    from keap_pipeline.pipeline.sync import sync_entity

    with KeapClient(base_url, ApiKeyAuth(KEY), pacing=False) as client:
        started = time.perf_counter()
        report = sync_entity(client, database_url, CONTACTS, run_id="bench-vs-dlt")
        seconds = time.perf_counter() - started
    if report.counts.inserted != contacts:
        raise SystemExit(report.summary())
    return {"seconds": seconds, "rows": report.counts.inserted}


def _run_keap(base_url: str, server_url: str, contacts: int) -> dict[str, float]:
    url = fresh_database(server_url, "bench_vs_dlt_keap")
    out = subprocess.run(  # noqa: S603 - this module, fixed arguments
        [sys.executable, "-m", "bench.dlt.bench_vs_dlt", "--database-url", url, "--child-keap", base_url,
         "--contacts", str(contacts)],
        capture_output=True, text=True, check=False,
    )
    if out.returncode:
        raise SystemExit(f"keap-pipeline's run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_dlt(dlt_python: str, base_url: str, server_url: str, contacts: int) -> dict[str, float]:
    url = fresh_database(server_url, "bench_vs_dlt_dlt", migrated=False)
    params = conninfo_to_dict(url)
    # dlt's postgres credentials insist on a password; a trust-authenticated server ignores it
    dlt_url = (f"postgresql://{params.get('user', 'postgres')}:{params.get('password') or 'unused'}@"
               f"{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{params['dbname']}")
    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as pipelines:
        out = subprocess.run(  # noqa: S603 - our script, fixed arguments
            [dlt_python, str(HERE / "load_contacts.py"), "--base-url", base_url, "--database-url", dlt_url,
             "--contacts", str(contacts), "--pipelines-dir", pipelines],
            capture_output=True, text=True, check=False, env={**os.environ, "KEAP_API_KEY": KEY}, cwd=pipelines,
        )
    if out.returncode:
        raise SystemExit(f"dlt's run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="the server (any database on it)")
    parser.add_argument("--dlt-python", default="/work/dltvenv/bin/python", help="python of dlt's venv")
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--child-keap", metavar="BASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_keap:
        print(json.dumps(_keap_child(args.child_keap, args.database_url, args.contacts)))
        return 0

    from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

    server_url = make_conninfo(args.database_url)
    config = SandboxConfig(port=0, contacts=args.contacts, limits=RateLimits.off(), api_key=KEY)
    keap: list[float] = []
    dlt: list[float] = []
    loads: list[str] = []
    dlt_version = "?"
    with running_sandbox(config, subprocess_mode=True) as sandbox:
        for pair in range(args.pairs):
            order = ("dlt", "keap") if pair % 2 == 0 else ("keap", "dlt")
            for tool in order:
                load = os.getloadavg()[0]
                if tool == "keap":
                    r = _run_keap(sandbox.base_url, server_url, args.contacts)
                    keap.append(r["seconds"])
                else:
                    r = _run_dlt(args.dlt_python, sandbox.base_url, server_url, args.contacts)
                    dlt.append(r["seconds"])
                    dlt_version = str(r["dlt"])
                loads.append(f"{load:.1f}")
                print(f"pair {pair + 1} {tool:>4}: {r['seconds']:6.1f} s  {args.contacts / r['seconds']:>8,.0f} records/s"
                      f"  (load {load:.1f})", flush=True)
    ratios = [d / k for k, d in zip(keap, dlt, strict=True)]
    k_med, d_med = statistics.median(keap), statistics.median(dlt)
    print(f"median: keap-pipeline {args.contacts / k_med:,.0f}/s, dlt {args.contacts / d_med:,.0f}/s,"
          f" ratio of the medians {d_med / k_med:.2f}x, median of the pairs' ratios {statistics.median(ratios):.2f}x"
          f" (per pair {', '.join(f'{x:.2f}' for x in ratios)})")
    if args.write:
        n = args.contacts
        lines = [
            f"Measured {machine()}; {server_version(server_url)}; keap-pipeline commit {git_revision()}; dlt {dlt_version}.",
            f"Rerun: `.venv/bin/python -m bench.dlt.bench_vs_dlt --database-url URL --dlt-python DLT_VENV/bin/python"
            f" --contacts {n} --pairs {args.pairs} --write` (dlt's venv from bench/dlt/requirements.txt).",
            "",
            "| pair | keap-pipeline s | keap-pipeline records/s | dlt s | dlt records/s | dlt / keap-pipeline |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {i} | {k:.1f} | {n / k:,.0f} | {d:.1f} | {n / d:,.0f} | {d / k:.2f}x |"
            for i, (k, d) in enumerate(zip(keap, dlt, strict=True), 1)
        ]
        lines.append(
            f"| median | {k_med:.1f} | {n / k_med:,.0f} | {d_med:.1f} | {n / d_med:,.0f} | {d_med / k_med:.2f}x"
            f" (of the medians; median of the pairs' {statistics.median(ratios):.2f}x) |"
        )
        lines.append(f"\n1-minute load average before each run, in run order: {', '.join(loads)}.")
        write_section("Against dlt", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
