"""Attack 2: a user plants the keap_id of a real Keap record on their own row; the ingestion adopts it."""

from __future__ import annotations

import psycopg
import pytest

from tests.security.conftest import ALICE, MALLORY, api, ingest, keap_contact, owner, rows

# keap ids are sequential digits: the next record Keap will send is easy to guess
GUESSED = 101

# Per sync table, columns only the ingestion writes (with a value of their type).
INGESTION_OWNED = {
    "sync_contacts": {
        "keap_id": "'101'", "source_system": "'keap'", "sync_status": "'completed'", "last_synced_at": "now()",
        "keap_updated_at": "now()", "keap_created_at": "now()", "keap_hash": "gen_random_uuid()", "version": "7",
        "created_at": "now()", "updated_at": "now()", "sync_error": "'x'", "deleted_by": f"'{ALICE}'",
    },
    "sync_orders": {"keap_id": "'o1'", "keap_contact_id": "'101'", "sync_status": "'completed'", "version": "7"},
    "sync_tags": {"keap_id": "'t1'", "keap_category_id": "'c1'", "last_synced_at": "now()"},
    "sync_subscriptions": {"keap_id": "'s1'", "keap_product_id": "'p1'", "keap_subscription_plan_id": "'x'"},
    "sync_products": {"keap_id": "'p1'", "keap_updated_at": "now()"},
}
REQUIRED = {
    "sync_contacts": {},
    "sync_orders": {"order_date": "now()", "total_amount": "1", "status": "'PAID'"},
    "sync_tags": {"name": "'VIP'"},
    "sync_subscriptions": {"status": "'active'"},
    "sync_products": {"name": "'Plan'"},
}
CASES = [(t, c, v) for t, cols in INGESTION_OWNED.items() for c, v in cols.items()]


def _insert_sql(table: str, extra: dict[str, str]) -> str:
    values = {**REQUIRED[table], **extra} or {"email": "'x@app.example'"}
    return f"insert into public.{table} ({', '.join(values)}) values ({', '.join(values.values())})"  # noqa: S608 - fixed test names


@pytest.mark.parametrize("strategy", ["keap_wins", "supabase_wins"])
def test_a_user_cannot_squat_the_keap_id_of_a_keap_record(world: str, strategy: str) -> None:
    # the attack: Mallory's own row carrying the id of a Keap record the ingestion has not loaded yet
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, MALLORY) as conn:
        conn.execute(
            "insert into public.sync_contacts (keap_id, email, first_name) values (%s, 'bait@evil.example', 'Bait')",
            (str(GUESSED),),
        )
    # ... or set later on a row she owns (the honest insert first: it works)
    with api(world, MALLORY) as conn:
        conn.execute("insert into public.sync_contacts (email, first_name) values ('bait@evil.example', 'Bait')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, MALLORY) as conn:
        conn.execute("update public.sync_contacts set keap_id = %s where email = 'bait@evil.example'", (str(GUESSED),))

    # the ingestion loads the real record: a row of its own, not Mallory's
    counts = ingest(world, [keap_contact(GUESSED)], strategy=strategy)
    assert counts.inserted == 1 and counts.conflicts == 0
    mine = rows(world, "select keap_id, email, source_system from public.sync_contacts where email = 'bait@evil.example'")
    assert mine == [{"keap_id": None, "email": "bait@evil.example", "source_system": "supabase"}]
    theirs = rows(world, "select created_by, email from public.sync_contacts where keap_id = %s", (str(GUESSED),))
    assert theirs == [{"created_by": None, "email": f"customer{GUESSED}@keap.example"}]
    # Mallory reads only her own row, and nothing of hers is queued to the Keap record
    with api(world, MALLORY) as conn:
        assert conn.execute("select keap_id, email from public.sync_contacts").fetchall() == [(None, "bait@evil.example")]
    queued = rows(
        world,
        "select q.payload ->> 'email' as email from public.sync_queue as q"
        " join public.sync_contacts as c on c.id = q.entity_id where c.keap_id = %s",
        (str(GUESSED),),
    )
    assert queued == []


@pytest.mark.parametrize(("table", "column", "value"), CASES, ids=[f"{t}.{c}" for t, c, _ in CASES])
def test_app_users_cannot_write_ingestion_owned_columns(world: str, table: str, column: str, value: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, ALICE) as conn:
        conn.execute(_insert_sql(table, {column: value}))
    with api(world, ALICE) as conn:  # the honest insert of the same row
        conn.execute(_insert_sql(table, {}))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), api(world, ALICE) as conn:
        conn.execute(f"update public.{table} set {column} = {value}")  # noqa: S608 - fixed test names
    with api(world, ALICE) as conn:
        assert conn.execute(f"select count(*) from public.{table}").fetchone() == (1,)  # noqa: S608


@pytest.mark.parametrize("who", ["service_role", "postgres"])
def test_only_the_ingestion_sets_keap_id_whatever_the_role(world: str, who: str) -> None:
    # server-side roles may write every column, but keap_id links a row to a Keap record: only the
    # ingestion does that, so that every row it matches by keap_id is one it created or linked
    def session() -> psycopg.Connection:
        conn = psycopg.connect(world)
        if who != "postgres":
            conn.execute(f"set local role {who}")
        return conn

    with pytest.raises(psycopg.errors.InsufficientPrivilege), session() as conn:
        conn.execute("insert into public.sync_contacts (keap_id, email) values ('102', 'server@app.example')")
    with session() as conn:
        conn.execute("insert into public.sync_contacts (email) values ('server@app.example')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), session() as conn:
        conn.execute("update public.sync_contacts set keap_id = '102' where email = 'server@app.example'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), session() as conn:
        conn.execute("update public.sync_contacts set keap_id = null where keap_id = '1'")
    # the ingestion still links: record 102 arrives as a row of its own
    assert ingest(world, [keap_contact(102)]).inserted == 1
    with owner(world) as conn:
        assert conn.execute("select count(*) as n from public.sync_contacts where keap_id is not null").fetchone() == {"n": 4}
