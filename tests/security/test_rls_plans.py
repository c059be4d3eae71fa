"""RLS and the planner: policies whose form lets the planner find the rows a caller may read through an index (24, 34)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import create_database, drop_database
from tests.db.identities import create_users
from tests.security.conftest import ADMIN, ALICE, BOB, MALLORY, api, rows

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


# --- sql/34: the planner sees who asks. The admin arm of users_read is `id >= keap_rls.admin_row_floor()`,
# a stable function the planner evaluates when it estimates the arm: every row for an admin, none for
# anyone else. So an admin's list page is an ordered index scan that stops after its page, and an owner's
# is the owner's rows through the created_by index, however few; 24's scalar subquery hid the value and
# planned both alike (a sort of every candidate for an admin, a walk of the whole ordered index for an
# owner with few rows). These assert the plan's shape, not its time.

PAGES = {
    # the work list (sync_status <> 'completed'), a status page, the "recently updated" list
    "work list": "select id from public.sync_contacts where sync_status <> 'completed' and deleted_at is null"
                 " order by updated_at desc limit 50",
    "status page": "select id from public.sync_contacts where sync_status = 'error' and deleted_at is null"
                   " order by updated_at desc limit 50",
    "recently updated": "select id from public.sync_contacts where deleted_at is null and sync_status = 'completed'"
                        " order by updated_at desc limit 50",
}
ORDERED_INDEX = {
    "work list": "idx_sync_contacts_sync_status",
    "status page": "idx_sync_contacts_sync_status",
    "recently updated": "idx_active_contacts",
}


@pytest.fixture(scope="module")
def pages_world(pg_server_url: str, template_database: str) -> Iterator[str]:
    """A migrated database with the 100k contacts below, shared by this module's read-only tests."""
    name = f"kp_pages_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server_url, name, template=template_database)
    try:
        yield _seed_pages(url)
    finally:
        drop_database(pg_server_url, name)


def _seed_pages(url: str) -> str:
    with psycopg.connect(url) as conn:
        create_users(conn)
        conn.execute("set local session_replication_role = replica")
        # 100k contacts, 5% not synced (as the work lists find them), updated over a year; Alice owns 75
        # (25 each of error, pending, completed), Bob 20,000, the rest are ingested (created_by NULL: only admins read them)
        conn.execute(
            "insert into public.sync_contacts (keap_id, email, source_system, sync_status, created_by, updated_at)"
            " select g::text, 'c' || g || '@keap.example', 'keap',"
            "        case when g %% 20 = 0 then 'error' when g %% 20 = 1 then 'pending' else 'completed' end,"
            "        case when g %% 4000 in (0, 1, 7) then %s::uuid when g %% 5 = 0 then %s::uuid end,"
            "        now() - interval '1 minute' * ((g * 7919) %% 525600)"
            " from pg_catalog.generate_series(1, %s) as g",
            (ALICE, BOB, ROWS),
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze public.sync_contacts")
    return url


def _plan(conn: psycopg.Connection, query: str) -> dict[str, Any]:
    return conn.execute("explain (format json) " + query).fetchone()[0][0]["Plan"]  # type: ignore[index]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_an_admins_list_page_is_an_ordered_index_scan(pages_world: str, page: str) -> None:
    with api(pages_world, ADMIN) as conn:
        nodes = _nodes(_plan(conn, PAGES[page]))
        kinds = [n["Node Type"] for n in nodes]
        # the page comes off the index in order: no sort, no bitmap of every candidate, no scan of the table
        assert "Sort" not in kinds and "Seq Scan" not in kinds and "BitmapOr" not in kinds, nodes
        assert any(n["Node Type"] == "Index Scan" and n.get("Index Name") == ORDERED_INDEX[page] for n in nodes), nodes
        assert len(conn.execute(PAGES[page]).fetchall()) == 50


# Bob's 20% of the rows may come either way (his page is found within the first few hundred index entries)
@pytest.mark.parametrize("user", [ALICE, BOB], ids=["few rows", "many rows"])
@pytest.mark.parametrize("page", sorted(PAGES))
def test_an_owners_list_page_reads_the_owners_rows_only(pages_world: str, page: str, user: uuid.UUID) -> None:
    with api(pages_world, user) as conn:
        nodes = _nodes(_plan(conn, PAGES[page]))
        kinds = [n["Node Type"] for n in nodes]
        assert "Seq Scan" not in kinds, nodes
        if user == ALICE:
            # 75 of 100k rows: through an index led by created_by (and the admin arm's empty key range), never
            # the walk of the whole ordered index that a plan for the average owner (10k rows) would be; for
            # "recently updated" that may be 38's idx_sync_contacts_own_recent (the owner's live rows in sync)
            owner_led = {"idx_sync_contacts_created_by", "idx_sync_contacts_own_recent"}
            assert any(n.get("Index Name") in owner_led for n in nodes), [n.get("Index Name") for n in nodes]
            assert not any(n["Node Type"] == "Index Scan" and n.get("Index Name") == ORDERED_INDEX[page] for n in nodes), nodes
        got = conn.execute(PAGES[page].replace("select id", "select created_by")).fetchall()
        assert got and {r[0] for r in got} == {user}


def test_a_forged_admin_claim_plans_and_reads_as_an_owner(pages_world: str) -> None:
    # Mallory wrote role = admin into her user_metadata: the planner and the policy read app_metadata only
    with api(pages_world, MALLORY) as conn:
        nodes = _nodes(_plan(conn, PAGES["work list"]))
        assert any(n.get("Index Name") == "idx_sync_contacts_created_by" for n in nodes), nodes
        assert conn.execute(PAGES["work list"]).fetchall() == []
        assert conn.execute("select count(*) from public.sync_contacts").fetchone() == (0,)


@pytest.mark.parametrize(("user", "share"), [(ADMIN, 1.0), (BOB, 0.2), (ALICE, 0.00075)], ids=["admin", "many rows", "few rows"])
def test_the_planner_estimates_each_callers_own_share(pages_world: str, user: uuid.UUID, share: float) -> None:
    # what makes the plans above: an admin's bare read is estimated as the table, an owner's at most as
    # their own rows (24's form estimated every caller alike: an admin's 100% as 0.5%, Alice's 75 rows
    # as the average owner's 10,000)
    with api(pages_world, user) as conn:
        estimate = _plan(conn, "select id from public.sync_contacts")["Plan Rows"]
    if user == ADMIN:
        assert estimate >= ROWS / 3, estimate
    else:
        assert estimate <= max(share * ROWS * 3, 10), estimate
