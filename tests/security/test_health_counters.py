"""Attack 8: sync_health's counters (sql/28): reading other users' figures through them, forging them, or running their functions."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from keap_pipeline.db.connect import connect
from keap_pipeline.db.health import record_sync_success
from keap_pipeline.entities import CONTACTS
from tests.security.conftest import ADMIN, ALICE, BOB, MALLORY, api, rows

WRITES = [
    "insert into public.sync_health_counters (entity_type, metric, n) values ('sync_contacts', 'records', -1000)",
    "update public.sync_health_counters set n = 0",
    "delete from public.sync_health_counters",
    "truncate public.sync_health_counters",
]
FUNCTIONS = [
    "select * from keap_pipeline.compact_sync_health_counters()",
    "select keap_pipeline.recount_sync_health()",
    "select keap_pipeline.sync_rows_delta_sql('sync_contacts', 'public.sync_contacts', null, null)",
    "select keap_pipeline.sync_items_delta_sql('public.sync_queue', 'public.sync_queue', null)",
    "select keap_pipeline.define_health_counting('public.sync_contacts', null)",
    "select * from keap_pipeline.health_counted_tables()",
    "select keap_pipeline.count_health_sync_contacts()",
    "select keap_pipeline.count_health_dead_letters()",
    "select keap_pipeline.uncount_truncated()",
]


def _health(conn: psycopg.Connection) -> dict[str, tuple[object, ...]]:
    return {
        r[0]: r[1:]
        for r in conn.execute(
            "select entity_type, total_records, soft_deleted, queue_pending, open_dead_letters, last_successful_sync_at"
            " from public.sync_health"
        )
    }


def _alice_and_bob_write(world: str) -> None:
    with api(world, ALICE) as conn:
        conn.execute("insert into public.sync_contacts (email) values ('alice1@app.example'), ('alice2@app.example')")
        conn.execute("update public.sync_contacts set deleted_at = now() where email = 'alice2@app.example'")
    with api(world, BOB) as conn:
        conn.execute("insert into public.sync_contacts (email) values ('bob@app.example')")


def test_each_reader_sees_the_health_of_the_rows_they_may_read(world: str) -> None:
    _alice_and_bob_write(world)
    with connect(world) as conn, conn.transaction():
        record_sync_success(conn, CONTACTS, conn.execute("select now()").fetchone()[0])  # type: ignore[index]
    # the honest paths: an admin and service_role read the totals from the counters (3 ingested
    # contacts, Alice's and Bob's); Alice and Bob read their own rows' figures
    for reader, role in ((ADMIN, "authenticated"), (None, "service_role")):
        with api(world, reader, role) as conn:
            contacts = _health(conn)["sync_contacts"]
            assert contacts[:4] == (5, 1, 3, 0) and contacts[4] is not None
    with api(world, ALICE) as conn:
        assert _health(conn)["sync_contacts"] == (1, 1, 0, None, None)
    with api(world, BOB) as conn:
        assert _health(conn)["sync_contacts"] == (1, 0, 0, None, None)


@pytest.mark.parametrize("user", [ALICE, MALLORY], ids=["user", "user_metadata-admin"])
def test_a_user_reads_no_counter_and_no_totals(world: str, user: uuid.UUID) -> None:
    _alice_and_bob_write(world)
    # the attack: read the counters (every user's figures, the dead letters) directly, or through the view
    with api(world, user) as conn:
        assert conn.execute("select count(*) from public.sync_health_counters").fetchone() == (0,)
        contacts = _health(conn)["sync_contacts"]
        assert contacts[0] <= 1 and contacts[3] is None and contacts[4] is None
    assert rows(world, "select count(*) as n from public.sync_health_counters")[0]["n"] > 0


def test_anon_reads_neither_the_counters_nor_the_view(world: str) -> None:
    for query in ("select * from public.sync_health_counters", "select * from public.sync_health"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, None, "anon") as conn:
            conn.execute(query)


@pytest.mark.parametrize(
    ("user", "role"),
    [(ALICE, "authenticated"), (ADMIN, "authenticated"), (None, "anon"), (None, "service_role")],
    ids=["user", "admin", "anon", "service_role"],
)
@pytest.mark.parametrize("write", WRITES, ids=["insert", "update", "delete", "truncate"])
def test_no_api_role_writes_a_count(world: str, user: uuid.UUID | None, role: str, write: str) -> None:
    before = rows(world, "select entity_type, metric, n from public.sync_health_counters order by id")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, user, role) as conn:
        conn.execute(write)
    assert rows(world, "select entity_type, metric, n from public.sync_health_counters order by id") == before


@pytest.mark.parametrize("call", FUNCTIONS)
@pytest.mark.parametrize("role", ["authenticated", "service_role", "keap_pipeline_ingest"])
def test_no_api_role_and_not_the_ingestion_runs_the_counters_functions(world: str, call: str, role: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, ADMIN if role == "authenticated" else None, role) as conn:
        conn.execute(call)


def test_the_ingestion_reports_its_syncs_and_forges_no_count(world: str) -> None:
    # honest: a completed sync's two facts
    with connect(world) as conn, conn.transaction():
        record_sync_success(conn, CONTACTS, conn.execute("select now()").fetchone()[0])  # type: ignore[index]
    assert {r["metric"] for r in rows(world, "select metric from public.sync_health_counters where at is not null and n = 0")} >= {
        "sync_succeeded", "fresh_as_of",
    }
    # the attack (a compromised loader): a count of its own choosing, or a success fact with a count
    for values in ("('sync_contacts', 'records', 1000, null)", "('sync_contacts', 'sync_succeeded', 5, now())"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), api(
            world, None, "keap_pipeline_ingest"
        ) as conn:
            conn.execute(f"insert into public.sync_health_counters (entity_type, metric, n, at) values {values}")  # noqa: S608 - fixed values
    for write in WRITES[1:]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, None, "keap_pipeline_ingest") as conn:
            conn.execute(write)


def test_a_users_writes_count_as_what_they_are(world: str) -> None:
    # the attack: make the figures lie through one's own writes (a status, a soft delete loop, a
    # hard delete); only content and deleted_at are hers to write, and each write counts as it is
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, ALICE) as conn:
        conn.execute("insert into public.sync_contacts (email, sync_status) values ('x@app.example', 'completed')")
    for _ in range(3):
        with api(world, ALICE) as conn:
            conn.execute("insert into public.sync_contacts (email) values ('loop@app.example')")
            conn.execute("update public.sync_contacts set deleted_at = now() where email = 'loop@app.example'")
            conn.execute("update public.sync_contacts set deleted_at = null where email = 'loop@app.example'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, ALICE) as conn:
        conn.execute("delete from public.sync_contacts where email = 'loop@app.example'")
    with api(world, ADMIN) as conn:
        contacts = _health(conn)["sync_contacts"]
    assert contacts[:3] == (6, 0, 3)  # 3 ingested + her 3 rows, none deleted; three pending creates queued
