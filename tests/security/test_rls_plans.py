"""Attack 4: the admin policy OR-ed with the owner policy makes every unfiltered read of a user a sequential scan."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.db.identities import create_users
from tests.security.conftest import ADMIN, ALICE, BOB, api, rows

ROWS = 100_000
OWN = 50  # Alice's and Bob's rows each; the rest is ingested (created_by NULL)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


def test_one_permissive_policy_per_role_and_action(migrated_database: str) -> None:
    # splinter 0006 (multiple_permissive_policies) counts, per table, role and action, the permissive
    # policies that apply (FOR ALL counts for each action; roles that bypass RLS do not count)
    found = rows(
        migrated_database,
        """
        select c.relname as "table", r.rolname as role, a.action, pg_catalog.array_agg(p.polname order by p.polname) as policies
        from pg_catalog.pg_policy as p
        join pg_catalog.pg_class as c on c.oid = p.polrelid
        join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
        join pg_catalog.pg_roles as r on r.oid = any (p.polroles) or p.polroles = '{0}'::oid[]
        cross join lateral pg_catalog.unnest(
            case p.polcmd when '*' then array['SELECT', 'INSERT', 'UPDATE', 'DELETE']
                          when 'r' then array['SELECT'] when 'a' then array['INSERT']
                          when 'w' then array['UPDATE'] when 'd' then array['DELETE'] end
        ) as a(action)
        where p.polpermissive and n.nspname = 'public' and not r.rolbypassrls and r.rolname not like 'pg\\_%'
        group by 1, 2, 3
        having pg_catalog.count(*) > 1
        """,
    )
    assert found == []


def test_a_users_plain_read_uses_an_index_at_100k_rows(migrated_database: str) -> None:
    url = migrated_database
    with psycopg.connect(url) as conn:
        create_users(conn)
        # seeded without the sync triggers (their audit and queue rows are not what is measured)
        conn.execute("set local session_replication_role = replica")
        conn.execute(
            "insert into public.sync_contacts (keap_id, email, source_system, sync_status, created_by)"
            " select g::text, 'c' || g || '@keap.example', 'keap', 'completed',"
            "        case when g <= %s then %s::uuid when g <= 2 * %s then %s::uuid end"
            " from pg_catalog.generate_series(1, %s) as g",
            (OWN, ALICE, OWN, BOB, ROWS),
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze public.sync_contacts")

    with api(url, ALICE) as conn:
        plan = conn.execute("explain (format json) select * from public.sync_contacts limit 50").fetchone()[0][0]["Plan"]
        nodes = [n for n in _nodes(plan) if n.get("Relation Name") == "sync_contacts" or "Index Name" in n]
        kinds = {n["Node Type"] for n in nodes}
        assert "Seq Scan" not in kinds, plan
        assert {"Index Scan", "Bitmap Index Scan", "Index Only Scan"} & kinds, plan
        assert any(n.get("Index Name") == "idx_sync_contacts_created_by" for n in nodes), plan
        assert conn.execute("select count(*) from (select * from public.sync_contacts limit 50) as s").fetchone() == (OWN,)
        assert conn.execute("select count(*) from public.sync_contacts where created_by is distinct from %s", (ALICE,)).fetchone() == (0,)
    with api(url, BOB) as conn:
        assert conn.execute("select count(*) from public.sync_contacts").fetchone() == (OWN,)
    # the admin still reads every row, through the same one policy
    with api(url, ADMIN) as conn:
        assert conn.execute("select count(*) from public.sync_contacts").fetchone() == (ROWS,)
        assert conn.execute("select count(*) from (select * from public.sync_contacts limit 50) as s").fetchone() == (50,)


def test_a_users_read_of_an_admin_only_table_scans_nothing(migrated_database: str) -> None:
    with api(migrated_database, ALICE) as conn:
        plan = conn.execute("explain (format json) select * from public.sync_audit_log limit 50").fetchone()[0][0]["Plan"]
    # every partition's scan sits under a one-time filter (the admin test): for a non-admin it never starts
    def ungated(node: dict[str, Any], gated: bool) -> list[str]:
        gated = gated or "One-Time Filter" in node
        found = [node["Node Type"]] if node["Node Type"].endswith("Scan") and not gated else []
        for child in node.get("Plans", []):
            found += ungated(child, gated)
        return found

    assert any(n["Node Type"].endswith("Scan") for n in _nodes(plan)), plan
    assert ungated(plan, False) == [], plan
