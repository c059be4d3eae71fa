"""RLS and grants as each Supabase role: anon, owners, another user, a user_metadata 'admin', an app_metadata admin, service_role."""

from __future__ import annotations

import psycopg
import pytest

from tests.db.identities import ADMIN, ALICE, BOB, MALLORY, act_as, act_as_postgres, create_users

ALL_TABLES = [
    "sync_contacts", "sync_orders", "sync_tags", "sync_subscriptions", "sync_products",
    "sync_status", "sync_conflicts", "sync_queue", "sync_audit_log",
]


@pytest.fixture
def seeded(db: psycopg.Connection) -> psycopg.Connection:
    """Users, one contact each for Alice and Bob, one ingested contact (no owner), one open conflict."""
    create_users(db)
    # rows linked to Keap records (a keap_id) are written by the ingestion's role only (sql/24)
    db.execute("set local role keap_pipeline_ingest")
    db.execute(
        "insert into public.sync_contacts (keap_id, email, created_by) values"
        " ('a', 'a@example.com', %s), ('b', 'b@example.com', %s), ('k', 'k@example.com', null)",
        (ALICE, BOB),
    )
    db.execute("reset role")
    db.execute(
        "select detect_sync_conflict('sync_contacts', (select id from public.sync_contacts where keap_id = 'a'),"
        " '{\"email\": \"x\"}', '{\"email\": \"y\"}')"
    )
    return db


def _visible_contacts(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("select keap_id from public.sync_contacts order by keap_id")]


def test_rls_is_enabled_on_every_table(db: psycopg.Connection) -> None:
    rows = db.execute(
        "select c.relname, c.relrowsecurity from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relname = any(%s)",
        (ALL_TABLES,),
    ).fetchall()
    assert sorted(rows) == sorted((t, True) for t in ALL_TABLES)
    internal = db.execute(
        "select c.relname from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'keap_pipeline' and c.relname in ('settings', 'standins', 'sync_audit_log_default')"
        " and c.relrowsecurity"
    ).fetchall()
    assert len(internal) == 3


@pytest.mark.parametrize("table", [*ALL_TABLES, "sync_health", "sync_queue_depth", "sync_open_conflicts"])
def test_anon_reads_no_per_record_data(seeded: psycopg.Connection, table: str) -> None:
    act_as(seeded, "anon")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        seeded.execute(f"select * from public.{table}")  # noqa: S608 - fixed names


def test_owner_sees_and_edits_only_own_rows(seeded: psycopg.Connection) -> None:
    act_as(seeded, "authenticated", ALICE)
    assert _visible_contacts(seeded) == ["a"]
    assert seeded.execute("update public.sync_contacts set first_name = 'A' where keap_id in ('a', 'b', 'k')").rowcount == 1
    # a new row is owned by its author by default
    seeded.execute("insert into public.sync_contacts (email) values ('new@example.com')")
    assert len(_visible_contacts(seeded)) == 2
    # soft delete only (sql/24): app users may not DELETE, not even their own rows
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        seeded.execute("delete from public.sync_contacts where keap_id = 'a'")


def test_a_user_cannot_create_rows_owned_by_someone_else(seeded: psycopg.Connection) -> None:
    act_as(seeded, "authenticated", ALICE)
    # created_by is not the user's to write at all (sql/24: column privileges; it defaults to auth.uid())
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        seeded.execute("insert into public.sync_contacts (email, created_by) values ('x@example.com', %s)", (BOB,))


def test_another_user_sees_only_their_own(seeded: psycopg.Connection) -> None:
    act_as(seeded, "authenticated", BOB)
    assert _visible_contacts(seeded) == ["b"]
    assert seeded.execute("select count(*) from public.sync_conflicts").fetchone() == (0,)


