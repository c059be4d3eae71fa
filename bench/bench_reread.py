"""Re-reading unchanged records end to end: a first load, then a re-sync of the same contacts
(a backfill window over all of them, so every record is read, decoded, normalized and diffed
again; none changed), as `keap-pipeline sync contacts --since ... --until ... --no-pacing` runs it.

    .venv/bin/python -m bench.bench_reread --database-url postgresql://postgres@127.0.0.1:5439/postgres \\
        --contacts 200000 --pairs 3 [--variant before=/tmp/before-src] [--write]

Each run is a fresh child process (its own sandbox subprocess, its own fresh migrated database).
Besides the wall time of each phase it reports the CPU seconds the pipeline process and the
sandbox process spent in the re-sync (user + system, all threads), so the sandbox's share of the
machine is visible. `--variant NAME=SRC` adds a variant whose child runs with SRC first on
PYTHONPATH (say a `git archive` of an older commit); variants run alternately, pair after pair,
because the machine is shared and drifts. Figures go to docs/benchmarks.md ("Re-reading
unchanged records") with --write.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import fresh_database, git_revision, machine, server_version, write_section

HERE = str(Path(__file__).resolve().parents[1])


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _server_cpu(url: str) -> float | None:
    """The PostgreSQL server's CPU seconds so far (bench.common.server_cpu), None where the code on the path has no such reader."""
    from bench import common

    reader = getattr(common, "server_cpu", None)
    return reader(url) if reader is not None else None


