"""sql/31 + functions/80: contacts by tag and custom field through SECURITY DEFINER functions return exactly what RLS lets each caller read."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.db.identities import claims_for
from tests.security.conftest import ADMIN, ALICE, BOB, MALLORY, api, ingest, keap_contact, owner

TAGGED = {"tag_ids": [5, 7], "custom_fields": [{"id": "1", "content": "Google Ads"}, {"id": "3", "content": 42}]}


@pytest.fixture
def tagged(world: str) -> str:
    """Keap contacts 1-3 (1 and 2 tagged 5), Alice's and Bob's own contacts tagged 5, one of Alice's soft-deleted."""
    ingest(world, [keap_contact(1, "2026-02-01T00:00:00.000Z", **TAGGED), keap_contact(2, "2026-02-01T00:00:00.000Z", **TAGGED)])
    for user, email in ((ALICE, "alice1@app.example"), (ALICE, "alice2@app.example"), (BOB, "bob@app.example")):
        with api(world, user) as conn:
            conn.execute(
                "insert into public.sync_contacts (email, tags, custom_fields) values (%s, '[\"5\"]', '{\"1\": \"Google Ads\"}')",
                (email,),
            )
    with api(world, ALICE) as conn:
        conn.execute("update public.sync_contacts set deleted_at = now() where email = 'alice2@app.example'")
    return world


