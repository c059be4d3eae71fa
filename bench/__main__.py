"""`make bench`: rerun the benchmarks and write their figures into docs/benchmarks.md (and plots into docs/img/).

    .venv/bin/python -m bench              # the request's figures (issue 16): each starts its own PostgreSQL 15
    .venv/bin/python -m bench --list       # every benchmark, with the command it runs
    .venv/bin/python -m bench NAME ...     # only these (e.g. pooling load_test db_stage)

Benches that measure against a server they are given (--database-url) get a fresh PostgreSQL 15
started here (bench/pg15.py). Each writes its own section of docs/benchmarks.md (--write); nothing
else is touched. The machine line of every section says where and when it ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.pg15 import pg15


@dataclass(frozen=True)
class Bench:
    """One benchmark: its module under bench/, its arguments, and whether it needs a server URL."""

    name: str
    module: str
    args: tuple[str, ...]
    needs_server: bool = False
    default: bool = False  # run by a bare `make bench`


BENCHES = (
    # issue 16: the request's own figures; each starts its own PostgreSQL 15 (and PgBouncer)
    Bench("indexes", "bench.bench_indexes", ("--write",), default=True),
    # the pusher's claim, 36's schema against 30's (builds the indexes bench's 1M database on its own server)
    Bench("queue_claim", "bench.bench_queue_claim", ("--write",), default=True),
    # 1M contacts (the size), the default budget beside the two choices measured against it
    Bench("realtime", "bench.bench_realtime", ("--variant", "after", "--variant", "after, synchronous batches",
                                               "--variant", "budget 250", "--write"), default=True),
    Bench("pooling", "bench.bench_pooling", ("--write",), default=True),
    Bench("load_test", "bench.bench_load_test", ("--write",), default=True),
    # the pipeline's own speed (earlier issues); long at these sizes
    Bench("db_stage", "bench.bench_db_stage", ("--contacts", "300000", "--loaders", "2", "--repeat", "3", "--write"), True),
    Bench("orders_db_stage", "bench.bench_orders_db_stage", ("--orders", "100000", "--loaders", "2", "--repeat", "3", "--write"), True),
    Bench("end_to_end", "bench.bench_end_to_end", ("--contacts", "100000", "--loaders", "2", "--write"), True),
    Bench("entities_e2e", "bench.bench_entities_e2e", ("--write",), True),
    Bench("reread", "bench.bench_reread", ("--write",), True),
    Bench("push", "bench.bench_push", ("--contacts", "10000", "--write"), True),
    Bench("paging", "bench.bench_paging", ("--write",)),
    Bench("listing", "bench.bench_listing", ("--write",)),
    Bench("normalize", "bench.bench_normalize", ("--records", "1000000")),
    Bench("decode", "bench.bench_decode", ("--contacts", "100000")),
)


def _available(bench: Bench) -> bool:
    return importlib.util.find_spec(bench.module) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: the issue-16 ones)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    by_name = {b.name: b for b in BENCHES}
    if args.list:
        for b in BENCHES:
            where = " (given a fresh PostgreSQL 15)" if b.needs_server else ""
            mark = "*" if b.default else " "
            print(f"{mark} {b.name:16} python -m {b.module} {' '.join(b.args)}{where}")
        print("* = run by a bare `make bench`")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; --list shows them")
    chosen = [by_name[n] for n in args.names] if args.names else [b for b in BENCHES if b.default]
    failed = []
    for bench in chosen:
        if not _available(bench):
            print(f"== {bench.name}: {bench.module} is not in this checkout, skipped", flush=True)
            continue
        started = time.monotonic()
        print(f"== {bench.name}: python -m {bench.module} {' '.join(bench.args)}", flush=True)
        if bench.needs_server:
            with pg15() as server:
                code = subprocess.call([sys.executable, "-m", bench.module, "--database-url", server, *bench.args])
        else:
            code = subprocess.call([sys.executable, "-m", bench.module, *bench.args])
        print(f"== {bench.name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(bench.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