def test_user_metadata_admin_is_not_an_admin(seeded: psycopg.Connection) -> None:
    act_as(seeded, "authenticated", MALLORY)
    assert _visible_contacts(seeded) == []
    assert seeded.execute("select count(*) from public.sync_conflicts").fetchone() == (0,)
    assert seeded.execute("select count(*) from public.sync_audit_log").fetchone() == (0,)
    assert seeded.execute("update public.sync_conflicts set resolution_strategy = 'manual'").rowcount == 0


def test_app_metadata_admin_sees_everything_and_resolves_conflicts(seeded: psycopg.Connection) -> None:
    act_as(seeded, "authenticated", ADMIN)
    assert _visible_contacts(seeded) == ["a", "b", "k"]
    assert seeded.execute("select count(*) from public.sync_audit_log").fetchone()[0] >= 3
    resolved = seeded.execute(
        "update public.sync_conflicts set resolution_strategy = 'keap_wins', resolved_at = now(), resolved_by = %s",
        (ADMIN,),
    ).rowcount
    assert resolved == 1


def test_service_role_has_full_access(seeded: psycopg.Connection) -> None:
    act_as(seeded, "service_role")
    assert _visible_contacts(seeded) == ["a", "b", "k"]
    for table in ALL_TABLES:
        seeded.execute(f"select count(*) from public.{table}")  # noqa: S608 - fixed names
    assert seeded.execute("select count(*) from public.sync_conflicts").fetchone() == (1,)


def test_users_cannot_write_audit_or_queue_rows_directly(seeded: psycopg.Connection) -> None:
    act_as(seeded, "authenticated", ADMIN)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        seeded.execute(
            "insert into public.sync_audit_log (entity_type, entity_id, operation, sync_source)"
            " values ('sync_contacts', gen_random_uuid(), 'DELETE', 'keap')"
        )


@pytest.mark.parametrize(
    "call",
    [
        "select * from public.batch_upsert_contacts(array['{\"keap_id\": \"x\"}'::jsonb])",
        "select public.create_monthly_partition('2040-01-01')",
        "select public.drop_old_audit_partitions()",
        "select public.detect_sync_conflict('sync_contacts', gen_random_uuid(), '{}', '{\"a\": 1}')",
        "select public.trigger_sync_on_update()",
    ],
)
def test_api_users_cannot_call_the_pipeline_functions(seeded: psycopg.Connection, call: str) -> None:
    act_as(seeded, "authenticated", ADMIN)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        seeded.execute(call)


def test_internal_schema_is_closed_to_api_roles(db: psycopg.Connection) -> None:
    for role in ("anon", "authenticated", "service_role"):
        assert db.execute("select has_schema_privilege(%s, 'keap_pipeline', 'usage')", (role,)).fetchone() == (False,)


def test_functions_have_a_fixed_search_path_and_only_the_trigger_is_security_definer(db: psycopg.Connection) -> None:
    rows = db.execute(
        "select p.proname, p.prosecdef, p.proconfig from pg_catalog.pg_proc p"
        " join pg_catalog.pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname in ('public', 'keap_pipeline') and p.proname in"
        " ('trigger_sync_on_update', 'detect_sync_conflict', 'batch_upsert_contacts', 'create_monthly_partition',"
        "  'drop_old_audit_partitions', 'schedule_maintenance_jobs', 'is_timestamptz')"
    ).fetchall()
    assert len(rows) == 7
    for name, secdef, config in rows:
        # SECURITY DEFINER: pg_catalog first, pg_temp last (sql/24); the rest run as their caller, path ''
        assert ("search_path=pg_catalog, pg_temp" if secdef else 'search_path=""') in (config or []), name
        assert secdef == (name == "trigger_sync_on_update"), name


def test_owner_policy_uses_an_initplan(seeded: psycopg.Connection) -> None:
    act_as(seeded, "authenticated", ALICE)
    plan = "\n".join(r[0] for r in seeded.execute("explain select * from public.sync_contacts"))
    assert "InitPlan" in plan
    act_as_postgres(seeded)