def _ids(conn: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> list[uuid.UUID]:
    return [r[0] for r in conn.execute(query, params).fetchall()]


@pytest.mark.parametrize("user", [ALICE, BOB, MALLORY, ADMIN], ids=["alice", "bob", "mallory", "admin"])
def test_a_lookup_returns_what_the_policy_lets_the_caller_read(tagged: str, user: uuid.UUID) -> None:
    with api(tagged, user) as conn:
        expected = _ids(
            conn, "select id from public.sync_contacts where tags @> '[\"5\"]' and deleted_at is null order by id desc"
        )
        assert _ids(conn, "select id from public.contacts_with_tag('5')") == expected
        expected = _ids(
            conn,
            "select id from public.sync_contacts where custom_fields @> '{\"1\": \"Google Ads\"}' and deleted_at is null"
            " order by id desc",
        )
        assert _ids(conn, "select id from public.contacts_by_custom_field('1', '\"Google Ads\"')") == expected
    # the expectations are not empty for the wrong reason: who sees how many
    with api(tagged, user) as conn:
        seen = len(_ids(conn, "select id from public.contacts_with_tag('5')"))
    assert seen == {ALICE: 1, BOB: 1, MALLORY: 0, ADMIN: 4}[user]


def test_service_role_reads_every_live_contact_and_anon_may_not_call(tagged: str) -> None:
    with api(tagged, None, role="service_role") as conn:
        assert len(_ids(conn, "select id from public.contacts_with_tag('5')")) == 4
        assert len(_ids(conn, "select id from public.contacts_by_custom_field('3', '42')")) == 2
        # a number matches as written: the text of the JSON value is the key
        assert _ids(conn, "select id from public.contacts_by_custom_field('3', '\"42\"')") == []
    with api(tagged, None, role="anon") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select * from public.contacts_with_tag('5')")
    with api(tagged, ALICE) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select * from keap_pipeline.contact_lookup")


def test_pages_and_limits(tagged: str) -> None:
    with api(tagged, ADMIN) as conn:
        everything = _ids(conn, "select id from public.contacts_with_tag('5')")
        first = _ids(conn, "select id from public.contacts_with_tag('5', 2)")
        rest = _ids(conn, "select id from public.contacts_with_tag('5', 50, %s)", (first[-1],))
        assert first + rest == everything
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("select * from public.contacts_with_tag('5', 0)")


def test_the_keys_follow_every_write_path(tagged: str) -> None:
    # an app user's edit of the tags
    with api(tagged, ALICE) as conn:
        conn.execute("update public.sync_contacts set tags = '[\"9\"]' where email = 'alice1@app.example'")
        assert _ids(conn, "select id from public.contacts_with_tag('5')") == []
        assert len(_ids(conn, "select id from public.contacts_with_tag('9')")) == 1
    # then of a custom field only, then of neither: the keys of what did not change stay
    with api(tagged, ALICE) as conn:
        conn.execute("update public.sync_contacts set custom_fields = '{\"1\": \"Newsletter\"}' where email = 'alice1@app.example'")
        assert len(_ids(conn, "select id from public.contacts_by_custom_field('1', '\"Newsletter\"')")) == 1
        assert len(_ids(conn, "select id from public.contacts_with_tag('9')")) == 1
        conn.execute("update public.sync_contacts set first_name = 'Al' where email = 'alice1@app.example'")
        assert len(_ids(conn, "select id from public.contacts_with_tag('9')")) == 1
        assert len(_ids(conn, "select id from public.contacts_by_custom_field('1', '\"Newsletter\"')")) == 1
    # the ingestion: a re-sync where Keap moved contact 1 from tag 5 to 8 and changed a field
    moved = {"tag_ids": [8], "custom_fields": [{"id": "1", "content": "Referral"}]}
    ingest(tagged, [keap_contact(1, "2026-03-01T00:00:00.000Z", **moved)])
    with api(tagged, ADMIN) as conn:
        keap1 = conn.execute("select id from public.sync_contacts where keap_id = '1'").fetchone()
        assert keap1 is not None
        assert keap1[0] not in _ids(conn, "select id from public.contacts_with_tag('5')")
        assert _ids(conn, "select id from public.contacts_with_tag('8')") == [keap1[0]]
        assert _ids(conn, "select id from public.contacts_by_custom_field('1', '\"Referral\"')") == [keap1[0]]
    # a hard delete (service_role) leaves no key behind; the table holds exactly the live keys
    with api(tagged, None, role="service_role") as conn:
        conn.execute("delete from public.sync_contacts where keap_id = '2'")
    with owner(tagged) as conn:
        stale = conn.execute(
            "select count(*) as n from ("
            " select key, contact_id from keap_pipeline.contact_lookup"
            " except select k.key, c.id from public.sync_contacts as c,"
            " keap_pipeline.contact_lookup_keys(c.tags, c.custom_fields) as k(key)) as s"
        ).fetchone()
        missing = conn.execute(
            "select count(*) as n from ("
            " select k.key, c.id from public.sync_contacts as c, keap_pipeline.contact_lookup_keys(c.tags, c.custom_fields) as k(key)"
            " except select key, contact_id from keap_pipeline.contact_lookup) as s"
        ).fetchone()
    assert (stale, missing) == ({"n": 0}, {"n": 0})


def test_a_tag_listed_twice_in_one_row_makes_one_key_and_loses_no_write(tagged: str) -> None:
    # the insert path adds each row's keys once (DISTINCT, a plain insert: no ON CONFLICT to fall back on)
    with api(tagged, BOB) as conn:
        conn.execute(
            "insert into public.sync_contacts (email, tags, custom_fields) values ('twice@app.example', '[\"6\", \"6\"]', '{}')"
        )
        assert len(_ids(conn, "select id from public.contacts_with_tag('6')")) == 1
    ingest(tagged, [keap_contact(4, "2026-02-01T00:00:00.000Z", tag_ids=[6, 6, 7], custom_fields=[])])
    with api(tagged, ADMIN) as conn:
        assert len(_ids(conn, "select id from public.contacts_with_tag('6')")) == 2
    with owner(tagged) as conn:
        row = conn.execute(
            "select count(*) as n from keap_pipeline.contact_lookup as l join public.sync_contacts as c on c.id = l.contact_id"
            " where c.keap_id = '4' or c.email = 'twice@app.example'"
        ).fetchone()
    assert row == {"n": 3}  # tag 6 twice for each row, tag 7 once


def test_the_key_is_the_json_text_of_the_value(tagged: str) -> None:
    with owner(tagged) as conn:
        key = conn.execute("select keap_pipeline.contact_lookup_key('field', '1', %s::jsonb) as k", (json.dumps("x"),)).fetchone()
        same = conn.execute("select md5('field:1=\"x\"')::uuid as k").fetchone()
        tag = conn.execute("select keap_pipeline.contact_lookup_key('tag', '5', null) = md5('tag:5')::uuid as same").fetchone()
    assert key == same
    assert tag == {"same": True}


def test_a_callers_search_path_cannot_change_the_keys(tagged: str) -> None:
    # the attack: a role that may create a schema (a mis-granted project) shadows md5 and
    # jsonb_array_elements_text ahead of pg_catalog, then writes a contact and looks it up; the key
    # functions and the trigger set search_paths of their own
    with psycopg.connect(tagged) as conn:
        conn.execute("create schema evil")
        conn.execute("create function evil.md5(text) returns text language sql as $$ select repeat('0', 32) $$")
        conn.execute("create function evil.jsonb_array_elements_text(jsonb) returns setof text language sql as $$ select '666' $$")
        conn.execute("grant usage on schema evil to authenticated")
        conn.execute("set local search_path = evil, pg_catalog, public")
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims_for(BOB, "authenticated")),))
        assert conn.execute("select md5('tag:9')").fetchone() == ("0" * 32,), "the shadow is in front"
        conn.execute("insert into public.sync_contacts (email, tags) values ('shadow@app.example', '[\"9\"]')")
        found = _ids(conn, "select id from public.contacts_with_tag('9')")
        assert len(found) == 1 and _ids(conn, "select id from public.contacts_with_tag('666')") == []
        conn.execute("reset role")
        keys = conn.execute(
            "select l.key = pg_catalog.md5('tag:9')::uuid from keap_pipeline.contact_lookup as l where l.contact_id = %s",
            (found[0],),
        ).fetchall()
        assert keys == [(True,)]
        same = conn.execute("select keap_pipeline.contact_lookup_key('tag', '9', null) = pg_catalog.md5('tag:9')::uuid").fetchone()
        assert same == (True,)
        conn.rollback()


