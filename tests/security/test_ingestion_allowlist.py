"""Attack 5: any role but anon/authenticated could pass its writes off as the Keap ingestion (a denylist)."""

from __future__ import annotations

import psycopg
import pytest

from keap_pipeline.db.roles import INGEST_ROLE
from tests.security.conftest import ingest, keap_contact, rows

CUSTOM = "keap_security_test_writer"


def _trail(conn: psycopg.Connection, keap_id: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    audit = conn.execute(
        "select a.operation, a.sync_source from public.sync_audit_log as a join public.sync_contacts as c"
        " on c.id = a.entity_id where c.keap_id = %s and a.operation = 'UPDATE' order by a.created_at",
        (keap_id,),
    ).fetchall()
    queue = conn.execute(
        "select q.operation, q.status from public.sync_queue as q join public.sync_contacts as c"
        " on c.id = q.entity_id where c.keap_id = %s",
        (keap_id,),
    ).fetchall()
    return audit, queue  # type: ignore[return-value]


@pytest.mark.parametrize("who", ["service_role", "postgres", "custom"])
def test_only_the_ingestion_role_writes_as_keap(world: str, who: str) -> None:
    # the attack: a server-side tool, the SQL editor's user and a new custom role each say "I am Keap"
    # (the old marker: keap_pipeline.sync_source = 'keap') and edit an ingested contact
    with psycopg.connect(world) as conn:  # rolled back below: the custom role is cluster-wide
        if who == "custom":
            conn.execute(f"create role {CUSTOM} nologin")
            conn.execute(f"grant select, update on public.sync_contacts to {CUSTOM}")
            conn.execute(f"create policy custom_all on public.sync_contacts for all to {CUSTOM} using (true)")
        conn.execute("select set_config('keap_pipeline.sync_source', 'keap', true)")
        conn.execute("select set_config('request.jwt.claims', '{\"role\": \"service_role\"}', true)")
        if who != "postgres":
            conn.execute(f"set local role {CUSTOM if who == 'custom' else who}")
        assert conn.execute("update public.sync_contacts set first_name = 'Forged' where keap_id = '1'").rowcount == 1
        conn.execute("reset role")
        audit, queue = _trail(conn, "1")
        conn.rollback()
    # audited as the app change it is, and queued to Keap like every app change
    assert audit == [("UPDATE", "supabase")]
    assert queue == [("update", "pending")]


def test_the_ingestion_role_is_the_ingestion(world: str) -> None:
    # the honest path: a load transaction (set local role keap_pipeline_ingest) is Keap's: audited
    # as keap, nothing queued back to Keap
    assert ingest(world, [keap_contact(1, "2026-02-01T00:00:00.000Z", given_name="Changed")]).updated == 1
    audited = rows(
        world,
        "select a.sync_source, a.sync_destination from public.sync_audit_log as a join public.sync_contacts as c"
        " on c.id = a.entity_id where c.keap_id = '1' and a.operation = 'UPDATE'",
    )
    assert audited == [{"sync_source": "keap", "sync_destination": "supabase"}]
    assert rows(world, "select * from public.sync_queue") == []
    # and a session of the ingestion's role that is not loading (no upsert) is still the ingestion:
    # the allowlist is the role, not a variable
    with psycopg.connect(world) as conn:
        conn.execute(f"set local role {INGEST_ROLE}")
        conn.execute("update public.sync_contacts set company = 'ACME' where keap_id = '2'")
        conn.execute("reset role")
        audit, queue = _trail(conn, "2")
        conn.rollback()
    assert audit == [("UPDATE", "keap")] and queue == []
    # only members may take the role: the API roles cannot
    for role in ("anon", "authenticated", "service_role"):
        assert rows(world, "select pg_catalog.pg_has_role(%s, %s, 'member') as m", (role, INGEST_ROLE)) == [{"m": False}]
