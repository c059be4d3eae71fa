"""Attack 7: hard DELETEs by app users (every deleted id goes to every Realtime subscriber), references that probe
other users' rows, and internal functions with a mutable search_path or PUBLIC EXECUTE."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.security.conftest import ADMIN, ALICE, BOB, MALLORY, api, rows

SYNC_TABLES = ["sync_contacts", "sync_orders", "sync_tags", "sync_subscriptions", "sync_products"]


@pytest.mark.parametrize("user", [ALICE, ADMIN], ids=["owner", "admin"])
def test_app_users_soft_delete_and_never_hard_delete(world: str, user: uuid.UUID) -> None:
    with api(world, ALICE) as conn:
        conn.execute("insert into public.sync_contacts (email) values ('alice@app.example')")
    # the attack: a hard DELETE (Supabase Realtime does not RLS-check DELETE events: the id would
    # reach every subscriber of the table), and it would bypass the soft-delete model
    for table in SYNC_TABLES:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, user) as conn:
            conn.execute(f"delete from public.{table}")  # noqa: S608 - fixed names
    assert rows(world, "select count(*) as n from public.sync_contacts") == [{"n": 4}]
    # the honest path: soft delete through deleted_at; deleted_by is who did it; queued as a delete
    with api(world, user) as conn:
        assert conn.execute("update public.sync_contacts set deleted_at = now() where email = 'alice@app.example'").rowcount == 1
    deleted = rows(
        world,
        "select c.deleted_by, q.operation from public.sync_contacts as c join public.sync_queue as q on q.entity_id = c.id"
        " where c.email = 'alice@app.example' and q.status = 'pending'",
    )
    assert deleted == [{"deleted_by": user, "operation": "delete"}]
    # and undone: deleted_by goes with deleted_at
    with api(world, user) as conn:
        conn.execute("update public.sync_contacts set deleted_at = null where email = 'alice@app.example'")
    assert rows(world, "select deleted_by from public.sync_contacts where email = 'alice@app.example'") == [{"deleted_by": None}]


def test_a_reference_reveals_nothing_about_other_users_rows(world: str) -> None:
    with api(world, BOB) as conn:
        bobs = conn.execute("insert into public.sync_contacts (email) values ('bob@app.example') returning id").fetchone()[0]
    # the attack: hang an order on Bob's contact (or probe whether an id exists): both are refused
    # alike, by the policy, before the foreign key could say "not present"
    errors = []
    for target in (bobs, uuid.uuid4()):
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused, api(world, MALLORY) as conn:
            conn.execute(
                "insert into public.sync_orders (contact_id, order_date, total_amount, status) values (%s, now(), 1, 'PAID')",
                (target,),
            )
        errors.append(refused.value.diag.message_primary)
    assert errors[0] == errors[1]
    # the honest path: an order of one's own contact
    with api(world, MALLORY) as conn:
        mine = conn.execute("insert into public.sync_contacts (email) values ('m@app.example') returning id").fetchone()[0]
        conn.execute(
            "insert into public.sync_orders (contact_id, order_date, total_amount, status) values (%s, now(), 1, 'PAID')",
            (mine,),
        )
        assert conn.execute("select count(*) from public.sync_orders").fetchone() == (1,)


def test_internal_functions_have_a_fixed_search_path_and_no_public_execute(world: str) -> None:
    mutable = rows(
        world,
        "select p.oid::regprocedure::text as f from pg_catalog.pg_proc as p join pg_catalog.pg_namespace as n"
        " on n.oid = p.pronamespace where n.nspname in ('public', 'keap_pipeline')"
        " and not exists (select 1 from pg_catalog.unnest(p.proconfig) as c where c like 'search\\_path=%')",
    )
    assert mutable == []
    public_execute = rows(
        world,
        "select p.oid::regprocedure::text as f from pg_catalog.pg_proc as p join pg_catalog.pg_namespace as n"
        " on n.oid = p.pronamespace where n.nspname in ('public', 'keap_pipeline')"
        " and exists (select 1 from pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) as a"
        "             where a.grantee = 0 and a.privilege_type = 'EXECUTE')",
    )
    assert public_execute == []
    # the honest path: the pipeline (the ingestion's role) still calls them
    for function in ("keap_pipeline.uuid_v7()", "keap_pipeline.describe_conflict(text, uuid, jsonb, jsonb, text, text)"):
        assert rows(world, "select pg_catalog.has_function_privilege('keap_pipeline_ingest', %s, 'execute') as x", (function,)) == [{"x": True}]
    assert rows(world, "select keap_pipeline.uuid_v7() is not null as x") == [{"x": True}]
