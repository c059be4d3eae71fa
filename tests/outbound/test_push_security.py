"""An app user cannot aim an outbound write at a Keap record they do not own (docs/security.md), beside the honest path.

The target of every write is the row's keap_id, which only the ingestion and the pusher's
write-back set; a user writes only rows they own (RLS); the queue is not theirs to write; a queue
item's payload never names the target; a create never asks Keap to merge into an existing contact;
a record found after a crash is adopted only if it was created after the send, holds exactly what
was sent, and no row holds it already.
"""

from __future__ import annotations

import psycopg
import pytest

from keap_pipeline.sandbox.runner import SandboxHandle
from tests.outbound.conftest import ADMIN, ALICE, MALLORY, app, execute, one, push_now, rows


def _victim(handle: SandboxHandle) -> dict[str, object]:
    assert handle.state is not None
    record = handle.state.contact(1)
    assert record is not None
    return record


def test_a_user_cannot_queue_writes_to_rows_they_do_not_own(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    victim = _victim(handle)
    # the ingested contacts have no owner: a user's edit reaches none of them, so nothing is queued
    with app(url, MALLORY) as conn:
        assert conn.execute("update public.sync_contacts set first_name = 'Pwned' where keap_id = '1'").rowcount == 0
        assert conn.execute("update public.sync_contacts set deleted_at = now() where keap_id = '1'").rowcount == 0
    # the queue is not hers to write, nor her row's keap_id
    for statement in (
        "insert into public.sync_queue (operation, entity_type, entity_id, payload) values"
        " ('delete', 'sync_contacts', gen_random_uuid(), '{\"keap_id\": \"1\"}')",
        "update public.sync_queue set payload = '{\"keap_id\": \"1\"}'",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app(url, MALLORY) as conn:
            conn.execute(statement)
    with app(url, MALLORY) as conn:
        conn.execute("insert into public.sync_contacts (email) values ('mallory@evil.example')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), app(url, MALLORY) as conn:
        conn.execute("update public.sync_contacts set keap_id = '1' where email = 'mallory@evil.example'")
    report = push_now(handle, url)
    assert report.created == 1 and report.updated == report.deleted == 0
    assert handle.state is not None and _victim(handle) == victim
    assert [op for op, _ in handle.state.writes] == ["createContact"]


def test_a_forged_payload_never_names_the_target(synced: tuple[SandboxHandle, str]) -> None:
    """The server key may write the queue (a trusted role), yet even its payloads do not choose the record written."""
    handle, url = synced
    victim = _victim(handle)
    with app(url, MALLORY) as conn:
        conn.execute("insert into public.sync_contacts (email, first_name) values ('mine@evil.example', 'Mine')")
    mine = one(url, "select id from public.sync_contacts where email = 'mine@evil.example'")
    execute(url, "update public.sync_queue set operation = 'update', payload = payload || '{\"keap_id\": \"1\"}'")
    # a delete item for a record that is not here, naming the victim, and one for Mallory's row
    with app(url, None, role="service_role") as conn:
        conn.execute("insert into public.sync_queue (operation, entity_type, entity_id, payload) values"
                     " ('delete', 'sync_contacts', gen_random_uuid(), '{\"keap_id\": \"1\", \"deleted_at\": \"now\"}')")
    report = push_now(handle, url)
    assert report.failed == 0 and report.created == 1 and report.deleted == 0, report.summary()
    assert _victim(handle) == victim
    assert one(url, "select keap_id from public.sync_contacts where id = %s", (mine,)) == "51"
    assert handle.state is not None and [op for op, _ in handle.state.writes] == ["createContact"]


def test_a_create_with_someone_elses_email_makes_a_new_contact(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    victim = _victim(handle)
    email = victim["email_addresses"][0]["email"]  # type: ignore[index]
    with app(url, MALLORY) as conn:
        conn.execute("insert into public.sync_contacts (email, first_name) values (%s, 'Impostor')", (email,))
    assert push_now(handle, url).created == 1
    assert _victim(handle) == victim  # never merged into (no duplicate_option), never updated
    assert handle.state is not None and handle.state.contact(51)["given_name"] == "Impostor"  # type: ignore[index]


def test_recovery_never_adopts_a_record_someone_else_holds(synced: tuple[SandboxHandle, str]) -> None:
    """Mallory's create is unconfirmed (as after a crash before it reached Keap): the lookup by her email finds the
    victim's contact, which is older than the send and linked to its own row; it is not adopted."""
    handle, url = synced
    victim = _victim(handle)
    email = victim["email_addresses"][0]["email"]  # type: ignore[index]
    with app(url, MALLORY) as conn:
        conn.execute("insert into public.sync_contacts (email, first_name, last_name) values (%s, %s, %s)",
                     (email, victim.get("given_name"), victim.get("family_name")))
    execute(url, "update public.sync_queue set sent_at = now() - interval '1 hour'")
    # also as if Keap had just re-saved the victim (it shows in the window the lookup reads)
    assert handle.state is not None
    handle.state.update_contact(1, {"job_title": "Touched"})
    report = push_now(handle, url)
    assert report.adopted == 0 and report.created == 1, report.summary()
    assert one(url, "select keap_id from public.sync_contacts where created_by = %s", (MALLORY,)) == "51"
    assert one(url, "select created_by from public.sync_contacts where keap_id = '1'") is None


def test_ids_in_a_row_cannot_steer_the_request_path(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    with app(url, MALLORY) as conn:
        conn.execute("insert into public.sync_contacts (email, tags) values ('t@evil.example', '[\"1/../../contacts/5\"]')")
        conn.execute("insert into public.sync_contacts (email, custom_fields) values ('c@evil.example', '{\"../5\": 1}')")
    report = push_now(handle, url)
    assert report.failed == 2 and report.sent == 0
    reasons = sorted(r["error_message"] for r in rows(url, "select error_message from public.sync_queue"))
    assert reasons == ["custom_fields keys must be Keap ids (strings of digits)", "tags must be Keap ids (strings of digits)"]
    assert handle.state is not None and handle.state.writes == []


def test_the_honest_path_a_user_edits_and_deletes_the_contact_they_created(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    with app(url, ALICE) as conn:
        conn.execute("insert into public.sync_contacts (email, first_name) values ('alice.c@example.com', 'Al')")
    push_now(handle, url)
    with app(url, ALICE) as conn:
        assert conn.execute("update public.sync_contacts set first_name = 'Alice' where email = 'alice.c@example.com'").rowcount == 1
    push_now(handle, url)
    assert handle.state is not None and handle.state.contact(51)["given_name"] == "Alice"  # type: ignore[index]
    # Bob cannot touch it; an admin can (docs/security.md)
    with app(url, ADMIN) as conn:
        conn.execute("update public.sync_contacts set deleted_at = now() where email = 'alice.c@example.com'")
    assert push_now(handle, url).deleted == 1
    assert handle.state.contact(51) is None
    assert handle.state.writes == [("createContact", 51), ("updateContact", 51), ("deleteContact", 51)]