@pytest.fixture
def in_sync(tagged: str) -> str:
    """tagged, with the app's own rows in sync too (as after a push): every live row is a candidate of the page."""
    with owner(tagged) as conn:
        conn.execute("update public.sync_contacts set sync_status = 'completed'")
    return tagged


RECENT = "select id from public.sync_contacts where deleted_at is null and sync_status = 'completed' order by updated_at desc, id desc"


@pytest.mark.parametrize("user", [ALICE, BOB, MALLORY, ADMIN], ids=["alice", "bob", "mallory-user_metadata-admin", "admin"])
def test_recent_contacts_returns_what_the_policy_lets_the_caller_read(in_sync: str, user: uuid.UUID) -> None:
    with api(in_sync, user) as conn:
        expected = _ids(conn, RECENT)
        assert _ids(conn, "select id from public.recent_contacts()") == expected
    assert len(expected) == {ALICE: 1, BOB: 1, MALLORY: 0, ADMIN: 5}[user]  # not empty for the wrong reason


def test_recent_contacts_for_service_role_and_never_for_anon(in_sync: str) -> None:
    with api(in_sync, None, role="service_role") as conn:
        assert len(_ids(conn, "select id from public.recent_contacts()")) == 5
    with api(in_sync, None, role="anon") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select * from public.recent_contacts()")
    # the caller rule behind it is not the API's to call
    with api(in_sync, ALICE) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select * from keap_pipeline.contact_reader()")
    # a signed-in role without a user (no sub claim) reads nothing
    with psycopg.connect(in_sync) as conn:
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', '{\"role\": \"authenticated\"}', true)")
        assert _ids(conn, "select id from public.recent_contacts()") == []


def test_recent_contacts_pages_by_update_time_and_id(in_sync: str) -> None:
    with owner(in_sync) as conn:  # two rows with one update time: the id breaks the tie
        conn.execute("update public.sync_contacts set updated_at = '2026-03-01T00:00:00Z' where keap_id in ('1', '2')")
    with api(in_sync, ADMIN) as conn:
        everything = conn.execute("select id, updated_at from public.recent_contacts()").fetchall()
        assert len(everything) == 5
        seen, last = [], None
        while True:
            page = conn.execute(
                "select id, updated_at from public.recent_contacts(1, %s, %s)",
                (None, None) if last is None else (last[1], last[0]),
            ).fetchall()
            if not page:
                break
            seen += page
            last = page[-1]
        assert seen == everything
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("select * from public.recent_contacts(0)")
    with api(in_sync, ADMIN) as conn, pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("select * from public.recent_contacts(10, null, %s)", (uuid.uuid4(),))
