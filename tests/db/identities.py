"""Acting as a Supabase API role inside a test transaction, as PostgREST does (SET LOCAL role + JWT claims)."""

from __future__ import annotations

import json
import uuid

import psycopg

ALICE = uuid.UUID("00000000-0000-4000-8000-00000000a11c")
BOB = uuid.UUID("00000000-0000-4000-8000-000000000b0b")
MALLORY = uuid.UUID("00000000-0000-4000-8000-0000000a11e7")
ADMIN = uuid.UUID("00000000-0000-4000-8000-0000000ad111")


def create_users(conn: psycopg.Connection) -> None:
    """Insert the test users into auth.users: Mallory made herself 'admin' in user_metadata, Admin is one in app_metadata."""
    conn.execute(
        "insert into auth.users (id, email, raw_app_meta_data, raw_user_meta_data) values"
        " (%s, 'alice@example.com', '{}', '{}'),"
        " (%s, 'bob@example.com', '{}', '{}'),"
        " (%s, 'mallory@example.com', '{}', '{\"role\": \"admin\"}'),"
        " (%s, 'admin@example.com', '{\"role\": \"admin\"}', '{}')",
        (ALICE, BOB, MALLORY, ADMIN),
    )


def claims_for(user: uuid.UUID | None, role: str = "authenticated") -> dict[str, object]:
    """The JWT claims Supabase issues for a user (app_metadata/user_metadata as in auth.users)."""
    if user is None:
        return {"role": role}
    app_metadata: dict[str, object] = {"provider": "email"}
    user_metadata: dict[str, object] = {}
    if user == ADMIN:
        app_metadata["role"] = "admin"
    if user == MALLORY:
        user_metadata["role"] = "admin"
    return {"sub": str(user), "role": role, "app_metadata": app_metadata, "user_metadata": user_metadata}


def act_as(conn: psycopg.Connection, role: str, user: uuid.UUID | None = None) -> None:
    """Switch the current transaction to an API role with a user's claims (reverted at commit/rollback)."""
    conn.execute(
        "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
        (role, json.dumps(claims_for(user, role))),
    )


def act_as_postgres(conn: psycopg.Connection) -> None:
    """Back to the connecting superuser, without claims."""
    conn.execute("select set_config('role', 'none', true), set_config('request.jwt.claims', '', true)")
