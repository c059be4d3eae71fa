"""100, 200 and 500 concurrent app clients: PgBouncer (transaction mode) in front of PostgreSQL 15 with max_connections = 100.

Starts its own PostgreSQL 15 (bench/pg15.py) and a real PgBouncer (Debian's package; the tests'
tests/pgbouncer.py), seeds app users and their contacts through the real migrations, then runs
pgbench with the app's read and write scripts (bench/pgbench/app_read.sql, app_write.sql: a
signed-in user through RLS, as PostgREST sends it):

- directly at 100 clients, as the app's login role (not a superuser): the server has 100 connection
  slots, 3 of them reserved for superusers, so clients past 97 are refused ("sorry, too many clients already");
- through PgBouncer at 100, 200 and 500 clients: tps, latency percentiles (from pgbench's
  per-transaction log), failed transactions, errors.

    .venv/bin/python -m bench.bench_pooling [--seconds 20] [--write]

--write puts the table into docs/benchmarks.md and the plot into docs/img/pooling_latency.png.
"""

from __future__ import annotations

import argparse
import os

from psycopg.conninfo import make_conninfo

from bench.common import fresh_database, git_revision, machine, write_section
from bench.pg15 import pg15, settings_line
from bench.pgbench_run import APP_LOGIN, BENCH, PgbenchResult, fmt, run_pgbench, seed_app_users
from tests.pgbouncer import running_pgbouncer

SCRIPTS = {"read": BENCH / "pgbench" / "app_read.sql", "write": BENCH / "pgbench" / "app_write.sql"}
POOL_SIZE = 40  # server connections PgBouncer keeps per database/user: well under max_connections


def _row(kind: str, where: str, result: PgbenchResult) -> str:
    errors = result.error.replace("|", "/") if result.error else ""
    return (
        f"| {kind} | {where} | {result.clients} | {fmt(result.tps, 0)} | {result.transactions:,} | "
        f"{fmt(result.percentile(50), 2)} | {fmt(result.percentile(95), 2)} | {fmt(result.percentile(99), 2)} | "
        f"{result.failed} | {result.exit_code} | {errors} |"
    )


def _plot(results: list[tuple[str, PgbenchResult]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, kind in zip(axes, ("read", "write"), strict=True):
        runs = [r for k, r in results if k == kind and r.latencies_ms]
        ax.boxplot([r.latencies_ms for r in runs], tick_labels=[str(r.clients) for r in runs], whis=(1, 99),
                   showfliers=False)
        ax.set_title(f"app {kind} through PgBouncer (transaction mode)")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("transaction latency, ms (whiskers p1-p99)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20, help="each pgbench run's duration (default 20)")
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 200, 500])
    parser.add_argument("--users", type=int, default=200, help="app users seeded (default 200)")
    parser.add_argument("--per-user", type=int, default=100, help="contacts each user owns (default 100)")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md and docs/img/")
    args = parser.parse_args(argv)
    variables = {"users": args.users, "per_user": args.per_user}

    with pg15(settings={"max_connections": "100"}) as server:
        url = fresh_database(server, "keap_pooling")
        seed_app_users(url, users=args.users, per_user=args.per_user)
        settings = settings_line(url)
        print(settings, flush=True)
        results: list[tuple[str, str, PgbenchResult]] = []
        app_url = make_conninfo(url, user=APP_LOGIN)
        direct = run_pgbench(app_url, SCRIPTS["read"], clients=100, seconds=args.seconds, variables=variables)
        results.append(("read", "direct", direct))
        print(_row("read", "direct", direct), flush=True)
        with running_pgbouncer(server, pool_size=POOL_SIZE, extra_users=(APP_LOGIN,)) as pooler:
            pooled_url = pooler.url(app_url)
            for clients in args.clients:
                for kind, script in SCRIPTS.items():
                    result = run_pgbench(pooled_url, script, clients=clients, seconds=args.seconds, variables=variables)
                    results.append((kind, "PgBouncer", result))
                    print(_row(kind, "PgBouncer", result), flush=True)
    table = "\n".join(_row(kind, where, r) for kind, where, r in results)
    body = f"""Measured {machine()}, commit {git_revision()}; {settings}; PgBouncer {POOL_SIZE} server connections
(transaction mode, max_client_conn 600); {args.users} app users owning {args.per_user} contacts each; each run
`pgbench -n -M simple -j 4 -T {args.seconds}`, latencies from pgbench's per-transaction log. Load average while
it ran: {os.getloadavg()[0]:.1f} (other work shares the machine).

Rerun: `.venv/bin/python -m bench.bench_pooling --write` (starts its own PostgreSQL 15 and PgBouncer).

| script | path | clients | tps | transactions | p50 ms | p95 ms | p99 ms | failed | exit | first error |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
{table}

![latency per client count](img/pooling_latency.png)
"""
    print(body)
    if args.write:
        try:
            os.makedirs(BENCH.parent / "docs" / "img", exist_ok=True)
            _plot([(k, r) for k, where, r in results if where == "PgBouncer"],
                  str(BENCH.parent / "docs" / "img" / "pooling_latency.png"))
        except ImportError:  # the plot needs the bench group (make bench syncs it); the figures do not
            print("matplotlib is not installed (uv sync --group bench): figures written, plot not", flush=True)
            body = body.replace("![latency per client count](img/pooling_latency.png)\n", "")
        write_section("Pooling: 100, 200 and 500 app clients through PgBouncer (issue 16)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
