"""Attack 6: service_role rewrites the audit log; an admin retargets a conflict to release another record's held item."""

from __future__ import annotations

import psycopg
import pytest

from tests.security.conftest import ADMIN, ALICE, api, ingest, keap_contact, rows, scalar

TAMPERING = [
    pytest.param("service_role", None, "update public.sync_audit_log set sync_source = 'keap', new_data = '{}'", id="service_role-update"),
    pytest.param("service_role", None, "delete from public.sync_audit_log", id="service_role-delete"),
    pytest.param("service_role", None,
                 "insert into public.sync_audit_log (entity_type, entity_id, operation, sync_source) values"
                 " ('sync_contacts', gen_random_uuid(), 'UPDATE', 'keap')", id="service_role-forge"),
]


@pytest.mark.parametrize(("role", "user", "statement"), TAMPERING)
def test_the_audit_log_is_append_only(world: str, role: str, user: object, statement: str) -> None:
    before = scalar(world, "select count(*) from public.sync_audit_log")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, user, role) as conn:  # type: ignore[arg-type]
        conn.execute(statement)
    assert scalar(world, "select count(*) from public.sync_audit_log where sync_source = 'keap'") == before == 3
    # the honest path: service_role and admins read it; writes append to it
    with api(world, None, "service_role") as conn:
        assert conn.execute("select count(*) from public.sync_audit_log").fetchone() == (3,)
    with api(world, ADMIN) as conn:
        conn.execute("update public.sync_contacts set company = 'ACME' where keap_id = '1'")
        assert conn.execute("select count(*) from public.sync_audit_log").fetchone() == (4,)


def _park(url: str, keap_id: int) -> None:
    """An admin edits an ingested contact, Keap changes it too, the ingestion parks it (manual)."""
    with api(url, ADMIN) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Local' where keap_id = %s", (str(keap_id),))
    ingest(url, [keap_contact(keap_id, "2026-03-01T00:00:00.000Z", given_name="Remote")], strategy="manual")


def _held(url: str, keap_id: int) -> list[str]:
    return [r["status"] for r in rows(
        url,
        "select q.status from public.sync_queue as q join public.sync_contacts as c on c.id = q.entity_id"
        " where c.keap_id = %s order by q.created_at",
        (str(keap_id),),
    )]


def test_admins_set_only_the_resolution_columns(world: str) -> None:
    _park(world, 1)
    _park(world, 2)
    assert _held(world, 1) == ["held"] and _held(world, 2) == ["held"]
    conflict_1 = scalar(world, "select k.id from public.sync_conflicts as k join public.sync_contacts as c on c.id = k.entity_id where c.keap_id = '1'")
    contact_2 = scalar(world, "select id from public.sync_contacts where keap_id = '2'")

    # the attack: retarget conflict 1 to record 2 and resolve it: record 2's held item would go out
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, ADMIN) as conn:
        conn.execute(
            "update public.sync_conflicts set entity_id = %s, resolved_at = now(), resolution_strategy = 'supabase_wins'"
            " where id = %s",
            (contact_2, conflict_1),
        )
    for column, value in (("keap_data", "'{}'"), ("conflict_fields", "'{email}'"), ("entity_type", "'sync_orders'")):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, ADMIN) as conn:
            conn.execute(f"update public.sync_conflicts set {column} = {value}")  # noqa: S608 - fixed test values
    # nor resolve it in someone else's name
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), api(world, ADMIN) as conn:
        conn.execute(
            "update public.sync_conflicts set resolved_at = now(), resolution_strategy = 'manual', resolved_by = %s"
            " where id = %s",
            (ALICE, conflict_1),
        )
    assert _held(world, 1) == ["held"] and _held(world, 2) == ["held"]

    # the honest path: the admin resolves conflict 1; only record 1's item is released
    with api(world, ADMIN) as conn:
        assert conn.execute(
            "update public.sync_conflicts set resolved_at = now(), resolution_strategy = 'supabase_wins',"
            " resolved_by = %s, resolution_notes = 'keep ours' where id = %s",
            (ADMIN, conflict_1),
        ).rowcount == 1
    assert _held(world, 1) == ["pending"] and _held(world, 2) == ["held"]
    # a user who is not an admin sees and resolves nothing
    with api(world, ALICE) as conn:
        assert conn.execute("select count(*) from public.sync_conflicts").fetchone() == (0,)
        assert conn.execute("update public.sync_conflicts set resolution_notes = 'x'").rowcount == 0
