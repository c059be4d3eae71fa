"""sql/34: users_read / users_update planned with the caller's claims, attacked as a hostile signed-in user would.

34 rewrote the admin arm as `id >= keap_rls.admin_row_floor()` and the owner arm as
`created_by = keap_rls.caller_id()`, stable functions the planner evaluates while it estimates
(tests/security/test_rls_plans.py asserts the plans). The rule must not have moved: admins
(app_metadata.role = 'admin') read and update every row; any other signed-in user only the rows they
created; anon nothing. Each attack below has its honest path beside it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from tests.db.identities import claims_for, create_users
from tests.security.conftest import ADMIN, ALICE, BOB, MALLORY, api

ZERO = uuid.UUID(int=0)

# one row per table for each of: the Keap ingestion (created_by NULL), Alice, Bob
SEEDS = {
    "sync_contacts": "insert into public.sync_contacts (email, created_by) values (%s, %s)",
    "sync_orders": "insert into public.sync_orders (order_number, order_date, total_amount, status, created_by)"
                   " values (%s, now(), 1, 'PAID', %s)",
    "sync_tags": "insert into public.sync_tags (name, created_by) values (%s, %s)",
    "sync_subscriptions": "insert into public.sync_subscriptions (product_name, status, created_by) values (%s, 'active', %s)",
    "sync_products": "insert into public.sync_products (name, created_by) values (%s, %s)",
}
# the column each table's app user may write (sql/24's column grants)
WRITABLE = {
    "sync_contacts": "company", "sync_orders": "status", "sync_tags": "description",
    "sync_subscriptions": "status", "sync_products": "description",
}
TABLES = sorted(SEEDS)

# claims a hostile user can get into a token or a request (user_metadata is the user's own to write)
FORGED = {
    "user_metadata role": {"user_metadata": {"role": "admin"}},
    "top-level admin flag": {"admin": True, "is_admin": True},
    "app_metadata as a string": {"app_metadata": "admin"},
    "role in a list": {"app_metadata": {"roles": ["admin"]}},
    "role in another case": {"app_metadata": {"role": "Admin"}},
    "role with a space": {"app_metadata": {"role": "admin "}},
}


@pytest.fixture(scope="module")
def seeded(pg_server_url: str, template_database: str) -> Iterator[str]:
    """A migrated database with, per sync table, an ingested row and one row each of Alice and Bob."""
    from tests.conftest import create_database, drop_database

    name = f"kp_planned_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server_url, name, template=template_database)
    try:
        with psycopg.connect(url) as conn:
            create_users(conn)
            conn.execute("set local session_replication_role = replica")
            for table, insert in SEEDS.items():
                for who, user in (("keap", None), ("alice", ALICE), ("bob", BOB)):
                    conn.execute(insert, (f"{table}-{who}", user))
        yield url
    finally:
        drop_database(pg_server_url, name)


@contextmanager
def claims(url: str, extra: dict[str, object], user: uuid.UUID = MALLORY) -> Iterator[psycopg.Connection]:
    """A request of `user` whose JWT claims carry `extra` on top of what Supabase issues."""
    body = claims_for(user)
    body.update(extra)
    with psycopg.connect(url) as conn:
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(body),))
        yield conn


def _creators(conn: psycopg.Connection, table: str) -> list[uuid.UUID | None]:
    return sorted((r[0] for r in conn.execute(f"select created_by from public.{table}")),  # noqa: S608
                  key=lambda u: str(u))


@pytest.mark.parametrize("table", TABLES)
def test_an_owner_reads_and_updates_only_their_rows(seeded: str, table: str) -> None:
    column = WRITABLE[table]
    with psycopg.connect(seeded) as conn:
        others = [r[0] for r in conn.execute(
            f"select id from public.{table} where created_by is distinct from %s", (ALICE,)  # noqa: S608
        )]
    assert len(others) == 2
    with api(seeded, ALICE) as conn:
        assert _creators(conn, table) == [ALICE]
        # Bob's row and the ingested one, by their ids: not readable, so not updatable (0 rows, no error)
        assert conn.execute(f"select count(*) from public.{table} where id = any(%s)", (others,)).fetchone() == (0,)  # noqa: S608
        done = conn.execute(
            f"update public.{table} set {column} = 'x' where id = any(%s) returning id", (others,)  # noqa: S608
        ).fetchall()
        assert done == []
        # the honest path: her own row
        assert len(conn.execute(f"update public.{table} set {column} = 'mine' returning id").fetchall()) == 1  # noqa: S608
    with api(seeded, BOB) as conn:
        assert _creators(conn, table) == [BOB]
        assert conn.execute(f"select count(*) from public.{table} where {column} = 'mine'").fetchone() == (0,)  # noqa: S608


@pytest.mark.parametrize("table", TABLES)
def test_an_admin_reads_and_updates_every_row(seeded: str, table: str) -> None:
    with api(seeded, ADMIN) as conn:
        assert set(_creators(conn, table)) == {None, ALICE, BOB}
        done = conn.execute(
            f"update public.{table} set {WRITABLE[table]} = 'by admin' where created_by is null returning id"  # noqa: S608
        ).fetchall()
        assert len(done) == 1
        conn.rollback()


@pytest.mark.parametrize("forgery", sorted(FORGED))
@pytest.mark.parametrize("table", TABLES)
def test_forged_admin_claims_read_and_update_nothing(seeded: str, table: str, forgery: str) -> None:
    with claims(seeded, FORGED[forgery]) as conn:
        assert conn.execute(f"select count(*) from public.{table}").fetchone() == (0,)  # noqa: S608
        assert conn.execute(
            f"update public.{table} set {WRITABLE[table]} = 'forged' returning id"  # noqa: S608
        ).fetchall() == []
        assert conn.execute("select keap_rls.admin_row_floor()").fetchone() == (None,)


@pytest.mark.parametrize("table", TABLES)
def test_a_subject_of_the_floors_value_owns_nothing(seeded: str, table: str) -> None:
    # sub = the zero uuid (the admin floor's value) or no sub at all: the owner arm matches no row
    # (the ingested rows' created_by is NULL, and NULL = anything is not true)
    for extra in ({"sub": str(ZERO)}, {"sub": None}):
        with claims(seeded, extra) as conn:
            assert conn.execute(f"select count(*) from public.{table}").fetchone() == (0,), extra  # noqa: S608
    # a sub that is no uuid fails the request (auth.uid() casts it, as under 24's policy): nothing is read
    with claims(seeded, {"sub": ""}) as conn, pytest.raises(psycopg.errors.InvalidTextRepresentation):
        conn.execute(f"select count(*) from public.{table}")  # noqa: S608


def test_anon_reads_nothing_and_may_not_call_the_helpers(seeded: str) -> None:
    for table in TABLES:
        with api(seeded, None, role="anon") as conn:
            try:
                got = conn.execute(f"select count(*) from public.{table}").fetchone()  # noqa: S608
            except psycopg.errors.InsufficientPrivilege:
                continue
            assert got == (0,), table
    for helper in ("keap_rls.admin_row_floor()", "keap_rls.caller_id()"):
        with api(seeded, None, role="anon") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select {helper}")
    # the honest path: a signed-in user's own values
    with api(seeded, ADMIN) as conn:
        assert conn.execute("select keap_rls.admin_row_floor(), keap_rls.caller_id()").fetchone() == (ZERO, ADMIN)
    with api(seeded, ALICE) as conn:
        assert conn.execute("select keap_rls.admin_row_floor(), keap_rls.caller_id()").fetchone() == (None, ALICE)


def test_a_plan_made_with_an_admins_claims_reads_as_whoever_runs_it(seeded: str) -> None:
    # The planner estimates with the claims of the statement it plans; a prepared statement's generic
    # plan (PostgREST prepares its statements) is planned once and run for every later request on the
    # connection. What the plan reads must still be decided when it runs.
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("set plan_cache_mode = force_generic_plan")

        def request(user: uuid.UUID, statement: str) -> list[tuple[object, ...]]:
            with conn.transaction():
                conn.execute("set local role authenticated")
                conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims_for(user)),))
                cur = conn.execute(statement)
                return cur.fetchall() if cur.description is not None else []

        request(ADMIN, "prepare page as select created_by from public.sync_contacts order by id desc limit 50")
        request(ADMIN, "prepare edit as update public.sync_contacts set company = 'prepared' returning created_by")
        assert len(request(ADMIN, "execute page")) == 3
        for user, expected in ((MALLORY, []), (ALICE, [(ALICE,)]), (BOB, [(BOB,)])):
            assert request(user, "execute page") == expected, user
            assert request(user, "execute edit") == expected, user
        assert len(request(ADMIN, "execute page")) == 3
        # and the other way round: planned for an owner, run by the admin
        request(BOB, "prepare page_b as select created_by from public.sync_contacts order by id desc limit 50")
        assert request(BOB, "execute page_b") == [(BOB,)]
        assert len(request(ADMIN, "execute page_b")) == 3
        assert request(MALLORY, "execute page_b") == []
