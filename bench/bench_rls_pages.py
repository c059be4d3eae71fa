"""List pages through RLS: sql/24's policy form against sql/34's, alternated in one run on one database.

    python -m bench.bench_rls_pages --database-url postgresql://postgres@127.0.0.1:5461/idx200k

The database is one bench/bench_indexes.py built (bench/index_data.py: its owners' shares are skewed,
so there are owners with many rows and owners with few). Each round swaps users_read on sync_contacts
and sync_orders to one form inside a transaction that is rolled back afterwards, then runs every page
as an admin, the owner with the most rows and a median owner (few rows), each statement planned with its
values and the caller's claims (unprepared: prepare_threshold=None); the forms alternate round by round. Printed: p50/p95 per page,
identity and form, and the plan's shape (EXPLAIN ANALYZE of the last sample).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import psycopg

FORMS = {
    # sql/24: the admin arm a scalar subquery (an init plan the planner cannot see into)
    "24": "(created_by = (select auth.uid())) or (id between (select case when ((select auth.jwt())"
          " -> 'app_metadata' ->> 'role') = 'admin' then '00000000-0000-0000-0000-000000000000'::uuid end)"
          " and 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)",
    # sql/34: both arms stable functions the planner evaluates while it estimates
    "34": "(coalesce(created_by = (select auth.uid()), false) and (created_by = keap_rls.caller_id()))"
          " or (id >= keap_rls.admin_row_floor())",
}
PAGES = {
    "status page": "select id, email, sync_status, updated_at from public.sync_contacts"
                   " where sync_status = 'error' and deleted_at is null order by updated_at desc limit 50",
    "work list (contacts)": "select id, email, sync_status, updated_at from public.sync_contacts"
                            " where sync_status <> 'completed' and deleted_at is null order by updated_at desc limit 50 offset 100",
    "recently updated": "select id, email, sync_status, updated_at from public.sync_contacts"
                        " where deleted_at is null and sync_status = 'completed' order by updated_at desc limit 50",
    "orders by date and status": "select id, order_date, status from public.sync_orders where status = 'SENT'"
                                 " and order_date >= now() - interval '120 days' and order_date < now() - interval '90 days'"
                                 " and deleted_at is null order by order_date desc limit 50",
    "work list (orders)": "select id, order_date, sync_status from public.sync_orders"
                          " where sync_status <> 'completed' and deleted_at is null order by order_date desc limit 50",
    # not a page: every row read through the policy, what its arms cost per row
    "count of every contact": "select count(*) from public.sync_contacts",
}


def _claims(user: uuid.UUID, admin: bool) -> str:
    app: dict[str, object] = {"provider": "email"}
    if admin:
        app["role"] = "admin"
    return json.dumps({"sub": str(user), "role": "authenticated", "app_metadata": app, "user_metadata": {}})


def _shape(plan: dict[str, object], depth: int = 0) -> list[str]:
    node = f"{plan['Node Type']}{' ' + str(plan['Index Name']) if 'Index Name' in plan else ''} ({plan.get('Actual Rows')})"
    out = [node] if plan["Node Type"] not in ("Result",) else []
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        out += _shape(child, depth + 1)
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the comparison; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a database bench_indexes built (and migrated to 34)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (each runs both forms)")
    parser.add_argument("--samples", type=int, default=5, help="executions per page, identity and form in a round")
    args = parser.parse_args(argv)
    with psycopg.connect(args.database_url) as conn:
        admin = conn.execute("select id from auth.users where raw_app_meta_data ->> 'role' = 'admin' limit 1").fetchone()
        owners = conn.execute(
            "select created_by, count(*) from public.sync_contacts where created_by is not null group by 1 order by 2 desc"
        ).fetchall()
    assert admin is not None and owners
    many, few = owners[0], owners[len(owners) // 2]
    who = {"admin": (admin[0], True), f"owner, {many[1]} rows": (many[0], False), f"owner, {few[1]} rows": (few[0], False)}
    times: dict[tuple[str, str, str], list[float]] = {}
    shapes: dict[tuple[str, str, str], str] = {}
    # prepare_threshold=None: never prepared, so every execution is planned with its caller's claims
    with psycopg.connect(args.database_url, prepare_threshold=None) as conn:
        conn.execute("select 1")
        load = open("/proc/loadavg").read().split()[:3]
        print(f"load average before: {' / '.join(load)}")
        for r in range(args.rounds):
            for form in (("24", "34") if r % 2 == 0 else ("34", "24")):
                with conn.transaction(force_rollback=True):
                    for table in ("public.sync_contacts", "public.sync_orders"):
                        conn.execute(f"alter policy users_read on {table} using ({FORMS[form]})")
                    for page, statement in PAGES.items():
                        for name, (user, is_admin) in who.items():
                            with conn.transaction(force_rollback=True):
                                conn.execute("set local role authenticated")
                                conn.execute("select set_config('request.jwt.claims', %s, true)", (_claims(user, is_admin),))
                                conn.execute(statement).fetchall()  # its pages in memory, as a dashboard's are
                                for _ in range(args.samples):
                                    t = time.perf_counter()
                                    conn.execute(statement).fetchall()
                                    times.setdefault((page, name, form), []).append((time.perf_counter() - t) * 1000)
                                if r == args.rounds - 1:
                                    plan = conn.execute("explain (analyze, format json) " + statement).fetchone()[0][0]  # type: ignore[index]
                                    shapes[(page, name, form)] = " > ".join(_shape(plan["Plan"]))
        print(f"load average after: {' / '.join(open('/proc/loadavg').read().split()[:3])}")
    print("| page | as | 24: p50 / p95 ms | 34: p50 / p95 ms | 34's plan |")
    print("| --- | --- | ---: | ---: | --- |")
    for page in PAGES:
        for name in who:
            cells = []
            for form in ("24", "34"):
                xs = sorted(times[(page, name, form)])
                p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
                cells.append(f"{statistics.median(xs):.2f} / {p95:.2f}")
            print(f"| {page} | {name} | {cells[0]} | {cells[1]} | {shapes.get((page, name, '34'), '')} |")
    print()
    print("24's plans:")
    for page in PAGES:
        for name in who:
            print(f"- {page}, {name}: {shapes.get((page, name, '24'), '')}")


if __name__ == "__main__":
    main()
