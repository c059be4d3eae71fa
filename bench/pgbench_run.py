"""Running pgbench for the benches: app users seeded through auth.users, pgbench's per-transaction log read back.

The app scripts (bench/pgbench/*.sql, bench/load_test.sql) act as signed-in users the way PostgREST
does: `set_config('role', 'authenticated', true)` and the JWT claims for the transaction. The
users are ``00000000-0000-4000-8000-<n, 12 digits>``, n = 1..users.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

BENCH = Path(__file__).resolve().parent


APP_LOGIN = "bench_app"  # the app's login role (Supabase's is `authenticator`): not a superuser


def user_id(n: int) -> str:
    """The uuid of seeded app user n."""
    return f"00000000-0000-4000-8000-{n:012d}"


def seed_app_users(url: str, *, users: int, per_user: int) -> None:
    """auth.users 1..users, `per_user` contacts owned by each (emails u<n>-<k>@example.test), the app's login role.

    Inserted as the superuser (the app could not set created_by): a statement per user keeps the
    audit and queue triggers' transition tables small. The app connects as APP_LOGIN, a plain
    login role that may switch to `authenticated` (as Supabase's `authenticator` does): unlike a
    superuser, it cannot use the connection slots PostgreSQL reserves for superusers.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"do $$ begin if not exists (select from pg_roles where rolname = '{APP_LOGIN}') then"
            f" create role {APP_LOGIN} login noinherit; end if; end $$"
        )
        conn.execute(f"grant authenticated to {APP_LOGIN}")
        conn.execute(
            "insert into auth.users (id, email, raw_app_meta_data, raw_user_meta_data)"
            " select ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'user' || n || '@example.test',"
            " '{\"provider\": \"email\"}', '{}' from generate_series(1, %s) as n",
            (users,),
        )
        for n in range(1, users + 1):
            conn.execute(
                "insert into public.sync_contacts (email, first_name, last_name, company, created_by)"
                " select 'u' || %s || '-' || k || '@example.test', 'First' || k, 'Last' || k, 'Company ' || (k %% 50),"
                " %s::uuid from generate_series(1, %s) as k",
                (n, user_id(n), per_user),
            )
        conn.execute("vacuum analyze")


@dataclass
class PgbenchResult:
    """One pgbench run: what it reported and the per-transaction latencies from its log."""

    clients: int
    exit_code: int
    tps: float | None
    transactions: int
    failed: int
    latencies_ms: list[float]
    error: str

    def percentile(self, p: float) -> float | None:
        """The p-th percentile of the transaction latencies (ms), or None without any."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index]

    @property
    def mean_ms(self) -> float | None:
        """The mean transaction latency (ms)."""
        return statistics.fmean(self.latencies_ms) if self.latencies_ms else None


def run_pgbench(
    url: str,
    script: Path,
    *,
    clients: int,
    threads: int = 4,
    seconds: int | None = None,
    transactions: int | None = None,
    variables: dict[str, int] | None = None,
) -> PgbenchResult:
    """Run pgbench with one script (simple query protocol, as PgBouncer in transaction mode needs)."""
    binary = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    params = conninfo_to_dict(url)
    logdir = Path(tempfile.mkdtemp(prefix="keap-pgbench-"))
    args = [
        binary, "-n", "-M", "simple", "-f", str(script), "-c", str(clients), "-j", str(min(threads, clients)),
        "-h", str(params.get("host", "127.0.0.1")), "-p", str(params.get("port", 5432)),
        "-U", str(params.get("user", APP_LOGIN)), "-l", "--log-prefix", str(logdir / "tx"),
    ]
    args += ["-T", str(seconds)] if seconds else ["-t", str(transactions or 1000)]
    for name, value in (variables or {}).items():
        args += ["-D", f"{name}={value}"]
    args.append(str(params.get("dbname", "postgres")))
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603 - fixed binary
        out = done.stdout + done.stderr
        latencies: list[float] = []
        for log in logdir.glob("tx*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                # client_id transaction_no time_us script_no time_epoch time_us_frac; time "failed"/"skipped" otherwise
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1000)
        tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
        processed = re.search(r"number of transactions actually processed: (\d+)", out)
        failed = re.search(r"number of failed transactions: (\d+)", out)
        # the server's words (pgbench's threads interleave their own prefixes on one line)
        errors = [line[line.index("FATAL:"):] for line in out.splitlines() if "FATAL:" in line]
        errors += [line for line in out.splitlines() if "error" in line.lower()]
        return PgbenchResult(
            clients=clients,
            exit_code=done.returncode,
            tps=float(tps.group(1)) if tps else None,
            transactions=int(processed.group(1)) if processed else 0,
            failed=int(failed.group(1)) if failed else 0,
            latencies_ms=latencies,
            error=errors[0].strip()[:200] if errors else "",
        )
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def fmt(value: float | None, digits: int = 1) -> str:
    """A figure for a table, '-' when there is none."""
    return "-" if value is None else f"{value:,.{digits}f}"