class ThreadCpu(threading.Thread):
    """CPU seconds of each thread of this process by name, sampled every 50 ms (threads end before we ask)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: dict[int, tuple[str, float]] = {}
        self.halt = threading.Event()

    def sample(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is None or thread is self:
                continue
            try:
                self.seen[thread.native_id] = (thread.name, _cpu_of_task(thread.native_id))
            except OSError:
                pass  # ended since enumerate()

    def run(self) -> None:
        while not self.halt.wait(0.05):
            self.sample()

    def by_name(self) -> dict[str, float]:
        """CPU seconds per thread name, numbered threads (keap-loader-1, -2) added up."""
        out: dict[str, float] = {}
        for name, cpu in self.seen.values():
            key = name.rstrip("0123456789").rstrip("-_") or name
            out[key] = out.get(key, 0.0) + cpu
        return out


def _cpu_of_task(tid: int) -> float:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _one(database_url: str, contacts: int, loaders: int) -> dict[str, float]:
    from keap_pipeline.db.cursors import window_scope
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.keap import ApiKeyAuth, KeapClient
    from keap_pipeline.pipeline.sync import sync_entity
    from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

    config = SandboxConfig(port=0, contacts=contacts, limits=RateLimits.off(), api_key="bench-key")
    since = datetime(2000, 1, 1, tzinfo=UTC)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    with running_sandbox(config, subprocess_mode=True) as sandbox:
        with KeapClient(sandbox.base_url, ApiKeyAuth("bench-key"), pacing=False) as client:
            started = time.perf_counter()
            first = sync_entity(client, database_url, CONTACTS, run_id="bench-first", loaders=loaders)
            first_seconds = time.perf_counter() - started
            assert first.counts.inserted == contacts, first.summary()
            # the first window re-read after an (incremental) first load: with raw record keys it
            # normalizes every record once more and stores their keys; the timed re-read is the next one
            started = time.perf_counter()
            seed = sync_entity(
                client, database_url, CONTACTS, since=since, until=until, scope=window_scope(since, until),
                run_id="bench-seed", loaders=loaders,
            )
            seed_seconds = time.perf_counter() - started
            assert seed.counts.unchanged == contacts, seed.summary()
            threads = ThreadCpu()
            threads.sample()
            main_before = threads.by_name().get("MainThread", 0.0)
            threads.start()
            cpu0, srv0, pg0 = time.process_time(), _cpu_of(sandbox.pid), _server_cpu(database_url)
            started = time.perf_counter()
            again = sync_entity(
                client, database_url, CONTACTS, since=since, until=until, scope=window_scope(since, until),
                run_id="bench-reread", loaders=loaders,
            )
            seconds = time.perf_counter() - started
            cpu, srv = time.process_time() - cpu0, _cpu_of(sandbox.pid) - srv0
            pg1 = _server_cpu(database_url)
            pg = pg1 - pg0 if pg0 is not None and pg1 is not None else None
            threads.halt.set()
            threads.join()
            threads.sample()
            per_thread = threads.by_name()
            per_thread["MainThread"] = per_thread.get("MainThread", 0.0) - main_before
    assert again.records_seen == contacts and again.counts.unchanged == contacts, again.summary()
    import keap_pipeline

    return {
        "code": str(Path(keap_pipeline.__file__).parents[1]),
        "first_seconds": first_seconds,
        "first_per_second": contacts / first_seconds,
        "seed_per_second": contacts / seed_seconds,
        "seconds": seconds,
        "records_per_second": contacts / seconds,
        "pipeline_cpu": cpu,
        # the read-ahead thread fetches, decodes and normalizes: the one that holds the GIL most
        "read_ahead_cpu": per_thread.get("keap-prefetch", 0.0),
        "loaders_cpu": per_thread.get("keap-loader", 0.0),
        "main_cpu": per_thread.get("MainThread", 0.0),
        "sandbox_cpu": srv,
        "postgres_cpu": pg,
        "batches": again.batches,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(name: str, src: str, database_url: str, contacts: int, loaders: int) -> dict[str, float]:
    # run as a script (not -m, which puts the working directory first): SRC's keap_pipeline wins
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([p for p in (src, HERE) if p])}
    out = subprocess.run(  # noqa: S603 - this module, fixed arguments
        [sys.executable, __file__, "--database-url", database_url, "--child", str(contacts),
         "--child-loaders", str(loaders)],
        capture_output=True, text=True, check=False, env=env,
    )
    if out.returncode:
        raise SystemExit(f"{name}: the child failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3, help="alternating runs of every variant")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=SRC",
                        help="also run the code in SRC (first on PYTHONPATH); this tree is 'this'")
    parser.add_argument("--this-name", default="this")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-loaders", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from keap_pipeline.db.migrate import migrate

        migrate(args.database_url)
        print(json.dumps(_one(args.database_url, args.child, args.child_loaders)))
        return 0
    variants = [tuple(v.split("=", 1)) for v in args.variant] + [(args.this_name, "")]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    for pair in range(args.pairs):
        order = variants if pair % 2 == 0 else list(reversed(variants))
        for name, src in order:
            # migrated by the child, with the variant's migrations (its SQL, not only its Python)
            url = fresh_database(args.database_url, "bench_reread", migrated=False)
            load = os.getloadavg()[0]
            r = _child(name, src, url, args.contacts, args.loaders)
            r["load"] = load
            results[name].append(r)
            print(f"pair {pair + 1} {name:>8}: first load {r['first_per_second']:>8,.0f}/s;"
                  f" first re-read {r['seed_per_second']:>8,.0f}/s;"
                  f" re-read {r['seconds']:5.2f} s {r['records_per_second']:>8,.0f} records/s,"
                  f" CPU pipeline {r['pipeline_cpu']:.2f} s (read-ahead {r['read_ahead_cpu']:.2f}, loaders"
                  f" {r['loaders_cpu']:.2f}, main {r['main_cpu']:.2f}) sandbox {r['sandbox_cpu']:.2f} s,"
                  f" PostgreSQL {_seconds(r.get('postgres_cpu'))} s, peak RSS {r['peak_rss_mb']:.0f} MB, load {load:.1f}", flush=True)
    for name, rs in results.items():
        print(f"{name}: median read-ahead thread CPU {statistics.median(r['read_ahead_cpu'] for r in rs) / args.contacts * 1e6:.1f}"
              f" us/record, pipeline CPU {statistics.median(r['pipeline_cpu'] for r in rs) / args.contacts * 1e6:.1f} us/record")
        print(f"{name}: median re-read {statistics.median(r['records_per_second'] for r in rs):,.0f} records/s,"
              f" first re-read {statistics.median(r['seed_per_second'] for r in rs):,.0f} records/s,"
              f" first load {statistics.median(r['first_per_second'] for r in rs):,.0f} records/s")
    if args.write:
        n = args.contacts
        lines = [
            f"Measured {machine()}; {server_version(args.database_url)}; commit {git_revision()}.",
            f"Rerun: `.venv/bin/python -m bench.bench_reread --database-url URL --contacts {n} --pairs {args.pairs}"
            + "".join(f" --variant {name}=SRC" for name, src in variants if src) + " --write`.",
            "",
            "The first load is an incremental run; then a first window re-read (with raw record keys it"
            " normalizes every record once more and stores their keys: incremental runs keep none), then the"
            " timed re-read.",
            "",
            "| variant | run | re-read s | re-read records/s | pipeline CPU s | of it read-ahead thread s"
            " | loaders s | main s | sandbox CPU s | PostgreSQL CPU s | first load records/s | first re-read records/s"
            " | peak RSS MB | load |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, rs in results.items():
            for i, r in enumerate(rs, 1):
                lines.append(
                    f"| {name} | {i} | {r['seconds']:.2f} | {r['records_per_second']:,.0f} | {r['pipeline_cpu']:.2f}"
                    f" | {r['read_ahead_cpu']:.2f} | {r['loaders_cpu']:.2f} | {r['main_cpu']:.2f}"
                    f" | {r['sandbox_cpu']:.2f} | {_seconds(r.get('postgres_cpu'))} | {r['first_per_second']:,.0f} | {r.get('seed_per_second', 0):,.0f}"
                    f" | {r['peak_rss_mb']:.0f} | {r['load']:.1f} |"
                )
        write_section("Re-reading unchanged records", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
